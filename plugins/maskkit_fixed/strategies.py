"""Rule-based mask strategies. Vectorized (no Python loop over frames), device- and
dtype-agnostic, deterministic. Each builds its masks in the input's dtype and device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from maskkit import ConfigError, Masks, MaskStrategy


def temporal_mask(T: int, segment: int, fade: int, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """The input's time mask ``[1, 1, T]``: 1 on segments 0, 2, 4, ... (the 1st, 3rd, ...),
    0 on the others, with linear fades of ``fade`` frames at each boundary (the seed's rule:
    the outgoing side fades out over the ``fade`` frames before a boundary, the incoming
    side fades in over the ``fade`` frames after it). The target's mask is ``1 - mask``.
    """
    t = torch.arange(T, device=device)
    seg = torch.div(t, segment, rounding_mode="floor")
    pos = t - seg * segment
    mask = (seg % 2 == 0).to(dtype)
    if fade > 0:
        one = torch.ones((), device=device, dtype=dtype)
        before = (pos >= segment - fade) & ((seg + 1) * segment < T)
        after = (pos < fade) & (seg >= 1)
        mask = mask * torch.where(before, (segment - pos).to(dtype) / fade, one)
        mask = mask * torch.where(after, pos.to(dtype) / fade, one)
    return mask.view(1, 1, T)


def _low_band(D: int, split_ratio: float, freqs: tuple[float, ...] | None, split_hz: float | None,
              device: torch.device, owner: str) -> Tensor:
    """Boolean ``[D]``: True for the channels of the low band (decided on the host: no device sync)."""
    if freqs is not None:
        if len(freqs) != D:
            raise ConfigError(f"{owner}: the encoding spec gives {len(freqs)} channel frequencies "
                              f"but the input has D={D} channels")
        top = max(freqs)
        if split_hz is not None and not min(freqs) < split_hz <= top:
            raise ConfigError(f"{owner}: option 'split_hz' ({split_hz:g} Hz) must lie within the codec's "
                              f"channel frequencies ({min(freqs):g} < split_hz <= {top:g} Hz, the top being "
                              f"its Nyquist frequency): otherwise one song gets every channel")
        cutoff = split_hz if split_hz is not None else split_ratio * top
        return torch.tensor([f < cutoff for f in freqs], device=device)
    if split_hz is not None:
        raise ConfigError(f"{owner}: option 'split_hz' needs a codec that gives channel frequencies (the "
                          f"stft codec does; from Python, build the strategy with spec=codec.spec)")
    return torch.arange(D, device=device) < round(split_ratio * D)


class _CachedMasks(MaskStrategy):
    """A strategy whose masks depend only on the input's shape, its options, the device and the
    dtype: they are built once per key and reused (a few small tensors; treat them as
    read-only), so a training step costs only applying them, with no host-device copy."""

    _CACHE_SIZE = 16

    def __init__(self, config: object = None, **kwargs: object) -> None:
        super().__init__(config, **kwargs)  # type: ignore[arg-type]
        self._cache: dict[tuple[object, ...], tuple[Tensor, Tensor]] = {}

    def _cached(self, x: Tensor, hard: bool, build: Callable[[], tuple[Tensor, Tensor]]) -> Masks:
        # inference-mode tensors cannot take part in autograd later: they get keys of their own
        key = (tuple(x.shape[1:]), hard, x.device, x.dtype, torch.is_inference_mode_enabled())
        pair = self._cache.get(key)
        if pair is None:
            pair = build()
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = pair
        return Masks(*pair)


@dataclass
class TemporalConfig:
    segment: int = field(default=150, metadata={"help": "frames per segment", "min": 1})
    fade: int | None = field(default=None, metadata={
        "help": "crossfade frames at each boundary (default: min(10, segment // 15), the seed's)",
        "min": 0})

    def validate(self) -> None:
        if self.fade is not None and self.fade > self.segment // 2:
            raise ConfigError(f"strategy 'temporal': option 'fade' ({self.fade}) must be at most "
                              f"segment // 2 ({self.segment // 2})")

    @property
    def fade_frames(self) -> int:
        return min(10, self.segment // 15) if self.fade is None else self.fade


class Temporal(_CachedMasks):
    """Masks depend only on (T, options, device, dtype): built once per key and reused."""

    name = "temporal"
    description = "Alternating time segments with short crossfades: input on the 1st, 3rd, ... segment."
    complementary = True
    Config = TemporalConfig

    def forward(self, x_input: Tensor, x_target: Tensor, *, hard: bool = False) -> Masks:
        self.check_inputs(x_input, x_target)
        cfg = self.config

        def build() -> tuple[Tensor, Tensor]:
            fade = 0 if hard else cfg.fade_frames
            m = temporal_mask(x_input.shape[-1], cfg.segment, fade, x_input.device, x_input.dtype)
            return m, 1.0 - m

        return self._cached(x_input, hard, build)


@dataclass
class FrequencyConfig:
    split_ratio: float = field(default=0.3, metadata={
        "help": "low band = channels below this fraction of the top frequency (or of D)", "min": 0.0,
        "max": 1.0})
    attenuation: float = field(default=0.2, metadata={
        "help": "gain kept of each song's other band", "min": 0.0, "max": 1.0})
    split_hz: float | None = field(default=None, metadata={
        "help": "split at this frequency in Hz instead (needs channel frequencies)", "min": 0.0})


class Frequency(_CachedMasks):
    name = "frequency"
    description = "Low band from the input, high band from the target; splits in Hz when the codec says."
    Config = FrequencyConfig

    def forward(self, x_input: Tensor, x_target: Tensor, *, hard: bool = False) -> Masks:
        self.check_inputs(x_input, x_target)
        cfg = self.config

        def build() -> tuple[Tensor, Tensor]:
            D = x_input.shape[1]
            low = _low_band(D, cfg.split_ratio, self.spec.channel_freqs, cfg.split_hz, x_input.device,
                            f"strategy '{self.name}'")
            att = 0.0 if hard else cfg.attenuation
            keep = low.to(x_input.dtype).view(1, D, 1)
            return keep + (1.0 - keep) * att, (1.0 - keep) + keep * att

        return self._cached(x_input, hard, build)


@dataclass
class EnergyConfig:
    quantile: float = field(default=0.7, metadata={
        "help": "input keeps its frames whose energy is above this quantile", "min": 0.0, "max": 1.0})


class Energy(MaskStrategy):
    name = "energy"
    description = ("Input keeps its high-energy (transient) frames above a quantile; "
                   "the target keeps the rest, its sustained part.")
    complementary = True
    Config = EnergyConfig

    def forward(self, x_input: Tensor, x_target: Tensor, *, hard: bool = False) -> Masks:
        self.check_inputs(x_input, x_target)
        e = x_input.detach().float().pow(2).mean(dim=1)  # [B, T]
        q = torch.quantile(e, self.config.quantile, dim=-1, keepdim=True)
        m = (e > q).to(x_input.dtype).unsqueeze(1)  # [B, 1, T]
        return Masks(m, 1.0 - m)


@dataclass
class SpectralConfig:
    keep_ratio: float = field(default=0.5, metadata={
        "help": "fraction of channels given to the input", "min": 0.0, "max": 1.0})
    seed: int = field(default=0, metadata={"help": "seed of the random channel partition"})


class Spectral(_CachedMasks):
    name = "spectral"
    description = "A random (seeded) partition of the channels: a share to the input, the rest to the target."
    complementary = True
    Config = SpectralConfig

    def forward(self, x_input: Tensor, x_target: Tensor, *, hard: bool = False) -> Masks:
        self.check_inputs(x_input, x_target)
        def build() -> tuple[Tensor, Tensor]:
            D = x_input.shape[1]
            g = torch.Generator().manual_seed(self.config.seed)
            perm = torch.randperm(D, generator=g)
            keep = torch.zeros(D, dtype=x_input.dtype)
            keep[perm[: round(self.config.keep_ratio * D)]] = 1.0
            m = keep.to(x_input.device).view(1, D, 1)
            return m, 1.0 - m

        return self._cached(x_input, hard, build)


@dataclass
class HybridConfig:
    segment: int = field(default=150, metadata={"help": "frames per time segment", "min": 1})
    fade: int | None = field(default=None, metadata={"help": "crossfade frames (default as temporal)",
                                                     "min": 0})
    split_ratio: float = field(default=0.3, metadata={"help": "frequency split as in 'frequency'",
                                                      "min": 0.0, "max": 1.0})

    def validate(self) -> None:
        TemporalConfig(self.segment, self.fade).validate()


class Hybrid(_CachedMasks):
    name = "hybrid"
    description = ("Temporal x frequency checkerboard: on the input's segments the input gives its low "
                   "band and the target its high band; on the target's segments the other way round.")
    complementary = True
    Config = HybridConfig

    def forward(self, x_input: Tensor, x_target: Tensor, *, hard: bool = False) -> Masks:
        self.check_inputs(x_input, x_target)
        cfg = self.config

        def build() -> tuple[Tensor, Tensor]:
            D, T = x_input.shape[1], x_input.shape[-1]
            fade = 0 if hard else TemporalConfig(cfg.segment, cfg.fade).fade_frames
            t = temporal_mask(T, cfg.segment, fade, x_input.device, x_input.dtype)
            low = _low_band(D, cfg.split_ratio, self.spec.channel_freqs, None, x_input.device,
                            f"strategy '{self.name}'").to(x_input.dtype).view(1, D, 1)
            m = t * low + (1.0 - t) * (1.0 - low)
            return m, 1.0 - m

        return self._cached(x_input, hard, build)


class NoMask(MaskStrategy):
    name = "none"
    description = "No masking: both songs kept whole (the full-overlap baseline)."

    def forward(self, x_input: Tensor, x_target: Tensor, *, hard: bool = False) -> Masks:
        self.check_inputs(x_input, x_target)
        one = torch.ones(1, 1, 1, device=x_input.device, dtype=x_input.dtype)
        return Masks(one, one)
