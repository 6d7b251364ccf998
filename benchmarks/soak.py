"""Soak test: many short epochs, frequent checkpoints, random SIGTERM / ``--resume auto`` cycles.

    python benchmarks/soak.py                                    # 10 cycles, 60 epochs of 2 steps
    python benchmarks/soak.py --cycles 30 --epochs 150 --max-delay 0.5 --seed 2 --json soak.json
    python benchmarks/soak.py --seed 3 --keep DIR                # keep the run folders

What it does (real processes, real signals):

1. an uninterrupted reference run: ``python -m maskkit_cli.main train ...`` with a tiny model
   and tiny synthetic data (8 kHz, 0.25 s pairs), a checkpoint every epoch;
2. the same command in another run folder, started ``--cycles`` times with ``--resume auto``;
   each start is sent ``SIGTERM`` (to its whole process group, as SLURM does) at a random
   moment after it has logged at least one new step row -- during a step, a validation or a
   checkpoint write -- and must exit with 143 (a clean stop) or 0 (it finished first). A
   signal that lands after the run has saved its final checkpoint, on the process's way out
   (the trainer's handlers are already restored), kills it with SIGTERM: accepted only when
   ``last.pt`` is then the final checkpoint, and counted apart;
3. a final ``--resume auto`` start that runs to the end.

Then it compares the interrupted run with the reference: the final step count, the
``metrics.jsonl`` step rows (``(epoch, step)`` sequence, and each step's loss, which depends on
the exact data the step saw: the data order), and the weights of ``last.pt``. It prints
cycles survived, steps lost (reference steps minus the interrupted run's, must be 0) and the
weights' max-abs difference, writes all of it as JSON with ``--json`` and exits 1 if the run
does not match.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

#: The tiny run of tests/test_train.py's TINY_ARGS (seconds per epoch on a 2-core CPU), with dropout
#: on, so that a resume must restore the random-number state to match, and a checkpoint per epoch.
#: Kept apart from the tests' list: a benchmark does not import the test suite.
TINY_ARGS = [
    "--strategy", "temporal", "--strategy-opt", "segment=8",
    "--codec-opt", "n_fft=64", "--codec-opt", "hop_length=32", "--codec-opt", "sample_rate=8000",
    "--d-model", "16", "--nhead", "2", "--num-layers", "1", "--num-transformer-layers", "2",
    "--model-opt", "dim_feedforward=32", "--dropout", "0.1",
    "--loss-opt", "fft_sizes=64,128", "--loss-opt", "mel_n_fft=128", "--loss-opt", "n_mels=8",
    "--loss-opt", "rms_frame=64",
    "--segment-seconds", "0.25", "--val-pairs", "4", "--lr", "2e-3", "--seed", "0", "--quiet",
    "--save-every", "1", "--keep-checkpoints", "2", "--dist-timeout", "60",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
EXIT_SIGTERM = 143


def train_command(run_dir: Path, epochs: int, train_pairs: int, batch_size: int) -> list[str]:
    """``maskkit train`` for the soak run in ``run_dir``."""
    return [sys.executable, "-m", "maskkit_cli.main", "train", *TINY_ARGS, "--epochs", str(epochs),
            "--train-pairs", str(train_pairs), "--batch-size", str(batch_size),
            "--checkpoint-dir", str(run_dir)]


def step_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The ``kind == "step"`` rows of a run's ``metrics.jsonl``; a line being written while we
    poll is left out silently (:func:`maskkit.logging_utils.read_metrics` warns about it)."""
    from maskkit.logging_utils import read_metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_metrics(run_dir, "step")


def interrupted_start(cmd: list[str], run_dir: Path, rng: random.Random, max_delay: float,
                      timeout: float) -> dict[str, Any]:
    """Start ``cmd --resume auto``; SIGTERM it at a random moment after a new step row; wait."""
    before = len(step_rows(run_dir))
    proc = subprocess.Popen([*cmd, "--resume", "auto"], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline and len(step_rows(run_dir)) <= before:
        time.sleep(0.01)
    delay = rng.uniform(0.0, max_delay)
    time.sleep(delay)
    sent = proc.poll() is None
    if sent:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise RuntimeError(f"a start did not exit within {timeout:.0f} s after SIGTERM (a hang):\n"
                           f"{out[-3000:]}") from None
    return {"signal_sent": sent, "delay_s": round(delay, 3), "exit_code": proc.returncode,
            "steps_before": before, "steps_after": len(step_rows(run_dir)), "output_tail": out[-1500:]}


def finished(run_dir: Path, ref_step: int) -> bool:
    """True when ``run_dir/last.pt`` is a final (not interrupted) checkpoint at the reference's step."""
    from maskkit.checkpoint import load_checkpoint

    try:
        ck = load_checkpoint(run_dir / "last.pt", mmap=True)
    except Exception:  # noqa: BLE001 - no or unreadable checkpoint: not finished
        return False
    return not ck.get("interrupted") and ck["step"] == ref_step


def max_abs_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest element-wise difference between the model weights of two loaded checkpoints."""
    a, b = a["model"], b["model"]
    if set(a) != set(b):
        return float("inf")
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a) if a else 0.0


def soak(work: Path, *, cycles: int, epochs: int, train_pairs: int, batch_size: int, seed: int,
         max_delay: float, timeout: float) -> dict[str, Any]:
    """Run the reference and the interrupted run under ``work``; return the comparison."""
    rng = random.Random(seed)
    ref_dir, soak_dir = work / "reference", work / "soak"
    t0 = time.perf_counter()
    ref = subprocess.run(train_command(ref_dir, epochs, train_pairs, batch_size), env=ENV,
                         capture_output=True, text=True, timeout=timeout)
    if ref.returncode != 0:
        raise RuntimeError(f"the reference run failed ({ref.returncode}):\n{ref.stdout[-2000:]}"
                           f"{ref.stderr[-2000:]}")
    ref_s = time.perf_counter() - t0
    from maskkit.checkpoint import load_checkpoint

    ref_ck = load_checkpoint(ref_dir / "last.pt")
    ref_step = int(ref_ck["step"])
    cmd = train_command(soak_dir, epochs, train_pairs, batch_size)
    starts = []
    t0 = time.perf_counter()
    for i in range(cycles):
        s = interrupted_start(cmd, soak_dir, rng, max_delay, timeout)
        s["cycle"] = i + 1
        starts.append(s)
        if s["exit_code"] == 0:  # it finished before the signal: nothing left to interrupt
            break
        if s["exit_code"] == -signal.SIGTERM and finished(soak_dir, ref_step):
            # The signal came after the trainer had saved its final checkpoint and restored the
            # default handlers (on the way out of the process): nothing left to lose, and a
            # shell reports this death as 143 too. Counted apart from the clean stops.
            s["finished_then_killed"] = True
            break
        if s["exit_code"] != EXIT_SIGTERM:
            # Not a clean stop (e.g. -15: the signal came while no handler was installed). Keep
            # going: the next --resume auto and the final comparison show whether anything was lost.
            print(f"cycle {i + 1}: exit status {s['exit_code']} (expected {EXIT_SIGTERM}) after "
                  f"{s['steps_after']} step rows; output tail:\n{s['output_tail']}", file=sys.stderr)
    if starts[-1]["exit_code"] != 0 and not starts[-1].get("finished_then_killed"):
        final = subprocess.run([*cmd, "--resume", "auto"], env=ENV, capture_output=True, text=True,
                               timeout=timeout)
        if final.returncode != 0:
            raise RuntimeError(f"the final resume failed ({final.returncode}):\n{final.stdout[-2000:]}"
                               f"{final.stderr[-2000:]}")
    soak_s = time.perf_counter() - t0

    ref_rows, soak_rows = step_rows(ref_dir), step_rows(soak_dir)
    soak_ck = load_checkpoint(soak_dir / "last.pt")
    soak_step = int(soak_ck["step"])
    same_order = [(r["epoch"], r["step"]) for r in ref_rows] == [(r["epoch"], r["step"]) for r in soak_rows]
    loss_diff = max((abs(a["loss"] - b["loss"]) for a, b in zip(ref_rows, soak_rows, strict=True)),
                    default=0.0) if same_order else float("inf")
    weight_diff = max_abs_diff(ref_ck, soak_ck)
    survived = sum(1 for s in starts if s["signal_sent"] and s["exit_code"] == EXIT_SIGTERM)
    unclean = [s["cycle"] for s in starts
               if s["exit_code"] not in (0, EXIT_SIGTERM) and not s.get("finished_then_killed")]
    # a soak that interrupted nothing proved nothing: at least one cycle must have stopped a run
    ok = (soak_step == ref_step and same_order and loss_diff <= 1e-6 and weight_diff <= 1e-6
          and not unclean and survived > 0)
    return {
        "ok": ok, "cycles_requested": cycles, "cycles_survived": survived, "unclean_exits": unclean,
        "finished_then_killed": sum(1 for s in starts if s.get("finished_then_killed")),
        "reference_steps": ref_step, "soak_steps": soak_step, "steps_lost": ref_step - soak_step,
        "step_rows": [len(ref_rows), len(soak_rows)], "same_step_sequence": same_order,
        "max_step_loss_diff": loss_diff, "max_weight_abs_diff": weight_diff,
        "epochs": epochs, "train_pairs": train_pairs, "batch_size": batch_size, "seed": seed,
        "reference_wall_s": round(ref_s, 1), "soak_wall_s": round(soak_s, 1),
        "machine": " ".join(x for x in (platform.machine(), platform.processor(), f"{os.cpu_count()} cpus")
                            if x),
        "starts": [{k: v for k, v in s.items() if k != "output_tail"} for s in starts],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=10, help="SIGTERM / resume cycles (at most).")
    ap.add_argument("--epochs", type=int, default=60, help="Epochs of the run (a checkpoint after each).")
    ap.add_argument("--train-pairs", type=int, default=8, help="Synthetic training pairs per epoch.")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0, help="Seed of the random SIGTERM delays.")
    ap.add_argument("--max-delay", type=float, default=0.5,
                    help="SIGTERM comes up to this many seconds after a start's first new step row.")
    ap.add_argument("--timeout", type=float, default=300.0, help="Seconds any one start may take.")
    ap.add_argument("--json", type=Path, help="Write the result here.")
    ap.add_argument("--keep", type=Path, help="Keep the run folders under this folder.")
    args = ap.parse_args(argv)
    if args.cycles < 1 or args.epochs < 1 or args.train_pairs < args.batch_size or args.batch_size < 1:
        ap.error("need --cycles >= 1, --epochs >= 1, --batch-size >= 1 and --train-pairs >= --batch-size")

    def run(work: Path) -> dict[str, Any]:
        return soak(work, cycles=args.cycles, epochs=args.epochs, train_pairs=args.train_pairs,
                    batch_size=args.batch_size, seed=args.seed, max_delay=args.max_delay,
                    timeout=args.timeout)

    if args.keep:
        if any((args.keep / sub).exists() for sub in ("reference", "soak")):
            ap.error(f"{args.keep} already holds a soak run (reference/ or soak/); give an empty folder")
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="maskkit-soak-") as tmp:
            result = run(Path(tmp))
    for s in result["starts"]:
        what = f"SIGTERM after {s['delay_s']:.2f} s" if s["signal_sent"] else "finished before the signal"
        if s.get("finished_then_killed"):
            what += " (the run had already finished and saved; killed on its way out)"
        print(f"cycle {s['cycle']:3d}: {what}; exit {s['exit_code']}; step rows {s['steps_before']} -> "
              f"{s['steps_after']}")
    print(f"cycles survived: {result['cycles_survived']} of {result['cycles_requested']}"
          + (f"; unclean exits in cycles {result['unclean_exits']}" if result["unclean_exits"] else ""))
    print(f"steps: reference {result['reference_steps']}, soak {result['soak_steps']}, "
          f"steps lost {result['steps_lost']}")
    print(f"same (epoch, step) sequence: {result['same_step_sequence']}; max step-loss diff "
          f"{result['max_step_loss_diff']:.3g}; max weight abs diff {result['max_weight_abs_diff']:.3g}")
    mismatch = (result["unclean_exits"] or result["steps_lost"] or not result["same_step_sequence"]
                or result["max_step_loss_diff"] > 1e-6 or result["max_weight_abs_diff"] > 1e-6)
    print("OK" if result["ok"] else "MISMATCH" if mismatch else
          "NOTHING INTERRUPTED (a longer run, or more --epochs)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
