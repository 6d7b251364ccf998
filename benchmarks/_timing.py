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


def time_pair(fn_a: Callable[[], object], fn_b: Callable[[], object], device: torch.device | str = "cpu", *,
              warmup: int = 3, repeats: int = 30) -> tuple[dict[str, float], dict[str, float]]:
    """Time two functions with interleaved samples (a, b, a, b, ...), so that load changes on a
    shared machine hit both alike; returns the :func:`time_fn`-style dict of each."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    sync(device)
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((fn_a, samples[0]), (fn_b, samples[1])):
            t0 = time.perf_counter()
            fn()
            sync(device)
            out.append(time.perf_counter() - t0)
    return tuple({"median_s": statistics.median(s), "min_s": min(s), "max_s": max(s)}  # type: ignore[return-value]
                 for s in samples)
