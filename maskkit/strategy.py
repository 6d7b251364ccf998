"""The mask-strategy interface every plugin implements.

A strategy looks at two encodings, ``x_input`` and ``x_target`` (``[B, D, T]``), and says
how much of each to keep, per channel and frame: ``input_mask`` and ``target_mask`` in
[0, 1], each broadcastable to ``[B, D, T]``. Fixed strategies have no parameters; learned
ones (``learnable = True``) return a regularization loss that the trainer adds to its loss.

A complete strategy::

    from dataclasses import dataclass
    import torch
    from maskkit import MaskStrategy, Masks

    class Halves(MaskStrategy):
        name = "halves"
        description = "First half of the frames from the input, second from the target."

        @dataclass
        class Config:
            split: float = 0.5

        def forward(self, x_input, x_target, *, hard=False):
            T = x_input.shape[-1]
            t = torch.arange(T, device=x_input.device)
            m = (t < self.config.split * T).to(x_input.dtype).view(1, 1, T)
            return Masks(m, 1 - m)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .config import build_config
from .errors import ConfigError, InputError, MaskkitError, MaskValidationError, PluginError, warn


@dataclass(frozen=True)
class EncodingSpec:
    """What a strategy may know about the encoding it masks.

    ``dim`` is D. ``channel_freqs`` (length D, in Hz) is given by codecs whose channels map
    to frequencies (the stft codec does); strategies that split by frequency use it and
    fall back to channel index when it is ``None``. ``frame_rate`` is frames per second.
    """

    dim: int = 128
    frame_rate: float | None = None
    sample_rate: int | None = None
    channel_freqs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"EncodingSpec.dim must be >= 1, got {self.dim}")
        if self.channel_freqs is not None and len(self.channel_freqs) != self.dim:
            raise ValueError(
                f"EncodingSpec.channel_freqs has {len(self.channel_freqs)} entries for dim={self.dim}")


@dataclass
class Masks:
    """What a strategy returns.

    ``input_mask`` / ``target_mask``: values in [0, 1], broadcastable to ``[B, D, T]``
    (``[1, 1, T]`` for a time-only rule, ``[1, D, 1]`` for a channel-only rule).
    ``reg_loss``: a scalar the trainer adds with weight ``mask_reg_weight`` (learned
    strategies), or ``None``. ``extras``: named scalars and tensors for logging and
    pictures. Conventional keys: ``"balance_loss"`` (a scalar the trainer adds with its own
    weight), ``"attention"`` (``[B, T, T]`` weights), any ``"*_loss"`` component.
    """

    input_mask: Tensor
    target_mask: Tensor
    reg_loss: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def apply(self, x_input: Tensor, x_target: Tensor) -> tuple[Tensor, Tensor]:
        """The masked pair ``(x_input * input_mask, x_target * target_mask)``."""
        return x_input * self.input_mask, x_target * self.target_mask


@dataclass
class NoOptions:
    """A strategy without options."""


class MaskStrategy(nn.Module):
    """Base class of every mask strategy.

    Subclasses set ``name`` (what users type: ``--strategy NAME``), optionally
    ``description``, ``learnable`` and a ``Config`` dataclass of options, and implement
    :meth:`forward`. The constructor takes the config (a ``Config`` instance, a mapping or
    ``key=value`` strings) and the :class:`EncodingSpec` of the codec in use.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    learnable: ClassVar[bool] = False
    #: The strategy promises input_mask + target_mask == 1 (the conformance kit checks it).
    complementary: ClassVar[bool] = False
    #: Style conditioning: the strategy has an integer option ``num_styles`` (0 = off; the
    #: trainer sets it to the number of style labels in the data) and its ``forward`` takes
    #: ``style=``, a ``[B]`` tensor of labels in ``[0, num_styles)`` or ``None``
    #: (unconditioned). Only ever passed when not ``None``.
    supports_style: ClassVar[bool] = False
    Config: ClassVar[type] = NoOptions

    def __init__(self, config: Any = None, *, spec: EncodingSpec | None = None) -> None:
        super().__init__()
        owner = f"strategy '{self.name}'"
        if isinstance(config, str):  # one "key=value"
            config = [config]
        cls = self.Config
        if isinstance(config, self.Config) and dataclasses.is_dataclass(config):
            # an instance (of the Config or a subclass): checked like the options a user types
            cls = type(config)
            config = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
        if config is None or isinstance(config, (Mapping, list, tuple)):
            config = build_config(cls, config, owner=owner)
        else:
            raise ConfigError(f"{owner}: config must be a {self.Config.__qualname__}, a mapping or "
                              f"'key=value' strings, got {type(config).__name__}")
        if spec is not None and not isinstance(spec, EncodingSpec):
            raise ConfigError(f"{owner}: spec must be an EncodingSpec (a codec's .spec), got "
                              f"{type(spec).__name__}")
        self.config = config
        self.spec = spec or EncodingSpec()

    def forward(self, x_input: Tensor, x_target: Tensor, *, hard: bool = False) -> Masks:
        raise NotImplementedError

    def check_inputs(self, x_input: Tensor, x_target: Tensor) -> None:
        """Raise :class:`~maskkit.errors.InputError`, naming this strategy, unless both
        encodings are floating ``[B, D, T]`` tensors of one shape on one device
        (:func:`check_encodings`); strategies call it first thing in :meth:`forward`."""
        check_encodings(x_input, x_target, f"strategy '{self.name}'")

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def build_critic(self) -> nn.Module | None:
        """A fresh critic for adversarial training, or ``None`` (the default: none).

        The critic reads encodings ``[B, D, T]`` and returns real/fake logits ``[B, K]``
        (positive = real music). The trainer owns it (its own optimizer, DDP wrapper and
        checkpoint entry), so it is not part of the strategy's parameters; see
        :mod:`maskkit.adversarial`.
        """
        return None

    @classmethod
    def num_parameters_default(cls, spec: EncodingSpec | None = None) -> int:
        """Parameter count with default options (0 for fixed strategies)."""
        if not cls.learnable:
            return 0
        return sum(p.numel() for p in cls(spec=spec).parameters())

    def extra_repr(self) -> str:
        return f"name={self.name!r}, config={self.config}"


def check_style(strategy: Any, style: int | None) -> None:
    """Raise :class:`ConfigError` before any work when label ``style`` cannot condition
    ``strategy`` (no ``supports_style``, or outside ``[0, num_styles)``); ``None`` passes."""
    if style is None:
        return
    name = getattr(strategy, "name", "?")
    if not getattr(strategy, "supports_style", False):
        raise ConfigError(f"--style: strategy '{name}' does not support style conditioning")
    n = int(getattr(getattr(strategy, "config", None), "num_styles", 0) or 0)
    if not 0 <= int(style) < n:
        raise ConfigError(f"--style: label {style} is out of range for strategy '{name}', which was built "
                          f"with {n} style(s)" + ("" if n else " (trained without --style-labels)"))


def resolve_style(style: str | int | None, styles: list[str] | None, source: object) -> int | None:
    """A style label as its index: a name of ``styles`` (the labels a checkpoint was trained
    with; ``source`` names it in errors), or already an index / ``None`` (unconditioned)."""
    if style is None or isinstance(style, int):
        return style
    if not styles:
        raise ConfigError(f"style {style!r} by name needs a checkpoint trained with --style-labels; "
                          f"{source} has no style labels")
    if style not in styles:
        raise ConfigError(f"unknown style {style!r} for {source}; its styles: {', '.join(styles)}")
    return styles.index(style)


def warn_untrained(strategy: MaskStrategy, command: str) -> None:
    """Warn that a learnable ``strategy`` built by name has its initial, untrained weights."""
    if strategy.learnable:
        warn(f"{command}: strategy '{strategy.name}' is learnable and was built by name, so its "
             f"masks are untrained (its initial weights); for trained ones, give a checkpoint "
             f"of a run trained with it")


def strategy_origin(name: str) -> str:
    """``"plugin 'x' from dist v"`` for error messages; empty when the name is not registered."""
    try:
        from .plugins import get_strategy_entry

        return get_strategy_entry(name).origin
    except Exception:
        return ""


def check_encodings(x_input: Any, x_target: Any, who: str,
                    names: tuple[str, str] = ("x_input", "x_target")) -> None:
    """Raise :class:`~maskkit.errors.InputError` naming ``who`` (and the arguments by ``names``)
    unless ``x_input`` and ``x_target`` are floating-point ``[B, D, T]`` tensors of the same
    shape on the same device. Reads only shapes, dtypes and devices: no device sync."""
    a, b = names
    for label, x in ((a, x_input), (b, x_target)):
        if not isinstance(x, Tensor):
            raise InputError(f"{who}: {label} must be a torch.Tensor [B, D, T], got {type(x).__name__}")
    if x_input.dim() != 3 or x_input.shape != x_target.shape:
        raise InputError(f"{who} expects {a} and {b} of the same shape [B, D, T] (batch, channels, "
                         f"frames); got {tuple(x_input.shape)} and {tuple(x_target.shape)}"
                         + (" (one pair? add the batch axis: x[None])" if x_input.dim() == 2 else ""))
    for label, x in ((a, x_input), (b, x_target)):
        if not x.is_floating_point():
            raise InputError(f"{who}: {label} must be floating point (an encoding), got {x.dtype}")
    if x_input.device != x_target.device:
        raise InputError(f"{who}: {a} is on {x_input.device} but {b} on {x_target.device}")


def call_strategy(strategy: MaskStrategy, x_input: Tensor, x_target: Tensor, origin: str | None = None,
                  check_values: bool = True, **kwargs: Any) -> Masks:
    """``strategy(x_input, x_target, **kwargs)``, validated (:func:`validate_masks`). An
    exception inside the strategy becomes a :class:`PluginError` naming it and ``origin`` (its
    plugin, looked up by default), with the original chained (``MASKKIT_TRACEBACK=1`` shows it
    on the command line)."""
    if origin is None:
        origin = strategy_origin(strategy.name)
    check_encodings(x_input, x_target, f"strategy '{strategy.name}'")
    try:
        masks = strategy(x_input, x_target, **kwargs)
    except MaskkitError:
        raise
    except Exception as e:
        who = f"strategy '{strategy.name}'" + (f" ({origin})" if origin else "")
        raise PluginError(f"{who} raised {type(e).__name__}: {e} (MASKKIT_TRACEBACK=1 shows where)") from e
    return validate_masks(masks, x_input, strategy.name, origin, check_values)


def validate_masks(masks: Any, x_input: Tensor, strategy_name: str, origin: str = "",
                   check_values: bool = True) -> Masks:
    """Check what a strategy returned; raise :class:`MaskValidationError` naming it.

    Checks the type, that both masks are floating tensors broadcastable to the input's
    ``[B, D, T]``, and (``check_values``) that every value is finite and in [0, 1].
    ``origin`` (e.g. ``"plugin 'fixed' from maskkit 0.1.0"``) is added to the message.
    """
    who = f"strategy '{strategy_name}'" + (f" ({origin})" if origin else "")
    if not isinstance(masks, Masks):
        raise MaskValidationError(f"{who} returned {type(masks).__name__}, expected maskkit.Masks")
    shape = tuple(x_input.shape)
    for label in ("input_mask", "target_mask"):
        m = getattr(masks, label)
        if not isinstance(m, Tensor):
            raise MaskValidationError(f"{who}: {label} is {type(m).__name__}, expected a torch.Tensor")
        if not m.is_floating_point():
            raise MaskValidationError(f"{who}: {label} has dtype {m.dtype}, expected a floating dtype")
        if m.dim() != 3:
            raise MaskValidationError(
                f"{who}: {label} has shape {tuple(m.shape)}; expected 3 dims broadcastable to {shape}")
        try:
            if torch.broadcast_shapes(m.shape, x_input.shape) != x_input.shape:
                raise RuntimeError
        except RuntimeError:
            raise MaskValidationError(
                f"{who}: {label} has shape {tuple(m.shape)}, not broadcastable to {shape}") from None
        if check_values:
            m = m.detach()  # read the values only
            if not bool(torch.isfinite(m).all()):
                raise MaskValidationError(f"{who}: {label} holds NaN or Inf values")
            lo, hi = (float(v) for v in torch.aminmax(m))
            if lo < -1e-6 or hi > 1 + 1e-6:
                raise MaskValidationError(
                    f"{who}: {label} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]")
    if masks.reg_loss is not None:
        r = masks.reg_loss
        if not isinstance(r, Tensor) or r.numel() != 1:
            raise MaskValidationError(f"{who}: reg_loss must be a scalar tensor or None")
        if check_values and not bool(torch.isfinite(r).all()):
            raise MaskValidationError(f"{who}: reg_loss is not finite ({float(r)})")
    return masks
