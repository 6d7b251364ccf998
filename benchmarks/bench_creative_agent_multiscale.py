"""Cost of the creative-agent's multi-scale attention (``scales``), side by side with the default.

Both generators are built in one process with the same weights (the default's copied into
the multi-scale one, which only adds the mixing logits); the timings interleave (default,
multi-scale, default, ...) so that machine noise hits both alike. Reported: median ms per
call and the ratio multi-scale / default for

- ``train``: forward + backward in training mode (dropout on), loss = sum of both masks + reg_loss;
- ``eval``: forward in eval mode under ``torch.no_grad()``.

::

    python benchmarks/bench_creative_agent_multiscale.py                  # B=4, D=128, T=376, 1,8,32
    python benchmarks/bench_creative_agent_multiscale.py --scales 1,4,16 --frames 752

This is a benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import time_pair  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--frames", type=int, default=376, help="T (376 = 4 s at ~94 frames/s)")
    ap.add_argument("--scales", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from maskkit_creative_agent import AttentionMaskGenerator

    scales = tuple(int(s) for s in args.scales.split(","))
    torch.manual_seed(0)
    base = AttentionMaskGenerator(args.dim)
    multi = AttentionMaskGenerator(args.dim, scales=scales)
    missing, unexpected = multi.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["scale_logits"] and not unexpected
    g = torch.Generator().manual_seed(1)
    shape = (args.batch_size, args.dim, args.frames)
    xi, xt = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    n_base = sum(p.numel() for p in base.parameters())
    n_multi = sum(p.numel() for p in multi.parameters())
    print(f"B={args.batch_size} D={args.dim} T={args.frames} scales={scales}, {torch.get_num_threads()} "
          f"threads; parameters {n_base:,} (default) vs {n_multi:,} (multi-scale)")

    def train_step(model: AttentionMaskGenerator):
        def step() -> None:
            a, b, reg = model(xi, xt)
            (a.sum() + b.sum() + reg).backward()
            for p in model.parameters():
                p.grad = None
        return step

    def eval_step(model: AttentionMaskGenerator):
        def step() -> None:
            with torch.no_grad():
                model(xi, xt)
        return step

    for mode, make in (("train", train_step), ("eval", eval_step)):
        base.train(mode == "train")
        multi.train(mode == "train")
        a, b = time_pair(make(base), make(multi), repeats=args.repeats)
        print(f"{mode:5s}  default {a['median_s'] * 1e3:8.1f} ms   multi-scale {b['median_s'] * 1e3:8.1f} ms"
              f"   ratio {b['median_s'] / a['median_s']:.2f}x")


if __name__ == "__main__":
    main()
