"""The arrangement model: the seed's cascade ``SimpleTransformer``.

A mask strategy decides how much of each song to keep; the model turns the masked pair into
a new encoding of the same shape ``[B, D, T]``, which the codec decodes to audio::

    masks     = strategy(x_input, x_target)                  # any registered strategy
    mi, mt    = x_input * input_mask, x_target * target_mask
    y_0       = stage_0(cat[mi, mt])                         # 2*D -> d_model -> D
    y_k       = stage_k(cat[y_{k-1}, mt, mi])   k = 1..K-1   # 3*D -> d_model -> D
    output    = y_{K-1}

Each stage is a linear projection to ``d_model``, LayerNorm and GELU, a sinusoidal
positional encoding, a pre-norm ``nn.TransformerEncoder`` (GELU, ``nhead`` heads,
``num_layers`` layers, dropout) and a projection back to D. With ``residual`` (default) a
stage predicts a correction: stage 0 adds to the masked pair's sum ``mi + mt`` (in the
codec's encoding, not the audio mix of ``arrange --mix-only``) and stage k to ``y_{k-1}``,
so an untrained model already outputs a mashup of the masked songs and training starts from
a sensible point. With ``normalize_input`` (default) every pair is divided by
its RMS before the stages and the output multiplied back, so the model is scale-equivariant
and works with any codec's value range.

The strategy is a submodule named ``strategy``: its weights are saved under ``strategy.``
in the model's state dict and trained by the same optimizer. ``forward`` returns
``(output, reg_loss)`` as the seed's model did, or ``(output, reg_loss, masks)`` with
``return_masks=True`` so the trainer can log complementarity and the balance term.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import build_config
from .errors import ConfigError, InputError
from .strategy import EncodingSpec, Masks, MaskStrategy, call_strategy, check_encodings


@dataclass
class ModelConfig:
    """Options of :class:`SimpleTransformer` (saved in every checkpoint).

    The defaults train on a 2-core CPU in minutes on 4 s / 24 kHz segments with the stft
    codec (D=514, T~376): about 1.5 M parameters with D=514.
    """

    d_model: int = field(default=128, metadata={"help": "width of each stage's transformer", "min": 1})
    nhead: int = field(default=4, metadata={"help": "attention heads (must divide d_model)", "min": 1})
    num_layers: int = field(default=2, metadata={"help": "encoder layers per cascade stage", "min": 1})
    num_transformer_layers: int = field(default=3, metadata={
        "help": "cascade stages (the seed's name); 1 = a single stage", "min": 1})
    dim_feedforward: int = field(default=256, metadata={"help": "feed-forward width of each layer",
                                                        "min": 1})
    dropout: float = field(default=0.1, metadata={"help": "dropout in the stages", "min": 0.0,
                                                  "max": 1.0})
    max_frames: int = field(default=4096, metadata={
        "help": "precomputed positional-encoding length (sinusoidal: longer inputs still work)",
        "min": 1})
    residual: bool = field(default=True, metadata={
        "help": "stages predict a correction of the masked mix / previous stage's output"})
    normalize_input: bool = field(default=True, metadata={
        "help": "divide each pair by its RMS before the stages and scale the output back"})
    hard_masks: bool = field(default=False, metadata={
        "help": "train and arrange with the strategy's hard (0/1, complementary) masks; learnable "
                "strategies get their gradient through them straight-through"})

    def validate(self) -> None:
        if self.d_model % self.nhead != 0:
            raise ConfigError(f"model: option 'd_model' ({self.d_model}) must be divisible by "
                              f"'nhead' ({self.nhead})")


def sinusoidal_encoding(length: int, dim: int, device: torch.device | str | None = None,
                        dtype: torch.dtype = torch.float32) -> Tensor:
    """The transformer's sinusoidal positional encoding, ``[length, dim]`` (any ``dim``)."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    half = (dim + 1) // 2
    freq = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * (-math.log(10000.0) / half))
    angle = pos * freq
    pe = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)[:, :dim]
    return pe.to(dtype)


class PositionalEncoding(nn.Module):
    """Adds a sinusoidal encoding to ``[B, T, d]``; computed on the fly beyond ``max_frames``."""

    def __init__(self, dim: int, max_frames: int) -> None:
        super().__init__()
        self.dim = dim
        # Not persistent: the table is a pure function of (max_frames, dim), so checkpoints do
        # not depend on max_frames.
        self.register_buffer("pe", sinusoidal_encoding(max_frames, dim), persistent=False)

    def forward(self, h: Tensor) -> Tensor:
        T = h.shape[1]
        if T <= self.pe.shape[0]:
            pe = self.pe[:T]
        else:
            pe = sinusoidal_encoding(T, self.dim, h.device)
        return h + pe.to(h.dtype)


class CascadeStage(nn.Module):
    """One stage: ``[B, in_channels, T]`` -> ``[B, out_channels, T]`` through a transformer."""

    def __init__(self, in_channels: int, out_channels: int, config: ModelConfig) -> None:
        super().__init__()
        c = config
        self.in_proj = nn.Linear(in_channels, c.d_model)
        self.in_norm = nn.LayerNorm(c.d_model)
        self.pos = PositionalEncoding(c.d_model, c.max_frames)
        self.drop = nn.Dropout(c.dropout)
        layer = nn.TransformerEncoderLayer(c.d_model, c.nhead, c.dim_feedforward, c.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.num_layers, norm=nn.LayerNorm(c.d_model),
                                             enable_nested_tensor=False)
        self.out_proj = nn.Linear(c.d_model, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(self.in_norm(self.in_proj(x.transpose(1, 2))))  # [B, T, d_model]
        h = self.encoder(self.drop(self.pos(h)))
        return self.out_proj(h).transpose(1, 2)


class SimpleTransformer(nn.Module):
    """The seed's cascade arrangement model around a mask strategy.

    ``config``: a :class:`ModelConfig`; ``strategy``: any :class:`~maskkit.MaskStrategy`
    (fixed or learned; it becomes the submodule ``strategy``); ``encoding_dim``: the codec's D.

    Set ``check_strategy_output = True`` to validate the strategy's masks (shape, range,
    finiteness, with :func:`maskkit.validate_masks`) on each call; it costs a device sync, so
    the trainer turns it on for its first batches only. Turn it off before ``torch.compile``.
    """

    def __init__(self, config: ModelConfig, strategy: MaskStrategy, encoding_dim: int) -> None:
        super().__init__()
        if not isinstance(strategy, MaskStrategy):
            raise TypeError(f"SimpleTransformer needs a maskkit.MaskStrategy, got {type(strategy).__name__}"
                            f" (build one with maskkit.build_strategy(name, spec=...))")
        if encoding_dim < 1:
            raise ValueError(f"encoding_dim must be >= 1, got {encoding_dim}")
        if isinstance(config, Mapping):
            config = build_config(ModelConfig, config, owner="model")
        config.validate()
        self.config = config
        self.encoding_dim = int(encoding_dim)
        self.strategy = strategy
        D = self.encoding_dim
        self.stages = nn.ModuleList(
            [CascadeStage((2 if k == 0 else 3) * D, D, config) for k in range(config.num_transformer_layers)])
        self.check_strategy_output = False

    @property
    def strategy_name(self) -> str:
        return self.strategy.name

    def _check_inputs(self, enc_input: Tensor, enc_target: Tensor) -> tuple[Tensor, Tensor]:
        """Both encodings in the weights' dtype (a float64 pair into a float32 model), after
        checking shapes, dtypes and devices: no device sync."""
        check_encodings(enc_input, enc_target, "SimpleTransformer", ("enc_input", "enc_target"))
        if enc_input.shape[1] != self.encoding_dim:
            raise InputError(f"SimpleTransformer was built for encoding_dim D={self.encoding_dim}, but the "
                             f"input has D={enc_input.shape[1]} channels (was the model built for another "
                             f"codec?)")
        w = next(self.stages.parameters())
        if enc_input.device != w.device:
            raise InputError(f"SimpleTransformer: the encodings are on {enc_input.device} but its weights on "
                             f"{w.device}: move one to the other (.to(device))")
        if enc_input.dtype != w.dtype:
            enc_input, enc_target = enc_input.to(w.dtype), enc_target.to(w.dtype)
        return enc_input, enc_target

    def masks(self, enc_input: Tensor, enc_target: Tensor, *, hard: bool | None = None,
              style: Tensor | None = None) -> Masks:
        """The strategy's masks for this pair (validated when ``check_strategy_output``);
        ``style``: ``[B]`` style labels for strategies with ``supports_style``, or None.
        ``hard``: hard (0/1) or soft masks; ``None`` (default): as the model is configured
        (trained), hard with ``hard_masks``."""
        kw: dict[str, Any] = {"hard": self.config.hard_masks if hard is None else bool(hard)}
        if style is not None:
            if not self.strategy.supports_style:
                raise ValueError(f"strategy '{self.strategy.name}' does not support style conditioning "
                                 f"(supports_style is False): drop the style labels")
            kw["style"] = style
        if self.check_strategy_output:
            return call_strategy(self.strategy, enc_input, enc_target, **kw)
        return self.strategy(enc_input, enc_target, **kw)

    def forward(self, enc_input: Tensor, enc_target: Tensor, *, hard: bool | None = None,
                return_masks: bool = False, style: Tensor | None = None
                ) -> tuple[Tensor, Tensor | None] | tuple[Tensor, Tensor | None, Masks]:
        """``(output [B, D, T], reg_loss)``, or ``(output, reg_loss, masks)`` with ``return_masks``.
        ``style``: ``[B]`` style labels, passed to a strategy with ``supports_style``. ``hard``:
        hard or soft masks; ``None`` (default): as configured (trained), see :meth:`masks`."""
        enc_input, enc_target = self._check_inputs(enc_input, enc_target)
        masks = self.masks(enc_input, enc_target, hard=hard, style=style)
        mi, mt = masks.apply(enc_input, enc_target)
        # apply() broadcasts, but a mask may carry a lower dtype under autocast: keep the input's.
        mi, mt = mi.to(enc_input.dtype), mt.to(enc_input.dtype)
        if self.config.normalize_input:
            ms = 0.5 * (mi.detach().float().square().mean(dim=(1, 2))
                        + mt.detach().float().square().mean(dim=(1, 2)))
            scale = (ms.sqrt() + 1e-5).to(mi.dtype).view(-1, 1, 1)
            mi_n, mt_n = mi / scale, mt / scale
        else:
            scale = None
            mi_n, mt_n = mi, mt
        y: Tensor | None = None
        for k, stage in enumerate(self.stages):
            if k == 0:
                delta = stage(torch.cat([mi_n, mt_n], dim=1))
                y = mi_n + mt_n + delta if self.config.residual else delta
            else:
                assert y is not None
                delta = stage(torch.cat([y, mt_n, mi_n], dim=1))
                y = y + delta if self.config.residual else delta
        assert y is not None
        out = y * scale if scale is not None else y
        if return_masks:
            return out, masks.reg_loss, masks
        return out, masks.reg_loss

    def num_parameters(self, include_strategy: bool = True) -> int:
        """Trainable parameter count (with or without the strategy's)."""
        params = self.parameters() if include_strategy else self.stages.parameters()
        return sum(p.numel() for p in params if p.requires_grad)

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def extra_repr(self) -> str:
        return f"encoding_dim={self.encoding_dim}, strategy={self.strategy.name!r}"


def build_model(config: ModelConfig | Mapping[str, Any] | None, strategy: str | MaskStrategy, *,
                spec: EncodingSpec, strategy_options: Any = None) -> SimpleTransformer:
    """A :class:`SimpleTransformer` for a strategy given by name (or instance) and an EncodingSpec.

    ``config`` may be a :class:`ModelConfig`, a mapping (e.g. from a checkpoint) or ``None``
    (defaults); ``strategy_options`` are the strategy's options (mapping or ``key=value``).
    """
    if config is None or isinstance(config, Mapping):
        config = build_config(ModelConfig, config or {}, owner="model")
    if isinstance(strategy, str):
        from .plugins import build_strategy

        strategy = build_strategy(strategy, strategy_options, spec=spec)
    elif strategy_options:
        raise ValueError("strategy_options is only used when the strategy is given by name")
    return SimpleTransformer(config, strategy, spec.dim)
