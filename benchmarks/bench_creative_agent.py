"""Speed of the CreativeAgent's mask generator against the seed's naive design, side by side.

Both models are built in one process with the same weights (the reference's copied into
ours; the parameter counts are equal, 1,083,904 at the defaults), their eval-mode outputs
are checked to agree, and then each repeat times the reference and ours back to back, so
that machine noise hits both alike. Reported: pairs per second (median over repeats) and
the ratio ours / reference (median of the per-repeat ratios).

- ``train``: forward + backward in training mode (dropout on), loss = sum of both masks +
  reg_loss; no optimizer step (the same for both).
- ``eval``: forward in eval mode under ``torch.no_grad()``.

CPU (the acceptance setting)::

    python benchmarks/bench_creative_agent.py                      # B=16, D=128, T=300
    python benchmarks/bench_creative_agent.py --json out.json

GPU (ours under bf16 autocast, and in fp32; the reference in fp32)::

    python benchmarks/bench_creative_agent.py --device cuda --dtype bf16 --batch-size 64,256

By default the script leaves OpenMP's spin-waiting on, as ``maskkit train`` runs. On a shared
machine spin-waiting makes CPU timings erratic as soon as other processes compete for the
cores (a descheduled thread stalls every parallel region of the other, which penalizes
whichever model runs more, smaller operators); there ``--omp-wait-policy passive`` sets
``OMP_WAIT_POLICY=PASSIVE`` before torch starts, for both models alike. On an idle machine
passive waiting costs our training step more than the reference's (measured: 1.06x instead
of 1.57x at 2 threads), so it is not the default. The script prints which was used.

This is a benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _omp_wait_policy(argv: list[str]) -> None:
    """Set OMP_WAIT_POLICY before torch (and its OpenMP runtime) is imported."""
    choice = "active"
    for i, a in enumerate(argv):
        if a == "--omp-wait-policy" and i + 1 < len(argv):
            choice = argv[i + 1]
        elif a.startswith("--omp-wait-policy="):
            choice = a.split("=", 1)[1]
    if choice == "passive":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


_omp_wait_policy(sys.argv[1:])

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))  # run from a checkout, too

from maskkit_creative_agent.agent import AttentionMaskGenerator, count_parameters  # noqa: E402

from maskkit.reference import RefMaskGenerator  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, train: bool,
          autocast: torch.dtype | None, graphs: bool = False) -> Callable[[], None]:
    dev = x.device
    ctx: Callable[[], Any] = contextlib.nullcontext
    if autocast is not None:
        ctx = lambda: torch.autocast(dev.type, dtype=autocast)  # noqa: E731

    def begin() -> None:
        if graphs:  # CUDA graphs (compile modes reduce-overhead, max-autotune): one replay per step
            torch.compiler.cudagraph_mark_step_begin()

    if train:
        def run() -> None:
            begin()
            model.zero_grad(set_to_none=True)
            with ctx():
                a, b, r = model(x, y)
                loss = a.float().sum() + b.float().sum() + r.float()
            loss.backward()
    else:
        def run() -> None:
            begin()
            with torch.no_grad(), ctx():
                model(x, y)
    return run


def _time(fn: Callable[[], None], iters: int, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / iters


def _profile(fn: Callable[[], None], steps: int, device: torch.device, title: str, rows: int = 25) -> str:
    """A ``torch.profiler`` table of ``steps`` calls of ``fn``: the kernels (GPU) or operators (CPU)
    that take the time, heaviest first."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    _sync(device)
    with profile(activities=acts) as prof:
        for _ in range(steps):
            fn()
        _sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=70)
    return f"## {title} ({steps} steps, sorted by {key})\n{table}\n"


def bench(batch: int, dim: int, frames: int, device: torch.device, dtype: str, repeats: int, iters: int,
          warmup: int, modes: list[str], compile_ours: bool, compile_mode: str = "default",
          profile_to: list[str] | None = None) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    ref = RefMaskGenerator(dim).to(device)
    ours = AttentionMaskGenerator(dim).to(device)
    ours.load_reference_state_dict(ref.state_dict())
    n_ref, n_ours = count_parameters(ref), count_parameters(ours)
    assert n_ref == n_ours, (n_ref, n_ours)
    x = torch.randn(batch, dim, frames, device=device)
    y = torch.randn(batch, dim, frames, device=device)
    ref.eval()
    ours.eval()
    with torch.no_grad():
        a, b, _ = ref(x, y)
        c, d, _ = ours(x, y)
    max_diff = max(float((a - c).abs().max()), float((b - d).abs().max()))

    variants: dict[str, tuple[torch.nn.Module, torch.dtype | None]] = {"reference fp32": (ref, None)}
    graphs = compile_mode in ("reduce-overhead", "max-autotune") and device.type == "cuda"  # CUDA graphs
    if dtype == "bf16":
        variants["ours bf16-autocast"] = (ours, torch.bfloat16)
    if dtype == "fp32" or device.type == "cuda":
        variants["ours fp32"] = (ours, None)
    ac = torch.bfloat16 if dtype == "bf16" else None
    cmode = None if compile_mode == "default" else compile_mode  # torch.compile's mode
    if compile_ours:
        label = f"ours compiled {dtype}" + ("" if cmode is None else f" {compile_mode}")
        variants[label] = (torch.compile(ours, mode=cmode), ac)

    rows = []
    for mode in modes:
        train = mode == "train"
        for m in (ref, ours):
            m.train(train)
        fns = {k: _step(m, x, y, train, ac, graphs and "compiled" in k) for k, (m, ac) in variants.items()}
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                times[k].append(_time(fn, iters, device))
        if profile_to is not None:
            profile_to += [_profile(fn, iters, device, f"{mode} B={batch} {k}") for k, fn in fns.items()]
        ref_t = times["reference fp32"]
        for k, ts in times.items():
            pps = [batch / t for t in ts]
            ratios = [r / t for r, t in zip(ref_t, ts, strict=True)]
            rows.append({"mode": mode, "variant": k, "batch": batch, "dim": dim, "frames": frames,
                         "pairs_per_s": statistics.median(pps), "ms_per_step": 1e3 * statistics.median(ts),
                         "ratio_vs_reference": statistics.median(ratios), "ratio_min": min(ratios),
                         "ratio_max": max(ratios), "best_pairs_per_s": batch / min(ts),
                         "ratio_of_best": min(ref_t) / min(ts), "parameters": n_ours,
                         "max_abs_diff_eval": max_diff})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                    help="ours under bf16 autocast (GPU), or fp32; the reference is always fp32")
    ap.add_argument("--batch-size", default="16", help="one or more, comma-separated (e.g. 64,256)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--iters", type=int, default=2, help="steps per timed repeat")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--modes", default="train,eval")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(ours)")
    ap.add_argument("--compile-mode", default="default",
                    choices=["default", "reduce-overhead", "max-autotune"],
                    help="torch.compile mode; reduce-overhead = CUDA graphs on a GPU (one replay per step: "
                         "for the launch-bound small batches)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--profile", type=Path, default=None,
                    help="after timing, profile --iters steps of every variant and write the tables of the "
                         "heaviest kernels (GPU) or operators (CPU) to this text file")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="torch.backends.cudnn.benchmark = True (cuDNN picks its fastest convolution "
                         "algorithms; applies to the reference and ours alike)")
    ap.add_argument("--omp-wait-policy", choices=["passive", "active"], default="active",
                    help="active (default): OpenMP's spin-waiting, as maskkit train runs; passive: set "
                         "OMP_WAIT_POLICY=PASSIVE unless already set (steadier on a loaded machine)")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    device = torch.device(args.device)
    hw = (torch.cuda.get_device_name(device) if device.type == "cuda"
          else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"CreativeAgent mask generator vs reference on {device} ({hw}), torch {torch.__version__}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    rows: list[dict[str, Any]] = []
    tables: list[str] | None = [] if args.profile else None
    for b in (int(s) for s in args.batch_size.split(",")):
        rows += bench(b, args.dim, args.frames, device, args.dtype, args.repeats, args.iters, args.warmup,
                      [m.strip() for m in args.modes.split(",") if m.strip()], args.compile,
                      args.compile_mode, tables)
    print(f"parameters: {rows[0]['parameters']:,} each; eval outputs agree to "
          f"{max(r['max_abs_diff_eval'] for r in rows):.2e}")
    print("pairs/s and ms/step: medians over repeats; x ref: median of the per-repeat ratios (and their "
          "range); best: the fastest repeat of each, and the ratio of those")
    print(f"{'mode':6s} {'B':>4s} {'variant':22s} {'pairs/s':>10s} {'ms/step':>9s} {'x ref':>7s} "
          f"{'(min-max)':>13s} {'best p/s':>9s} {'x ref':>6s}")
    for r in rows:
        print(f"{r['mode']:6s} {r['batch']:4d} {r['variant']:22s} {r['pairs_per_s']:10.1f} "
              f"{r['ms_per_step']:9.2f} {r['ratio_vs_reference']:7.2f} "
              f"({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) {r['best_pairs_per_s']:9.1f} "
              f"{r['ratio_of_best']:6.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": str(device), "hardware": hw, "torch": torch.__version__,
                                         "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                                         "args": {k: str(v) for k, v in vars(args).items()},
                                         "cudnn_benchmark": args.cudnn_benchmark,
                                         "results": rows}, indent=2) + "\n")
    if args.profile and tables is not None:
        args.profile.parent.mkdir(parents=True, exist_ok=True)
        args.profile.write_text(f"# {hw}, torch {torch.__version__}\n\n" + "".join(tables))
        print(f"profiles: {args.profile}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
