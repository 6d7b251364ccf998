"""Audio I/O (maskkit.audio): reading by frames, mixdown, resampling, writing, bad files."""

from __future__ import annotations

import builtins
import errno
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from maskkit.audio import (
    ClippingWarning,
    audio_info,
    check_audio,
    find_audio_files,
    load_audio,
    load_segment,
    mixdown,
    normalize_loudness,
    resample,
    save_audio,
)
from maskkit.errors import AudioError


def _sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, frames: np.ndarray, sr: int, **kw) -> Path:
    """Write [N] or [N, C] frames with soundfile directly (the files the user brings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), frames, sr, **kw)
    return path


# -- reading -----------------------------------------------------------------------------------

def test_roundtrip_wav_and_flac(tmp_path):
    x = _sine(440, 1.0, 24000)
    for ext in ("wav", "flac"):
        p = save_audio(tmp_path / f"a.{ext}", torch.from_numpy(x), 24000)
        y = load_audio(p, 24000)
        assert y.shape == (1, 24000) and y.dtype == torch.float32
        np.testing.assert_allclose(y[0].numpy(), x, atol=1 / 32768 + 1e-6)  # 16-bit PCM
        info = audio_info(p)
        assert (info.sample_rate, info.channels, info.frames) == (24000, 1, 24000)
        assert info.duration == pytest.approx(1.0)


def test_mixdown_uses_the_channel_axis_never_guesses(tmp_path):
    # 3 frames of 2 channels: an ambiguous-looking shape. Left = 0.5, right = -0.1.
    frames = np.array([[0.5, -0.1]] * 3, dtype=np.float32)
    p = _write(tmp_path / "tiny.wav", frames, 8000, subtype="FLOAT")
    y = load_audio(p, 8000)
    assert y.shape == (1, 3)
    np.testing.assert_allclose(y.numpy(), 0.2, atol=1e-7)
    both = load_audio(p, 8000, mono=False)
    assert both.shape == (2, 3)
    np.testing.assert_allclose(both[0].numpy(), 0.5)
    np.testing.assert_allclose(both[1].numpy(), -0.1, atol=1e-7)
    # Multichannel (6 channels) mixes down to their mean.
    six = np.tile(np.arange(6, dtype=np.float32)[None, :] / 10, (100, 1))
    p6 = _write(tmp_path / "six.wav", six, 8000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p6, 8000).numpy(), 0.25, atol=1e-6)
    assert mixdown(torch.ones(1, 5)).shape == (1, 5)
    with pytest.raises(ValueError):
        mixdown(torch.ones(5))


def test_resampling_keeps_frequency_and_length(tmp_path):
    p = _write(tmp_path / "s.wav", _sine(1000, 2.0, 44100), 44100, subtype="FLOAT")
    y = load_audio(p, 24000)
    assert y.shape == (1, 48000)
    spec = np.abs(np.fft.rfft(y[0].numpy()))
    freqs = np.fft.rfftfreq(48000, 1 / 24000)
    assert freqs[spec.argmax()] == pytest.approx(1000, abs=1)
    assert resample(y, 24000, 24000) is y


@pytest.mark.parametrize("orig,new", [(44056, 24000), (44100, 24000), (8000, 22050), (44056, 48000)])
def test_position_sinc_resampler_computes_torchaudios_formula(orig, new):
    import torchaudio.functional as AF

    from maskkit.audio import _sinc_resample

    x = torch.randn(2, orig // 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = AF.resample(x, orig, new)  # float64: torchaudio's filter bank without its float32 rounding
    ours = _sinc_resample(x, orig, new, chunk_elements=50_000)  # several chunks
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-9
    ours32 = _sinc_resample(x.float(), orig, new)
    assert ours32.dtype == torch.float32 and (ours32.double() - ref).abs().max().item() < 1e-5


def test_odd_sample_rate_file_loads_with_the_right_pitch_and_crops(tmp_path):
    # 47,999 Hz -> 24 kHz is the ratio 24000/47999: a filter bank of 24,000 filters of ~48,000
    # taps (tens of seconds a file). It takes the position-wise path instead.
    sr = 47999
    p = _write(tmp_path / "odd.wav", _sine(1000, 3.0, sr), sr, subtype="FLOAT")
    y = load_audio(p, 24000)
    assert y.shape == (1, 72000)
    spec = np.abs(np.fft.rfft(y[0].numpy()))
    assert np.fft.rfftfreq(72000, 1 / 24000)[spec.argmax()] == pytest.approx(1000, abs=1)
    crop = load_audio(p, 24000, offset_seconds=1.0, duration_seconds=1.0)
    assert crop.shape == (1, 24000)
    assert (crop - y[:, 24000:48000]).abs().max().item() < 2e-3


def test_crop_reads_only_needed_frames_and_matches_full_read(tmp_path, monkeypatch):
    sr = 44100
    x = np.random.default_rng(0).standard_normal(sr * 20).astype(np.float32) * 0.1
    p = _write(tmp_path / "long.wav", x, sr, subtype="FLOAT")
    full = load_audio(p, 24000)
    requested = []
    orig_read = sf.SoundFile.read

    def spy(self, frames=-1, *a, **kw):
        requested.append(frames)
        return orig_read(self, frames, *a, **kw)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    crop = load_audio(p, 24000, offset_seconds=7.5, duration_seconds=1.0)
    assert crop.shape == (1, 24000)
    # One read of about one second (plus a few ms of resampling context), not the 20 s file.
    assert len(requested) == 1 and 0 < requested[0] < 1.05 * sr
    ref = full[:, 180000:204000]
    err = (crop - ref).abs().max().item()
    assert err < 2e-3, err
    # Same rate: the crop is exactly the slice.
    same = load_audio(p, sr, offset_seconds=2.0, duration_seconds=0.5)
    np.testing.assert_array_equal(same[0].numpy(), x[2 * sr: 2 * sr + sr // 2])


def test_crop_at_end_returns_what_is_there_and_segment_pads_little(tmp_path):
    sr = 24000
    p = _write(tmp_path / "e.wav", _sine(300, 3.0, sr), sr)
    tail = load_audio(p, sr, offset_seconds=2.5, duration_seconds=1.0)
    assert tail.shape == (1, 12000)
    seg = load_segment(p, sr, 1.0, 2.0 + 0.03)  # 30 ms short: padded
    assert seg.shape == (1, 24000) and seg[0, -100:].abs().max() == 0
    with pytest.raises(AudioError, match="e.wav.*shorter than one segment"):
        load_segment(p, sr, 1.0, 2.5)
    with pytest.raises(AudioError, match="past the end"):
        load_audio(p, sr, offset_seconds=5.0)


# -- normalization --------------------------------------------------------------------------

def test_normalize_loudness_is_safe():
    z = torch.zeros(1, 1000)
    out = normalize_loudness(z)
    assert torch.equal(out, z)
    loud = torch.randn(1, 4000) * 5
    out = normalize_loudness(loud)
    assert torch.isfinite(out).all() and out.abs().max() <= 0.99 + 1e-6
    quiet = torch.randn(1, 4000) * 1e-7  # near silence is not blown up into noise
    assert normalize_loudness(quiet).abs().max() <= 1e-7 * 10 ** 1.5 * 6
    x = torch.from_numpy(_sine(200, 1.0, 8000, amp=0.01)).view(1, -1)
    rms = normalize_loudness(x).pow(2).mean().sqrt().item()
    assert 20 * math.log10(rms) == pytest.approx(-20.0, abs=0.1)
    batch = torch.stack([torch.zeros(1, 8000), x, torch.randn(1, 8000) * 5])  # [3, 1, N]
    nb = normalize_loudness(batch)  # per item: silence stays silence, the others are scaled alone
    assert nb.shape == batch.shape
    assert nb[0].abs().max() == 0
    assert torch.allclose(nb[1], normalize_loudness(x))
    assert torch.allclose(nb[2], normalize_loudness(batch[2]))
    # The NumPy path (used when loading data) gives the same result as the torch path.
    na = normalize_loudness(batch.numpy())
    assert isinstance(na, np.ndarray) and na.dtype == np.float32
    np.testing.assert_allclose(na, nb.numpy(), atol=1e-6)


# -- writing ---------------------------------------------------------------------------------

def test_save_rescales_instead_of_clipping(tmp_path):
    x = torch.from_numpy(_sine(100, 0.2, 8000, amp=2.0))
    with pytest.warns(ClippingWarning, match="would clip"):
        p = save_audio(tmp_path / "c.wav", x, 8000, subtype="FLOAT")
    y, _ = sf.read(str(p))
    assert np.abs(y).max() == pytest.approx(0.999, abs=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_audio(tmp_path / "ok.wav", x * 0.25, 8000)  # no warning below full scale


def test_save_stereo_channels_first_and_formats(tmp_path):
    st = torch.stack([torch.from_numpy(_sine(220, 0.5, 44100)), torch.zeros(22050)])
    for ext in ("wav", "flac", "ogg", "mp3"):
        p = save_audio(tmp_path / f"st.{ext}", st, 44100)
        info = audio_info(p)
        assert info.channels == 2 and info.sample_rate == 44100, ext
    with pytest.raises(ValueError, match="channels first"):
        save_audio(tmp_path / "bad.wav", st.T, 44100)
    with pytest.raises(AudioError, match="nan.wav.*NaN"):
        save_audio(tmp_path / "nan.wav", torch.tensor([0.0, float("nan")]), 8000)
    with pytest.raises(AudioError, match="cannot write '.xyz'"):
        save_audio(tmp_path / "a.xyz", st, 44100)


def test_save_is_atomic(tmp_path, monkeypatch):
    target = save_audio(tmp_path / "keep.wav", torch.zeros(100) + 0.1, 8000)
    before = target.read_bytes()

    def boom(self, data):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sf.SoundFile, "write", boom)
    with pytest.raises(AudioError, match="keep.wav.*writing failed"):
        save_audio(target, torch.zeros(100) + 0.5, 8000)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.wav"]  # no temporary file left behind
    with pytest.raises(AudioError):
        save_audio(tmp_path / "new.wav", torch.zeros(100), 8000)
    assert not (tmp_path / "new.wav").exists()


def test_long_ogg_write_does_not_crash(tmp_path):
    # libvorbis overflows its stack when given > ~95 s of 44.1 kHz stereo in one call
    # (python-soundfile #426); save_audio writes in blocks.
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 44100 * 100)).astype(np.float32) * 0.1)
    p = save_audio(tmp_path / "long.ogg", x, 44100)
    assert audio_info(p).frames == 44100 * 100


# -- bad files -------------------------------------------------------------------------------

@pytest.fixture
def good(tmp_path) -> Path:
    return save_audio(tmp_path / "good.wav", torch.from_numpy(_sine(330, 2.0, 24000)), 24000)


def test_missing_and_directory(tmp_path):
    with pytest.raises(AudioError, match="nope.wav: no such file"):
        audio_info(tmp_path / "nope.wav")
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(AudioError, match="dir.wav: is a directory"):
        load_audio(tmp_path / "dir.wav", 24000)


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav: is empty"):
        load_audio(tmp_path / "empty.wav", 24000)


def test_corrupt_file(tmp_path):
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(AudioError, match="noise.wav: not a readable audio file or corrupt"):
        check_audio(tmp_path / "noise.wav")
    (tmp_path / "text.mp3").write_text("not audio at all\n" * 50)
    with pytest.raises(AudioError, match="text.mp3"):
        load_audio(tmp_path / "text.mp3", 24000)


def test_truncated_files(tmp_path, good):
    data = good.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="cut.wav: truncated"):
        audio_info(tmp_path / "cut.wav")
    flac = save_audio(tmp_path / "full.flac", torch.from_numpy(_sine(330, 20.0, 24000)), 24000)
    b = flac.read_bytes()
    (tmp_path / "cut.flac").write_bytes(b[: len(b) // 2])
    with pytest.raises(AudioError, match="cut.flac: (corrupt or )?truncated"):
        check_audio(tmp_path / "cut.flac")
    with pytest.raises(AudioError, match="cut.flac: (corrupt or )?truncated"):
        check_audio(tmp_path / "cut.flac", full=True)
    with pytest.raises(AudioError, match="cut.flac"):
        load_audio(tmp_path / "cut.flac", 24000, offset_seconds=15.0, duration_seconds=2.0)


def test_silent_file(tmp_path):
    p = save_audio(tmp_path / "silence.wav", torch.zeros(48000), 24000)
    with pytest.raises(AudioError, match="silence.wav: silent"):
        check_audio(p)
    with pytest.raises(AudioError, match="silence.wav: silent"):
        check_audio(p, full=True)
    # Loading a silent file still gives finite zeros (never NaN), normalized or not.
    seg = load_segment(p, 24000, 1.0)
    assert torch.isfinite(seg).all() and seg.abs().max() == 0


def test_sound_between_the_probes_is_not_called_silent(tmp_path):
    # 20 s of silence with half a second of tone at 3 s: none of the four 1 s probes
    # (at 0, 6.3, 12.7 and 19 s) hears it. The quick check must agree with the full one.
    sr = 8000
    x = np.zeros(20 * sr, dtype=np.float32)
    x[3 * sr: 3 * sr + sr // 2] = _sine(440, 0.5, sr)
    p = _write(tmp_path / "quiet_intro.wav", x, sr, subtype="FLOAT")
    assert check_audio(p).frames == 20 * sr
    assert check_audio(p, full=True).frames == 20 * sr
    q = _write(tmp_path / "all_quiet.wav", np.zeros(20 * sr, dtype=np.float32), sr, subtype="FLOAT")
    with pytest.raises(AudioError, match="all_quiet.wav: silent: every sample is zero"):
        check_audio(q)


def test_shorter_than_a_segment(tmp_path, good):
    with pytest.raises(AudioError, match="good.wav: too short: 2.00 s, shorter than one segment"):
        check_audio(good, min_seconds=4.0)
    assert check_audio(good, min_seconds=2.0).frames == 48000


def test_unsupported_format(tmp_path):
    (tmp_path / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(100))
    with pytest.raises(AudioError, match="song.m4a: unsupported format '.m4a'"):
        load_audio(tmp_path / "song.m4a", 24000)


def test_unreadable_file(tmp_path, good, monkeypatch):
    os.chmod(good, 0)
    try:
        if os.geteuid() == 0:  # root reads anything: make open() refuse this one file instead
            real_open = builtins.open

            def guarded(file, *a, **kw):
                if os.fspath(file) == str(good):
                    raise PermissionError(errno.EACCES, "Permission denied", str(good))
                return real_open(file, *a, **kw)

            monkeypatch.setattr(builtins, "open", guarded)
        with pytest.raises(AudioError, match="good.wav: cannot be read \\(permission denied\\)"):
            load_audio(good, 24000)
    finally:
        os.chmod(good, 0o644)


def test_non_finite_samples_are_an_error(tmp_path):
    x = np.zeros(2000, np.float32)
    x[500] = np.nan
    p = _write(tmp_path / "nan.wav", x, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: holds NaN"):
        load_audio(p, 8000)


def test_find_audio_files(tmp_path):
    save_audio(tmp_path / "a" / "one.flac", torch.zeros(10) + 0.1, 8000)
    save_audio(tmp_path / "b" / "c" / "two.mp3", torch.zeros(2000) + 0.1, 8000)
    (tmp_path / "cover.jpg").write_bytes(b"jpg")
    (tmp_path / "x.m4a").write_bytes(b"m4a")
    (tmp_path / ".hidden.wav").write_bytes(b"")
    save_audio(tmp_path / "stems" / "s.wav", torch.zeros(10) + 0.1, 8000)
    (tmp_path / "stems" / ".maskkit-ignore").write_text("")
    audio, unsupported, ignored = find_audio_files(tmp_path)
    assert [p.name for p in audio] == ["one.flac", "two.mp3"]
    assert [p.name for p in unsupported] == ["x.m4a"]
    assert {p.name for p in ignored} == {"cover.jpg", ".hidden.wav"}
    with pytest.raises(AudioError, match="not a directory"):
        find_audio_files(tmp_path / "cover.jpg")


def test_find_audio_files_takes_each_linked_song_once_and_stops_at_loops(tmp_path):
    """A link back up the tree made one folder of 2 songs look like dozens (in both the training
    and the validation split); a second link to a song let a pair join it with itself."""
    save_audio(tmp_path / "a.wav", torch.zeros(10) + 0.1, 8000)
    save_audio(tmp_path / "sub" / "b.wav", torch.zeros(10) + 0.1, 8000)
    (tmp_path / "sub" / "up").symlink_to("..")
    (tmp_path / "z_link.wav").symlink_to(tmp_path / "a.wav")
    audio, _, ignored = find_audio_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in audio] == ["a.wav", "sub/b.wav"]
    assert (tmp_path / "z_link.wav") in ignored
