"""The trainer: DDP equals one process, torchrun, exact resume, SIGTERM, checkpoints, data, CLI.

Everything runs a tiny model on tiny data (8 kHz, 0.25 s pairs, D=66) so each run takes
seconds. The multi-process tests are marked ``slow``; they still run in CI.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from maskkit import Masks, MaskStrategy, __version__, hookimpl
from maskkit.checkpoint import find_resume_checkpoint, load_checkpoint, strategy_from_checkpoint
from maskkit.errors import AudioError, CheckpointError, ConfigError
from maskkit.train import TrainConfig, TrainingError, WarmupCosine, load_model, train

# The tiny run, as command-line arguments (the CLI builds the same TrainConfig as the API).
TEMPORAL = ["--strategy", "temporal", "--strategy-opt", "segment=8"]
TINY_ARGS = [
    *TEMPORAL,
    "--codec-opt", "n_fft=64", "--codec-opt", "hop_length=32", "--codec-opt", "sample_rate=8000",
    "--d-model", "16", "--nhead", "2", "--num-layers", "1", "--num-transformer-layers", "2",
    "--model-opt", "dim_feedforward=32", "--dropout", "0",
    "--loss-opt", "fft_sizes=64,128", "--loss-opt", "mel_n_fft=128", "--loss-opt", "n_mels=8",
    "--loss-opt", "rms_frame=64",
    "--segment-seconds", "0.25", "--val-pairs", "4", "--lr", "2e-3", "--seed", "0", "--quiet",
    "--dist-timeout", "60",
]
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli_config(*args: str):
    """The TrainConfig that ``maskkit train ARGS`` would run."""
    from maskkit_cli.train import build_config_from_cli
    from maskkit_cli.train import train as train_cmd

    ctx = train_cmd.make_context("train", list(args))
    return build_config_from_cli(ctx, ctx.params)


def tiny(run_dir: Path, *extra: str, strategy: tuple[str, ...] = tuple(TEMPORAL), **over):
    """The tiny config with ``extra`` options; ``strategy``: the strategy options to use."""
    import dataclasses

    base = [a for a in TINY_ARGS[len(TEMPORAL):]]
    cfg = cli_config(*strategy, *base, "--checkpoint-dir", str(run_dir), *extra)
    return dataclasses.replace(cfg, **over) if over else cfg


def _sine_songs(folder: Path, n: int, seconds: float, sr: int = 8000, start: int = 0) -> Path:
    """``n`` songs ``song_{i}.wav`` (sines of distinct pitch) in ``folder``, a folder of songs."""
    import soundfile as sf

    folder.mkdir(exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    for i in range(start, start + n):
        sf.write(folder / f"song_{i}.wav", 0.3 * np.sin(2 * np.pi * (180 + 40 * i) * t * (1 + t / 3)), sr)
    return folder


def weights(path: Path | str) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.flatten().double() for k, v in sorted(state.items())])


def assert_same_training(a: dict, b: dict, w0: dict, rel: float = 1e-2) -> None:
    """DDP vs one process: equal up to float-summation order. Adam turns rounding noise in
    near-zero gradients into update-sized differences of a few weights, so compare the
    difference with the total update instead of element-wise only."""
    va, vb, v0 = flat(a), flat(b), flat(w0)
    moved = (va - v0).norm()
    assert moved > 0.05, "the weights barely moved: the test would prove nothing"
    ratio = float((va - vb).norm() / moved)
    assert ratio < rel, f"weights differ: |a - b| / |a - init| = {ratio:.3g}"
    torch.testing.assert_close(va, vb, atol=2e-3, rtol=0)


# -- shared reference runs (one process, global batch 4) ---------------------------------------------
@pytest.fixture(scope="module")
def ref6(tmp_path_factory):
    """One process, batch 4, 6 steps over 2 epochs (12 pairs per epoch)."""
    d = tmp_path_factory.mktemp("ref6")
    r = train(tiny(d, "--train-pairs", "12", "--batch-size", "4", "--epochs", "2"))
    assert r.steps == 6 and r.stopped == "completed"
    init = train(tiny(tmp_path_factory.mktemp("init"), "--train-pairs", "12", "--batch-size", "4",
                      "--max-steps", "1", "--lr", "0"))
    return d, weights(d / "last.pt"), weights(Path(init.run_dir) / "last.pt")


# -- gradient accumulation == one larger batch --------------------------------------------------------
def test_accumulated_micro_batches_match_one_larger_batch(ref6, tmp_path):
    """--grad-accum 2 with batches of 2 takes the steps of batches of 4: same pairs per step,
    the same mean loss, so the same weights (to float summation order)."""
    ref_dir, ref_w, init_w = ref6
    r = train(tiny(tmp_path / "acc", "--train-pairs", "12", "--batch-size", "2", "--grad-accum", "2",
                   "--epochs", "2"))
    assert (r.steps, r.stopped) == (6, "completed")
    assert_same_training(weights(tmp_path / "acc" / "last.pt"), ref_w, init_w)

    def first_step(run):
        return next(json.loads(x) for x in open(run / "metrics.jsonl") if '"kind": "step"' in x)

    # the logged loss and gradient norm of a step are those of the whole batch (means, not sums)
    mine, ref = first_step(tmp_path / "acc"), first_step(ref_dir)
    for k in ("loss", "grad_norm", "complementarity"):
        assert mine[k] == pytest.approx(ref[k], rel=1e-4), k
    # Stopped after its first step and resumed: the same run.
    cut = tmp_path / "cut"
    first = train(tiny(cut, "--train-pairs", "12", "--batch-size", "2", "--grad-accum", "2", "--epochs", "2",
                       simulate_preemption_at_step=1))
    assert first.stopped == "interrupted" and first.steps == 1
    assert load_checkpoint(cut / "last.pt")["batch_in_epoch"] == 2  # two micro-batches in
    r2 = train(tiny(cut, "--train-pairs", "12", "--batch-size", "2", "--grad-accum", "2", "--epochs", "2",
                    "--resume", "auto"))
    assert r2.steps == 6
    assert_same_training(weights(cut / "last.pt"), ref_w, init_w)


@pytest.mark.slow
def test_accumulation_under_ddp_matches_one_process(ref6, tmp_path):
    """2 processes x batches of 1 x 2 accumulated: DDP averages the gradients on the second
    micro-batch only (no_sync on the first), and the run matches the one-process batch of 4."""
    _, ref_w, init_w = ref6
    r = train(tiny(tmp_path, "--train-pairs", "12", "--batch-size", "1", "--grad-accum", "2", "--epochs", "2",
                   "--world-size", "2"))
    assert (r.world_size, r.steps, r.stopped) == (2, 6, "completed")
    assert_same_training(weights(tmp_path / "last.pt"), ref_w, init_w)


def test_resume_with_another_split_of_the_batch_keeps_the_schedule_and_says_what_changed(tmp_path, capsys):
    # 8 steps of batches of 2 (4 per epoch), then 2 more epochs with --grad-accum 4 (1 step each):
    # the cosine must end at step 10, not at 4 epochs x 1 step (which put steps 9-10 at the floor).
    run = tmp_path / "run"
    train(tiny(run, "--train-pairs", "8", "--batch-size", "2", "--epochs", "2"))
    train(tiny(run, "--train-pairs", "8", "--batch-size", "2", "--epochs", "4", "--grad-accum", "4",
               "--resume", "auto"))
    steps = {r["step"]: r["lr"] for r in map(json.loads, open(run / "metrics.jsonl")) if r["kind"] == "step"}
    assert sorted(steps) == list(range(1, 11))
    floor = 2e-3 * 0.1
    assert steps[9] > steps[10] > floor * 1.001
    # The same global batch split another way (4 x 1 -> 2 x 2 accumulated): no "changed settings".
    other = tmp_path / "other"
    train(tiny(other, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2", "--max-steps", "1"))
    capsys.readouterr()
    train(tiny(other, "--train-pairs", "8", "--batch-size", "2", "--grad-accum", "2", "--epochs", "2",
               "--max-steps", "0", "--resume", "auto"))
    out = capsys.readouterr()
    assert "changed settings" not in out.out + out.err
    # Hard masks on a soft run: allowed (no parameter changes), and said.
    train(tiny(other, "--train-pairs", "8", "--batch-size", "2", "--grad-accum", "2", "--epochs", "3",
               "--hard-masks", "--resume", "auto"))
    out = capsys.readouterr()
    assert "changed settings (hard masks on)" in out.out + out.err


def test_a_constant_schedule_trained_in_max_steps_chunks_equals_one_run(tmp_path):
    """The start-up note promises it: the warm-up (5 % of the run) must not shrink to the chunk."""
    args = ("--train-pairs", "12", "--batch-size", "2", "--epochs", "3", "--schedule", "constant")
    train(tiny(tmp_path / "once", *args))
    train(tiny(tmp_path / "chunks", *args, "--max-steps", "4"))
    train(tiny(tmp_path / "chunks", *args, "--max-steps", "0", "--resume", "auto"))

    def lrs(run):
        return [r["lr"] for r in map(json.loads, open(run / "metrics.jsonl")) if r["kind"] == "step"]

    assert lrs(tmp_path / "chunks") == pytest.approx(lrs(tmp_path / "once"), rel=1e-9)
    assert len(lrs(tmp_path / "once")) == 18


def test_early_stopping_counts_whole_epochs_also_across_max_steps_chunks(tmp_path):
    """A chunk that ends mid-epoch validates there; that check must not become the bar the epoch's
    own end has to beat (with --lr 0 every validation is equal: patience 1 stops after epoch 2)."""
    args = ("--train-pairs", "12", "--batch-size", "2", "--epochs", "4", "--lr", "0", "--patience", "1")
    once = train(tiny(tmp_path / "once", *args))
    assert (once.stopped, once.steps) == ("early_stopping", 12)
    train(tiny(tmp_path / "chunks", *args, "--max-steps", "2"))
    r = train(tiny(tmp_path / "chunks", *args, "--max-steps", "0", "--resume", "auto"))
    assert (r.stopped, r.steps) == ("early_stopping", 12)


def test_too_few_pairs_for_the_accumulated_batch_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"too few for a global batch of 2 x 1 processes x 4 accumulated "
                                          r"\(lower --batch-size or --grad-accum"):
        train(tiny(tmp_path, "--train-pairs", "6", "--batch-size", "2", "--grad-accum", "4"))


# -- DDP == one process ------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_gloo_processes_match_one_process(ref6, tmp_path):
    ref_dir, ref_w, init_w = ref6
    r = train(tiny(tmp_path, "--train-pairs", "12", "--batch-size", "2", "--epochs", "2",
                   "--world-size", "2"))
    assert (r.world_size, r.steps, r.stopped) == (2, 6, "completed")
    assert len(r.rank_param_checksums) == 2 and r.rank_param_checksums[0] == r.rank_param_checksums[1]
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    assert_same_training(ref_w, ck["model"], init_w)
    # The validation loss is a mean over the whole validation set, whatever the sharding.
    ref_hist = load_checkpoint(ref_dir / "last.pt")["history"]
    assert ck["history"][0]["val_loss"] == pytest.approx(ref_hist[0]["val_loss"], rel=1e-4)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_long_spawned_run_returns_its_result(tmp_path):
    """A --world-size run's result (its history grows by about 1 kB an epoch) came back through a
    pipe that the parent read only after the processes ended: past 64 KiB (about 70 epochs) rank 0
    could not end and the run hung after "Done"."""
    import pickle

    r = train(tiny(tmp_path, "--train-pairs", "2", "--val-pairs", "2", "--batch-size", "1", "--epochs", "90",
                   "--world-size", "2", "--save-every", "1000"))
    assert (r.world_size, r.stopped, len(r.history)) == (2, "completed", 90)
    assert len(pickle.dumps(r)) > 70_000  # more than a pipe holds: the case that hung


@pytest.mark.slow
def test_spawned_ranks_report_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="too few for a global batch of 2 x 2"):
        train(tiny(tmp_path, "--train-pairs", "3", "--batch-size", "2", "--world-size", "2"))
    # A run folder the failed run created is taken away again, lock file and all.
    with pytest.raises(AudioError, match="nonexistent: no such file or directory"):
        train(tiny(tmp_path / "new", "--data", str(tmp_path / "nonexistent"), "--world-size", "2"))
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(ref6, tmp_path):
    _, ref_w, init_w = ref6
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "maskkit_cli.main", "train", *TINY_ARGS, "--train-pairs", "12", "--batch-size", "2",
           "--epochs", "2", "--checkpoint-dir", str(run)]
    p = subprocess.run(cmd, cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    ck = load_checkpoint(run / "last.pt")
    assert ck["world_size"] == 2 and ck["step"] == 6
    assert_same_training(ref_w, ck["model"], init_w)


# -- exact resume ---------------------------------------------------------------------------------------
def test_resume_after_a_stop_matches_an_uninterrupted_run(tmp_path):
    # Dropout on: the resumed run must also restore the RNG streams to end with the same weights.
    args = ("--train-pairs", "12", "--batch-size", "4", "--epochs", "3", "--dropout", "0.2")
    full = train(tiny(tmp_path / "full", *args))
    assert full.steps == 9
    stopped = train(tiny(tmp_path / "cut", *args, "--simulate-preemption-at-step", "4"))
    assert stopped.stopped == "interrupted" and stopped.steps == 4 and stopped.exit_code == 143
    ck = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (ck["step"], ck["epoch"], ck["batch_in_epoch"], ck["interrupted"]) == (4, 1, 1, True)
    resumed = train(tiny(tmp_path / "cut", *args, "--resume", "auto"))
    assert resumed.stopped == "completed" and resumed.steps == 9
    a, b = weights(tmp_path / "full" / "last.pt"), weights(tmp_path / "cut" / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    # The metric files of the resumed run read as those of the uninterrupted one.
    rows_full = [json.loads(x) for x in open(tmp_path / "full" / "metrics.jsonl")]
    rows_cut = [json.loads(x) for x in open(tmp_path / "cut" / "metrics.jsonl")]
    assert [(r["kind"], r["step"]) for r in rows_full] == [(r["kind"], r["step"]) for r in rows_cut]
    assert [r["loss"] for r in rows_full if r["kind"] == "step"] == pytest.approx(
        [r["loss"] for r in rows_cut if r["kind"] == "step"], rel=1e-5)
    assert full.history[-1]["val_loss"] == pytest.approx(resumed.history[-1]["val_loss"], rel=1e-6)


def test_resuming_with_more_epochs_or_another_lr_follows_the_new_schedule(tmp_path):
    """"--epochs 100 to train longer": the cosine is stretched to the new end (the LR of every
    step equals an uninterrupted run's), and a new --lr is the new peak. The logged lr is the
    rate the step used: the schedule's value at that step."""
    args = ("--train-pairs", "12", "--batch-size", "4", "--warmup-steps", "1", "--lr", "2e-3")

    def lrs(run: Path) -> list[float]:
        return [r["lr"] for r in map(json.loads, open(run / "metrics.jsonl")) if r["kind"] == "step"]

    full = train(tiny(tmp_path / "full", *args, "--epochs", "3"))
    schedule = WarmupCosine(9, 1, 0.1)
    assert lrs(tmp_path / "full") == pytest.approx([2e-3 * schedule(s) for s in range(9)], rel=1e-6)
    train(tiny(tmp_path / "ext", *args, "--epochs", "1"))
    extended = train(tiny(tmp_path / "ext", *args, "--epochs", "3", "--resume", "auto"))
    assert extended.steps == full.steps == 9
    assert lrs(tmp_path / "ext")[3:] == pytest.approx(lrs(tmp_path / "full")[3:], rel=1e-6)
    train(tiny(tmp_path / "newlr", *args, "--epochs", "1"))
    train(tiny(tmp_path / "newlr", *args, "--epochs", "2", "--lr", "1e-3", "--resume", "auto"))
    half = WarmupCosine(6, 1, 0.1)
    assert lrs(tmp_path / "newlr")[3:] == pytest.approx([1e-3 * half(s) for s in range(3, 6)], rel=1e-6)


def test_resuming_a_finished_run_says_so_and_trains_nothing(tmp_path, capsys):
    """The quickstart line pasted twice: the second run resumes the finished one. It used to
    announce an epoch more ("epoch 2", 3 steps in all) and then train none."""
    args = ("--train-pairs", "4", "--batch-size", "2", "--epochs", "1")
    first = train(tiny(tmp_path, *args))
    before = load_checkpoint(tmp_path / "last.pt")
    capsys.readouterr()
    again = train(tiny(tmp_path, *args, "--resume", "auto", quiet=False))
    out = capsys.readouterr().out
    assert "the run has already trained 1 epoch(s) (step 2) of the 1 asked for, so there is nothing" in out
    assert "epoch 2" not in out and "2 in all" in out
    assert again.steps == first.steps == 2
    assert load_checkpoint(tmp_path / "last.pt")["step"] == before["step"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_finishes_the_run(tmp_path):
    # A DataLoader worker too: SLURM and Ctrl-C signal the whole process group, workers included.
    args = [*TINY_ARGS, "--train-pairs", "64", "--batch-size", "4", "--epochs", "2", "--num-workers", "2"]
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "maskkit_cli.main", "train", *args, "--checkpoint-dir", str(run)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=SUBPROCESS_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and metrics.read_text().count('"kind": "step"') >= 1:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    ck = load_checkpoint(run / "last.pt")
    assert ck["interrupted"] and ck["reason"] == "interrupted" and 1 <= ck["step"] < 32
    resume = subprocess.run([*cmd, "--resume", "auto"], cwd=tmp_path, env=SUBPROCESS_ENV,
                            capture_output=True, text=True, timeout=240)
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    full = train(tiny(tmp_path / "full", "--train-pairs", "64", "--batch-size", "4", "--epochs", "2",
                      "--num-workers", "2"))
    assert load_checkpoint(run / "last.pt")["step"] == full.steps == 32
    a, b = weights(tmp_path / "full" / "last.pt"), weights(run / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)


def test_dataloader_workers_leave_stop_signals_to_the_trainer():
    from maskkit.train import _ignore_stop_signals

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(6.0)), batch_size=1,
                                         num_workers=1, worker_init_fn=_ignore_stop_signals)
    it = iter(loader)
    next(it)
    worker = it._workers[0]
    os.kill(worker.pid, signal.SIGTERM)
    os.kill(worker.pid, signal.SIGINT)
    time.sleep(0.3)
    assert worker.is_alive()
    assert len(list(it)) == 5


def _start_two_rank_run(tmp_path: Path, train_pairs: int, epochs: int) -> tuple[subprocess.Popen, Path]:
    """``maskkit train --world-size 2`` in a subprocess, returned once its first step is logged."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "maskkit_cli.main", "train", *TINY_ARGS, "--train-pairs", str(train_pairs),
           "--batch-size", "2", "--epochs", str(epochs), "--world-size", "2", "--checkpoint-dir", str(run)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=SUBPROCESS_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and '"kind": "step"' in metrics.read_text():
            break
        time.sleep(0.005)
    return proc, run


@pytest.mark.slow
def test_sigterm_stops_every_spawned_rank_at_the_same_step(tmp_path):
    proc, run = _start_two_rank_run(tmp_path, train_pairs=64, epochs=4)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    ck = load_checkpoint(run / "last.pt")
    assert ck["interrupted"] and ck["world_size"] == 2 and len(ck["rng"]) == 2
    assert 1 <= ck["step"] < 4 * 16


def _spawned_ranks(pid: int) -> list[int]:
    """Child processes of ``pid`` started by multiprocessing's spawn (the training ranks)."""
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    ranks = []
    for k in kids:
        try:
            cmdline = Path(f"/proc/{k}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "spawn_main" in cmdline:
            ranks.append(k)
    return ranks


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_killed_rank_does_not_hang_the_others(tmp_path):
    proc, run = _start_two_rank_run(tmp_path, train_pairs=256, epochs=3)
    ranks = _spawned_ranks(proc.pid)
    assert len(ranks) == 2, ranks
    t0 = time.time()
    os.kill(ranks[-1], signal.SIGKILL)  # like the OOM killer: no Python exception, no clean-up
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode not in (0, 143) and time.time() - t0 < 60
    assert proc.returncode == 2 and "terminated with signal SIGKILL" in out, out[-2000:]
    assert "the other training processes were stopped" in out


# -- checkpoints ---------------------------------------------------------------------------------------
class TinyLearned(MaskStrategy):
    """A learnable test strategy: one sigmoid gate per channel; NaN reg loss on request."""

    name = "tiny-learned"
    learnable = True

    @dataclass
    class Config:
        nan_after_calls: int = -1

    def __init__(self, config=None, *, spec=None):
        super().__init__(config, spec=spec)
        self.logit = torch.nn.Parameter(torch.zeros(1, self.spec.dim, 1))
        self.calls = 0

    def forward(self, x_input, x_target, *, hard=False):
        self.calls += 1
        m = torch.sigmoid(self.logit).expand(1, x_input.shape[1], 1).to(x_input.dtype)
        if hard:
            m = (m > 0.5).to(x_input.dtype)
        reg = (m * (1 - m)).mean() + 0.1 * self.logit.square().mean()
        if 0 <= self.config.nan_after_calls < self.calls:
            reg = reg * float("nan")
        return Masks(m, 1 - m, reg_loss=reg)


class _TinyPlugin:
    @staticmethod
    @hookimpl
    def register_strategies(register):
        register(TinyLearned)


@pytest.fixture
def tiny_learned(fresh_plugins):
    fresh_plugins.register_plugin(_TinyPlugin, name="tiny-learned-plugin")
    yield "tiny-learned"


def test_checkpoint_rebuilds_its_model_with_no_other_argument(tiny_learned, tmp_path, capsys):
    cfg = tiny(tmp_path, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2", quiet=False,
               strategy=("--strategy", "tiny-learned"))
    r = train(cfg)
    out = capsys.readouterr().out
    assert "Tiny Learned ENABLED" in out and "66 parameters" in out
    assert out.count("Tiny Learned mask regularization loss:") == 2 and "(weight=0.1)" in out
    ck = load_checkpoint(r.best_checkpoint)
    assert ck["strategy"]["name"] == "tiny-learned" and ck["strategy"]["dist"] == "(runtime)"
    assert ck["codec"] == {"name": "stft", "options": {"sample_rate": 8000, "n_fft": 64, "hop_length": 32,
                                                       "power": 0.5, "eps": 1e-3},
                           "plugin": "codecs", "dist": "maskkit", "version": __version__}
    loaded = load_model(r.best_checkpoint)
    model, codec = loaded
    assert not model.training and codec.sample_rate == 8000 and loaded.step == ck["step"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ck["model"][k])
    assert float(model.strategy.logit.detach().abs().max()) > 0  # trained, not the initial zeros
    # It runs: audio in, audio out, and the same strategy as strategy_from_checkpoint gives.
    x = torch.randn(2, 1, 2000) * 0.1
    with torch.no_grad():
        enc = codec.encode(x)
        out_enc, reg = model(enc, enc.flip(0))
        assert codec.decode(out_enc, length=2000).shape == (2, 1, 2000) and torch.isfinite(reg)
    torch.testing.assert_close(strategy_from_checkpoint(r.best_checkpoint).logit, model.strategy.logit)


def test_a_checkpoint_whose_strategy_plugin_is_gone_says_what_to_install_and_loads_with_another(
        tiny_learned, fresh_plugins, tmp_path):
    """After the plugin is uninstalled, --strategy with the checkpoint still arranges (the stored
    strategy was built first and failed); the error says where the strategy came from."""
    from maskkit.arrange import arrange

    r = train(tiny(tmp_path, "--train-pairs", "8", "--batch-size", "4", "--epochs", "1",
                   strategy=("--strategy", "tiny-learned")))
    fresh_plugins.unregister_plugin("tiny-learned-plugin")
    with pytest.raises(CheckpointError, match=r"needs strategy 'tiny-learned' \(plugin 'tiny-learned-plugin'"
                                              r", registered at run time with maskkit\.register_plugin\)"):
        load_model(r.best_checkpoint)
    loaded = load_model(r.best_checkpoint, strategy="temporal", strategy_options={"segment": 4})
    assert loaded.model.strategy.name == "temporal" and loaded.model.strategy.config.segment == 4
    ck = load_checkpoint(r.best_checkpoint)
    for k, v in loaded.model.stages.state_dict().items():
        torch.testing.assert_close(v, ck["model"][f"stages.{k}"])
    x = torch.randn(4000) * 0.1
    assert arrange(x, x.flip(0), checkpoint=r.best_checkpoint, strategy="temporal").audio.shape == (1, 4000)
    ck["strategy"].update(plugin="stripes", dist="maskkit-stripes", version="0.1.0")
    ck["codec"].update(name="frames", plugin="frames", dist="maskkit-frames", version="2.0")
    torch.save(ck, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"needs codec 'frames' \(plugin 'frames' of the distribution "
                                              r"maskkit-frames 2\.0: pip install maskkit-frames\)"):
        load_model(tmp_path / "other.pt")


def test_creative_agent_run_and_checkpoint(tmp_path, capsys):
    pytest.importorskip("maskkit_creative_agent")
    r = train(tiny(tmp_path, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2", quiet=False,
                   strategy=("--use_creative_agent", "true", "--strategy-opt", "hidden_dim=8",
                             "--strategy-opt", "num_heads=2")))
    out = capsys.readouterr().out
    assert "Creative Agent ENABLED" in out
    assert out.count("Creative Agent mask regularization loss:") == 2
    ck = load_checkpoint(r.last_checkpoint)
    assert ck["strategy"]["name"] == "creative-agent" and ck["strategy"]["options"]["hidden_dim"] == 8
    assert ck["strategy"]["plugin"] == "creative-agent" and ck["strategy"]["version"]
    model, codec = load_model(r.last_checkpoint)
    strategy = strategy_from_checkpoint(r.last_checkpoint)
    for k, v in strategy.state_dict().items():
        torch.testing.assert_close(v, model.strategy.state_dict()[k])
    assert r.history[-1]["val_loss"] < r.history[0]["val_loss"]
    assert 0.0 < r.history[-1]["val_complementarity"] < 100.0


def test_hard_masks_train_the_creative_agent_and_stay_hard_after_loading(tmp_path):
    """``--hard-masks``: the model trains on 0/1 masks (the generator's gradient goes through
    the straight-through Gumbel-softmax); the checkpoint keeps using them."""
    pytest.importorskip("maskkit_creative_agent")
    agent = ("--strategy", "creative-agent", "--strategy-opt", "hidden_dim=8",
             "--strategy-opt", "num_heads=2")
    # No regularization loss (it is computed from the soft masks): the generator's only gradient
    # is the reconstruction loss's, through the hard masks.
    cfg = tiny(tmp_path, "--train-pairs", "8", "--batch-size", "4", "--epochs", "2", "--hard-masks",
               "--mask-reg-weight", "0", "--balance-weight", "0", "--weight-decay", "0", strategy=agent)
    assert cfg.model.hard_masks is True
    r = train(cfg)
    assert r.history[-1]["val_complementarity"] == pytest.approx(100.0)  # 0/1 masks never overlap
    assert r.history[-1]["val_coverage"] == pytest.approx(1.0)  # and sum to 1
    ck = load_checkpoint(r.last_checkpoint)
    assert ck["config"]["model"]["hard_masks"] is True
    after_1 = strategy_from_checkpoint(tmp_path / "epoch_0001.pt").state_dict()
    after_2 = strategy_from_checkpoint(r.last_checkpoint).state_dict()
    assert any(not torch.equal(after_1[k], after_2[k]) for k in after_2)  # it learns through hard masks
    model, codec = load_model(r.last_checkpoint)
    enc = codec.encode(torch.randn(2, 1, 2000) * 0.1)
    with torch.no_grad():
        _, _, masks = model(enc, enc.flip(0), return_masks=True)
    assert set(masks.input_mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(masks.input_mask + masks.target_mask, torch.ones_like(masks.input_mask))
    # The other users of the checkpoint take its hard masks too.
    from maskkit_creative_agent.diagnostics import inspect_checkpoint

    from maskkit.snapshots import save_validation_snapshot

    x = torch.randn(2, 1, 2000) * 0.1
    snap = save_validation_snapshot(model, codec, x, x.flip(0), tmp_path / "snap", 1, max_pairs=2)
    assert all(m["complementarity"] == pytest.approx(100.0) for m in snap.metrics)

    from maskkit.arrange import arrange

    assert inspect_checkpoint(r.last_checkpoint, random=True, pairs=2, frames=20).hard
    song = torch.randn(4000) * 0.1
    res = arrange(song, song.flip(0), None, checkpoint=r.last_checkpoint, mix_only=True, window_seconds=0.25)
    assert res.metrics["complementarity"] == pytest.approx(100.0) and res.hard
    # ... unless soft masks are asked for (hard=False; --soft on the command line)
    with torch.no_grad():
        _, _, soft = model(enc, enc.flip(0), return_masks=True, hard=False)
    assert not set(soft.input_mask.unique().tolist()) <= {0.0, 1.0}
    res = arrange(song, song.flip(0), None, checkpoint=r.last_checkpoint, mix_only=True, window_seconds=0.25,
                  hard=False)
    assert not res.hard and res.metrics["complementarity"] < 99.0
    from click.testing import CliRunner

    from maskkit_cli.main import cli

    for flag, hard in (([], True), (["--soft"], False)):
        out = CliRunner().invoke(cli, ["agent", "inspect", str(r.last_checkpoint), "--random", "-n", "2",
                                       "-t", "20", *flag])
        assert out.exit_code == 0, out.output
        assert ("(hard masks)" in out.output) is hard


def test_load_model_names_a_missing_plugin(tiny_learned, tmp_path, fresh_plugins):
    r = train(tiny(tmp_path, "--train-pairs", "4", "--batch-size", "4", "--max-steps", "1",
                   strategy=("--strategy", "tiny-learned")))
    fresh_plugins.reset_manager()  # the runtime plugin is gone, as on a machine without it
    with pytest.raises(CheckpointError, match="tiny-learned"):
        load_model(r.last_checkpoint)


def test_nonfinite_loss_skips_steps_then_aborts_keeping_the_last_good_checkpoint(tiny_learned, tmp_path):
    # Calls: 2 in the start-up check, 3 training steps and 1 validation batch in epoch 1; NaN afterwards.
    cfg = tiny(tmp_path, "--train-pairs", "12", "--batch-size", "4", "--epochs", "3", max_bad_steps=3,
               strategy=("--strategy", "tiny-learned", "--strategy-opt", "nan_after_calls=6"))
    with pytest.raises(TrainingError, match="3 consecutive steps with a non-finite loss"):
        train(cfg)
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["step"] == 3 and ck["epochs_completed"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_run_folder_files_and_resume_auto_choice(tmp_path):
    r = train(tiny(tmp_path, "--train-pairs", "8", "--batch-size", "4", "--epochs", "4", "--save-every", "1"))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert {"last.pt", "best.pt", "metrics.jsonl", "metrics.csv", "config.json"} <= set(names)
    # keep_checkpoints=2: only the two newest epoch files stay.
    assert [n for n in names if n.startswith("epoch_")] == ["epoch_0003.pt", "epoch_0004.pt"]
    steps = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert sum(x["kind"] == "step" for x in steps) == r.steps == 8
    assert sum(x["kind"] == "epoch" for x in steps) == 4
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {"loss", "mask_reg", "complementarity", "pairs_per_s", "val_loss",
                                "val_complementarity", "train_loss", "lr"} <= set(rows[0])
    assert float(rows[0]["complementarity"]) == pytest.approx(100.0)  # temporal masks never overlap
    assert r.history[-1]["val_loss"] < r.history[0]["val_loss"]
    # --resume auto: the complete checkpoint with the most steps; never a temp file or a broken one.
    (tmp_path / ".last.pt.abcd.tmp").write_bytes(b"partial")
    (tmp_path / "epoch_0009.pt").write_bytes(b"truncated by a crash")
    with pytest.warns(UserWarning, match="skipping epoch_0009.pt"):
        found = find_resume_checkpoint(tmp_path)
    assert found.name in ("last.pt", "epoch_0004.pt") and load_checkpoint(found)["step"] == 8
    assert find_resume_checkpoint(tmp_path / "nothing-here") is None


def test_early_stopping(tmp_path):
    r = train(tiny(tmp_path, "--train-pairs", "4", "--batch-size", "4", "--epochs", "5", "--lr", "0",
                   "--patience", "1"))
    assert r.stopped == "early_stopping" and r.epochs_completed == 2


def test_clear_errors_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write checkpoints"):
        train(tiny(blocker / "run"))
    with pytest.raises(ConfigError, match="too few"):
        train(tiny(tmp_path / "r", "--train-pairs", "3", "--batch-size", "4"))
    train(tiny(tmp_path / "r2", "--train-pairs", "4", "--batch-size", "4", "--max-steps", "1"))
    with pytest.raises(ConfigError, match="other model settings"):
        train(tiny(tmp_path / "r2", "--train-pairs", "4", "--batch-size", "4", "--d-model", "32",
                   "--resume", str(tmp_path / "r2" / "last.pt")))


def test_schedule_warms_up_then_decays():
    s = WarmupCosine(total_steps=100, warmup_steps=10, min_ratio=0.1)
    vals = [s(i) for i in range(100)]
    assert vals[0] < vals[5] < vals[9] <= 1.0
    assert vals[10] == pytest.approx(1.0) and vals[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(vals[10:], vals[11:], strict=False))


# -- data sources -----------------------------------------------------------------------------------
def _tone(seconds: float, sr: int, f0: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_training_on_a_wav_pairs_folder(tmp_path, capsys):
    import soundfile as sf

    root = tmp_path / "pairs"
    for split, n in (("train", 4), ("val", 2)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            sf.write(root / split / f"pair_{i:04d}_input.wav", _tone(0.5, 8000, 220 + 30 * i, i), 8000)
            sf.write(root / split / f"pair_{i:04d}_output.wav", _tone(0.5, 8000, 330 + 20 * i, 100 + i), 8000)
    r = train(tiny(tmp_path / "run", "--dataset_folder", str(root), "--batch-size", "2", "--epochs", "2",
                   "--train-pairs", "100", quiet=False))
    assert r.steps == 4 and r.best_checkpoint and (tmp_path / "run" / "metrics.jsonl").is_file()
    assert load_checkpoint(r.last_checkpoint)["config"]["data"]["source"] == str(root)
    out = " ".join(capsys.readouterr().out.split())  # typed counts that a pairs folder ignores: said
    assert "4 training / 2 validation pairs" in out
    assert ("Note: --train-pairs 100 and --val-pairs 4 do not apply to a WAV-pairs folder, which trains on "
            "all its pairs") in out


def test_training_on_a_folder_of_songs(tmp_path):
    import soundfile as sf

    root = tmp_path / "songs"
    (root / "album").mkdir(parents=True)
    for i in range(6):
        sf.write(root / ("album" if i % 2 else "") / f"song{i}.wav", _tone(1.0, 8000, 150 + 50 * i, i), 8000)
    r = train(tiny(tmp_path / "run", "--data", str(root), "--train-pairs", "8", "--batch-size", "4",
                   "--epochs", "2"))
    assert r.steps == 4 and r.best_val_loss is not None and Path(r.best_checkpoint).is_file()
    # The songs moved: resuming says the folder came from the checkpoint, and --data points at them.
    moved = root.rename(tmp_path / "moved")
    with pytest.raises(AudioError, match=f"{root}: no such file or directory: the data this run trained "
                                         f"on, as .* records it; if the songs moved, resume with --data"):
        train(tiny(tmp_path / "run", "--train-pairs", "8", "--batch-size", "4", "--epochs", "3",
                   "--resume", "auto"))
    r = train(tiny(tmp_path / "run", "--data", str(moved), "--train-pairs", "8", "--batch-size", "4",
                   "--epochs", "3", "--resume", "auto"))
    assert r.epochs_completed == 3


# -- the command line ---------------------------------------------------------------------------------
def _invoke(args, monkeypatch):
    """Run ``maskkit train ARGS`` with the training itself replaced by a recorder."""
    import maskkit.train as train_mod
    from maskkit_cli.main import cli

    seen = {}

    def fake_train(cfg):
        seen["cfg"] = cfg
        return train_mod.TrainResult(run_dir="x", last_checkpoint=None, best_checkpoint=None,
                                     best_val_loss=None, final_metrics={}, history=[], epochs_completed=0,
                                     steps=0, stopped="completed")

    monkeypatch.setattr(train_mod, "train", fake_train)
    result = CliRunner().invoke(cli, ["train", *args])
    return result, seen.get("cfg")


def test_cli_seed_flag_aliases(monkeypatch, tmp_path):
    result, cfg = _invoke(["--dataset_folder", "songs/", "--use_creative_agent", "true",
                           "--mask_reg_weight", "0.2", "--world_size", "3", "--num_epochs", "7",
                           "--checkpoint_dir", str(tmp_path / "ck"), "--batch_size", "5", "--lr", "0.01",
                           "--num_transformer_layers", "4", "--encoding_dim", "514"], monkeypatch)
    assert result.exit_code == 0, result.output
    assert cfg.strategy == "creative-agent" and cfg.data.source == "songs/"
    assert cfg.loss.mask_reg_weight == 0.2
    assert (cfg.world_size, cfg.epochs, cfg.batch_size, cfg.optim.lr) == (3, 7, 5, 0.01)
    assert cfg.checkpoint_dir == str(tmp_path / "ck") and cfg.model.num_transformer_layers == 4
    # Defaults: the small preset, creative-agent, synthetic data, runs/<strategy>.
    result, cfg = _invoke([], monkeypatch)
    assert result.exit_code == 0, result.output
    assert cfg.strategy == "creative-agent" and cfg.data.source is None and cfg.preset == "small"
    assert str(cfg.run_dir) == os.path.join("runs", "creative-agent") and cfg == TrainConfig()
    result, cfg = _invoke(["--use_creative_agent", "false", "--preset", "base", "--no-bf16"], monkeypatch)
    assert cfg.strategy == "temporal" and cfg.preset == "base" and cfg.bf16 is False
    assert cfg.model == TrainConfig.from_preset("base").model


@pytest.mark.parametrize("args, message", [
    (["--strategy", "no-such-thing"], "unknown strategy 'no-such-thing'. Available: "),
    (["--strategy", "temporal", "--strategy-opt", "bogus=1"], "unknown option 'bogus'"),
    (["--strategy", "temporal", "--strategy-opt", "segment=abc"], "expects an integer"),
    (["--strategy", "temporal", "--strategy-opt", "segment"], "expected key=value"),
    (["--strategy", "temporal", "--codec", "nope"], "unknown codec 'nope'"),
    (["--strategy", "temporal", "--codec-opt", "n_fft=abc"], "expects an integer"),
    (["--strategy", "temporal", "--encoding_dim", "128"], "does not match codec 'stft'"),
    (["--use_creative_agent", "maybe"], "expects true or false"),
    (["--use_creative_agent", "true", "--strategy", "temporal"], "contradicts"),
    (["--strategy", "temporal", "--model-opt", "d_model=30", "--nhead", "4"], "divisible"),
    (["--strategy", "temporal", "--loss-opt", "wat=1"], "unknown option 'wat'"),
    (["--strategy", "temporal", "--preset", "huge"], "Invalid value for '--preset'"),
])
def test_cli_errors(monkeypatch, args, message):
    result, cfg = _invoke(args, monkeypatch)
    assert result.exit_code == 2 and cfg is None, result.output
    assert message in result.output
    if "unknown strategy" in message:
        assert "temporal" in result.output  # the list of available strategies


def test_cli_resume_takes_the_checkpoints_settings(monkeypatch, tmp_path):
    r = train(tiny(tmp_path, "--train-pairs", "4", "--batch-size", "4", "--max-steps", "1"))
    result, cfg = _invoke(["--resume", r.last_checkpoint, "--epochs", "9"], monkeypatch)
    assert result.exit_code == 0, result.output
    assert cfg.strategy == "temporal" and cfg.model.d_model == 16 and cfg.epochs == 9
    assert cfg.resume == r.last_checkpoint
    # --resume auto with nothing to resume is a new run.
    result, cfg = _invoke(["--resume", "auto", "--strategy", "temporal", "--checkpoint-dir",
                           str(tmp_path / "e")], monkeypatch)
    assert result.exit_code == 0 and cfg.model.d_model == TrainConfig().model.d_model


def test_resume_from_a_copied_run_or_another_directory_writes_next_to_the_checkpoint(tmp_path, monkeypatch):
    """--resume PATH continues in the checkpoint's own folder (not the folder recorded when it was
    trained, which a copy would overwrite); the data folder is recorded as an absolute path."""
    import shutil

    import soundfile as sf

    from maskkit.train import TrainConfig

    songs = tmp_path / "music"
    songs.mkdir()
    for i in range(6):
        sf.write(songs / f"s{i}.wav", _tone(1.0, 8000, 110 + 50 * i, i), 8000)
    monkeypatch.chdir(tmp_path)
    small = ("--train-pairs", "4", "--val-pairs", "2", "--batch-size", "4", "--data", "music")
    train(tiny(Path("runs/orig"), *small, "--epochs", "1"))
    saved = load_checkpoint(tmp_path / "runs/orig/last.pt")["config"]
    assert saved["data"]["source"] == str(songs)  # absolute, though typed relative
    before = (tmp_path / "runs/orig/last.pt").read_bytes()
    shutil.copytree(tmp_path / "runs/orig", tmp_path / "runs/copy")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = TrainConfig.for_resume(tmp_path / "runs/copy/last.pt", epochs=2)
    assert cfg.run_dir == tmp_path / "runs/copy" and cfg.epochs == 2
    r = train(cfg)
    assert r.steps == 2 and Path(r.run_dir) == tmp_path / "runs/copy"
    assert (tmp_path / "runs/orig/last.pt").read_bytes() == before  # the original run is untouched
    assert not (elsewhere / "runs").exists()
    # an explicit --checkpoint-dir still wins; another strategy is refused naming both
    assert TrainConfig.for_resume(tmp_path / "runs/copy/last.pt", checkpoint_dir="x").checkpoint_dir == "x"
    with pytest.raises(ConfigError, match="trained with strategy 'temporal', not 'energy'"):
        TrainConfig.for_resume(tmp_path / "runs/copy/last.pt", strategy="energy")
    # auto with nothing there: a new run of the preset
    new = TrainConfig.for_resume("auto", checkpoint_dir=str(tmp_path / "empty"), strategy="temporal")
    assert new.resume == "auto" and new.strategy == "temporal"


def test_a_loss_sample_rate_other_than_the_codecs_is_refused(tmp_path):
    """The loss runs at the codec's rate; a typed loss rate that differs would be silently ignored."""
    small = ("--train-pairs", "4", "--batch-size", "4")
    with pytest.raises(ConfigError, match=r"loss option sample_rate=16000: .*codec's rate \(8000 Hz\).*"
                                          r"--codec-opt sample_rate"):
        train(tiny(tmp_path / "run", "--loss-opt", "sample_rate=16000", *small))
    assert not (tmp_path / "run" / "last.pt").exists()
    r = train(tiny(tmp_path / "ok", "--loss-opt", "sample_rate=8000", *small, "--max-steps", "1"))
    assert r.steps == 1


def test_the_python_api_checks_strategy_and_codec_before_anything_runs(tmp_path):
    """train() itself (not only the CLI) refuses unknown names and bad options up front, naming
    them, without creating the run folder."""
    from maskkit.errors import UnknownNameError

    run = tmp_path / "run"
    with pytest.raises(UnknownNameError, match=r"unknown strategy 'tempral'.*temporal"):
        train(tiny(run, "--max-steps", "1", strategy=("--strategy", "temporal")), strategy="tempral")
    with pytest.raises(ConfigError, match=r"strategy 'temporal': option 'segment' must be >= 1"):
        train(tiny(run, "--max-steps", "1"), strategy_options={"segment": -3})
    with pytest.raises(UnknownNameError, match=r"unknown codec 'mp3'"):
        train(tiny(run, "--max-steps", "1"), codec="mp3")
    assert not run.exists()


def test_the_epoch_count_printed_is_the_one_the_steps_span(tmp_path, capsys):
    """--max-steps 5 with 4 steps an epoch: 'epoch 1/8 ... epoch 2/8' then 'Done: 1 epoch' read as
    a run cut short three ways."""
    train(tiny(tmp_path / "run", "--train-pairs", "8", "--batch-size", "2", "--epochs", "8",
               "--max-steps", "5", quiet=False))
    out = " ".join(capsys.readouterr().out.split())
    assert "epoch 1/2 step 4" in out and "epoch 2/2 step 5" in out and "/8" not in out
    assert "Done (max_steps): 1 epoch and part of the next, 5 steps" in out


def test_a_config_built_directly_is_checked_and_takes_sections_as_dicts():
    """TrainConfig(...) as a Python user writes it: checked as from_dict is (epochs=-3 was
    accepted; model={...} failed with 'dict' object has no attribute 'validate')."""
    cfg = TrainConfig(model={"d_model": 32}, optim={"lr": 0.01})
    assert cfg.model.d_model == 32 and cfg.model.nhead == TrainConfig().model.nhead  # the rest: defaults
    assert cfg.optim.lr == 0.01
    with pytest.raises(ConfigError, match="epochs must be >= 1, got -3"):
        TrainConfig(epochs=-3)
    with pytest.raises(ConfigError, match="model: unknown option 'nope'"):
        TrainConfig(model={"nope": 1})
    with pytest.raises(ConfigError, match="model must be a ModelConfig or a dict, got int"):
        TrainConfig(model=5)  # type: ignore[arg-type]


def test_a_run_that_fails_before_writing_leaves_no_empty_run_folder(tmp_path):
    from maskkit.errors import AudioError

    run = tmp_path / "runs" / "x"
    with pytest.raises(AudioError, match="nosuch"):
        train(tiny(run, "--data", str(tmp_path / "nosuch"), "--max-steps", "1"))
    assert not run.exists()
    run.mkdir(parents=True)  # a folder that was there before stays
    with pytest.raises(AudioError, match="nosuch"):
        train(tiny(run, "--data", str(tmp_path / "nosuch"), "--max-steps", "1"))
    assert run.is_dir()


def test_resume_takes_world_size_and_device_from_this_launch_not_the_checkpoint(tmp_path):
    from maskkit.train import TrainConfig

    r = train(tiny(tmp_path / "run", "--train-pairs", "4", "--batch-size", "4", "--max-steps", "1"),
              world_size=1, device="cpu")
    saved = load_checkpoint(r.last_checkpoint)["config"]
    assert (saved["world_size"], saved["device"]) == (1, "cpu")
    cfg = TrainConfig.for_resume(r.last_checkpoint)
    assert cfg.world_size is None and cfg.device == TrainConfig().device  # as a new launch would be
    assert TrainConfig.for_resume(r.last_checkpoint, world_size=2).world_size == 2


def test_max_steps_inside_an_epoch_keeps_the_position_for_a_resume(tmp_path):
    """--max-steps 3 of a 4-step epoch: validated and saved, but a resume with more steps trains
    the epoch's last batch instead of skipping to the next epoch."""
    args = ("--train-pairs", "16", "--batch-size", "4", "--epochs", "2")
    cut = train(tiny(tmp_path / "run", *args, "--max-steps", "3"))
    assert cut.stopped == "max_steps" and cut.steps == 3 and cut.best_val_loss is not None
    ck = load_checkpoint(cut.last_checkpoint)
    assert (ck["epoch"], ck["batch_in_epoch"], ck["step"]) == (0, 3, 3)
    assert not (tmp_path / "run" / "epoch_0001.pt").exists()  # not a completed epoch
    full = train(tiny(tmp_path / "run", *args, "--max-steps", "20", "--resume", "auto"))
    assert full.stopped == "completed" and full.steps == 8 and full.epochs_completed == 2


AGENT = ("--strategy", "creative-agent", "--strategy-opt", "hidden_dim=8", "--strategy-opt", "num_heads=2")


@pytest.mark.parametrize("batch", [1, 2])
def test_validation_logs_the_balance_metric_and_loss_apart_and_no_spread_of_one_pair(tmp_path, batch):
    """``balance`` is the mask metric (input share), ``balance_loss`` the strategy's loss term:
    both are logged, never one under the other's name; and a batch-spread metric (adaptivity)
    is not averaged over batches of one pair, where it is 0 by construction."""
    from maskkit.logging_utils import read_metrics

    r = train(tiny(tmp_path / "run", "--train-pairs", "4", "--batch-size", str(batch), "--epochs", "1",
                   strategy=AGENT))
    step = read_metrics(r.run_dir, kind="step")[-1]
    epoch = read_metrics(r.run_dir, kind="epoch")[-1]
    assert "balance_loss" in step and "balance" not in step
    assert 0.3 < epoch["val_balance"] < 0.7 and 0 <= epoch["val_balance_loss"] < 0.05
    assert epoch["train_balance_loss"] == pytest.approx(step["balance_loss"], abs=0.05)
    if batch == 1:
        assert "val_adaptivity" not in epoch
    else:
        assert epoch["val_adaptivity"] > 0


@pytest.mark.timeout(300)
def test_a_file_that_fails_mid_run_with_loader_workers_stops_the_run_instead_of_hanging(tmp_path):
    """A song whose NaN samples lie between the start-up probe's windows fails only when a crop
    reaches them. With DataLoader workers (which ignore SIGTERM) the run used to print the
    worker's traceback and then hang at exit forever; it must exit 2 naming the file, and a
    single-process run saves its position first."""
    import soundfile as sf

    sr = 8000
    songs = tmp_path / "songs"
    songs.mkdir()
    t = np.arange(10 * sr) / sr
    for i in range(4):
        sf.write(songs / f"good_{i}.wav", 0.3 * np.sin(2 * np.pi * (220 + 55 * i) * t), sr)
    bad = 0.3 * np.sin(2 * np.pi * 330 * t)
    for lo in (1.2, 4.2, 7.2):  # between the probes at 0-1, 3-4, 6-7 and 9-10 s
        bad[int(lo * sr):int((lo + 1.6) * sr)] = np.nan
    sf.write(songs / "nan_middle.wav", bad.astype(np.float32), sr, subtype="FLOAT")
    args = [*TINY_ARGS, "--data", str(songs), "--num-workers", "1", "--train-pairs", "16",
            "--batch-size", "2", "--epochs", "6", "--checkpoint-dir", str(tmp_path / "run")]
    proc = subprocess.run([sys.executable, "-m", "maskkit_cli.main", "train", *args], env=SUBPROCESS_ENV,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())
    assert "nan_middle.wav" in err and "Original Traceback" not in err, proc.stderr
    # (seed 0 reaches the bad stretch after some steps) the steps done are saved, and said so
    assert "checkpoint saved to" in err and (tmp_path / "run" / "last.pt").is_file(), proc.stderr


def test_an_epoch_cut_by_max_steps_counts_once_towards_early_stopping(tmp_path):
    """lr 0: the validation loss never improves after epoch 1, so --patience 2 stops after epoch 3.
    Cut inside epoch 2 and resumed, the run must stop at the same step, not one epoch early."""
    args = ("--train-pairs", "8", "--batch-size", "2", "--epochs", "5", "--lr", "0", "--patience", "2")
    whole = train(tiny(tmp_path / "whole", *args))
    assert whole.stopped == "early_stopping" and (whole.epochs_completed, whole.steps) == (3, 12)
    train(tiny(tmp_path / "cut", *args, "--max-steps", "6"))
    resumed = train(tiny(tmp_path / "cut", *args, "--resume", "auto", "--max-steps", "0"))
    assert resumed.stopped == "early_stopping" and (resumed.epochs_completed, resumed.steps) == (3, 12)


def test_a_resume_past_its_max_steps_says_so_and_max_steps_0_lifts_the_cap(tmp_path, capsys):
    args = ("--train-pairs", "8", "--batch-size", "4", "--epochs", "2")
    train(tiny(tmp_path / "run", *args, "--max-steps", "1"))
    again = train(tiny(tmp_path / "run", *args, "--resume", "auto", quiet=False))
    assert again.stopped == "max_steps" and again.steps == 1
    assert "--max-steps 1 was reached before this run started" in capsys.readouterr().out
    lifted = train(tiny(tmp_path / "run", *args, "--resume", "auto", "--max-steps", "0"))
    assert lifted.stopped == "completed" and lifted.steps == 4


def test_a_checkpoint_dir_under_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    r = train(tiny(Path("~/runs/x"), "--train-pairs", "4", "--batch-size", "4", "--max-steps", "1"))
    assert Path(r.run_dir) == tmp_path / "runs" / "x" and (tmp_path / "runs" / "x" / "last.pt").is_file()
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("at_epoch, stopped", [(2, "completed"), (1, "interrupted")])
def test_a_stop_during_the_last_validation_completes_the_run(tmp_path, monkeypatch, at_epoch, stopped):
    """SIGTERM while the final epoch validates: the training is done, so the job must not be
    requeued (exit 0); during an earlier validation it is a stop (143)."""
    import signal as _signal

    from maskkit.train import Trainer

    real = Trainer.validate

    def validate(self, *a, **k):
        out = real(self, *a, **k)
        if self.epoch + 1 == at_epoch:
            self.stop.signum = _signal.SIGTERM
        return out

    monkeypatch.setattr(Trainer, "validate", validate)
    r = train(tiny(tmp_path / "run", "--train-pairs", "8", "--batch-size", "4", "--epochs", "2"))
    assert r.stopped == stopped
    assert r.exit_code == (0 if stopped == "completed" else 143)
    assert r.epochs_completed == at_epoch


def test_a_failed_copy_of_the_checkpoint_leaves_no_partial_file_and_names_it(tmp_path, monkeypatch):
    """best.pt / epoch_NNNN.pt are hard links, copies where links fail: a copy cut short (disk full)
    is removed, the file it was to replace is untouched, and the error names that file."""
    import errno
    import shutil

    from maskkit import train as train_mod

    src, dst = tmp_path / "last.pt", tmp_path / "best.pt"
    src.write_bytes(b"new" * 1000)
    dst.write_bytes(b"old")

    def no_link(a, b):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def short_copy(a, b):
        Path(b).write_bytes(b"ne")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(shutil, "copyfile", short_copy)
    with pytest.raises(OSError, match="No space left") as e:
        train_mod._link_or_copy(src, dst)
    assert e.value.filename == str(dst)
    assert dst.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.slow
def test_persistent_loader_workers_train_as_the_main_process_does(tmp_path):
    """Workers live for the whole run: each epoch's new crops (set_epoch) must reach them, so 3
    epochs with 2 workers give the weights of 3 epochs loaded in the main process."""
    songs = _sine_songs(tmp_path / "songs", 6, 3.0)
    args = ("--data", str(songs), "--train-pairs", "8", "--batch-size", "4", "--epochs", "3")
    train(tiny(tmp_path / "main", *args, "--num-workers", "0"))
    train(tiny(tmp_path / "workers", *args, "--num-workers", "2"))
    a, b = weights(tmp_path / "main" / "last.pt"), weights(tmp_path / "workers" / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    # ... and the epochs did draw other crops: one epoch's weights differ from the same run frozen
    # at epoch 1's data (a check that this test can fail)
    from maskkit.data import FolderPairs

    ds = FolderPairs.from_folder(songs, 8, sample_rate=8000, segment_seconds=0.25, seed=0)
    first = ds[0][0].clone()
    ds.set_epoch(1)
    assert not torch.equal(first, ds[0][0])


@pytest.mark.slow
def test_processes_of_a_job_share_the_scan_of_a_folder_of_songs(tmp_path, capsys):
    """--world-size 2: each process checks half of the files and both get the whole catalog (a
    bad file found by either is skipped by both, and named once)."""
    import soundfile as sf

    songs = _sine_songs(tmp_path / "songs", 7, 2.0)
    sf.write(songs / "song_3b.wav", np.zeros(800), 8000)  # too short; 5th of 8 files: rank 0's share
    r = train(tiny(tmp_path / "run", "--data", str(songs), "--train-pairs", "8", "--batch-size", "2",
                   "--max-steps", "2", "--world-size", "2", "--skip-bad"))
    assert (r.world_size, r.steps, r.stopped) == (2, 2, "max_steps")
    with pytest.raises(AudioError, match="song_3b.wav: too short"):
        train(tiny(tmp_path / "run2", "--data", str(songs), "--train-pairs", "8", "--batch-size", "2",
                   "--max-steps", "2", "--world-size", "2"))


def test_resuming_on_other_songs_says_so(tmp_path, capsys):
    """Songs added to the folder between two parts of a run move others between training and
    validation (the split is by song): the resumed run warns, naming what changed."""
    songs = _sine_songs(tmp_path / "songs", 8, 2.0)
    args = ("--data", str(songs), "--train-pairs", "8", "--batch-size", "4", "--epochs", "2",
            "--val-fraction", "0.25")
    train(tiny(tmp_path / "run", *args, "--max-steps", "2"))
    assert load_checkpoint(tmp_path / "run" / "last.pt")["songs"]["train"]["songs"] == 6
    train(tiny(tmp_path / "run", *args, "--max-steps", "3", "--resume", "auto"))
    assert "on other songs" not in capsys.readouterr().out  # the same songs: nothing to say
    _sine_songs(songs, 4, 2.0, start=8)
    train(tiny(tmp_path / "run", *args, "--max-steps", "0", "--resume", "auto"))
    out = " ".join(capsys.readouterr().out.split())
    assert "on other songs than it trained and validated on (train 6 -> 9 songs; val 2 -> 3 songs)" in out


def test_a_long_scan_writes_progress_lines_to_a_log_file(tmp_path):
    """No spinner in a SLURM log: a start-up check of many songs says how far it is, now and then
    (every 30 s; here, with the interval at 0, after every file)."""
    songs = _sine_songs(tmp_path / "songs", 5, 1.0)
    args = [*TINY_ARGS, "--data", str(songs), "--train-pairs", "4", "--batch-size", "2", "--max-steps", "1",
            "--checkpoint-dir", str(tmp_path / "run")]
    args.remove("--quiet")
    p = subprocess.run([sys.executable, "-c", "import maskkit.train as t, sys; t._LOG_EVERY_S = 0.0; "
                        "from maskkit_cli.main import cli; cli(['train', *sys.argv[1:]])", *args],
                       env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("checking audio files:")]
    assert lines == [f"checking audio files: {i}/5 ..." for i in range(1, 6)], p.stdout


def test_a_resumed_run_reads_again_only_the_songs_that_changed(tmp_path, monkeypatch):
    import maskkit.data as data_mod
    from maskkit.data import SCAN_CACHE

    songs = _sine_songs(tmp_path / "songs", 6, 1.0)
    args = ("--data", str(songs), "--train-pairs", "4", "--batch-size", "2", "--epochs", "2")
    train(tiny(tmp_path / "run", *args, "--max-steps", "1"))
    assert (tmp_path / "run" / SCAN_CACHE).is_file()
    calls: list[str] = []
    real = data_mod.check_audio
    monkeypatch.setattr(data_mod, "check_audio", lambda p, **k: calls.append(Path(p).name) or real(p, **k))
    _sine_songs(songs, 1, 1.5, start=6)  # one new song
    r = train(tiny(tmp_path / "run", *args, "--max-steps", "0", "--resume", "auto"))
    assert r.stopped == "completed" and calls == ["song_6.wav"]
    # a new run that fails on a bad song takes its folder away, the kept check with it
    import soundfile as sf

    sf.write(songs / "short.wav", np.zeros(800), 8000)
    with pytest.raises(AudioError, match="short.wav: too short"):
        train(tiny(tmp_path / "new", *args))
    assert not (tmp_path / "new").exists()
