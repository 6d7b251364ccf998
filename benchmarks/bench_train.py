"""Training throughput (pairs per second) of the default arrangement model.

    python benchmarks/bench_train.py                                  # CPU, small preset, creative-agent
    python benchmarks/bench_train.py --device cuda --bf16             # GPU: fp32 and bf16 side by side
    python benchmarks/bench_train.py --device cuda --bf16 --preset base --batch-size 32

Two figures, both through the trainer's own code (``maskkit.train.Trainer``):

- step: the full optimizer step on one batch already on the device (codec encode, model
  forward and backward, decode, combined loss, gradient clipping, AdamW, the per-step
  all-reduce of metrics) -- what the model costs. On CUDA with ``--bf16`` it is measured with
  and without bf16 autocast in the same process, and the ratio is reported.
- end-to-end: ``maskkit.train.train`` for ``--e2e-steps`` steps, data loading (synthetic music
  rendered on the fly) included -- what a user sees in the progress bar. ``--e2e-steps 0``
  skips it.

Prints a table and, with ``--json PATH``, writes every figure with the device's name.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import time_fn  # noqa: E402

from maskkit.distributed import LaunchInfo  # noqa: E402
from maskkit.logging_utils import read_metrics  # noqa: E402
from maskkit.train import TrainConfig, Trainer, train  # noqa: E402


def _config(a: argparse.Namespace, run_dir: str, bf16: bool, **over: Any) -> TrainConfig:
    opts: dict[str, Any] = {"strategy": a.strategy, "device": a.device, "bf16": bf16, "compile": a.compile,
                            "checkpoint_dir": run_dir, "quiet": True, "seed": 0}
    if a.batch_size:
        opts["batch_size"] = a.batch_size
    if a.num_workers is not None:
        opts["data"] = {"num_workers": a.num_workers}
    opts.update(over)
    return TrainConfig.from_preset(a.preset, **opts)


def step_throughput(a: argparse.Namespace, bf16: bool) -> dict[str, Any]:
    """Pairs/s of ``Trainer.train_step`` on one batch that is already on the device."""
    device = torch.device(a.device)
    with tempfile.TemporaryDirectory() as d:
        cfg = _config(a, d, bf16)
        trainer = Trainer(cfg, LaunchInfo("single"), device)
        trainer.setup()
        x_in, x_tg = next(iter(trainer.loader))
        x_in, x_tg = x_in.to(device), x_tg.to(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t = time_fn(lambda: trainer.train_step(x_in, x_tg), device, warmup=a.warmup, repeats=a.repeats)
        out = {"bf16": bf16, "batch_size": cfg.batch_size, "segment_seconds": cfg.data.segment_seconds,
               "median_step_s": t["median_s"], "min_step_s": t["min_s"],
               "pairs_per_s": cfg.batch_size / t["median_s"],
               "params": trainer.model.num_parameters(),
               "strategy_params": sum(p.numel() for p in trainer.model.strategy.parameters()),
               "frames": trainer.codec.num_frames(x_in.shape[-1]), "dim": trainer.spec.dim}
        if device.type == "cuda":
            out["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        if trainer.logger is not None:
            trainer.logger.close()
        return out


def end_to_end(a: argparse.Namespace, bf16: bool) -> dict[str, Any]:
    """Pairs/s that ``train`` reports per step (data loading included), median after warm-up."""
    with tempfile.TemporaryDirectory() as d:
        data: dict[str, Any] = {"val_pairs": 1}
        if a.num_workers is not None:
            data["num_workers"] = a.num_workers
        cfg = _config(a, d, bf16, max_steps=a.warmup + a.e2e_steps, data=data)
        r = train(cfg)
        rows = [x for x in read_metrics(d, "step") if x["step"] > a.warmup]
        pps = [float(x["pairs_per_s"]) for x in rows]
        return {"bf16": bf16, "steps": len(pps), "pairs_per_s": statistics.median(pps) if pps else None,
                "mean_pairs_per_s": r.train_pairs_per_s, "num_workers": cfg.data.num_workers}


def device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="also measure with bf16 autocast (CUDA)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--preset", default="small", choices=["small", "base", "large"])
    p.add_argument("--strategy", default="creative-agent")
    p.add_argument("--batch-size", type=int, default=None, help="per step (default: the preset's)")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers for end-to-end")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--e2e-steps", type=int, default=10)
    p.add_argument("--json", type=Path)
    a = p.parse_args()

    modes = [False, True] if a.bf16 else [False]
    result: dict[str, Any] = {"device": a.device, "device_name": device_name(a.device),
                              "torch": torch.__version__, "preset": a.preset, "strategy": a.strategy,
                              "compile": a.compile,
                              "step": [step_throughput(a, m) for m in modes]}
    if a.e2e_steps > 0:
        result["end_to_end"] = [end_to_end(a, m) for m in modes]
    if a.bf16:
        fp32, bf16 = result["step"]
        result["bf16_speedup"] = bf16["pairs_per_s"] / fp32["pairs_per_s"]

    s0 = result["step"][0]
    print(f"{result['device_name']} | torch {result['torch']} | preset {a.preset} | strategy {a.strategy} | "
          f"batch {s0['batch_size']} x {s0['segment_seconds']:g} s (D={s0['dim']}, T={s0['frames']}) | "
          f"{s0['params']:,} parameters ({s0['strategy_params']:,} in the strategy)")
    for s in result["step"]:
        mem = f", peak {s['peak_memory_mib']:.0f} MiB" if "peak_memory_mib" in s else ""
        print(f"  step       {'bf16' if s['bf16'] else 'fp32'}: {s['pairs_per_s']:8.1f} pairs/s "
              f"({s['median_step_s'] * 1000:.1f} ms per step{mem})")
    for e in result.get("end_to_end", []):
        pps = e["pairs_per_s"] or float("nan")
        print(f"  end-to-end {'bf16' if e['bf16'] else 'fp32'}: {pps:8.1f} pairs/s "
              f"(data loading included, {e['num_workers']} workers)")
    if "bf16_speedup" in result:
        print(f"  bf16 / fp32 step throughput: {result['bf16_speedup']:.2f}x")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
