"""Bad and unusual input, case by case (issue 10, "bad input").

What ``test_audio.py`` / ``test_data.py`` already cover (corrupt, truncated, empty FLAC, silent,
too short, unsupported ``.m4a``, unreadable permissions, missing paths, an empty folder, the
first missing partner of a WAV-pairs folder) is not repeated here. This file covers the rest
of the issue's list, each through the public API (``maskkit.audio.load_audio``,
``check_audio``, ``maskkit.data.make_datasets``) and the command line (``maskkit data check``,
``maskkit train``):

- unusual but valid files (8-bit unsigned PCM, 32-bit float, 96 kHz, 6 channels, a WAV named
  ``.mp3``) load with the right shape, rate, channel order and finite values;
- invalid ones (NaN / Inf samples, a zero-length file, a WAV header with no frames, text
  named ``.wav``) raise an error that starts with the file's path and says what is wrong;
- a folder with no audio and a pairs folder with missing partners are named;
- invalid ``maskkit train`` values are refused before anything runs, naming the option;
- and in every case the files already there are left byte-for-byte as they were.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from maskkit.audio import IGNORE_MARKER, check_audio, load_audio
from maskkit.data import check_folder, make_datasets
from maskkit.errors import AudioError, ConfigError
from maskkit_cli.data import data as data_cli

SR = 8000  # the rate the datasets are asked for; the files use their own
SEG = 0.5


def tone(seconds: float, sr: int, freq: float = 440.0, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    """``[frames, channels]`` float32 sine; channel ``c`` has amplitude ``amp * (c + 1) / channels``."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x * amp * (c + 1) / channels for c in range(channels)], axis=1)


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (to prove nothing was touched)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def dominant_hz(x: torch.Tensor, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x.double().numpy().ravel()))
    return float(np.fft.rfftfreq(x.shape[-1], 1 / sr)[int(spec.argmax())])


# -- unusual but valid files ----------------------------------------------------------------------

#: name -> (writer kwargs, source rate, channels, expected subtype)
VALID = {
    "u8.wav": (dict(subtype="PCM_U8"), 8000, 1, "PCM_U8"),
    "float32.wav": (dict(subtype="FLOAT"), 16000, 1, "FLOAT"),
    "hires96k.wav": (dict(subtype="PCM_24"), 96000, 1, "PCM_24"),
    "surround6.wav": (dict(subtype="PCM_16"), 16000, 6, "PCM_16"),
    "really_a_wav.mp3": (dict(format="WAV", subtype="PCM_16"), 16000, 2, "PCM_16"),
}


def write_valid(root: Path, name: str, seconds: float = 1.0) -> Path:
    kwargs, sr, ch, _ = VALID[name]
    root.mkdir(parents=True, exist_ok=True)
    sf.write(str(root / name), tone(seconds, sr, channels=ch), sr, **kwargs)
    return root / name


@pytest.mark.parametrize("name", list(VALID))
def test_unusual_valid_files_load_with_the_right_shape_rate_and_values(tmp_path, name):
    path = write_valid(tmp_path, name)
    _, src_sr, channels, subtype = VALID[name]
    info = check_audio(path, min_seconds=1.0, full=True)
    assert (info.sample_rate, info.channels, info.frames, info.subtype) == (src_sr, channels, src_sr, subtype)
    assert info.format == "WAV"  # the content decides, not the extension
    mono = load_audio(path, SR)
    assert mono.dtype == torch.float32 and mono.shape == (1, SR) and torch.isfinite(mono).all()
    # Loudest channel 0.5: the mix-down is the mean of the channels, (1 + ... + C) / C^2 * 0.5.
    expected_peak = 0.5 * (channels + 1) / (2 * channels)
    assert float(mono.abs().max()) == pytest.approx(expected_peak, abs=0.02)
    assert dominant_hz(mono, SR) == pytest.approx(440.0, abs=2.0)  # resampled, not re-pitched
    every = load_audio(path, SR, mono=False)
    assert every.shape == (channels, SR) and torch.isfinite(every).all()
    peaks = every.abs().amax(dim=1)
    # The channel axis is read as the channel axis: channel c keeps its own level, in order.
    torch.testing.assert_close(peaks, torch.tensor([0.5 * (c + 1) / channels for c in range(channels)]),
                               atol=0.02, rtol=0)
    crop = load_audio(path, SR, offset_seconds=0.25, duration_seconds=0.5)
    assert crop.shape == (1, SR // 2) and torch.isfinite(crop).all()


def test_a_folder_of_unusual_valid_files_trains_and_checks_clean(tmp_path):
    root = tmp_path / "songs"
    for name in VALID:
        write_valid(root, name, seconds=1.0)
    before = snapshot(root)
    train, val = make_datasets(str(root), sample_rate=SR, segment_seconds=SEG, train_pairs=4, val_pairs=2,
                               val_fraction=0.4)
    n = int(round(SEG * SR))
    for ds in (train, val):
        assert ds.num_skipped == 0
        for i in range(len(ds)):
            for x in ds[i]:
                assert x.shape == (1, n) and x.dtype == torch.float32
                assert torch.isfinite(x).all() and 0 < float(x.abs().max()) <= 1.0
    res = CliRunner().invoke(data_cli, ["check", str(root), "--segment-seconds", str(SEG), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["ok"] == len(VALID) and report["bad"] == 0
    rates = {Path(f["path"]).name: (f["sample_rate"], f["channels"]) for f in report["files"]}
    assert rates == {name: (v[1], v[2]) for name, v in VALID.items()}
    assert snapshot(root) == before


# -- invalid files -----------------------------------------------------------------------------------

def _nan_late(path: Path) -> None:
    x = tone(20.0, SR)  # 160000 frames: past the first block of a full check
    x[100_000, 0] = np.nan
    sf.write(str(path), x, SR, subtype="FLOAT")


#: name -> (how to make it, the words of its problem)
INVALID = {
    "all_nan.wav": (lambda p: sf.write(str(p), np.full((SR, 1), np.nan, np.float32), SR, subtype="FLOAT"),
                    "holds NaN or infinite samples (the first at frame 0"),
    "inf.wav": (lambda p: sf.write(str(p), np.where(np.arange(SR)[:, None] == 4000, np.inf,
                                                    tone(1.0, SR)).astype(np.float32), SR, subtype="FLOAT"),
                "holds NaN or infinite samples (the first at frame 4000, 0.500 s)"),
    "nan_late.wav": (_nan_late, "holds NaN or infinite samples (the first at frame 100000, 12.500 s)"),
    "zero_length.wav": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "header_only.wav": (lambda p: sf.write(str(p), np.zeros((0, 1), np.float32), SR),
                        "holds no audio frames"),
    "text.wav": (lambda p: p.write_text("these are not the samples you are looking for\n" * 20),
                 "not a readable audio file or corrupt"),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_files_are_named_with_their_problem(tmp_path, name):
    make, problem = INVALID[name]
    path = tmp_path / name
    make(path)
    before = path.read_bytes()
    with pytest.raises(AudioError) as err:
        check_audio(path, full=True)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)
    if name != "nan_late.wav":  # a crop elsewhere in that file is fine: only the bad frames are refused
        with pytest.raises(AudioError, match=problem.split(" (")[0]) as err:
            load_audio(path, SR)
        assert str(err.value).startswith(f"{path}: ")
    else:
        with pytest.raises(AudioError, match="first at frame 100000"):
            load_audio(path, SR, offset_seconds=12.0, duration_seconds=1.0)
        assert torch.isfinite(load_audio(path, SR, offset_seconds=1.0, duration_seconds=1.0)).all()
    assert path.read_bytes() == before


def test_invalid_files_in_a_folder_are_named_skipped_and_reported(tmp_path):
    root = tmp_path / "songs"
    for i in range(4):
        write_valid(root, "float32.wav").rename(root / f"good{i}.wav")
    for name, (make, _) in INVALID.items():
        make(root / name)
    before = snapshot(root)
    with pytest.raises(AudioError) as err:
        make_datasets(str(root), sample_rate=SR, segment_seconds=SEG)
    assert any(f"{root / name}: " in str(err.value) for name in INVALID) and "--skip-bad" in str(err.value)
    train, _ = make_datasets(str(root), sample_rate=SR, segment_seconds=SEG, skip_bad=True, train_pairs=2,
                             val_pairs=2, val_fraction=0.5)
    # The quick probe of a folder of songs does not decode every frame, so a single late NaN
    # sample is found by `maskkit data check` (full decode) and by the crop that reads it.
    probed = {n for n in INVALID if n != "nan_late.wav"}
    assert probed <= {Path(p).name for p, _ in train.skipped}
    res = CliRunner().invoke(data_cli, ["check", str(root), "--segment-seconds", str(SEG), "--json"])
    assert res.exit_code == 1
    files = {Path(f["path"]).name: f for f in json.loads(res.output)["files"]}
    for name, (_, problem) in INVALID.items():
        assert files[name]["status"] == "bad" and problem in files[name]["problem"], (name, files[name])
    assert all(files[f"good{i}.wav"]["status"] == "ok" for i in range(4))
    assert snapshot(root) == before
    # Too few songs left after skipping: the error says how many were skipped, and where to look.
    for i in range(2):
        (root / f"good{i}.wav").unlink()
    with pytest.raises(AudioError, match=r"songs: \d usable song\(s\).*; \d+ file\(s\) were skipped as bad "
                                         r"\(the first: .*\); `maskkit data check .*songs "
                                         r"--segment-seconds 0.5` lists them"):
        make_datasets(str(root), sample_rate=SR, segment_seconds=SEG, skip_bad=True)


# -- folders --------------------------------------------------------------------------------------

def test_a_folder_with_no_audio_is_named(tmp_path):
    root = tmp_path / "not_music"
    (root / "art").mkdir(parents=True)
    (root / "art" / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    (root / "notes.txt").write_text("liner notes\n")
    (root / ".hidden.wav").write_bytes(b"RIFF")
    write_valid(root / "stems", "float32.wav")  # skipped: its folder holds the ignore marker
    (root / "stems" / IGNORE_MARKER).write_text("")
    before = snapshot(root)
    with pytest.raises(AudioError, match=r"not_music: 0 usable song\(s\)"):
        make_datasets(str(root), sample_rate=SR, segment_seconds=SEG)
    layout, reports = check_folder(root, segment_seconds=SEG)
    assert layout == "songs" and {r.status for r in reports} == {"ignored"}
    res = CliRunner().invoke(data_cli, ["check", str(root), "--segment-seconds", str(SEG)],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 1, res.output
    assert f"{root}: no audio files" in res.output
    assert snapshot(root) == before


def test_the_full_check_names_damage_before_shortness(tmp_path):
    """A short file with a NaN sample was reported only as "too short" by `maskkit data check`,
    which hid what no shorter segment cures; the quick check still stops at the header's length."""
    x = tone(0.5, 8000)
    x[100, 0] = np.nan
    sf.write(str(tmp_path / "nan.wav"), x, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="holds NaN or infinite samples"):
        check_audio(tmp_path / "nan.wav", min_seconds=4.0, full=True)
    with pytest.raises(AudioError, match=r"too short: 0\.50 s, shorter than one segment"):
        check_audio(tmp_path / "nan.wav", min_seconds=4.0)
    sf.write(str(tmp_path / "short.wav"), tone(0.5, 8000), 8000)
    with pytest.raises(AudioError, match=r"too short: 0\.50 s, shorter than one segment"):
        check_audio(tmp_path / "short.wav", min_seconds=4.0, full=True)


def test_data_check_notes_a_folder_with_too_few_songs_to_train_on(tmp_path):
    """Three good songs pass the check, but training needs four: the check says so (exit 0)."""
    for name in ("float32.wav", "u8.wav", "hires96k.wav"):
        write_valid(tmp_path / "three", name)
    args = ["check", str(tmp_path / "three"), "--segment-seconds", str(SEG)]
    res = CliRunner().invoke(data_cli, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "note: 3 usable song(s); training on a folder of songs needs at least 4" in res.output
    write_valid(tmp_path / "three", "surround6.wav")
    res = CliRunner().invoke(data_cli, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "needs at least" not in res.output, res.output


def test_brackets_in_file_names_and_run_folders_are_printed_as_they_are(tmp_path, capsys):
    """Musicians' files look like 'Song [Live].flac': rich must not read '[Live]' as a style."""
    from maskkit.train import train

    root = tmp_path / "[demos]"
    root.mkdir()
    names = ["Song A [Live].wav", "Song B [2019 remaster].wav", "Song C.wav", "[intro].wav"]
    for i, name in enumerate(names):
        sf.write(str(root / name), tone(1.0, SR, 220.0 + 110 * i), SR)
    (root / "broken [red].wav").write_bytes(b"")
    res = CliRunner().invoke(data_cli, ["check", str(root), "--segment-seconds", str(SEG)],
                             env={"COLUMNS": "250"})
    for shown in ("Song A [Live].wav", "Song B [2019 remaster].wav", "broken [red].wav", "[demos]"):
        assert shown in res.output, res.output
    from test_train import tiny

    run = tmp_path / "runs" / "[exp 1]"
    r = train(tiny(run, "--data", str(root), "--skip-bad", "--train-pairs", "4", "--val-pairs", "2",
                   "--batch-size", "2", "--epochs", "1", "--val-fraction", "0.5", "--segment-seconds", "0.5",
                   quiet=False))
    assert r.steps == 2
    out = capsys.readouterr().out
    assert "[exp 1]" in out and "broken [red].wav" in out, out
    from maskkit_cli.main import cli

    res = CliRunner().invoke(cli, ["curves", str(run), "--png", str(tmp_path / "c.png")],
                             env={"COLUMNS": "250"})
    assert "[exp 1]" in res.output, res.output


def _pair(folder: Path, pid: str, *, output: bool = True, input_: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if input_:
        sf.write(str(folder / f"pair_{pid}_input.wav"), tone(1.0, SR, 330.0), SR)
    if output:
        sf.write(str(folder / f"pair_{pid}_output.wav"), tone(1.0, SR, 550.0), SR)


def test_a_pairs_folder_with_missing_partners(tmp_path):
    root = tmp_path / "pairs"
    for pid in ("0000", "0001", "0002"):
        _pair(root / "train", pid)
    _pair(root / "train", "0003", output=False)   # input without output
    _pair(root / "val", "0000")
    _pair(root / "val", "0001", input_=False)     # output without input, in val
    before = snapshot(root)
    res = CliRunner().invoke(data_cli, ["check", str(root), "--segment-seconds", "1", "--json"])
    assert res.exit_code == 1, res.output
    report = json.loads(res.output)
    assert report["layout"] == "pairs"
    files = {str(Path(f["path"]).relative_to(root)): f for f in report["files"]}
    assert files["train/pair_0003_input.wav"]["problem"] == "no matching pair_0003_output.wav"
    assert files["val/pair_0001_output.wav"]["problem"] == "no matching input file"
    assert {k for k, f in files.items() if f["status"] == "bad"} == {"train/pair_0003_input.wav",
                                                                      "val/pair_0001_output.wav"}
    # make_datasets names the first one it meets; with skip_bad the complete pairs load.
    with pytest.raises(AudioError, match=r"pair_0003_input.wav: has no matching pair_0003_output.wav"):
        make_datasets(str(root), sample_rate=SR, segment_seconds=SEG)
    (root / "train" / "pair_0003_input.wav").unlink()
    with pytest.raises(AudioError, match=r"val/pair_0001_output.wav: has no matching pair_0001_input.wav"):
        make_datasets(str(root), sample_rate=SR, segment_seconds=SEG)
    _pair(root / "train", "0003", output=False)
    train, val = make_datasets(str(root), sample_rate=SR, segment_seconds=SEG, skip_bad=True)
    assert (len(train), len(val)) == (3, 1)
    assert {Path(p).name for p, _ in train.skipped} == {"pair_0003_input.wav"}
    assert {Path(p).name for p, _ in val.skipped} == {"pair_0001_output.wav"}
    for ds in (train, val):
        for i in range(len(ds)):
            for x in ds[i]:
                assert x.shape == (1, int(SEG * SR)) and torch.isfinite(x).all()
    assert snapshot(root) == before


# -- invalid command-line values -----------------------------------------------------------------------

@pytest.fixture
def no_training(monkeypatch):
    """``maskkit.train.train`` replaced by a recorder: an invalid value must stop before it."""
    import maskkit.train as train_mod

    calls: list = []
    monkeypatch.setattr(train_mod, "train", lambda cfg: calls.append(cfg) or pytest.fail("training started"))
    return calls


@pytest.mark.parametrize("args, message", [
    (["--epochs", "-3"], "epochs must be >= 1, got -3"),
    (["--epochs", "0"], "epochs must be >= 1, got 0"),
    (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
    (["--batch-size", "-2"], "batch_size must be >= 1, got -2"),
    (["--preset", "tiny"], "Invalid value for '--preset': 'tiny' is not one of 'small', 'base', 'large'"),
    (["--strategy", "temporal", "--strategy-opt", "segment=-4"],
     "strategy 'temporal': option 'segment' must be >= 1, got -4"),
    (["--strategy", "energy", "--strategy-opt", "quantile=1.5"],
     "strategy 'energy': option 'quantile' must be <= 1"),
    (["--strategy", "energy", "--strategy-opt", "quantile=high"],
     "strategy 'energy': option 'quantile' expects a number, got 'high'"),
    (["--lr", "-1"], "option 'lr' must be >= 0"),
    (["--keep-checkpoints", "1"], "keep_checkpoints must be >= 2"),
    # nan and inf pass every < and > check: they are refused as such
    (["--lr", "nan"], "Invalid value for '--lr': 'nan' is not a finite number"),
    (["--segment-seconds", "inf"], "Invalid value for '--segment-seconds': 'inf' is not a finite number"),
    (["--strategy", "energy", "--strategy-opt", "quantile=nan"],
     "strategy 'energy': option 'quantile' expects a finite number, got 'nan'"),
    # an option given twice would lose one of its values without a word
    (["--model-opt", "d_model=64", "--d-model", "32"],
     "--model-opt d_model=64 and --d-model both set d_model"),
    (["--device", "cuda:x"], "Invalid value for '--device': 'cuda:x'"),
])
def test_invalid_cli_values_are_refused_before_anything_runs(tmp_path, no_training, args, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"an earlier run's checkpoint")
    (run / "metrics.jsonl").write_text('{"kind": "step", "step": 1}\n')
    before = snapshot(run)
    from maskkit_cli.main import cli

    res = CliRunner().invoke(cli, ["train", "--strategy", "temporal", "--checkpoint-dir", str(run), *args]
                             if "--strategy" not in args else ["train", "--checkpoint-dir", str(run), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert no_training == []
    assert snapshot(run) == before


# -- outputs that cannot be written, system errors ----------------------------------------------

@pytest.fixture
def a_file(tmp_path):
    """A plain file: a path "under" it cannot be written (the parent is not a folder)."""
    f = tmp_path / "a_file"
    f.write_text("not a folder")
    return f


def _cli(*args):
    from maskkit_cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_outputs_that_cannot_be_written_are_refused_before_the_work(tmp_path, a_file, monkeypatch):
    import maskkit.bench as bench_mod

    monkeypatch.setattr(bench_mod, "run_bench", lambda *a, **k: pytest.fail("the bench ran"))
    for option in ("--json", "--csv", "--markdown"):
        res = _cli("bench", "--strategies", "temporal", option, a_file / "out.x")
        assert res.exit_code == 2, res.output
        assert f"{option} {a_file / 'out.x'}: cannot write there" in res.output
    res = _cli("bench", "--strategies", "temporal", "--json", tmp_path / ("x" * 300 + ".json"))
    assert res.exit_code == 2 and "--json: the name xxxx" in res.output and "is 305 bytes long" in res.output
    res = _cli("data", "synth", a_file / "songs", "--songs", "1", "--seconds", "1")
    assert res.exit_code == 2 and f"OUT {a_file / 'songs'}: cannot write there" in res.output, res.output
    song = write_valid(tmp_path / "songs", "float32.wav")
    res = _cli("masks", "temporal", song, song, "--png", a_file / "m.png")
    assert res.exit_code == 2 and "--png" in res.output and "cannot write there" in res.output, res.output
    res = _cli("arrange", "--mix-only", "-s", "temporal", song, song, "-o", a_file / "o.wav")
    assert res.exit_code == 2 and "--output" in res.output and "cannot write there" in res.output, res.output
    # a place that can be written passes, and the check creates nothing there (the writer does)
    def stop(*a, **k):
        raise ConfigError("stopped after the checks")

    monkeypatch.setattr(bench_mod, "run_bench", stop)
    res = _cli("bench", "--strategies", "temporal", "--json", tmp_path / "new" / "deeper" / "b.json")
    assert res.exit_code == 2 and "stopped after the checks" in res.output, res.output
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".maskkit-write-test*"))
    assert "Traceback" not in res.output and a_file.read_text() == "not a folder"


def test_output_checks_run_side_by_side_and_take_any_file_name(tmp_path):
    """Parallel jobs writing into one new folder check it at the same time: none may see a
    false error (the check once created and removed the folder, and shared one probe name)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from maskkit.paths import check_output_file

    def check(i):
        return check_output_file(tmp_path / "new" / f"out{i}.wav", "--output")

    with ThreadPoolExecutor(4) as pool:
        assert len(list(pool.map(check, range(200)))) == 200
    assert sorted(os.listdir(tmp_path)) == []  # nothing created, no probe left
    # a name that is not UTF-8 (as Linux allows) is checked, not a traceback
    odd = os.fsdecode(b"caf\xe9.wav")
    assert check_output_file(tmp_path / odd, "--output").name == odd
    # a file that is there already is written over
    (tmp_path / "old.json").write_text("{}")
    assert check_output_file(tmp_path / "old.json", "--json") == tmp_path / "old.json"


def test_curves_writes_png_only_and_skips_damaged_rows(tmp_path):
    pytest.importorskip("matplotlib")
    from test_curves import fake_run

    run = fake_run(tmp_path / "run", [3.0, 2.0, 1.5, 1.0], [2.0])
    with (run / "metrics.jsonl").open("a") as f:  # damaged rows: JSON that is not a row, a bad step
        f.write('[1, 2]\n{"kind": "step", "step": "x", "loss": 1.0}\n')
    res = _cli("curves", run, "--png", tmp_path / "c.pdf")
    assert res.exit_code == 2 and "give a name ending in .png" in res.output, res.output
    assert not (tmp_path / "c.pdf").exists()
    res = _cli("curves", run, "--png", tmp_path / "c.png")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c.png").is_file() and "Traceback" not in res.output


@pytest.mark.parametrize("error, message", [
    (MemoryError(), "out of memory (MemoryError): ask for less at a time"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried "
                  "to allocate 96000000000 bytes"), "out of memory ([enforce fail"),
    (PermissionError(13, "Permission denied", "/music/out.wav"), "/music/out.wav: Permission denied"),
    (OSError(28, "No space left on device", "/runs/x/c.png"), "/runs/x/c.png: No space left on device"),
])
def test_system_errors_are_one_line(tmp_path, monkeypatch, error, message):
    """What cannot be checked before the work (memory, a disk that fills, a write refused) ends
    the command with one line naming the file or what to ask for instead, status 1."""
    import maskkit.viz as viz

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(viz, "plot_masks", fail)
    song = write_valid(tmp_path, "float32.wav")
    res = _cli("masks", "temporal", song, song, "--png", tmp_path / "m.png")
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output, res.output


def test_other_errors_keep_their_traceback(tmp_path, monkeypatch):
    import maskkit.viz as viz

    monkeypatch.setattr(viz, "plot_masks", lambda *a, **k: 1 / 0)
    song = write_valid(tmp_path, "float32.wav")
    res = _cli("masks", "temporal", song, song, "--png", tmp_path / "m.png")
    assert isinstance(res.exception, ZeroDivisionError)


@pytest.mark.parametrize("device, message", [("foo", "--device must be auto, cpu or cuda, got 'foo'"),
                                             ("cuda:x", "--device cuda:x")])
def test_a_bad_device_is_named_by_every_command(tmp_path, device, message):
    song = write_valid(tmp_path, "float32.wav")
    for args in (["masks", "temporal", song, song, "--png", tmp_path / "m.png"],
                 ["arrange", "--mix-only", "-s", "temporal", song, song, "-o", tmp_path / "o.wav"],
                 ["agent", "selftest", "-b", "1", "-t", "8"]):
        res = _cli(*args, "--device", device)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output and "Traceback" not in res.output
