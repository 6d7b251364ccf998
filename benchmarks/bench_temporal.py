"""The vectorized temporal mask against the seed's frame loop, side by side in one process.

    python benchmarks/bench_temporal.py                      # CPU, B=16, D=128, T=1500
    python benchmarks/bench_temporal.py --device cuda --batch-size 64

Reports (ratios, not absolute times, are the claim; see docs/performance.md):
- build: building the [1, 1, T] masks, ours vs ``ref_temporal_mask`` on a [1, 1, T] slice;
- identical: max |ours - reference| for the same segment and fade;
- pair vs floor: building + applying the masks to a [B, D, T] pair, over applying already-built masks
  (the memory-bound floor);
- pair vs reference: our masked pair vs ``ref_temporal_mask`` on the full [B, D, T] pair.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import time_fn, time_pair  # noqa: E402
from maskkit_fixed.strategies import temporal_mask  # noqa: E402

from maskkit.plugins import build_strategy  # noqa: E402
from maskkit.reference import ref_temporal_mask  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--frames", type=int, default=1500)
    p.add_argument("--segment", type=int, default=150)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    dev = torch.device(a.device)
    B, D, T = a.batch_size, a.dim, a.frames
    x = torch.randn(B, D, T, device=dev)
    y = torch.randn(B, D, T, device=dev)
    strat = build_strategy("temporal", {"segment": a.segment}).to(dev)
    slice_ = x[:1, :1]

    ours = strat(x, y)
    ref_in, ref_tg = ref_temporal_mask(torch.ones(1, 1, T, device=dev), torch.ones(1, 1, T, device=dev),
                                       a.segment)
    max_diff = max(float((ours.input_mask - ref_in).abs().max()),
                   float((ours.target_mask - ref_tg).abs().max()))

    fade = strat.config.fade_frames
    # building: the mask function itself (the strategy caches its masks per T, device and dtype)
    t_build = time_fn(lambda: temporal_mask(T, a.segment, fade, dev, x.dtype), dev, repeats=a.repeats,
                      inner=10)
    t_ref_build = time_fn(lambda: ref_temporal_mask(slice_, slice_, a.segment), dev, repeats=a.repeats)
    im, tm = ours.input_mask, ours.target_mask
    t_floor, t_pair = time_pair(lambda: (x * im, y * tm), lambda: strat(x, y).apply(x, y), dev,
                                repeats=a.repeats)
    t_ref_pair = time_fn(lambda: ref_temporal_mask(x, y, a.segment), dev, repeats=a.repeats)

    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    res = {
        "device": dev_name, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "shape": [B, D, T], "segment": a.segment,
        "max_abs_diff_vs_reference": max_diff,
        "build_ms": t_build["median_s"] * 1e3, "ref_build_ms": t_ref_build["median_s"] * 1e3,
        "build_speedup": t_ref_build["median_s"] / t_build["median_s"],
        "apply_floor_ms": t_floor["median_s"] * 1e3, "pair_ms": t_pair["median_s"] * 1e3,
        "pair_over_floor": t_pair["median_s"] / t_floor["median_s"],
        "ref_pair_ms": t_ref_pair["median_s"] * 1e3,
        "pair_speedup_vs_reference": t_ref_pair["median_s"] / t_pair["median_s"],
    }
    print(f"temporal mask on {dev_name}, [B, D, T] = [{B}, {D}, {T}], segment {a.segment}")
    print(f"  identical to the seed's loop: max |diff| = {max_diff:.2e}")
    print(f"  build masks:  ours {res['build_ms']:.3f} ms   seed loop {res['ref_build_ms']:.3f} ms"
          f"   -> {res['build_speedup']:.1f}x faster")
    print(f"  masked pair:  build+apply {res['pair_ms']:.3f} ms   apply-only floor "
          f"{res['apply_floor_ms']:.3f} ms   -> {res['pair_over_floor']:.3f}x the floor")
    print(f"  masked pair vs seed on the full pair: {res['ref_pair_ms']:.3f} ms -> "
          f"{res['pair_speedup_vs_reference']:.1f}x faster")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
