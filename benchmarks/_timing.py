"""Small timing helpers shared by the benchmark scripts: warm-up, repeats, median, sync on CUDA."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], object], device: torch.device | str = "cpu", *, warmup: int = 3,
            repeats: int = 20, inner: int = 1) -> dict[str, float]:
    """Median / min / max seconds per call of ``fn`` (``inner`` calls per timed sample)."""
    for _ in range(warmup):
        fn()
    sync(device)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        samples.append((time.perf_counter() - t0) / inner)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples)}
