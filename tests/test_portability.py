"""What differs on macOS and Windows, emulated on Linux.

- Windows' Python lacks ``fcntl``, ``os.fchmod`` (before 3.13) and ``signal.siginterrupt``: a
  ``sitecustomize`` takes them away (and puts a stand-in ``msvcrt.locking`` in place, made of the
  real ``flock``), and a training run still writes its checkpoint and locks its folder.
- Output piped on Windows is cp1252: names and marks it cannot encode print as '?', not a crash.
- The spawn start method (macOS, Windows): a script that calls ``train()`` outside
  ``if __name__ == "__main__":`` is told so; runtime plugins reach the processes ``--world-size``
  starts (they start fresh).
- Names macOS stores decomposed ('e' + accent) split into train / validation as composed ones do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from test_train import SUBPROCESS_ENV, TINY_ARGS, tiny

from maskkit import Masks, MaskStrategy, hookimpl
from maskkit.checkpoint import load_checkpoint
from maskkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

# Windows' Python, as far as maskkit can tell on Linux.
_WINDOWS_LIKE = textwrap.dedent('''
    import fcntl, os, signal, subprocess, sys, types  # (subprocess first: it reads msvcrt as "Windows")
    _flock = fcntl.flock
    sys.modules["fcntl"] = None  # import fcntl -> ImportError
    msvcrt = types.ModuleType("msvcrt")
    msvcrt.LK_UNLCK, msvcrt.LK_NBLCK = 0, 2
    def locking(fd, mode, nbytes):  # the real flock, for the test: fails while another holds it
        _flock(fd, fcntl.LOCK_UN if mode == 0 else fcntl.LOCK_EX | fcntl.LOCK_NB)
    msvcrt.locking = locking
    sys.modules["msvcrt"] = msvcrt
    del os.fchmod
    del signal.siginterrupt
''')


def _windows_like_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "winlike"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_WINDOWS_LIKE)
    return {**SUBPROCESS_ENV, "PYTHONPATH": os.pathsep.join([str(site), str(REPO), str(REPO / "plugins")])}


def test_a_windows_like_python_trains_resumes_and_locks_its_run_folder(tmp_path):
    env = _windows_like_env(tmp_path)
    code = "import os, signal; import msvcrt; print(hasattr(os, 'fchmod'), hasattr(signal, 'siginterrupt'))"
    probe = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert probe.stdout.split() == ["False", "False"], probe.stderr  # the emulation holds
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "maskkit", "train", *TINY_ARGS, "--checkpoint-dir", str(run),
           "--train-pairs", "8", "--batch-size", "4", "--epochs", "2"]
    first = subprocess.run([*cmd, "--max-steps", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert load_checkpoint(run / "last.pt")["step"] == 2
    assert (run / "last.pt").stat().st_mode & 0o777 == 0o666 & ~_umask()
    second = subprocess.run([*cmd, "--resume", "auto", "--max-steps", "0"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert load_checkpoint(run / "last.pt")["step"] == 4
    # the folder lock through msvcrt: a second lock of a held folder is refused, naming the holder
    script = textwrap.dedent(f"""
        from pathlib import Path
        from maskkit.errors import ConfigError
        from maskkit.train import _lock_run_dir
        held = _lock_run_dir(Path({str(run)!r}))
        try:
            _lock_run_dir(Path({str(run)!r}))
        except ConfigError as e:
            print("refused:", e)
    """)
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert f"refused: {run} is in use by another training run (pid {''}" in p.stdout, p.stdout + p.stderr


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_output_the_terminal_cannot_encode_prints_as_question_marks(tmp_path):
    """cp1252 (Windows, piped) has no '→': the check of a folder naming such a song still works."""
    import numpy as np
    import soundfile as sf

    songs = tmp_path / "songs"
    songs.mkdir()
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(8000 * 5) / 8000)
    for name in ("Café live→1.wav", "plain.wav"):
        sf.write(songs / name, tone, 8000)
    env = {**SUBPROCESS_ENV, "PYTHONIOENCODING": "cp1252", "COLUMNS": "200"}
    check = ["data", "check", str(songs), "--segment-seconds", "1"]
    p = subprocess.run([sys.executable, "-m", "maskkit", *check], env=env, capture_output=True, timeout=120)
    out = p.stdout.decode("cp1252") + p.stderr.decode("cp1252")
    assert p.returncode == 0, out
    assert "Café live?1.wav" in out and "UnicodeEncodeError" not in out
    selftest = ["-m", "maskkit", "agent", "selftest", "--batch-size", "2", "--frames", "40"]
    p = subprocess.run([sys.executable, *selftest], env=env, capture_output=True, timeout=300)
    out = p.stdout.decode("cp1252")
    assert p.returncode == 0, out + p.stderr.decode("cp1252")
    assert "| ok |" in out.replace("  ", " ") or " ok " in out


def test_a_script_calling_train_outside_the_main_guard_is_told_so_under_spawn(tmp_path):
    script = tmp_path / "noguard.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing
        multiprocessing.set_start_method("spawn", force=True)  # as on macOS and Windows
        from test_train import tiny
        from maskkit.train import train
        train(tiny({str(tmp_path / "run")!r}, "--train-pairs", "8", "--batch-size", "4", "--num-workers", "1",
                   "--max-steps", "1"))
    """))
    path = os.pathsep.join([str(REPO / "tests"), str(REPO), str(REPO / "plugins")])
    env = {**SUBPROCESS_ENV, "PYTHONPATH": path}
    p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    assert "maskkit.train() was called while a new process was starting" in p.stderr, p.stderr[-3000:]
    assert 'Put the call under `if __name__ == "__main__":`' in p.stderr


# -- runtime plugins and --world-size (the processes it starts begin with installed plugins only) --
class Halves(MaskStrategy):
    name = "test-halves"
    description = "the first half of the frames from the input, the rest from the target"
    complementary = True

    @dataclass
    class Config:
        split: float = 0.5

    def forward(self, x_input, x_target, *, hard=False):
        T = x_input.shape[-1]
        m = (torch.arange(T, device=x_input.device) < self.config.split * T).to(x_input.dtype).view(1, 1, T)
        return Masks(m, 1 - m)


class HalvesPlugin:
    MASKKIT_PLUGIN_API = 1

    def __init__(self) -> None:
        self.note = "picklable"

    @hookimpl
    def register_strategies(self, register):
        register(Halves)


@pytest.fixture
def halves():
    from maskkit.plugins import register_plugin, unregister_plugin

    plugin = HalvesPlugin()
    register_plugin(plugin, "test-halves-plugin")
    yield plugin
    unregister_plugin("test-halves-plugin")


@pytest.mark.slow
def test_a_runtime_plugin_reaches_the_processes_world_size_starts(halves, tmp_path):
    from maskkit.train import train

    r = train(tiny(tmp_path, "--train-pairs", "8", "--batch-size", "2", "--max-steps", "2",
                   "--world-size", "2", strategy=("--strategy", "test-halves")))
    assert (r.world_size, r.steps) == (2, 2)
    assert load_checkpoint(tmp_path / "last.pt")["strategy"]["name"] == "test-halves"


def test_a_runtime_plugin_that_cannot_reach_them_is_named_before_anything_starts(halves, tmp_path):
    from maskkit.train import train

    halves.note = lambda: None  # no longer picklable
    with pytest.raises(ConfigError, match="runtime plugin 'test-halves-plugin' .* cannot be sent to the 2 "
                                          "processes that --world-size starts"):
        train(tiny(tmp_path / "run", "--world-size", "2", strategy=("--strategy", "test-halves")))
    assert not (tmp_path / "run").exists()


# -- devices and CPUs --------------------------------------------------------------------------------
@pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                    reason="this machine has an Apple GPU")
def test_asking_for_an_apple_gpu_where_there_is_none_names_the_option():
    from maskkit.bench import BenchConfig
    from maskkit.distributed import resolve_device

    with pytest.raises(ConfigError, match=r"--device mps: no Apple GPU \(MPS\) is available here"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match=r"bench: --device mps: no Apple GPU"):
        BenchConfig(strategies=["temporal"], device="mps").validate()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_spawned_ranks_share_the_cpus_this_process_may_use_not_the_machines():
    code = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from maskkit.distributed import usable_cpus; print(usable_cpus())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "1", p.stderr


def test_names_stored_decomposed_split_as_composed_ones_do(tmp_path):
    from maskkit.audio import AudioInfo
    from maskkit.data import split_songs

    names = ["Café.wav", "Ñandú.flac", "Øresund.wav", "Zoë.ogg", "plain.wav", "ça va.mp3", "über.wav"]

    def songs(form: str) -> list[AudioInfo]:
        return [AudioInfo(str(tmp_path / unicodedata.normalize(form, n)), 8000, 1, 80000, "WAV", "PCM_16")
                for n in names]

    def names_of(split):
        return [[unicodedata.normalize("NFC", Path(i.path).name) for i in side] for side in split]

    nfc, nfd = split_songs(songs("NFC"), tmp_path, 0.3), split_songs(songs("NFD"), tmp_path, 0.3)
    assert names_of(nfc) == names_of(nfd)


def _interactive_plugin(monkeypatch, strategy_cls=None):
    """A plugin object whose class lives in an interactive __main__ (a notebook, python -c): it
    pickles by reference, but a new process cannot import it."""
    import types

    main = types.ModuleType("__main__")  # no __file__
    monkeypatch.setitem(sys.modules, "__main__", main)

    def register_strategies(self, register):
        if strategy_cls is not None:
            register(strategy_cls)

    cls = type("NotebookPlugin", (), {"MASKKIT_PLUGIN_API": 1, "__module__": "__main__",
                                      "register_strategies": hookimpl(register_strategies)})
    main.NotebookPlugin = cls  # so that it pickles, as a class of a notebook does
    return cls()


def test_a_notebook_plugin_the_run_needs_is_named_before_the_processes_start(tmp_path, monkeypatch):
    from maskkit.plugins import register_plugin, unregister_plugin
    from maskkit.train import train

    register_plugin(_interactive_plugin(monkeypatch, Halves), "notebook-halves")
    try:
        with pytest.raises(ConfigError, match="runtime plugin 'notebook-halves' .* cannot be sent .* defined "
                                              "in an interactive session"):
            train(tiny(tmp_path / "run", "--world-size", "2", strategy=("--strategy", "test-halves")))
    finally:
        unregister_plugin("notebook-halves")


@pytest.mark.slow
def test_a_notebook_plugin_the_run_does_not_need_is_left_out(tmp_path, monkeypatch):
    from maskkit.plugins import register_plugin, unregister_plugin
    from maskkit.train import train

    register_plugin(_interactive_plugin(monkeypatch), "notebook-commands")
    try:
        r = train(tiny(tmp_path, "--train-pairs", "8", "--batch-size", "2", "--max-steps", "1",
                       "--world-size", "2"))
    finally:
        unregister_plugin("notebook-commands")
    assert (r.world_size, r.steps) == (2, 1)
