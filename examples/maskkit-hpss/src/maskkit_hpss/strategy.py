"""Harmonic/percussive separation (HPSS) as a mask strategy: drums of one song, harmony of the other.

Median filtering after Fitzgerald (2010), "Harmonic/percussive separation using median
filtering": on a magnitude spectrogram, sustained (harmonic) sound forms horizontal lines
and transients (percussive) sound vertical ones. A median over *time* keeps the horizontal
lines (the harmonic estimate H), a median over *frequency* the vertical ones (the
percussive estimate P). Soft masks follow as ``P^p / (P^p + (margin*H)^p)`` and
``H^p / (H^p + (margin*P)^p)``.

The strategy keeps the **percussive part of the input** and the **harmonic part of the
target**. It needs to know which encoding channels belong to which frequency bin: the
codec's :class:`maskkit.EncodingSpec` gives ``channel_freqs`` (the ``stft`` codec does:
real and imaginary channels of each bin share a frequency); channels of the same frequency
are pooled into one magnitude ``sqrt(sum of squares)``, so the layout of the channels does
not matter. With a codec that gives no channel frequencies it refuses to start, with a
message saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from maskkit import ConfigError, EncodingSpec, Masks, MaskStrategy
from torch import Tensor


def median_filter(x: Tensor, kernel: int, dim: int) -> Tensor:
    """Running median of ``x`` along ``dim`` over ``kernel`` (odd) samples, edges replicated.

    Vectorized: the padded signal is viewed as overlapping windows (``unfold``) and the
    median taken over the window axis; no Python loop, any device and floating dtype.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"median_filter: kernel must be odd and >= 1, got {kernel}")
    if kernel == 1:
        return x
    moved = x.movedim(dim, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, shape[-1])
    pad = kernel // 2
    flat = F.pad(flat, (pad, pad), mode="replicate")
    med = flat.unfold(-1, kernel, 1).median(dim=-1).values  # [N, 1, L]
    return med.reshape(shape).movedim(-1, dim)


def soft_mask(a: Tensor, b: Tensor, power: float, margin: float) -> Tensor:
    """``a^p / (a^p + (margin*b)^p)``, computed without overflow; 0.5 where both are ~0."""
    b = b * margin
    z = torch.maximum(a, b)
    tiny = torch.finfo(z.dtype).tiny
    live = z > tiny
    z = torch.where(live, z, torch.ones_like(z))
    ra, rb = (a / z) ** power, (b / z) ** power  # the larger of the two is exactly 1
    return torch.where(live, ra / (ra + rb), torch.full_like(z, 0.5))


@dataclass
class HPSSConfig:
    time_kernel: int = field(default=17, metadata={
        "help": "frames of the median over time, which estimates the harmonic part (odd)", "min": 1})
    freq_kernel: int = field(default=17, metadata={
        "help": "frequency bins of the median over frequency, which estimates the percussive part (odd)",
        "min": 1})
    power: float = field(default=2.0, metadata={
        "help": "exponent of the soft masks: 2 is Wiener-like, larger is harder", "min": 0.1})
    margin: float = field(default=1.0, metadata={
        "help": "a bin counts as percussive only where P > margin * H (harmonic: H > margin * P); "
                "above 1 leaves the ambiguous part out of both", "min": 1.0})

    def validate(self) -> None:
        for key in ("time_kernel", "freq_kernel"):
            if getattr(self, key) % 2 == 0:
                raise ConfigError(f"strategy 'hpss': option '{key}' must be odd, got {getattr(self, key)}")


class HPSS(MaskStrategy):
    """Percussive part of the input, harmonic part of the target, by median-filtering HPSS."""

    name = "hpss"
    description = ("Harmonic/percussive separation by median filtering: the drums of the input with "
                   "the harmony of the target. Needs a codec with channel frequencies (stft).")
    Config = HPSSConfig

    def __init__(self, config: object = None, *, spec: EncodingSpec | None = None) -> None:
        super().__init__(config, spec=spec)
        freqs = self.spec.channel_freqs
        if freqs is None:
            raise ConfigError(
                f"strategy '{self.name}' (plugin maskkit-hpss) needs the frequency of each encoding channel "
                f"to tell harmonic from percussive sound, and the codec in use gives none "
                f"(EncodingSpec.channel_freqs is None): use a codec with channel frequencies, such as "
                f"the 'stft' codec")
        # channel -> frequency bin (bins in ascending frequency); moves with .to(device)
        _, bin_of_channel = torch.unique(torch.tensor(freqs, dtype=torch.float64), return_inverse=True)
        self.register_buffer("bin_of_channel", bin_of_channel, persistent=False)
        self.num_bins = int(bin_of_channel.max()) + 1

    def magnitude(self, x: Tensor) -> Tensor:
        """``[B, D, T]`` encoding -> ``[B, F, T]`` magnitude per frequency bin (ascending)."""
        if x.shape[1] != self.spec.dim:
            raise ConfigError(f"strategy '{self.name}': the input has D={x.shape[1]} channels but the "
                              f"codec's spec gives {self.spec.dim} channel frequencies")
        idx = self.bin_of_channel.to(x.device)
        power = x.new_zeros(x.shape[0], self.num_bins, x.shape[-1]).index_add_(1, idx, x * x)
        return power.sqrt()

    def components(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Harmonic and percussive magnitude estimates ``(H, P)``, each ``[B, F, T]``."""
        mag = self.magnitude(x)
        harmonic = median_filter(mag, self.config.time_kernel, dim=-1)
        percussive = median_filter(mag, self.config.freq_kernel, dim=1)
        return harmonic, percussive

    def forward(self, x_input: Tensor, x_target: Tensor, *, hard: bool = False) -> Masks:
        cfg = self.config
        dtype = x_input.dtype
        # a rule, not a learned function: no gradient through the medians; half types in float32
        work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        with torch.no_grad():
            pair = torch.cat([x_input.detach(), x_target.detach()], dim=0).to(work)
            h, p = self.components(pair)
            B = x_input.shape[0]
            h_in, p_in, h_tg, p_tg = h[:B], p[:B], h[B:], p[B:]
            if hard:
                perc_in = (p_in > cfg.margin * h_in).to(work)
                harm_tg = (h_tg > cfg.margin * p_tg).to(work)
            else:
                perc_in = soft_mask(p_in, h_in, cfg.power, cfg.margin)
                harm_tg = soft_mask(h_tg, p_tg, cfg.power, cfg.margin)
            idx = self.bin_of_channel.to(x_input.device)
            input_mask = perc_in.index_select(1, idx).to(dtype)  # bins -> channels
            target_mask = harm_tg.index_select(1, idx).to(dtype)
        return Masks(input_mask, target_mask, extras={
            "input_percussive_share": input_mask.float().mean(),
            "target_harmonic_share": target_mask.float().mean()})
