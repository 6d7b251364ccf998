"""Faults on purpose, with real processes and real signals (nothing here mocks the fault itself).

- SIGKILL in the middle of a checkpoint write: the previous checkpoint still loads, the
  half-written temp file is never chosen, and ``--resume auto`` continues from the old one.
- A checkpoint write that fails (a file-size limit, as a full disk): the previous checkpoint is
  intact and named, no partial file is left, ``--resume auto`` goes on.
- One rank of a 2-process job (started as srun / torchrun start ranks: environment variables, no
  agent to clean up) dies mid-training: the survivor exits non-zero quickly, naming the dead rank.
- A tampered checkpoint whose pickle would run code is refused (``weights_only=True``) and the
  code never runs; a checkpoint of a newer format, and one of another strategy given to
  ``--resume``, fail with clear errors.

What ``tests/test_train.py`` already covers (SIGTERM stop + exact resume, NaN steps, unwritable
checkpoint folder, a SIGKILLed spawned rank) is not repeated here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_train import SUBPROCESS_ENV, TINY_ARGS, tiny

from maskkit.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_save,
    find_resume_checkpoint,
    load_checkpoint,
    strategy_from_checkpoint,
)
from maskkit.distributed import free_port
from maskkit.errors import AudioError, CheckpointError, ConfigError
from maskkit.train import load_model, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny run (temporal strategy, 2 steps in 1 epoch); tests copy what they change."""
    d = tmp_path_factory.mktemp("tiny-run")
    r = train(tiny(d, "--train-pairs", "8", "--batch-size", "4", "--epochs", "1"))
    assert r.steps == 2 and r.stopped == "completed"
    return d


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# -- SIGKILL during a checkpoint write ------------------------------------------------------------
_WRITER = textwrap.dedent("""
    import sys, torch
    from maskkit.checkpoint import atomic_save, load_checkpoint
    target, mb = sys.argv[1], int(sys.argv[2])
    ck = load_checkpoint(target)
    # The same checkpoint plus a large tensor, so that each write takes long enough to be hit.
    ck["padding"] = torch.ones(mb * 262144, dtype=torch.float32)
    print("writing", flush=True)
    while True:
        atomic_save(ck, target)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_checkpoint_write_keeps_the_previous_checkpoint(tiny_run, tmp_path):
    run = _copy_run(tiny_run, tmp_path / "run")
    target = run / "last.pt"
    before = load_checkpoint(target)
    mb = 192
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(mb)], env=SUBPROCESS_ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Kill when a temp file is partly written: the write is under way, not finished.
        deadline = time.time() + 60
        killed = False
        while time.time() < deadline and writer.poll() is None:
            for p in run.glob(".last.pt.*.tmp"):
                try:
                    size = p.stat().st_size
                except FileNotFoundError:
                    continue
                if 0 < size < mb * 2**20 // 2:
                    os.kill(writer.pid, signal.SIGKILL)
                    killed = True
                    break
            if killed:
                break
            time.sleep(0.0005)
        assert killed, "never caught the writer mid-write: " + (writer.stdout.read() if writer.poll() else "")
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    leftovers = list(run.glob(".last.pt.*.tmp"))
    assert leftovers, "the kill landed after the write finished; the test proved nothing"

    # The checkpoint under its real name is complete: it loads, with the same weights and step.
    after = load_checkpoint(target)
    assert after["step"] == before["step"]
    for k, v in before["model"].items():
        torch.testing.assert_close(after["model"][k], v)
    # --resume auto never picks the temp file, and the half-written file does not load.
    assert find_resume_checkpoint(run) in (target, run / "epoch_0001.pt")
    with pytest.raises(CheckpointError, match=leftovers[0].name):
        load_checkpoint(leftovers[0])
    # ... and a run resumed with --resume auto continues from the intact checkpoint.
    r = train(tiny(run, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2", "--resume", "auto"))
    assert r.stopped == "completed" and r.steps == 4 and r.epochs_completed == 2
    assert load_checkpoint(target)["step"] == 4


# -- a checkpoint that cannot be written (disk full) ------------------------------------------------
def _limit_file_size(limit: int):  # runs in the child before exec (POSIX)
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE / SIGXFSZ (POSIX)")
def test_a_checkpoint_write_that_fails_keeps_the_previous_one_and_says_how_to_go_on(tiny_run, tmp_path):
    """A real failed write (a file-size limit below the checkpoint's size: EFBIG, as a full disk
    gives ENOSPC) during the save of epoch 2: the run stops with one line naming the file and
    the intact checkpoint of step 2, leaves no partial file, and --resume auto goes on later."""
    run = _copy_run(tiny_run, tmp_path / "run")
    target = run / "last.pt"
    before = load_checkpoint(target)
    args = [sys.executable, "-m", "maskkit", "train", *TINY_ARGS, "--checkpoint-dir", str(run),
            "--train-pairs", "8", "--batch-size", "4", "--epochs", "2", "--resume", "auto"]
    limit = target.stat().st_size // 2
    p = subprocess.run(args, env={**SUBPROCESS_ENV, "PYTHONDONTWRITEBYTECODE": "1"}, capture_output=True,
                       text=True, timeout=300, preexec_fn=lambda: _limit_file_size(limit))
    assert p.returncode != 0, p.stdout + p.stderr
    err = p.stderr
    assert f"could not save the checkpoint of step 4 to {target}: File too large" in err, err
    assert f"{target} is the checkpoint saved before (step 2), unchanged" in err and "--resume auto" in err
    assert "Traceback" not in err
    assert not list(run.glob(".*.tmp")), "a partial checkpoint was left behind"
    after = load_checkpoint(target)
    assert after["step"] == before["step"] == 2
    for k, v in before["model"].items():
        torch.testing.assert_close(after["model"][k], v)
    r = train(tiny(run, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2", "--resume", "auto"))
    assert (r.stopped, r.steps) == ("completed", 4)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_metrics_line_that_cannot_be_written_names_the_file(tmp_path):
    """/dev/full fails every write with ENOSPC, as a full disk does, without a file name: the
    error names metrics.jsonl, so the command line prints one line, not a traceback."""
    from maskkit.logging_utils import MetricsLogger
    from maskkit_cli.main import _system_error

    (tmp_path / "metrics.jsonl").symlink_to("/dev/full")
    logger = MetricsLogger(tmp_path)
    with pytest.raises(OSError) as e:
        logger.log({"kind": "step", "step": 1, "loss": 1.0})
    assert e.value.filename == str(tmp_path / "metrics.jsonl")
    assert _system_error(e.value) == f"{tmp_path / 'metrics.jsonl'}: No space left on device"


# -- one rank of a 2-process job dies --------------------------------------------------------------
_DYING_RANK = textwrap.dedent("""
    import os, sys
    from maskkit import Masks, MaskStrategy, hookimpl
    from maskkit.plugins import register_plugin

    class DiesOnRank1(MaskStrategy):
        '''Keeps all of the input; on rank 1 the process exits hard (no exception, no clean-up,
        like an OOM kill) after DIE_AFTER forward calls.'''
        name = "dies-on-rank-1"

        def __init__(self, config=None, *, spec=None):
            super().__init__(config, spec=spec)
            self.calls = 0

        def forward(self, x_input, x_target, *, hard=False):
            import torch
            self.calls += 1
            if os.environ["RANK"] == "1" and self.calls > int(os.environ["DIE_AFTER"]):
                os._exit(3)
            m = torch.ones(1, 1, x_input.shape[-1], dtype=x_input.dtype)
            return Masks(m, 1 - m)

    class Plugin:
        @staticmethod
        @hookimpl
        def register_strategies(register):
            register(DiesOnRank1)

    register_plugin(Plugin, name="dies-plugin")
    from maskkit_cli.main import cli
    cli(sys.argv[1:], prog_name="maskkit")
""")


@pytest.mark.slow
def test_a_rank_that_dies_mid_training_stops_the_survivor_with_its_name(tmp_path):
    script = tmp_path / "dying_rank.py"
    script.write_text(_DYING_RANK)
    model_args = TINY_ARGS[4:]  # the tiny run without its strategy
    args = ["train", "--strategy", "dies-on-rank-1", *model_args, "--train-pairs", "64", "--batch-size", "2",
            "--epochs", "3", "--checkpoint-dir", str(tmp_path / "run"), "--dist-timeout", "30"]
    port = free_port()
    procs = []
    t0 = time.monotonic()
    for rank in range(2):
        env = {**SUBPROCESS_ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "DIE_AFTER": "6",
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        out0, _ = procs[0].communicate(timeout=120)
        procs[1].communicate(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    elapsed = time.monotonic() - t0
    assert procs[1].returncode == 3  # the injected death happened
    # The survivor did not hang (bounded well below the 30 s collective timeout: the dead peer's
    # socket closes), exited non-zero, and says which rank died and how to go on.
    assert procs[0].returncode == 2, out0[-3000:]
    assert elapsed < 60
    assert "rank 0 of 2 (torchrun): rank 1 stopped responding during training" in out0, out0[-3000:]
    assert "No checkpoint was written yet: start the run again" in out0 and "Traceback" not in out0


@pytest.mark.slow
def test_a_set_up_error_on_one_rank_stops_every_rank_at_once_with_its_message(tmp_path):
    """torchrun/srun start every rank; only rank 0 checks the run folder. When that fails, rank
    1 must not wait in the checkpoint broadcast until the collective timeout: both stop within
    seconds, and rank 1 names rank 0's error."""
    (tmp_path / "afile").write_text("a plain file, not a folder")
    args = ["-m", "maskkit_cli.main", "train", *TINY_ARGS, "--train-pairs", "8", "--batch-size", "2",
            "--checkpoint-dir", str(tmp_path / "afile" / "run"), "--dist-timeout", "120"]
    port = free_port()
    procs = []
    t0 = time.monotonic()
    for rank in range(2):
        env = {**SUBPROCESS_ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        outs = [p.communicate(timeout=90)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert time.monotonic() - t0 < 60  # far below the 120 s collective timeout
    assert [p.returncode for p in procs] == [2, 2], outs
    assert "cannot write checkpoints to" in outs[0] and "afile" in outs[0]
    assert "rank 0 failed during set-up: ConfigError: cannot write checkpoints to" in outs[1], outs[1]
    assert all("Traceback" not in o for o in outs)


# -- tampered, newer and foreign checkpoints --------------------------------------------------------
class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for any code a tampered file runs."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_tampered_checkpoint_is_refused_and_runs_no_code(tiny_run, tmp_path):
    run = _copy_run(tiny_run, tmp_path / "run")
    marker = tmp_path / "PWNED"
    ck = load_checkpoint(run / "last.pt")
    ck["metrics"] = {"note": _RunsCode(str(marker))}
    bad = run / "last.pt"
    with open(bad, "wb") as f:  # written directly, as an attacker would (atomic_save is ours)
        torch.save(ck, f)
    # Unpickled without the safe loader it would run (this proves the payload works) ...
    probe = tmp_path / "probe.pt"
    torch.save({"x": _RunsCode(str(tmp_path / "PROBE"))}, probe)
    torch.load(probe, weights_only=False)
    assert (tmp_path / "PROBE").exists()
    # ... but every way maskkit loads a checkpoint refuses it, naming the file, and runs nothing.
    for load in (load_checkpoint, strategy_from_checkpoint, load_model):
        with pytest.raises(CheckpointError, match=r"last\.pt.*weights_only=True"):
            load(bad)
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        train(tiny(run, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2", "--resume", str(bad)))
    # --resume auto skips it (as it skips a truncated file), says so, and takes the intact epoch checkpoint.
    with pytest.warns(UserWarning, match=r"--resume auto: skipping last\.pt, which does not load"):
        assert find_resume_checkpoint(run) == run / "epoch_0001.pt"
    assert not marker.exists()


def test_a_damaged_epoch_checkpoint_does_not_take_a_good_ones_place(tmp_path):
    """--resume auto skips a damaged epoch file; the rotation that keeps the newest N must then not
    count it among them, or it deletes the last good epoch file and keeps the damaged one."""
    args = ("--train-pairs", "4", "--batch-size", "4", "--save-every", "1")
    train(tiny(tmp_path, *args, "--epochs", "3"))  # epoch_0002.pt, epoch_0003.pt (= last.pt) kept
    good = (tmp_path / "epoch_0002.pt").read_bytes()
    data = (tmp_path / "epoch_0003.pt").read_bytes()
    (tmp_path / "epoch_0003.pt").unlink()  # a hard link of last.pt: last.pt stays whole
    (tmp_path / "epoch_0003.pt").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=r"skipping epoch_0003\.pt, which does not load"):
        r = train(tiny(tmp_path, *args, "--epochs", "4", "--resume", "auto"))  # from last.pt
    assert r.epochs_completed == 4
    names = sorted(p.name for p in tmp_path.glob("epoch_*.pt"))
    # two good ones kept, and the damaged one left for the user to look at; before, the rotation
    # counted the damaged file among the two newest and deleted the good epoch_0002.pt
    assert names == ["epoch_0002.pt", "epoch_0003.pt", "epoch_0004.pt"], names
    assert (tmp_path / "epoch_0002.pt").read_bytes() == good
    assert load_checkpoint(tmp_path / "epoch_0004.pt")["epochs_completed"] == 4
    # A damaged file the run writes again (it resumed from before it) is a good one: rotated as usual.
    (tmp_path / "last.pt").unlink()
    for name in ("epoch_0004.pt", "best.pt"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.warns(UserWarning, match=r"skipping epoch_0003\.pt"):
        r = train(tiny(tmp_path, *args, "--epochs", "5", "--resume", "auto"))  # from epoch_0002.pt
    assert r.epochs_completed == 5
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pt")) == ["epoch_0004.pt", "epoch_0005.pt"]


def test_resuming_weights_that_do_not_fit_names_the_file(tiny_run, tmp_path):
    """A checkpoint that loads but whose weights lack a key (edited by hand, say) used to stop
    --resume with torch's multi-line RuntimeError; the new run folder is not left behind."""
    ck = load_checkpoint(tiny_run / "last.pt")
    del ck["model"][next(iter(ck["model"]))]
    bad = tmp_path / "edited.pt"
    torch.save(ck, bad)
    with pytest.raises(CheckpointError, match=r"edited\.pt: cannot resume from it, its saved state does not "
                                              r"fit the model it describes: .*Missing key"):
        train(tiny(tmp_path / "new", "--train-pairs", "8", "--batch-size", "4", "--epochs", "2",
                   "--resume", str(bad)))
    assert not (tmp_path / "new").exists()


def test_damaged_files_and_folders_given_as_checkpoints_say_what_is_wrong(tiny_run, tmp_path):
    run = _copy_run(tiny_run, tmp_path / "run")
    data = (run / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.pt").write_bytes(b"PK\x03\x04 not a checkpoint at all" * 20)
    (tmp_path / "notes.pt").write_bytes(b"not a checkpoint at all\n" * 20)
    import soundfile as sf

    sf.write(tmp_path / "song.wav", [0.0] * 100, 8000)
    (tmp_path / "zero.pt").write_bytes(b"")
    # what torch said of the last three: "pop from empty list", "(110)", "EOFError"
    for name, says in (("cut.pt", "the file is damaged, truncated or not a checkpoint"),
                       ("noise.pt", "the file is damaged, truncated or not a checkpoint"),
                       ("notes.pt", "not a checkpoint (text); give a .pt file written by `maskkit train`"),
                       ("song.wav", "not a checkpoint (a WAV file)"),
                       ("zero.pt", "the file is empty (0 bytes")):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / name)
        msg = str(err.value)
        assert f"{name}: {says}" in msg, msg
        assert "weights_only" not in msg and "Re-running" not in msg  # torch's advice is not for this
    with pytest.raises(CheckpointError, match=r"run is a folder: pass one of its checkpoints "
                                              r"\(.*last\.pt\), e\.g\. .*run/best\.pt"):
        load_checkpoint(run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty is a folder holding no checkpoint"):
        load_checkpoint(tmp_path / "empty")


def test_a_checkpoint_of_a_newer_format_is_refused_clearly(tiny_run, tmp_path):
    ck = load_checkpoint(tiny_run / "last.pt")
    ck["format_version"] = CHECKPOINT_FORMAT + 1
    ck["maskkit_version"] = "99.0"
    path = atomic_save(ck, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"future\.pt has checkpoint format 2, newer than "
                                              r".*upgrade maskkit \(it was written by maskkit 99\.0\)"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"future\.pt"):
        train(tiny(tmp_path / "new", "--train-pairs", "8", "--batch-size", "4", "--resume", str(path)))
    assert not (tmp_path / "new" / "last.pt").exists()


def _digests(run: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir())
            if p.is_file() and p.name != ".lock"}  # the lock file holds whoever last ran there


def test_resume_auto_over_checkpoints_none_of_which_loads_refuses_and_writes_nothing(tiny_run, tmp_path):
    """A requeued job on a node with an older maskkit (or after damage): it must not start a
    new run over the old one's checkpoints."""
    run = _copy_run(tiny_run, tmp_path / "run")
    for p in run.glob("*.pt"):
        ck = load_checkpoint(p)
        ck["format_version"] = CHECKPOINT_FORMAT + 1
        atomic_save(ck, p)
    before = _digests(run)
    with pytest.raises(CheckpointError, match=r"holds checkpoints, but none of them loads.*nothing was "
                                              r"written(.|\n)*last\.pt: .*newer"):
        find_resume_checkpoint(run)
    with pytest.raises(CheckpointError, match="none of them loads"):
        train(tiny(run, "--train-pairs", "8", "--batch-size", "4", "--resume", "auto"))
    assert _digests(run) == before


def test_a_new_run_refuses_a_folder_holding_another_run_unless_overwrite(tiny_run, tmp_path):
    run = _copy_run(tiny_run, tmp_path / "run")
    before = _digests(run)
    with pytest.raises(ConfigError, match=r"holds another run's checkpoints \(.*last\.pt.*\): continue it "
                                          r"with --resume auto \(resume='auto'\), start over with "
                                          r"--overwrite \(overwrite=True; deletes them\)"):
        train(tiny(run, "--train-pairs", "8", "--batch-size", "4", "--epochs", "1"))
    assert _digests(run) == before
    # --overwrite with a setup that fails (no such data): nothing is deleted.
    with pytest.raises(AudioError, match="nowhere"):
        train(tiny(run, "--train-pairs", "4", "--data", str(tmp_path / "nowhere"), "--overwrite"))
    assert _digests(run) == before
    # --overwrite: the old run's files go, and the metrics hold the new run's rows only.
    (run / "snapshots").mkdir()
    r = train(tiny(run, "--train-pairs", "4", "--batch-size", "4", "--epochs", "1", "--overwrite"))
    assert r.steps == 1 and not (run / "snapshots").exists()
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "epoch_0001.pt", "last.pt"]
    steps = [json.loads(x)["step"] for x in open(run / "metrics.jsonl")]
    assert steps == sorted(steps) and max(steps) == 1
    # Continuing a checkpoint of another folder into this one takes the folder over as well.
    other = _copy_run(tiny_run, tmp_path / "other")
    before = _digests(run)
    with pytest.raises(ConfigError, match="holds another run's checkpoints"):
        train(tiny(run, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2", "--resume",
                   str(other / "last.pt"), "--checkpoint-dir", str(run)))
    assert _digests(run) == before
    # --resume auto --overwrite over checkpoints none of which loads: a new run replaces them.
    for p in other.glob("*.pt"):
        p.write_bytes(b"damaged")
    r = train(tiny(other, "--train-pairs", "4", "--batch-size", "4", "--epochs", "1", "--resume", "auto",
                   "--overwrite"))
    assert r.steps == 1 and load_checkpoint(other / "last.pt")["step"] == 1
    # A folder with the metrics of a run that saved no checkpoint is taken, its stale rows dropped.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "metrics.jsonl").write_text(json.dumps({"kind": "step", "step": 7, "loss": 1.0}) + "\n")
    train(tiny(bare, "--train-pairs", "4", "--batch-size", "4", "--epochs", "1"))
    assert max(json.loads(x)["step"] for x in open(bare / "metrics.jsonl")) == 1


def test_an_epoch_resumed_after_its_last_step_reports_no_speed(tmp_path):
    """Stopped after an epoch's last step, before its validation: the resumed run validates it
    without training a batch, so it has no pairs/s of its own to report (it used to divide the
    whole epoch's pairs by the validation time)."""
    run = tmp_path / "run"
    r = train(tiny(run, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2",
                   simulate_preemption_at_step=2))
    assert r.stopped == "interrupted" and r.steps == 2
    train(tiny(run, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2", "--resume", "auto"))
    epochs = [json.loads(x) for x in open(run / "metrics.jsonl") if '"kind": "epoch"' in x]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[0]["pairs_per_s"] is None and epochs[1]["pairs_per_s"] > 0


def test_a_checkpoint_from_before_a_model_option_existed_resumes(tiny_run, tmp_path):
    """Checkpoints of an older maskkit lack options added since (here ``hard_masks``): they were
    trained with the option's default, so they resume, by path and with ``auto``."""
    run = _copy_run(tiny_run, tmp_path / "run")
    for p in run.glob("*.pt"):
        ck = load_checkpoint(p)
        del ck["config"]["model"]["hard_masks"]
        atomic_save(ck, p)
    r = train(tiny(run, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2", "--resume", "auto"))
    assert r.stopped == "completed" and r.steps == 4
    # A real difference is still refused, naming only what differs.
    with pytest.raises(ConfigError, match=r"other model settings \(model\.d_model: checkpoint 16 vs now "
                                          r"32\)"):
        train(tiny(run, "--train-pairs", "8", "--batch-size", "4", "--epochs", "3", "--resume",
                   str(run / "last.pt"), "--d-model", "32"))


def test_quiet_is_not_inherited_by_a_resumed_run(tiny_run, tmp_path):
    from maskkit.train import TrainConfig

    run = _copy_run(tiny_run, tmp_path / "run")
    ck = load_checkpoint(run / "last.pt")
    assert ck["config"]["quiet"] is True  # the tiny run was quiet
    cfg = TrainConfig.for_resume(str(run / "last.pt"), epochs=2)
    assert cfg.quiet is False and cfg.overwrite is False


@pytest.mark.parametrize("drop", ["config", "strategy"])
def test_a_checkpoint_without_its_config_or_strategy_is_named_not_a_key_error(tiny_run, tmp_path, drop):
    from maskkit.checkpoint import strategy_from_checkpoint
    from maskkit.train import TrainConfig, load_model

    ck = load_checkpoint(tiny_run / "last.pt")
    del ck[drop]
    path = atomic_save(ck, tmp_path / "partial.pt")
    expected = rf"partial\.pt lacks the entry '{drop}'"
    with pytest.raises(CheckpointError, match=expected):
        load_model(path)
    with pytest.raises(CheckpointError, match=expected):
        train(tiny(tmp_path / "new", "--train-pairs", "8", "--batch-size", "4", "--resume", str(path)))
    if drop == "config":
        with pytest.raises(CheckpointError, match=expected):
            TrainConfig.from_checkpoint(path)
    else:
        with pytest.raises(CheckpointError, match=expected):
            strategy_from_checkpoint(path)
    cmd = [sys.executable, "-m", "maskkit_cli.main", "train", "--resume", str(path), "--quiet"]
    p = subprocess.run(cmd, cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "partial.pt lacks the entr" in p.stderr, p.stderr


def test_a_checkpoint_needing_a_plugin_that_is_not_installed_names_the_file_and_plugin(tiny_run, tmp_path):
    from maskkit.checkpoint import strategy_from_checkpoint
    from maskkit.train import load_model

    ck = load_checkpoint(tiny_run / "last.pt")
    ck["strategy"] = {**ck["strategy"], "name": "gone", "plugin": "gone-plugin", "dist": "maskkit-gone",
                      "version": "1.0"}
    path = atomic_save(ck, tmp_path / "gone.pt")
    for load in (strategy_from_checkpoint, load_model):
        with pytest.raises(CheckpointError, match=r"gone\.pt needs strategy 'gone' \(plugin 'gone-plugin' "
                                                  r"of the distribution maskkit-gone 1\.0: pip install "
                                                  r"maskkit-gone\)"):
            load(path)


def test_resuming_with_another_strategy_is_refused_and_loses_nothing(tiny_run, tmp_path):
    import dataclasses

    run = _copy_run(tiny_run, tmp_path / "run")
    before = (run / "last.pt").read_bytes()
    # The API: a TrainConfig for another strategy pointed at the checkpoint.
    cfg = tiny(run, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2",
               strategy=("--strategy", "frequency"))
    with pytest.raises(ConfigError, match=r"cannot resume from .*last\.pt.*strategy: checkpoint 'temporal' "
                                          r"vs now 'frequency'"):
        train(dataclasses.replace(cfg, resume=str(run / "last.pt")))
    # The CLI: exit status 2, a message that names the checkpoint and both strategies (not an
    # option of the old strategy that the user never typed), and the checkpoint untouched.
    for resume in (str(run / "last.pt"), "auto"):
        cmd = [sys.executable, "-m", "maskkit_cli.main", "train", "--resume", resume,
               "--strategy", "frequency", "--checkpoint-dir", str(run), "--quiet"]
        p = subprocess.run(cmd, cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=120)
        out = p.stdout + p.stderr
        assert p.returncode == 2, out[-2000:]
        assert "it was trained with strategy 'temporal', not 'frequency'" in out, out
        assert re.search(r"cannot resume from \S*run/(last|epoch_0001)\.pt", out), out
        assert "Traceback" not in out
    assert (run / "last.pt").read_bytes() == before


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomically_written_files_get_the_umasks_mode_not_mkstemps(tmp_path, umask):
    """Colleagues on a shared cluster read checkpoints and arrangements as they read metrics.csv:
    the temp-file-then-rename writers must not leave mkstemp's 0o600."""
    import numpy as np

    from maskkit.audio import save_audio

    old = os.umask(umask)
    try:
        atomic_save({"x": 1}, tmp_path / "c.pt")
        save_audio(tmp_path / "a.wav", np.zeros(64, dtype=np.float32), 8000)
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for name in ("c.pt", "a.wav", "plain.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == want, name


def test_a_half_written_metrics_line_does_not_block_resume(tiny_run, tmp_path):
    """A kill (or a full disk) during the metrics append leaves half a line; --resume auto must
    still work, and the rewritten file must not glue that half line to the next row."""
    import json

    run = _copy_run(tiny_run, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "step", "epoch": 3, "ste')  # no newline: cut mid-row
    with pytest.warns(UserWarning, match=r"metrics\.jsonl: left out 1 line"):
        r = train(tiny(run, "--train-pairs", "8", "--batch-size", "4", "--epochs", "3", "--resume", "auto"))
    assert r.stopped == "completed"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # every line is JSON again
    steps = [x["step"] for x in rows if x["kind"] == "step"]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


def test_two_runs_in_one_run_folder_are_refused_while_the_first_holds_it(tmp_path):
    """The second run would interleave metric rows and overwrite the first one's checkpoints."""
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "a+") as held:  # as a running trainer holds it
        held.write("pid 4242 on node7, since 2026-11-26 08:00:00\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match=r"run is in use by another training run \(pid 4242 on node7"):
            train(tiny(run, "--train-pairs", "4", "--batch-size", "4", "--max-steps", "1"))
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written
    # once the first run is gone (or killed: the OS drops its lock) the folder is free again
    r = train(tiny(run, "--train-pairs", "4", "--batch-size", "4", "--max-steps", "1"))
    assert r.steps == 1 and "pid" in (run / ".lock").read_text()


def _start_and_signal(tmp_path: Path, extra: list[str], signals: list[tuple[float, int]],
                      when: str = "first step") -> tuple[subprocess.Popen, str, Path]:
    """Start ``maskkit train`` (tiny, many steps), wait for ``when`` ("first step" or "start"),
    send ``signals`` ((delay before, signal) pairs) to its process group; return the finished
    process, its output and the run folder."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "maskkit_cli.main", "train", *TINY_ARGS, "--train-pairs", "400",
           "--batch-size", "2", "--epochs", "3", "--checkpoint-dir", str(run), *extra]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=SUBPROCESS_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while when == "first step" and time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and '"kind": "step"' in metrics.read_text():
            break
        time.sleep(0.01)
    for delay, sig in signals:
        time.sleep(delay)
        os.killpg(proc.pid, sig)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc, out, run


@pytest.mark.slow
def test_a_stop_while_waiting_for_a_missing_process_ends_at_once(tmp_path):
    """A SLURM job script that runs `maskkit train` without srun starts one process of two: a
    SIGTERM (or Ctrl-C) must end it within the grace period, not after --dist-timeout."""
    from maskkit.distributed import RENDEZVOUS_STOP_GRACE_S

    env = {**SUBPROCESS_ENV, "SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
           "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "localhost", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port())}
    cmd = [sys.executable, "-m", "maskkit_cli.main", "train", *TINY_ARGS, "--dist-timeout", "300",
           "--checkpoint-dir", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    time.sleep(4)  # imports, then waiting for the second task
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out[-3000:]
    assert time.monotonic() - t0 < RENDEZVOUS_STOP_GRACE_S + 10
    assert "stopped by SIGTERM while waiting for the other processes (1 of 2 joined)" in out
    assert "Traceback" not in out and not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("extra, sig, code", [([], signal.SIGINT, 130),
                                              (["--world-size", "2"], signal.SIGTERM, 143)])
def test_a_second_signal_while_stopping_still_exits_with_the_stop_status(tmp_path, extra, sig, code):
    """Schedulers signal every process of a job, and a parent forwards its own signal too: two
    signals 0.2 s apart must still give one clean stop, a checkpoint and 130/143 (the example
    sbatch script requeues on those), not 'Aborted!' or a killed rank."""
    proc, out, run = _start_and_signal(tmp_path, extra, [(0.0, sig), (0.2, sig)])
    assert proc.returncode == code, out[-3000:]
    ck = load_checkpoint(run / "last.pt")
    assert ck["interrupted"] and ck["step"] >= 1
    assert "Traceback" not in out and "Aborted" not in out


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 1.5])  # before the children exist / while they start
def test_sigterm_during_start_up_is_a_stop_request(tmp_path, delay):
    """A signal before the first step (imports, data, process group) is honoured at the first
    step: a checkpoint, then 143, not a process killed half-way through its start-up."""
    proc, out, run = _start_and_signal(tmp_path, ["--world-size", "2"], [(delay, signal.SIGTERM)],
                                       when="start")
    assert proc.returncode == 143, out[-3000:]
    assert load_checkpoint(run / "last.pt")["interrupted"]


# -- the example SLURM script, with stand-ins for srun and scontrol -----------------------------------
SBATCH = Path(__file__).resolve().parents[1] / "examples" / "slurm" / "train_4gpu.sbatch"


def _fake_slurm(tmp_path: Path, srun_body: str) -> dict[str, str]:
    """PATH with an ``srun`` running ``srun_body`` and an ``scontrol`` that logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", f'echo "$@" > "{tmp_path}/srun.args"\n{srun_body}'),
                       ("scontrol", f'echo "$@" >> "{tmp_path}/scontrol.log"')):
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
            "SLURM_CPUS_PER_TASK": "8"}


@pytest.mark.parametrize("rc, requeued", [(143, True), (130, True), (0, False), (2, False)])
def test_the_sbatch_script_passes_cpus_to_srun_and_requeues_only_after_a_stop(tmp_path, rc, requeued):
    """srun does not inherit --cpus-per-task since SLURM 22.05: the script must pass it on."""
    env = _fake_slurm(tmp_path, f"exit {rc}")
    proc = subprocess.run(["bash", str(SBATCH)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == rc, proc.stderr
    args = (tmp_path / "srun.args").read_text().split()
    assert "--cpus-per-task=8" in args and args[args.index("maskkit"):][:2] == ["maskkit", "train"]
    assert " ".join(args).endswith("--resume auto")
    log = tmp_path / "scontrol.log"
    assert (log.read_text().split() == ["requeue", "4242"]) if requeued else not log.exists()


def test_a_sigterm_to_the_batch_shell_waits_for_the_tasks_then_requeues(tmp_path):
    """A preemption signals the batch shell too: untrapped, bash died at once and never requeued."""
    env = _fake_slurm(tmp_path, f'touch "{tmp_path}/started"; sleep 1.5; exit 143')
    proc = subprocess.Popen(["bash", str(SBATCH)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, out
    assert "requeueing job 4242" in out
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
