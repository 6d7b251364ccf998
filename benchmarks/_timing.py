"""The benchmark scripts' timing: thin adapters over :mod:`maskkit.bench`'s timers (warm-up,
device sync, interleaved pairs), returning seconds as the scripts print them."""

from __future__ import annotations

from collections.abc import Callable

import torch

from maskkit.bench import Timing, time_calls, time_interleaved


def _seconds(t: Timing, inner: int = 1) -> dict[str, float]:
    return {"median_s": t.median_ms / 1e3 / inner, "min_s": t.min_ms / 1e3 / inner,
            "max_s": t.max_ms / 1e3 / inner}


def time_fn(fn: Callable[[], object], device: torch.device | str = "cpu", *, warmup: int = 3,
            repeats: int = 20, inner: int = 1) -> dict[str, float]:
    """Median / min / max seconds per call of ``fn`` (``inner`` calls per timed sample)."""
    def many() -> None:
        for _ in range(inner):
            fn()

    return _seconds(time_calls(many, torch.device(device), warmup, repeats), inner)


def time_pair(fn_a: Callable[[], object], fn_b: Callable[[], object], device: torch.device | str = "cpu", *,
              warmup: int = 3, repeats: int = 30) -> tuple[dict[str, float], dict[str, float]]:
    """Time two functions side by side (alternating calls) so that load changes on a shared
    machine hit both alike; returns the :func:`time_fn`-style dict of each."""
    a, b = time_interleaved(fn_a, fn_b, torch.device(device), warmup, repeats)
    return _seconds(a), _seconds(b)
