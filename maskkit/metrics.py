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
energy kept                 of one song's encoding ``x`` and its mask: ``sum(mask * x^2) /
                            sum(x^2)``, the share of its energy the mask keeps (a mask that
                            keeps many quiet channels has a large mean, a small energy kept)
temporal diversity          mean over batch and channels of the variance over T,
                            averaged over both masks
adaptivity                  mean absolute deviation of the masks across the batch,
                            averaged over both masks (0 for content-blind rules)
log-spectral distance (dB)  audio: per STFT resolution (n_fft 512, 1024, 2048, hop
                            n_fft/4, Hann) ``mean_t sqrt(mean_f (10 log10(|A|^2+eps)
                            - 10 log10(|B|^2+eps))^2)``, averaged over resolutions;
                            0 for identical signals, lower = more alike
SI-SDR (dB)                 audio: both made zero-mean, ``s = <e, r> r / ||r||^2``,
                            ``10 log10(||s||^2 / ||e - s||^2)``; scale-invariant,
                            higher = more alike
source similarity           audio: LSD and SI-SDR of the output against the input and
                            against the target ("how much of each song reaches it")
==========================  ====================================================
"""

from __future__ import annotations

from typing import Any

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
    if mask.shape[-1] < 2:
        return mask.new_zeros(())
    m = mask.float()
    # the same value as var(dim=-1, unbiased=False).mean(), about twice as fast on the CPU
    return (m - m.mean(dim=-1, keepdim=True)).pow(2).mean()


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


#: Metrics of the spread between the pairs of a batch: 0 for a batch of one pair, so an average
#: over batches counts only batches of two or more.
BATCH_METRICS = frozenset({"adaptivity"})

METRICS = {
    "complementarity": complementarity,
    "coverage": coverage,
    "coverage_error": coverage_error,
    "balance": balance,
    "temporal_diversity": temporal_diversity,
    "adaptivity": adaptivity,
}


def energy_sums(encoding: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum(mask * x^2), sum(x^2))`` over the shape ``encoding`` and ``mask`` broadcast to:
    the parts of :func:`energy_kept`, to add up over batches."""
    e = encoding.detach().float().pow(2)
    kept = mask.detach().float() * e
    return kept.sum(), e.expand_as(kept).sum()


def energy_kept(encoding: Tensor, mask: Tensor) -> Tensor:
    """``sum(mask * x^2) / sum(x^2)`` of a song's encoding ``x`` ``[B, D, T]`` and its mask
    (broadcastable): the share of its energy that the mask keeps (0 to 1 for masks in [0, 1];
    0 for a silent encoding)."""
    return kept_share(*energy_sums(encoding, mask))


def kept_share(kept: Tensor, total: Tensor) -> Tensor:
    """``kept / total`` of :func:`energy_sums` (summed over batches, perhaps); 0 where total is 0."""
    return torch.where(total > 0, kept / torch.where(total > 0, total, 1.0), 0.0)


#: The energy-kept metrics of a pair (:func:`energy_metrics`), after :data:`METRICS` in reports.
ENERGY_METRICS = ("input_energy_kept", "target_energy_kept")


def energy_metrics(x_input: Tensor, x_target: Tensor, input_mask: Tensor, target_mask: Tensor
                   ) -> dict[str, float]:
    """:func:`energy_kept` of both songs of a pair as floats, named as in :data:`ENERGY_METRICS`."""
    return dict(zip(ENERGY_METRICS, (float(energy_kept(x_input, input_mask)),
                                     float(energy_kept(x_target, target_mask))), strict=True))


@torch.no_grad()
def mask_metrics(input_mask: Any, target_mask: Tensor | None = None) -> dict[str, float]:
    """Every metric of :data:`METRICS` as a float, of two masks (broadcastable to one shape) or
    of the :class:`maskkit.Masks` a strategy returned (``mask_metrics(masks)``)."""
    if target_mask is None and hasattr(input_mask, "input_mask") and hasattr(input_mask, "target_mask"):
        input_mask, target_mask = input_mask.input_mask, input_mask.target_mask
    if not isinstance(input_mask, Tensor) or not isinstance(target_mask, Tensor):
        raise TypeError(f"mask_metrics takes two mask tensors or a maskkit.Masks, got "
                        f"{type(input_mask).__name__} and {type(target_mask).__name__}")
    im, tm = input_mask.detach().float(), target_mask.detach().float()
    try:
        torch.broadcast_shapes(im.shape, tm.shape)
    except RuntimeError:
        raise ValueError(f"mask_metrics: the masks' shapes {tuple(im.shape)} and {tuple(tm.shape)} do not "
                         f"broadcast to one") from None
    return {k: float(f(im, tm)) for k, f in METRICS.items()}


# -- audio similarity (formulas in the module docstring) ---------------------------------

LSD_FFT_SIZES: tuple[int, ...] = (512, 1024, 2048)


def _as_batch_audio(x: Tensor, name: str) -> Tensor:
    """``[N]``, ``[B, N]`` or ``[B, 1, N]`` -> ``[B, N]`` float32."""
    if x.dim() == 1:
        x = x.unsqueeze(0)
    elif x.dim() == 3:
        if x.shape[1] != 1:
            raise ValueError(f"{name}: expected mono audio [B, 1, N], got shape {tuple(x.shape)}")
        x = x[:, 0]
    elif x.dim() != 2:
        raise ValueError(f"{name}: expected audio of shape [N], [B, N] or [B, 1, N], got {tuple(x.shape)}")
    return x.float()


def stft_magnitude(audio: Tensor, n_fft: int, hop: int, window: Tensor | None = None,
                   eps: float = 1e-7) -> Tensor:
    """``|STFT|`` of ``[B, N]`` audio, ``[B, n_fft // 2 + 1, frames]`` (Hann, ``center=True``).

    The magnitude is ``sqrt(max(re^2 + im^2, eps))``: differentiable everywhere, silent input
    included (``abs`` of a complex zero has no useful gradient).
    """
    if window is None:
        window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    if audio.shape[-1] <= n_fft // 2:  # reflect padding needs more samples than the pad
        audio = torch.nn.functional.pad(audio, (0, n_fft // 2 + 1 - audio.shape[-1]))
    spec = torch.stft(audio, n_fft, hop_length=hop, win_length=window.shape[0], window=window,
                      center=True, return_complex=True)
    return (spec.real.square() + spec.imag.square()).clamp_min(eps).sqrt()


def log_spectral_distance(a: Tensor, b: Tensor, fft_sizes: tuple[int, ...] = LSD_FFT_SIZES,
                          eps: float = 1e-8, reduction: str = "mean") -> Tensor:
    """Multi-resolution log-spectral distance in dB between two audio signals (see the table).

    ``a``, ``b``: ``[N]``, ``[B, N]`` or ``[B, 1, N]`` of the same shape. Returns a scalar
    (``reduction="mean"``) or one value per batch item (``"none"``).
    """
    a, b = _as_batch_audio(a, "log_spectral_distance(a)"), _as_batch_audio(b, "log_spectral_distance(b)")
    if a.shape != b.shape:
        raise ValueError(f"log_spectral_distance: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    total = a.new_zeros(a.shape[0])
    for n_fft in fft_sizes:
        pa = stft_magnitude(a, n_fft, n_fft // 4, eps=eps).square()
        pb = stft_magnitude(b, n_fft, n_fft // 4, eps=eps).square()
        diff = 10.0 * (torch.log10(pa + eps) - torch.log10(pb + eps))  # [B, F, frames]
        total = total + diff.square().mean(dim=1).sqrt().mean(dim=-1)
    out = total / len(fft_sizes)
    return _reduce(out, reduction)


def si_sdr(estimate: Tensor, reference: Tensor, eps: float = 1e-8, reduction: str = "mean") -> Tensor:
    """Scale-invariant signal-to-distortion ratio in dB (see the table); higher = more alike.

    ``estimate``, ``reference``: ``[N]``, ``[B, N]`` or ``[B, 1, N]``. Computed (in float64)
    as ``10 log10((rho^2 + eps) / (1 - rho^2 + eps))`` with ``rho`` the correlation of the
    zero-mean signals, which equals the table's projection formula and is exactly invariant
    to the scale of either signal. Bounded by ``eps``: about +80 dB for identical signals and
    -80 dB against silence with the default.
    """
    e, r = _as_batch_audio(estimate, "si_sdr(estimate)"), _as_batch_audio(reference, "si_sdr(reference)")
    if e.shape != r.shape:
        raise ValueError(f"si_sdr: shapes differ, {tuple(e.shape)} vs {tuple(r.shape)}")
    e, r = e.double(), r.double()
    e = e - e.mean(dim=-1, keepdim=True)
    r = r - r.mean(dim=-1, keepdim=True)
    dot = (e * r).sum(dim=-1)
    energy = e.square().sum(dim=-1) * r.square().sum(dim=-1)
    rho2 = (dot.square() / energy.clamp_min(1e-300)).clamp(0.0, 1.0)
    out = 10.0 * torch.log10((rho2 + eps) / (1.0 - rho2 + eps))
    return _reduce(out.to(torch.float32), reduction)


def _reduce(x: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


@torch.no_grad()
def source_similarity(output: Tensor, input_audio: Tensor, target_audio: Tensor) -> dict[str, float]:
    """How much of each song reaches the output: LSD (dB, lower = closer) and SI-SDR (dB,
    higher = closer) of ``output`` against ``input_audio`` and against ``target_audio``.

    Keys: ``lsd_input``, ``lsd_target``, ``si_sdr_input``, ``si_sdr_target``. Pass each
    masked source decoded alone as the reference to measure what survives of the mask.
    """
    return {
        "lsd_input": float(log_spectral_distance(output, input_audio)),
        "lsd_target": float(log_spectral_distance(output, target_audio)),
        "si_sdr_input": float(si_sdr(output, input_audio)),
        "si_sdr_target": float(si_sdr(output, target_audio)),
    }
