"""Mask metrics: one definition of each, used by the trainer, the bench and the tests.

All functions take masks broadcastable to ``[B, D, T]`` (a ``[1, 1, T]`` time-only mask
counts as the same value for every batch item and channel). The tensor functions are
differentiable and serve as regularization terms; :func:`mask_metrics` returns floats.

==========================  ====================================================
complementarity (%)         ``(1 - mean(input_mask * target_mask)) * 100`` (the seed's)
overlap                     ``mean(input_mask * target_mask)``
coverage                    ``mean(input_mask + target_mask)``
coverage error              ``mean((input_mask + target_mask - 1) ** 2)``
balance                     ``mean(input_mask) / (mean(input_mask) + mean(target_mask))``
temporal diversity          mean over batch and channels of the variance over T,
                            averaged over both masks
adaptivity                  mean absolute deviation of the masks across the batch,
                            averaged over both masks (0 for content-blind rules)
==========================  ====================================================
"""

from __future__ import annotations

import torch
from torch import Tensor


def overlap(input_mask: Tensor, target_mask: Tensor) -> Tensor:
    """``mean(input_mask * target_mask)``: 0 when the masks never keep the same cell."""
    return (input_mask * target_mask).mean()


def complementarity(input_mask: Tensor, target_mask: Tensor) -> Tensor:
    """``(1 - overlap) * 100``, in percent (the seed's definition)."""
    return (1.0 - overlap(input_mask, target_mask)) * 100.0


def coverage(input_mask: Tensor, target_mask: Tensor) -> Tensor:
    """``mean(input_mask + target_mask)``: 1 when together the masks keep everything once."""
    return input_mask.mean() + target_mask.mean()


def coverage_error(input_mask: Tensor, target_mask: Tensor) -> Tensor:
    """``mean((input_mask + target_mask - 1) ** 2)``."""
    return ((input_mask + target_mask - 1.0) ** 2).mean()


def balance(input_mask: Tensor, target_mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Share of the input: ``mean(input_mask) / (mean(input_mask) + mean(target_mask))``."""
    mi, mt = input_mask.mean(), target_mask.mean()
    return mi / (mi + mt + eps)


def temporal_variance(mask: Tensor) -> Tensor:
    """Variance over T (population), averaged over batch and channels."""
    return mask.float().var(dim=-1, unbiased=False).mean() if mask.shape[-1] > 1 else mask.new_zeros(())


def temporal_diversity(input_mask: Tensor, target_mask: Tensor) -> Tensor:
    """Mean of :func:`temporal_variance` of both masks."""
    return 0.5 * (temporal_variance(input_mask) + temporal_variance(target_mask))


def _batch_spread(mask: Tensor) -> Tensor:
    if mask.shape[0] < 2:
        return mask.new_zeros(())
    m = mask.float()
    return (m - m.mean(dim=0, keepdim=True)).abs().mean()


def adaptivity(input_mask: Tensor, target_mask: Tensor) -> Tensor:
    """How much the masks differ between the pairs of a batch (0 for content-blind rules)."""
    return 0.5 * (_batch_spread(input_mask) + _batch_spread(target_mask))


METRICS = {
    "complementarity": complementarity,
    "coverage": coverage,
    "coverage_error": coverage_error,
    "balance": balance,
    "temporal_diversity": temporal_diversity,
    "adaptivity": adaptivity,
}


@torch.no_grad()
def mask_metrics(input_mask: Tensor, target_mask: Tensor) -> dict[str, float]:
    """Every metric of :data:`METRICS` as a float."""
    im, tm = input_mask.detach().float(), target_mask.detach().float()
    return {k: float(f(im, tm)) for k, f in METRICS.items()}
