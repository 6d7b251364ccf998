"""Data sources (maskkit.data) and the ``maskkit data`` commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader, DistributedSampler

from maskkit.audio import audio_info, save_audio
from maskkit.data import (
    FolderPairs,
    SyntheticPairs,
    WavPairs,
    build_pairs_folder,
    detect_layout,
    make_datasets,
    scan_songs,
    split_songs,
)
from maskkit.errors import AudioError
from maskkit.synth import generate_song
from maskkit_cli.data import data as data_cli

SR = 8000  # small rates and segments keep these tests fast
SEG = 1.0
N = int(SEG * SR)


def _check_item(item, n=N):
    assert isinstance(item, tuple) and len(item) == 2
    for t in item:
        assert t.dtype == torch.float32 and t.shape == (1, n)
        assert torch.isfinite(t).all() and t.abs().max() <= 1.0


def _song(path: Path, seed: int, seconds: float, sr: int = 16000, channels: int = 1, **kw) -> Path:
    mix, stems = generate_song(seed, seconds, sr, return_stems=True)
    if channels == 2:
        left = stems["drums"] + stems["bass"] + 0.8 * stems["chords"] + 0.3 * stems["melody"]
        right = stems["drums"] + stems["bass"] + 0.3 * stems["chords"] + 0.8 * stems["melody"]
        audio = np.stack([left, right])
    else:
        audio = mix
    return save_audio(path, audio, sr, **kw)


@pytest.fixture(scope="module")
def songs_dir(tmp_path_factory) -> Path:
    """7 songs in nested folders, at several rates and channel counts, plus non-audio files."""
    root = tmp_path_factory.mktemp("songs")
    _song(root / "a" / "one.wav", 1, 3.0, 16000)
    _song(root / "a" / "two.flac", 2, 2.5, 22050, channels=2)
    _song(root / "b" / "c" / "three.wav", 3, 4.0, 8000)
    _song(root / "b" / "four.ogg", 4, 3.0, 44100, channels=2)
    _song(root / "five.wav", 5, 2.0, 48000)
    _song(root / "six.mp3", 6, 3.0, 24000)
    _song(root / "seven.wav", 7, 1.5, 16000)
    (root / "notes.txt").write_text("liner notes")
    return root


def _split_of(ds: FolderPairs) -> set[str]:
    return {s.path for s in ds.songs}


# -- synthetic -----------------------------------------------------------------------------------

def test_synthetic_default_shapes_and_rates():
    train, val = make_datasets(None, train_pairs=3, val_pairs=2, sample_rate=SR, segment_seconds=SEG)
    assert isinstance(train, SyntheticPairs) and isinstance(val, SyntheticPairs)
    assert (len(train), len(val)) == (3, 2)
    assert train.sample_rate == SR and train.num_samples == N
    for i in range(3):
        _check_item(train[i])
    a, b = train[0]
    assert not torch.allclose(a, b)  # two different songs
    # the contract's defaults: 24 kHz, 4 s
    tr24 = SyntheticPairs(1)
    _check_item(tr24[0], 96000)
    assert make_datasets("synthetic")[0].num_samples == 96000


def test_synthetic_determinism_epochs_and_val():
    a = SyntheticPairs(4, seconds=SEG, sample_rate=SR, seed=7)
    b = SyntheticPairs(4, seconds=SEG, sample_rate=SR, seed=7)
    c = SyntheticPairs(4, seconds=SEG, sample_rate=SR, seed=8)
    torch.manual_seed(123)  # global RNG state must not matter
    x = a[2]
    torch.manual_seed(999)
    np.random.seed(5)
    assert all(torch.equal(u, v) for u, v in zip(x, b[2], strict=True))
    assert not torch.equal(x[0], c[2][0])
    a.set_epoch(1)
    assert a.epoch == 1 and len(a) == 4
    assert not torch.equal(a[2][0], x[0])  # training draws new songs each epoch
    a.set_epoch(0)
    assert torch.equal(a[2][0], x[0])  # ... from (seed, epoch, index) only
    v = SyntheticPairs(4, seconds=SEG, sample_rate=SR, seed=7, train=False)
    first = v[1]
    v.set_epoch(5)
    assert torch.equal(v[1][0], first[0])  # validation ignores the epoch
    train_seeds = {s for i in range(4) for s in a.song_seeds(i)}
    assert not train_seeds & {s for i in range(4) for s in v.song_seeds(i)}
    with pytest.raises(IndexError):
        a[4]


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_workers_and_epochs(workers):
    ds = SyntheticPairs(6, seconds=0.5, sample_rate=SR, seed=3)
    expected = {e: [ds_item for ds_item in _items_at(ds, e)] for e in (0, 1)}
    loader = DataLoader(ds, batch_size=3, num_workers=workers, persistent_workers=workers > 0)
    for epoch in (0, 1):
        ds.set_epoch(epoch)  # reaches persistent workers through shared memory
        got = [x for x, _ in loader]
        assert torch.equal(torch.cat(got), torch.stack([x for x, _ in expected[epoch]]))


def _items_at(ds, epoch):
    ds.set_epoch(epoch)
    items = [ds[i] for i in range(len(ds))]
    ds.set_epoch(0)
    return items


def test_distributed_sampler_covers_the_set_once():
    ds = SyntheticPairs(5, seconds=0.25, sample_rate=SR, seed=1)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=4)
        sampler.set_epoch(2)
        ds.set_epoch(2)
        for i in sampler:
            seen.append(i)
            _check_item(ds[i], 2000)
    assert sorted(set(seen)) == list(range(5)) and len(seen) == 6  # padded to equal halves


# -- folder of songs ---------------------------------------------------------------------------

def test_folder_of_songs_shapes_rates_and_split(songs_dir):
    train, val = make_datasets(str(songs_dir), sample_rate=SR, segment_seconds=SEG, train_pairs=8,
                               val_pairs=4, val_fraction=0.3)
    assert isinstance(train, FolderPairs) and isinstance(val, FolderPairs)
    assert (len(train), len(val)) == (8, 4)
    tr, va = _split_of(train), _split_of(val)
    assert len(tr) + len(va) == 7 and not tr & va and len(va) == 2
    for ds, own in ((train, tr), (val, va)):
        for i in range(len(ds)):
            x, y, meta = ds.item_with_sources(i)
            _check_item((x, y))
            assert meta["input"]["path"] != meta["target"]["path"]  # two different songs
            assert {meta["input"]["path"], meta["target"]["path"]} <= own  # never across the split
            info = audio_info(meta["input"]["path"])
            assert 0 <= meta["input"]["offset"] <= info.duration - SEG + 1e-6


def test_folder_split_never_shares_a_song_for_many_sizes(tmp_path):
    # The split by song with many folder sizes and fractions (songs are referenced, not read).
    from maskkit.audio import AudioInfo

    for n in range(4, 40, 3):
        songs = [AudioInfo(str(tmp_path / f"s{i:02d}.wav"), 8000, 1, 80000, "WAV", "PCM_16")
                 for i in range(n)]
        for frac in (0.05, 0.1, 0.5, 0.9):
            train, val = split_songs(songs, tmp_path, frac)
            assert not {s.path for s in train} & {s.path for s in val}
            assert len(train) + len(val) == n and len(train) >= 2 and len(val) >= 2
    with pytest.raises(AudioError, match="at least 4"):
        split_songs(songs[:3], tmp_path)


def test_folder_split_and_pairs_reproducible_and_location_independent(songs_dir, tmp_path):
    kw = dict(sample_rate=SR, segment_seconds=SEG, train_pairs=5, val_pairs=3, seed=11)
    t1, v1 = make_datasets(str(songs_dir), **kw)
    t2, v2 = make_datasets(str(songs_dir), **kw)
    moved = tmp_path / "elsewhere"
    shutil.copytree(songs_dir, moved)
    t3, _ = make_datasets(str(moved), **kw)
    rel = lambda ds, root: sorted(os.path.relpath(s.path, root) for s in ds.songs)  # noqa: E731
    assert rel(t1, songs_dir) == rel(t3, moved)
    for i in range(5):
        m1, m2 = t1.item_with_sources(i)[2], t2.item_with_sources(i)[2]
        assert m1 == m2
        assert all(torch.equal(a, b) for a, b in zip(t1[i], t2[i], strict=True))
    other, _ = make_datasets(str(songs_dir), **{**kw, "seed": 12})
    assert [other.item_with_sources(i)[2] for i in range(5)] != [t1.item_with_sources(i)[2] for i in range(5)]
    t1.set_epoch(3)
    v1.set_epoch(3)
    assert [t1.item_with_sources(i)[2] for i in range(5)] != [t2.item_with_sources(i)[2] for i in range(5)]
    assert [v1.item_with_sources(i)[2] for i in range(3)] == [v2.item_with_sources(i)[2] for i in range(3)]


def test_folder_from_folder_helper(songs_dir):
    ds = FolderPairs.from_folder(songs_dir, 2, split="val", sample_rate=SR, segment_seconds=SEG)
    assert not ds.train and len(ds) == 2
    _check_item(ds[1])


# -- the WAV-pairs layout -----------------------------------------------------------------------

def _original_layout(root: Path, n_train: int = 3, n_val: int = 2, seconds: float = 4.0) -> Path:
    """Pairs as the original project wrote them: 24 kHz mono 4 s WAVs."""
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            for j, kind in enumerate(("input", "output")):
                x = generate_song(100 * i + j + (50 if split == "val" else 0), seconds, 24000)
                sf.write(str(_mk(root / split / f"pair_{i:04d}_{kind}.wav")), x, 24000, subtype="PCM_16")
    return root


def _mk(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def test_original_wav_pairs_layout_as_is(tmp_path):
    root = _original_layout(tmp_path / "dataset_wav_pairs")
    assert detect_layout(root) == "pairs"
    train, val = make_datasets(str(root))
    assert isinstance(train, WavPairs) and (len(train), len(val)) == (3, 2)
    x, y = train[0]
    _check_item((x, y), 96000)
    ref, _ = sf.read(str(root / "train" / "pair_0000_input.wav"), dtype="float32")
    # Same audio, loudness-normalized: proportional to the file.
    r = np.corrcoef(x[0].numpy(), ref)[0, 1]
    assert r > 0.9999
    # Other rates/lengths: resampled and cropped; train crops move with the epoch, val's do not.
    tr8, va8 = make_datasets(str(root), sample_rate=SR, segment_seconds=SEG)
    _check_item(tr8[1])
    a = tr8[1][0]
    tr8.set_epoch(1)
    assert not torch.equal(tr8[1][0], a)
    v = va8[0][0]
    va8.set_epoch(4)
    assert torch.equal(va8[0][0], v)


def test_wav_pairs_without_val_holds_out_train_pairs(tmp_path):
    root = _original_layout(tmp_path / "p", n_train=5, n_val=0, seconds=1.0)
    with pytest.warns(UserWarning, match="holding out the last 1 of 5"):
        train, val = make_datasets(str(root), sample_rate=SR, segment_seconds=SEG, val_fraction=0.2)
    assert (len(train), len(val)) == (4, 1)
    assert {p for p, *_ in train.pairs}.isdisjoint({p for p, *_ in val.pairs})


def test_pairs_command_builds_a_folder_that_loads_back(songs_dir, tmp_path):
    out = tmp_path / "pairs"
    res = CliRunner().invoke(data_cli, ["pairs", str(songs_dir), str(out), "--segment-seconds", "1",
                                        "--pairs-per-song", "2", "--sample-rate", str(SR),
                                        "--val-fraction", "0.3"])
    assert res.exit_code == 0, res.output
    assert "note:" not in res.output  # 2 of 7 songs held out, as 0.3 asks
    manifest = json.loads((out / "pairs.json").read_text())
    tr_src = {p[k]["path"] for p in manifest["pairs"] if p["split"] == "train" for k in ("input", "target")}
    va_src = {p[k]["path"] for p in manifest["pairs"] if p["split"] == "val" for k in ("input", "target")}
    assert not tr_src & va_src and len(tr_src) == 5 and len(va_src) == 2
    assert len(list((out / "train").glob("pair_*_input.wav"))) == 10
    train, val = make_datasets(str(out), sample_rate=SR, segment_seconds=SEG)
    assert isinstance(train, WavPairs) and (len(train), len(val)) == (10, 4)
    _check_item(train[3])
    _check_item(val[0])
    info = audio_info(out / "val" / "pair_0000_output.wav")
    assert (info.sample_rate, info.channels, info.frames) == (SR, 1, N)
    # A fraction too small for 2 validation songs holds 2 out all the same, and says so.
    args = ["pairs", str(songs_dir), str(tmp_path / "few"), "--segment-seconds", "1", "--pairs-per-song", "1",
            "--sample-rate", str(SR), "--val-fraction", "0.01"]
    few = CliRunner().invoke(data_cli, args, env={"COLUMNS": "200"})
    assert few.exit_code == 0 and "note: 2 of 7 songs held out for validation, not about 0.1" in few.output
    # Running again refuses to mix old and new pairs unless told to overwrite.
    again = CliRunner().invoke(data_cli, ["pairs", str(songs_dir), str(out), "--segment-seconds", "1"])
    assert again.exit_code != 0 and "already holds" in str(again.exception)
    summary = build_pairs_folder(songs_dir, out, segment_seconds=SEG, sample_rate=SR, pairs_per_song=1,
                                 val_fraction=0.3, overwrite=True)
    assert summary.train_pairs == 5 and len(list((out / "train").glob("pair_*.wav"))) == 10


def test_synth_command_writes_songs_and_stems(tmp_path):
    out = tmp_path / "syn"
    res = CliRunner().invoke(data_cli, ["synth", str(out), "--songs", "4", "--seconds", "1.5", "--seed", "2",
                                        "--sample-rate", str(SR)])
    assert res.exit_code == 0, res.output
    songs = sorted(p.name for p in out.glob("song_*.wav"))
    assert songs == [f"song_{i:04d}.wav" for i in range(4)]
    listing = json.loads((out / "songs.json").read_text())["songs"]
    mix, _ = sf.read(str(out / "song_0002.wav"), dtype="float32")
    np.testing.assert_allclose(mix, generate_song(listing[2]["seed"], 1.5, SR), atol=1 / 32768 + 1e-6)
    stems = sum(sf.read(str(out / "stems" / "song_0002" / f"{s}.wav"), dtype="float32")[0]
                for s in ("drums", "bass", "chords", "melody"))
    np.testing.assert_allclose(stems, mix, atol=4 / 32768)
    # OUT is a usable folder of songs: the stems are not taken for songs.
    cat = scan_songs(out, segment_seconds=1.0)
    assert len(cat.songs) == 4
    # Writing into it again is refused (as data pairs does) and loses nothing; --overwrite
    # replaces the whole set, so songs.json lists exactly the songs in the folder.
    before = (out / "song_0003.wav").read_bytes()
    args = ["synth", str(out), "--songs", "2", "--seconds", "1.0", "--seed", "5", "--sample-rate", str(SR)]
    from maskkit_cli.main import cli

    res = CliRunner().invoke(cli, ["data", *args])
    assert res.exit_code == 2 and "already holds 4 synthetic song(s)" in res.output
    assert "--overwrite" in res.output
    assert (out / "song_0003.wav").read_bytes() == before
    res = CliRunner().invoke(data_cli, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("song_*.wav")) == ["song_0000.wav", "song_0001.wav"]
    assert sorted(p.name for p in (out / "stems").iterdir() if p.is_dir()) == ["song_0000", "song_0001"]
    assert [r["file"] for r in json.loads((out / "songs.json").read_text())["songs"]] == \
        ["song_0000.wav", "song_0001.wav"]
    # A folder of someone's own music is never written into, --overwrite or not.
    own = tmp_path / "own"
    own.mkdir()
    (own / "my song.wav").write_bytes((out / "song_0000.wav").read_bytes())
    for extra in ([], ["--overwrite"]):
        res = CliRunner().invoke(cli, ["data", "synth", str(own), "--songs", "1", "--seconds", "1.0", *extra])
        assert res.exit_code == 2 and "holds 1 audio file(s) of its own" in res.output, res.output
    assert sorted(p.name for p in own.iterdir()) == ["my song.wav"]


def test_a_song_with_a_long_silent_intro_gives_no_silent_crop(tmp_path):
    """30 s of silence, then 3 s of sound: four random crops of 1 s were all silent three times in
    four, and one silent reference made the training loss jump from 4 to 1,600 (the spectral
    convergence of a silent reference)."""
    from maskkit.audio import peak_db

    sr = 8000
    late = np.concatenate([np.zeros(20 * sr, np.float32), generate_song(5, 1.5, sr)])
    save_audio(tmp_path / "late start.wav", late, sr)
    _song(tmp_path / "normal.wav", 6, 3.0, sr)
    songs = [audio_info(p) for p in sorted(tmp_path.glob("*.wav"))]
    for train in (True, False):
        ds = FolderPairs(songs, 24, sample_rate=24000, segment_seconds=1.0, seed=0, train=train)
        for i in range(len(ds)):
            a, b, meta = ds.item_with_sources(i)
            for x, side in ((a, "input"), (b, "target")):
                assert peak_db(x) > -50, (i, meta[side])
            if meta["input"]["path"].endswith("late start.wav"):
                assert meta["input"]["offset"] > 18.9  # around the sound, not in the silence
        assert ds.item_with_sources(3)[2] == ds.item_with_sources(3)[2]  # still reproducible


def test_loud_blocks_serve_up_to_a_damaged_part(tmp_path):
    """A crop elsewhere than a damaged part still loads: finding a song's sound must not fail
    on a NaN late in the file."""
    from maskkit.audio import loud_blocks

    sr = 8000
    x = np.concatenate([np.zeros(3 * sr), generate_song(8, 2.0, sr), np.zeros(sr)]).astype(np.float32)
    x[-100] = np.nan
    sf.write(tmp_path / "late nan.wav", x, sr, subtype="FLOAT")
    starts = loud_blocks(tmp_path / "late nan.wav", 0.5, -50.0)
    assert starts and min(starts) >= 2.5 and max(starts) <= 5.0


@pytest.mark.parametrize("full", [True, False])
def test_a_stereo_file_whose_channels_cancel_is_silent(tmp_path, full):
    """Training and arrange read the mono mix: right = -left is silence there, and was passed as ok."""
    from maskkit.audio import check_audio

    x = generate_song(7, 2.0, 16000)
    path = save_audio(tmp_path / "phase inverted.wav", np.stack([x, -x]), 16000)
    with pytest.raises(AudioError, match=r"phase inverted.wav.*silent.*mixed to mono.*cancel out"):
        check_audio(path, full=full)
    check_audio(save_audio(tmp_path / "wide.wav", np.stack([x, 0.5 * x]), 16000), full=full)


# -- bad files -------------------------------------------------------------------------------

def _make_bad(root: Path, name: str) -> None:
    """Write the bad file ``name`` (one of :data:`BAD_KINDS`) into ``root``."""
    if name == "silent.wav":
        save_audio(root / name, torch.zeros(32000), 16000)
    elif name == "short.wav":
        _song(root / name, 9, 0.5, 16000)
    elif name == "empty.flac":
        (root / name).write_bytes(b"")
    elif name == "corrupt.wav":
        (root / name).write_bytes(np.random.default_rng(0).bytes(4000))
    elif name == "truncated.wav":
        full = _song(root / "tmp_full.wav", 10, 3.0, 16000)
        data = full.read_bytes()
        full.unlink()
        (root / name).write_bytes(data[: len(data) // 2])
    elif name == "song.m4a":
        (root / name).write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))
    elif name == "locked.wav":
        os.chmod(_song(root / name, 11, 2.0, 16000), 0)
    else:  # pragma: no cover
        raise KeyError(name)


#: bad file -> the words its problem is reported with
BAD_KINDS = {"silent.wav": "silent", "short.wav": "too short", "empty.flac": "empty",
             "corrupt.wav": "corrupt", "truncated.wav": "truncated", "song.m4a": "unsupported format",
             "locked.wav": "permission denied"}


@pytest.fixture
def unreadable(monkeypatch):
    """Make mode-000 files unreadable even for root (who reads anything): open() refuses them."""
    if os.geteuid() == 0:
        import builtins
        import errno

        real_open = builtins.open

        def guarded(file, *a, **kw):
            if isinstance(file, (str, os.PathLike)) and os.path.isfile(file) \
                    and os.stat(file).st_mode & 0o777 == 0:
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
            return real_open(file, *a, **kw)

        monkeypatch.setattr(builtins, "open", guarded)


@pytest.fixture
def bad_dir(tmp_path, unreadable) -> Path:
    """Four good songs and one file of each bad kind."""
    root = tmp_path / "mixed"
    for i in range(4):
        _song(root / f"good{i}.wav", 40 + i, 2.0, 16000)
    for name in BAD_KINDS:
        _make_bad(root, name)
    yield root
    os.chmod(root / "locked.wav", 0o644)


def test_each_bad_file_is_named_or_skipped_and_counted(bad_dir, tmp_path):
    root = bad_dir
    # Without skip_bad: one error naming every bad file and its problem (the first alone made a
    # user fix and rerun once per file), before any training.
    with pytest.raises(AudioError) as err:
        make_datasets(str(root), sample_rate=SR, segment_seconds=SEG)
    assert str(err.value).startswith(f"{len(BAD_KINDS)} bad files in {root} (pass --skip-bad")
    for name, problem in BAD_KINDS.items():
        assert re.search(f"{re.escape(name)}: .*{problem}", str(err.value)), name
    # Each kind alone, beside good songs: the error names that file and says what is wrong.
    for name, problem in BAD_KINDS.items():
        one = tmp_path / f"only_{name}"
        for i in range(4):
            _song(one / f"good{i}.wav", 40 + i, 2.0, 16000)
        _make_bad(one, name)
        with pytest.raises(AudioError, match=f"{name}.*{problem}"):
            make_datasets(str(one), sample_rate=SR, segment_seconds=SEG)
        os.chmod(one / name, 0o644)
    # With skip_bad: skipped, counted, and every item finite.
    train, val = make_datasets(str(root), sample_rate=SR, segment_seconds=SEG, skip_bad=True, train_pairs=4,
                               val_pairs=2, val_fraction=0.5)
    skipped = {Path(p).name: reason for p, reason in train.skipped}
    assert set(skipped) == set(BAD_KINDS)
    for name, problem in BAD_KINDS.items():
        assert problem in skipped[name], (name, skipped[name])
    assert train.num_skipped == len(BAD_KINDS) and "skipped 7 bad file(s)" in train.summary()
    for ds in (train, val):
        for i in range(len(ds)):
            _check_item(ds[i])
    used = _split_of(train) | _split_of(val)
    assert {Path(p).name for p in used} == {f"good{i}.wav" for i in range(4)}


def test_bad_files_in_wav_pairs(tmp_path):
    root = _original_layout(tmp_path / "p", n_train=4, n_val=1, seconds=1.0)
    (root / "train" / "pair_0001_output.wav").unlink()  # missing partner
    save_audio(root / "train" / "pair_0002_input.wav", torch.zeros(24000), 24000)  # silent
    sf.write(str(root / "train" / "pair_0003_output.wav"), np.ones(100, np.float32) * 0.1, 24000)  # short
    sf.write(str(root / "train" / "pair_0009_output.wav"), np.ones(24000, np.float32) * 0.1, 24000)  # orphan
    with pytest.raises(AudioError) as err:  # all four in one error (the first alone, before)
        make_datasets(str(root), sample_rate=SR, segment_seconds=SEG)
    msg = str(err.value)
    assert msg.startswith(f"4 bad files in {root / 'train'}"), msg
    for says in ("pair_0009_output.wav: has no matching pair_0009_input.wav",
                 "pair_0001_input.wav: has no matching pair_0001_output.wav", "pair_0002_input.wav: silent",
                 "pair_0003_output.wav: too short"):
        assert says in msg, (says, msg)
    (root / "train" / "pair_0009_output.wav").unlink()
    train, val = make_datasets(str(root), sample_rate=SR, segment_seconds=SEG, skip_bad=True)
    assert len(train) == 1 and train.num_skipped == 3
    reasons = " ".join(r for _, r in train.skipped)
    assert "no matching" in reasons and "silent" in reasons and "too short" in reasons
    assert f"shorter than one segment ({SEG:g} s)" in reasons  # the segment, not segment - padding
    _check_item(train[0])


def test_check_notes_a_wav_pair_whose_files_differ_in_length(tmp_path):
    root = _original_layout(tmp_path / "p", n_train=2, n_val=1, seconds=1.0)
    sf.write(str(root / "train" / "pair_0001_output.wav"), generate_song(7, 3.0, 24000), 24000)
    res = CliRunner().invoke(data_cli, ["check", str(root), "--segment-seconds", "1", "--json"])
    assert res.exit_code == 0, res.output  # a note, not a problem: it trains
    files = json.loads(res.output)["files"]
    by_name = {Path(f["path"]).parent.name + "/" + Path(f["path"]).name: f for f in files}
    note = by_name["train/pair_0001_output.wav"]["note"]
    assert "3.0 s against 1.0 s for pair_0001_input.wav" in note and "first 1.0 s" in note
    assert [k for k, f in by_name.items() if f["note"]] == ["train/pair_0001_output.wav"]
    table = CliRunner().invoke(data_cli, ["check", str(root), "--segment-seconds", "1"],
                               env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "1 note(s) above" in table.output and "are they a pair?" in table.output
    # train/ as a link to a folder elsewhere under the root: the same note, and a missing partner
    # is still found.
    (root / "store").mkdir()
    (root / "train").rename(root / "store" / "train")
    (root / "train").symlink_to(root / "store" / "train", target_is_directory=True)
    (root / "store" / "train" / "pair_0000_output.wav").unlink()
    files = json.loads(CliRunner().invoke(data_cli, ["check", str(root), "--segment-seconds", "1",
                                                     "--json"]).output)["files"]
    noted = [f for f in files if f["note"]]
    assert len(noted) == 1 and "3.0 s against 1.0 s" in noted[0]["note"]
    assert any(f["path"].endswith("pair_0000_input.wav") and "no matching" in f["problem"] for f in files)


def test_bad_source_paths(tmp_path):
    with pytest.raises(AudioError, match="missing_dir: no such file or directory"):
        make_datasets(str(tmp_path / "missing_dir"))
    f = _song(tmp_path / "a.wav", 1, 1.0, 8000)
    with pytest.raises(AudioError, match="a.wav: is a file"):
        make_datasets(str(f))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AudioError, match="0 usable song"):
        make_datasets(str(empty))


def test_check_command_reports_problems(bad_dir):
    root, expected = bad_dir, BAD_KINDS
    runner = CliRunner()
    res = runner.invoke(data_cli, ["check", str(root), "--segment-seconds", "1", "--json"])
    assert res.exit_code == 1
    report = json.loads(res.output)
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    for name, problem in expected.items():
        assert by_name[name]["status"] == "bad" and problem in by_name[name]["problem"], name
    assert by_name["good0.wav"]["status"] == "ok" and by_name["good0.wav"]["sample_rate"] == 16000
    assert report["layout"] == "songs"
    table = runner.invoke(data_cli, ["check", str(root), "--segment-seconds", "1"], env={"COLUMNS": "200"})
    assert table.exit_code == 1
    assert "silent" in table.output and "truncated" in table.output and "good3.wav" in table.output


# -- real-world formats: long OGG/MP3 songs at 44.1 kHz stereo -----------------------------------

@pytest.fixture(scope="module")
def real_songs(tmp_path_factory) -> Path:
    """Four songs of one to two and a half minutes, 44.1 kHz stereo, as OGG Vorbis and MP3."""
    root = tmp_path_factory.mktemp("real")
    _song(root / "album" / "01 intro.ogg", 201, 150.0, 44100, channels=2)
    _song(root / "album" / "02 track.mp3", 202, 60.0, 44100, channels=2)
    _song(root / "singles" / "b-side.ogg", 203, 75.0, 44100, channels=2)
    _song(root / "singles" / "radio edit.mp3", 204, 60.0, 44100, channels=2)
    return root


def test_check_and_pairs_on_long_ogg_mp3_stereo(real_songs, tmp_path):
    runner = CliRunner()
    res = runner.invoke(data_cli, ["check", str(real_songs), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["ok"] == 4 and report["bad"] == 0 and report["layout"] == "songs"
    for f in report["files"]:
        assert f["sample_rate"] == 44100 and f["channels"] == 2
    durations = sorted(round(f["duration"]) for f in report["files"])
    assert durations == [60, 60, 75, 150]
    table = runner.invoke(data_cli, ["check", str(real_songs)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "02 track.mp3" in table.output and "2:30.00" in table.output

    out = tmp_path / "pairs"
    res = runner.invoke(data_cli, ["pairs", str(real_songs), str(out), "--pairs-per-song", "2"])
    assert res.exit_code == 0, res.output
    train, val = make_datasets(str(out))
    assert isinstance(train, WavPairs) and (len(train), len(val)) == (4, 4)
    for ds in (train, val):
        _check_item(ds[0], 96000)
    info = audio_info(out / "train" / "pair_0000_input.wav")
    assert (info.sample_rate, info.channels, info.frames) == (24000, 1, 96000)
    # The songs folder also works directly as a data source (crops read by seeking).
    tr, va = make_datasets(str(real_songs), train_pairs=2, val_pairs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_item(tr[1], 96000)
        _check_item(va[0], 96000)


def test_paths_starting_with_a_tilde_are_the_home_folder(tmp_path, monkeypatch):
    """make_datasets("~/music") as docs/data.md shows it (a Python string, no shell to expand it)."""
    from maskkit.audio import audio_info
    from maskkit.data import write_synthetic_songs

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "..")  # a literal "~" folder would land here
    write_synthetic_songs("~/music", 4, seconds=1.0, sample_rate=SR, stems=False)
    assert not Path("~").exists()
    assert (tmp_path / "music" / "song_0000.wav").is_file()
    train, val = make_datasets("~/music", sample_rate=SR, segment_seconds=0.5, train_pairs=2, val_pairs=2)
    assert len(train) == 2 and len(val) == 2
    assert audio_info("~/music/song_0001.wav").path == str(tmp_path / "music" / "song_0001.wav")


def test_iter_batches_reads_a_pair_dataset_in_order_with_its_style_labels():
    from maskkit.data import StyledPairs, SyntheticPairs, iter_batches

    ds = SyntheticPairs(5, seconds=0.1, sample_rate=8000, seed=1)
    batches = list(iter_batches(ds, 2))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1] and all(b[2] is None for b in batches)
    assert batches[0][0].shape == (2, 1, 800) and torch.equal(batches[2][1][0], ds[4][1].reshape(1, -1))
    styled = list(iter_batches(StyledPairs(ds), 4, n=3))
    assert len(styled) == 1 and styled[0][2].tolist() == [ds.style_of(i) for i in range(3)]


# -- a large library: the scan shared by a job's processes, summaries instead of floods ------------
def _library(root: Path, n: int, *, seconds: float = 1.5) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    for i in range(n):
        sub = root / f"album{i % 3}"
        sub.mkdir(exist_ok=True)
        sf.write(sub / f"song{i:03d}.wav", 0.3 * np.sin(2 * np.pi * (150 + 7 * i) * t), SR)
    return root


def test_a_scan_split_over_processes_joins_to_the_whole_folder_scan(tmp_path):
    from maskkit.data import join_scan, scan_part

    root = _library(tmp_path / "lib", 23)
    sf.write(root / "short.wav", np.zeros(SR // 2), SR)
    (root / "cover.m4a").write_bytes(b"not audio")
    whole = scan_songs(root, segment_seconds=SEG, skip_bad=True)
    texts: list[str] = []
    parts = [scan_part(root, segment_seconds=SEG, shard=(k, 3), progress=texts.append) for k in range(3)]
    assert [len(p.results) for p in parts] == [8, 8, 8]  # 24 audio files, a third each
    assert texts[0].startswith("1/8 ") and texts[-1].startswith("8/8 ")
    joined = join_scan(root, parts, skip_bad=True)
    assert joined == whole
    # what the processes send each other: results without the folder's lists (each has its own)
    assert join_scan(root, [p.results_only() for p in parts], skip_bad=True, listing=parts[2]) == whole
    assert [s.path for s in whole.songs] == sorted(s.path for s in whole.songs) and len(whole.songs) == 23
    assert sorted(r for _, r in whole.bad) == ["too short: 0.50 s, shorter than one segment (1 s)",
                                              "unsupported format '.m4a'"]
    with pytest.raises(AudioError, match="2 bad files"):
        join_scan(root, parts)
    import dataclasses

    parts[1] = dataclasses.replace(parts[1], audio=parts[1].audio[:-1], digest="")  # another folder
    with pytest.raises(AudioError, match="processes of this job see different files"):
        join_scan(root, parts, skip_bad=True)


def test_many_bad_files_are_counted_by_kind(tmp_path):
    root = _library(tmp_path / "lib", 4)
    for i in range(12):
        (root / f"track{i}.m4a").write_bytes(b"x")
    for i in range(3):
        sf.write(root / f"short{i}.wav", np.zeros(SR // 4), SR)
    with pytest.raises(AudioError) as e:
        scan_songs(root, segment_seconds=SEG)
    assert "15 bad files in" in str(e.value)
    assert "(12 unsupported format '.m4a', 3 too short)" in str(e.value)
    assert "... and 5 more" in str(e.value)


def test_hard_linked_copies_of_a_song_are_one_song(tmp_path):
    from maskkit.audio import find_audio_files

    root = _library(tmp_path / "lib", 4)
    os.link(root / "album0" / "song000.wav", root / "album1" / "same_song.wav")
    audio, _, ignored = find_audio_files(root)
    assert len(audio) == 4
    assert [p.name for p in ignored] == ["same_song.wav"]


def test_crops_do_not_read_the_file_header_again(tmp_path, monkeypatch):
    """The scan has each song's header facts: a crop opens the file once (long MP3s seek slowly)."""
    import maskkit.audio as audio_mod

    root = _library(tmp_path / "lib", 5)
    ds = FolderPairs(scan_songs(root, segment_seconds=SEG).songs, 4, sample_rate=SR, segment_seconds=SEG)

    def no_header(*a, **k):
        raise AssertionError("audio_info called for a crop")

    monkeypatch.setattr(audio_mod, "audio_info", no_header)
    x, y = ds[0]
    assert x.shape == y.shape == (1, N)


def test_a_held_out_set_much_larger_than_its_pairs_is_noted(tmp_path, capsys):
    from maskkit.train import TrainConfig, train

    root = _library(tmp_path / "lib", 40, seconds=1.2)
    model = {"d_model": 16, "nhead": 2, "num_layers": 1, "num_transformer_layers": 1}
    cfg = TrainConfig.from_dict({"strategy": "temporal", "checkpoint_dir": str(tmp_path / "run"),
                                 "max_steps": 1, "batch_size": 2, "epochs": 1, "model": model,
                                 "codec_options": {"sample_rate": 8000, "n_fft": 64, "hop_length": 32},
                                 "data": {"source": str(root), "segment_seconds": 1.0, "train_pairs": 4,
                                          "val_pairs": 2, "val_fraction": 0.5}})
    train(cfg)
    out = capsys.readouterr().out
    assert "Data: " + str(root) + " (20 / 20 songs): 4 training / 2 validation pairs" in out
    assert "Note: 20 songs are held out for validation, but its 2 pairs use at most 4 of them" in out


def test_data_check_of_a_large_folder_lists_only_the_files_with_problems(tmp_path):
    from maskkit_cli.data import _LIST_ALL_UP_TO, _fmt_duration

    root = _library(tmp_path / "lib", 8)
    sf.write(root / "short.wav", np.zeros(SR // 2), SR)
    runner = CliRunner()
    full = runner.invoke(data_cli, ["check", str(root), "--segment-seconds", "1"], env={"COLUMNS": "200"})
    assert "song000.wav" in full.output and "short.wav" in full.output  # few files: every one listed
    (root / "notes").mkdir()
    for i in range(_LIST_ALL_UP_TO):
        (root / "notes" / f"n{i}.txt").write_text("x")
    short = runner.invoke(data_cli, ["check", str(root), "--segment-seconds", "1"], env={"COLUMNS": "200"})
    assert short.exit_code == 1
    assert "short.wav" in short.output and "song000.wav" not in short.output
    said = " ".join(short.output.split())
    assert "the 1 of 209 files with problems or notes (--all lists every file)" in said
    assert "1 with problems (1 too short)" in short.output
    every = runner.invoke(data_cli, ["check", str(root), "--segment-seconds", "1", "--all"],
                          env={"COLUMNS": "200"})
    assert "song000.wav" in every.output
    assert _fmt_duration(14.8 * 3600) == "14:48:00.00" and _fmt_duration(75) == "1:15.00"


def test_synthetic_stems_sum_to_the_mix_also_when_one_would_clip(tmp_path):
    """Song 39 of 40 two-second songs has a drum stem peaking at 1.015 (the mix at 0.9): scaled
    alone, the stems no longer summed to the mix (off by 0.016). Its stems are float WAVs now; the
    mix is as generate_song renders it."""
    import warnings as w

    from maskkit.data import write_synthetic_songs

    with w.catch_warnings():
        w.simplefilter("error")  # no clipping warning either
        rows = write_synthetic_songs(tmp_path, 40, seconds=2.0)
    for row in rows[-3:]:
        name = Path(row["file"]).stem
        mix, _ = sf.read(tmp_path / row["file"])
        stems = sum(sf.read(f)[0] for f in (tmp_path / "stems" / name).glob("*.wav"))
        assert np.abs(mix - stems).max() < 2e-4, name
    stems_of = [tmp_path / "stems" / Path(row["file"]).stem for row in rows[-2:]]
    assert sf.info(stems_of[1] / "drums.wav").subtype == "FLOAT"  # song 39: the loud stem
    assert sf.info(stems_of[0] / "drums.wav").subtype == "PCM_16"
    assert np.abs(sf.read(tmp_path / rows[-1]["file"])[0]).max() == pytest.approx(0.9, abs=1e-3)


def test_a_kept_scan_spares_reading_the_files_that_did_not_change(tmp_path, monkeypatch):
    import maskkit.data as data_mod
    from maskkit.data import join_scan, read_scan_cache, scan_part, write_scan_cache

    root = _library(tmp_path / "lib", 6)
    sf.write(root / "short.wav", np.zeros(SR // 2), SR)
    cache = tmp_path / "run" / ".songs-checked.json"
    first = scan_part(root, segment_seconds=SEG)
    write_scan_cache(cache, root, [first], first, segment_seconds=SEG)
    calls: list[str] = []
    real = data_mod.check_audio
    monkeypatch.setattr(data_mod, "check_audio", lambda p, **k: calls.append(Path(p).name) or real(p, **k))
    known = read_scan_cache(cache, segment_seconds=SEG)
    again = scan_part(root, segment_seconds=SEG, known=known)
    # the six good songs are not read again; a file that failed is (the cause may have gone)
    assert calls == ["short.wav"] and again.reused == 6
    assert join_scan(root, [again], skip_bad=True) == join_scan(root, [first], skip_bad=True)
    # a changed file is read again; so is one whose kept entry does not read
    changed = root / "album1" / "song001.wav"
    sf.write(changed, np.zeros(SR * 2), SR)
    os.utime(changed, ns=(1, 10**18))
    known["album2/song002.wav"] = [1, 2]  # (damaged: no header facts)
    calls.clear()
    scan_part(root, segment_seconds=SEG, known=known)
    assert sorted(calls) == ["short.wav", "song001.wav", "song002.wav"]
    # another segment length, another maskkit, a damaged file: nothing is kept
    assert read_scan_cache(cache, segment_seconds=2 * SEG) is None
    cache.write_text(cache.read_text().replace('"maskkit": "', '"maskkit": "0.0.0-'))
    assert read_scan_cache(cache, segment_seconds=SEG) is None
    cache.write_text("{not json")
    assert read_scan_cache(cache, segment_seconds=SEG) is None
