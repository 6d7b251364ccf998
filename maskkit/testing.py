"""The plugin conformance kit: checks every mask strategy must pass, for plugin authors' tests.

maskkit runs these on its own built-in strategies; a plugin runs them on its own in one
line, in the style of scikit-learn's ``parametrize_with_checks``::

    from maskkit.testing import parametrize_strategy_checks
    from my_plugin.strategy import MyStrategy

    @parametrize_strategy_checks([MyStrategy])
    def test_conformance(strategy_check):
        strategy_check()

which gives one test per check (``my-strategy-shapes``, ``my-strategy-values``, ...), or,
without pytest, :func:`check_strategy` runs them all and raises one :class:`AssertionError`
whose message names every failed check and the strategy.

The checks (see :data:`CHECKS`):

==================  ===========================================================================
construct           class attributes (``name`` usable on the command line, ``Config`` a
                    dataclass with defaults), parameters only when ``learnable``, options
                    rebuilt from ``config_dict()`` (what a checkpoint stores)
shapes              masks broadcastable to ``[B, D, T]`` for several shapes, T=1 and D=1
                    included, soft and hard
values              finite, in [0, 1], ``reg_loss`` a finite scalar, for random, silent, loud
                    and quiet inputs (``maskkit.validate_masks``, as the trainer does)
inputs_untouched    the strategy does not modify its inputs in place
dtypes              masks in the input's dtype for float32, float64 and (where the strategy
                    supports it) bfloat16, after ``strategy.to(dtype)``
devices             masks on the input's device: cpu, and cuda when available (same values)
determinism         in eval mode, the same input gives the same masks, whatever the global RNG
hard_masks          ``hard=True`` gives 0/1 masks
complementary       ``input_mask + target_mask == 1`` (only for ``complementary = True``)
gradients           the masked pair back-propagates to the inputs; a learnable strategy gives
                    a finite gradient to every parameter, with soft and with hard masks
state_dict          ``state_dict`` survives ``torch.save``/``torch.load(weights_only=True)``
                    into a fresh instance (strict) and gives the same masks
critic              ``build_critic()`` (when not ``None``) gives a module whose logits are
                    ``[B, K]``, finite, and pass a gradient to the encodings it reads
style               (``supports_style`` only) an integer option ``num_styles``; with it set,
                    ``style=`` labels give valid masks, ``style=None`` works, and a single label
                    is accepted for the whole batch
==================  ===========================================================================

A check that cannot apply (``complementary`` for a strategy that does not promise it) is
skipped. A check a strategy is known to fail is declared with ``xfail={"check": "reason"}``;
an expected failure that passes is reported, so that stale declarations get removed.

This module imports torch (it runs strategies) but not pytest, except inside
:func:`parametrize_strategy_checks`.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .config import build_config
from .errors import MaskkitError
from .strategy import EncodingSpec, Masks, MaskStrategy, validate_masks

__all__ = [
    "CHECKS",
    "DEFAULT_SHAPES",
    "NotApplicable",
    "StrategyCase",
    "StrategyCheck",
    "check_strategy",
    "parametrize_strategy_checks",
    "strategy_checks",
]

#: ``(B, D, T)`` shapes tried by the ``shapes`` check; the first is the one the other checks use.
#: D is replaced by ``spec.dim`` when the case's spec gives channel frequencies (D is then fixed).
DEFAULT_SHAPES: tuple[tuple[int, int, int], ...] = ((2, 8, 16), (1, 8, 1), (2, 1, 16), (3, 5, 7), (1, 8, 33))

_CLI_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class NotApplicable(Exception):
    """Raised by a check that does not apply to this strategy (reported as skipped)."""


@dataclass(frozen=True)
class StrategyCase:
    """A strategy class with what the checks need to build and feed it.

    ``options``: its options (mapping or ``key=value`` strings; defaults when ``None``).
    ``spec``: the :class:`EncodingSpec` to build it with. Without channel frequencies, D
    varies over the shapes and the spec's ``dim`` follows; with them, D is ``spec.dim``.
    ``xfail``: ``{check_name: reason}`` for checks this strategy is known to fail.
    ``shapes``: ``(B, D, T)`` shapes instead of :data:`DEFAULT_SHAPES`.
    ``id``: the label in test ids and messages (default: ``cls.name``).
    """

    cls: type[MaskStrategy]
    options: Mapping[str, Any] | Sequence[str] | None = None
    spec: EncodingSpec | None = None
    xfail: Mapping[str, str] = field(default_factory=dict)
    shapes: tuple[tuple[int, int, int], ...] | None = None
    id: str | None = None

    @property
    def label(self) -> str:
        return self.id or getattr(self.cls, "name", "") or self.cls.__name__

    @property
    def who(self) -> str:
        return f"strategy '{self.label}' ({self.cls.__module__}.{self.cls.__qualname__})"

    def spec_for(self, dim: int) -> EncodingSpec:
        if self.spec is None:
            return EncodingSpec(dim=dim)
        if self.spec.channel_freqs is not None:
            return self.spec
        return dataclasses.replace(self.spec, dim=dim)

    def all_shapes(self) -> list[tuple[int, int, int]]:
        shapes = self.shapes or DEFAULT_SHAPES
        if self.spec is not None and self.spec.channel_freqs is not None:
            shapes = tuple((b, self.spec.dim, t) for b, _, t in shapes)
        return list(dict.fromkeys(shapes))  # keep order, drop repeats

    @property
    def main_shape(self) -> tuple[int, int, int]:
        return self.all_shapes()[0]

    def build(self, dim: int | None = None, seed: int = 0) -> MaskStrategy:
        """A fresh instance, its parameters initialized under ``seed`` (global RNG untouched)."""
        dim = self.main_shape[1] if dim is None else dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.cls(_copy_options(self.options), spec=self.spec_for(dim))


def _copy_options(options: Any) -> Any:
    if options is None:
        return None
    if isinstance(options, Mapping):
        return dict(options)
    return list(options)


def _as_case(obj: type[MaskStrategy] | StrategyCase) -> StrategyCase:
    if isinstance(obj, StrategyCase):
        return obj
    if isinstance(obj, type) and issubclass(obj, MaskStrategy):
        return StrategyCase(obj)
    raise TypeError(f"expected a MaskStrategy subclass or a StrategyCase, got {obj!r}")


class _CheckFailed(AssertionError):
    pass


def _fail(check: str, case: StrategyCase, detail: str) -> _CheckFailed:
    return _CheckFailed(f"[{check}] {case.who}: {detail}")


def _inputs(shape: tuple[int, int, int], *, seed: int = 0, scale: float = 1.0,
            dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """A deterministic random pair ``(x_input, x_target)`` (independent of the global RNG)."""
    g = torch.Generator().manual_seed(seed)
    xi = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    xt = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    return xi.to(device=device, dtype=dtype), xt.to(device=device, dtype=dtype)


def _forward(check: str, case: StrategyCase, strategy: MaskStrategy, xi: Tensor, xt: Tensor,
             hard: bool) -> Masks:
    try:
        return strategy(xi, xt, hard=hard)
    except NotApplicable:
        raise
    except Exception as e:
        raise _fail(check, case, f"forward(hard={hard}) on {tuple(xi.shape)} {xi.dtype} {xi.device} "
                                 f"raised {type(e).__name__}: {e}") from e


def _validate(check: str, case: StrategyCase, masks: Any, xi: Tensor, values: bool, what: str) -> Masks:
    try:
        return validate_masks(masks, xi, case.label, check_values=values)
    except MaskkitError as e:
        raise _fail(check, case, f"{what}: {e}") from None


# -- the checks ------------------------------------------------------------------------------------
def check_construct(case: StrategyCase) -> None:
    """Class attributes, options and parameters are what the registry and trainer expect."""
    c, cls = "construct", case.cls
    if not (isinstance(cls, type) and issubclass(cls, MaskStrategy)):
        raise _fail(c, case, "is not a maskkit.MaskStrategy subclass")
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not _CLI_NAME.fullmatch(name) or name == "all":
        raise _fail(c, case, f"name {name!r} must be a non-empty word usable as '--strategy NAME' "
                             f"(letters, digits, '-', '_', '.', no spaces or commas; 'all' is reserved)")
    if not dataclasses.is_dataclass(cls.Config):
        raise _fail(c, case, f"Config ({cls.Config!r}) must be a dataclass")
    try:
        build_config(cls.Config, {}, owner=f"strategy '{name}'")
    except Exception as e:
        raise _fail(c, case, f"Config cannot be built with its defaults ({type(e).__name__}: {e}); "
                             f"every option needs a default") from None
    try:
        s = case.build()
    except Exception as e:
        raise _fail(c, case, f"constructor raised {type(e).__name__}: {e}") from e
    trainable = [n for n, p in s.named_parameters() if p.requires_grad]
    if cls.learnable and not trainable:
        raise _fail(c, case, "learnable = True but it has no trainable parameters")
    if not cls.learnable and trainable:
        raise _fail(c, case, f"learnable = False but it has trainable parameters {trainable[:5]}; "
                             f"set learnable = True, or make them buffers")
    if cls.learnable:
        n = sum(p.numel() for p in s.parameters())
        try:
            n_default = cls.num_parameters_default(case.spec_for(case.main_shape[1]))
        except Exception as e:
            raise _fail(c, case, f"num_parameters_default raised {type(e).__name__}: {e}") from None
        if case.options is None and n_default != n:
            raise _fail(c, case, f"num_parameters_default() = {n_default} but the instance has {n}")
    try:
        saved = s.config_dict()
        again = cls(saved, spec=s.spec)
    except Exception as e:
        raise _fail(c, case, f"cannot rebuild from config_dict() (what a checkpoint stores): "
                             f"{type(e).__name__}: {e}") from None
    if again.config_dict() != saved:
        raise _fail(c, case, f"config_dict() does not survive a rebuild: {saved} -> {again.config_dict()}")


def check_shapes(case: StrategyCase) -> None:
    """Masks broadcastable to ``[B, D, T]`` for every shape, T=1 and D=1 included."""
    c = "shapes"
    for shape in case.all_shapes():
        s = case.build(dim=shape[1]).eval()
        xi, xt = _inputs(shape)
        for hard in (False, True):
            with torch.no_grad():
                m = _forward(c, case, s, xi, xt, hard)
            _validate(c, case, m, xi, False, f"shape {shape}, hard={hard}")
            out_i, out_t = m.apply(xi, xt)
            if tuple(out_i.shape) != shape or tuple(out_t.shape) != shape:
                raise _fail(c, case, f"shape {shape}, hard={hard}: masked pair has shapes "
                                     f"{tuple(out_i.shape)}, {tuple(out_t.shape)}")
            if not isinstance(m.extras, dict):
                raise _fail(c, case, f"extras is {type(m.extras).__name__}, expected a dict")


def check_values(case: StrategyCase) -> None:
    """Finite masks in [0, 1] and a finite scalar reg_loss, for ordinary and extreme inputs."""
    c = "values"
    shape = case.main_shape
    s = case.build()
    s.train()
    for label, scale in (("random", 1.0), ("silent", 0.0), ("loud", 1e3), ("quiet", 1e-6)):
        xi, xt = _inputs(shape, seed=1, scale=scale)
        for hard in (False, True):
            with torch.no_grad():
                m = _forward(c, case, s, xi, xt, hard)
            _validate(c, case, m, xi, True, f"{label} input {shape}, hard={hard}")


def check_inputs_untouched(case: StrategyCase) -> None:
    """The strategy must not write into its inputs (the trainer reuses them)."""
    c = "inputs_untouched"
    s = case.build().eval()
    xi, xt = _inputs(case.main_shape, seed=2)
    ci, ct = xi.clone(), xt.clone()
    for hard in (False, True):
        with torch.no_grad():
            _forward(c, case, s, xi, xt, hard)
        if not (torch.equal(xi, ci) and torch.equal(xt, ct)):
            raise _fail(c, case, f"forward(hard={hard}) modified its inputs in place")


def _is_unsupported(e: BaseException) -> bool:
    msg = str(e)
    return isinstance(e, (NotImplementedError, RuntimeError, TypeError)) and (
        "BFloat16" in msg or "bfloat16" in msg or "Half" in msg or "not implemented" in msg)


def check_dtypes(case: StrategyCase) -> None:
    """Masks in the input's dtype (float32, float64; bfloat16 when supported), valid values."""
    c = "dtypes"
    shape = case.main_shape
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        s = case.build().to(dtype).eval()
        xi, xt = _inputs(shape, seed=3, dtype=dtype)
        for hard in (False, True):
            try:
                with torch.no_grad():
                    m = s(xi, xt, hard=hard)
            except Exception as e:
                if dtype is torch.bfloat16 and _is_unsupported(e):
                    break  # bfloat16 is optional
                raise _fail(c, case, f"forward(hard={hard}) on {dtype} input raised "
                                     f"{type(e).__name__}: {e}") from e
            _validate(c, case, m, xi, True, f"{dtype} input, hard={hard}")
            for label in ("input_mask", "target_mask"):
                got = getattr(m, label).dtype
                if got != dtype:
                    raise _fail(c, case, f"{label} is {got} for a {dtype} input (hard={hard}); build "
                                         f"masks in the input's dtype (x_input.dtype)")


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def check_devices(case: StrategyCase) -> None:
    """Masks on the input's device (cpu; cuda when available), with the same values as on cpu."""
    c = "devices"
    shape = case.main_shape
    ref: Masks | None = None
    for dev in _devices():
        s = case.build().to(dev).eval()
        xi, xt = _inputs(shape, seed=4, device=dev)
        with torch.no_grad():
            m = _forward(c, case, s, xi, xt, False)
        _validate(c, case, m, xi, True, f"device {dev}")
        for label in ("input_mask", "target_mask"):
            t = getattr(m, label)
            if t.device.type != torch.device(dev).type:
                raise _fail(c, case, f"{label} is on {t.device} for an input on {dev}; build masks on "
                                     f"x_input.device")
        if ref is None:
            ref = m
            continue
        for label in ("input_mask", "target_mask"):
            a, b = getattr(ref, label), getattr(m, label).cpu()
            if not torch.allclose(a, b, atol=1e-3, rtol=1e-3):
                err = float((a - b).abs().max())
                raise _fail(c, case, f"{label} on {dev} differs from cpu by up to {err:.3g}")


def check_determinism(case: StrategyCase) -> None:
    """In eval mode, the same input gives the same masks, whatever the global RNG state."""
    c = "determinism"
    s = case.build().eval()
    xi, xt = _inputs(case.main_shape, seed=5)
    for hard in (False, True):
        outs = []
        for seed in (11, 12):
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(seed)
                outs.append(_forward(c, case, s, xi, xt, hard))
        for label in ("input_mask", "target_mask"):
            a, b = getattr(outs[0], label), getattr(outs[1], label)
            if a.shape != b.shape or not torch.equal(a, b):
                raise _fail(c, case, f"{label} differs between two eval-mode calls on the same input "
                                     f"(hard={hard}); use no randomness in eval mode, or a seeded "
                                     f"torch.Generator")


def check_hard_masks(case: StrategyCase) -> None:
    """``hard=True`` gives masks of 0s and 1s."""
    c = "hard_masks"
    s = case.build().eval()
    xi, xt = _inputs(case.main_shape, seed=6)
    with torch.no_grad():
        m = _forward(c, case, s, xi, xt, True)
    _validate(c, case, m, xi, True, "hard=True")
    for label in ("input_mask", "target_mask"):
        t = getattr(m, label).double()
        bad = (t - t.round()).abs() > 1e-6
        if bool(bad.any()):
            v = float(t[bad].flatten()[0])
            raise _fail(c, case, f"hard=True {label} has {int(bad.sum())} values that are not 0 or 1 "
                                 f"(e.g. {v:.4g})")


def check_complementary(case: StrategyCase) -> None:
    """``input_mask + target_mask == 1`` everywhere, soft and hard (``complementary = True``)."""
    c = "complementary"
    if not getattr(case.cls, "complementary", False):
        raise NotApplicable("the strategy does not declare complementary = True")
    s = case.build().eval()
    for scale in (1.0, 0.0):
        xi, xt = _inputs(case.main_shape, seed=7, scale=scale)
        for hard in (False, True):
            with torch.no_grad():
                m = _forward(c, case, s, xi, xt, hard)
            _validate(c, case, m, xi, True, f"hard={hard}")
            total = (m.input_mask.double() + m.target_mask.double()).expand(xi.shape)
            err = float((total - 1).abs().max())
            if err > 1e-5:
                raise _fail(c, case, f"complementary = True but input_mask + target_mask differs from 1 "
                                     f"by up to {err:.3g} (hard={hard})")


def check_gradients(case: StrategyCase) -> None:
    """The masked pair back-propagates; learnable strategies give every parameter a gradient."""
    c = "gradients"
    s = case.build().train()
    shape = case.main_shape
    g = torch.Generator().manual_seed(8)
    w_in, w_tg = torch.rand(shape, generator=g), torch.rand(shape, generator=g)
    for hard in (False, True):
        s.zero_grad(set_to_none=True)
        xi, xt = _inputs(shape, seed=8)
        xi.requires_grad_(True)
        xt.requires_grad_(True)
        m = _validate(c, case, _forward(c, case, s, xi, xt, hard), xi, False, f"hard={hard}")
        out_i, out_t = m.apply(xi, xt)
        # random weights: a complementary pair would cancel in a plain sum
        loss = (out_i * w_in).sum() + (out_t * w_tg).sum()
        if m.reg_loss is not None:
            loss = loss + m.reg_loss.sum()
        for key, val in m.extras.items():
            if key.endswith("_loss") and isinstance(val, Tensor) and val.requires_grad:
                loss = loss + val.sum()
        try:
            loss.backward()
        except Exception as e:
            raise _fail(c, case, f"backward through the masked pair (hard={hard}) raised "
                                 f"{type(e).__name__}: {e}") from e
        for label, x in (("x_input", xi), ("x_target", xt)):
            if x.grad is None or not bool(torch.isfinite(x.grad).all()):
                raise _fail(c, case, f"the gradient of the masked pair w.r.t. {label} is missing or "
                                     f"not finite (hard={hard})")
        if not case.cls.learnable:
            continue
        params = [(n, p) for n, p in s.named_parameters() if p.requires_grad]
        missing = [n for n, p in params if p.grad is None]
        if missing:
            raise _fail(c, case, f"{len(missing)} of {len(params)} parameters get no gradient from the masks "
                                 f"and reg_loss (hard={hard}): {', '.join(missing[:8])}"
                                 + (" ..." if len(missing) > 8 else "")
                                 + ("; hard masks need a straight-through estimator" if hard else "")
                                 + "; unused parameters also break DistributedDataParallel")
        bad = [n for n, p in params if not bool(torch.isfinite(p.grad).all())]  # type: ignore[arg-type]
        if bad:
            raise _fail(c, case, f"non-finite gradients (hard={hard}) in: {', '.join(bad[:8])}")
        total = math.fsum(float(p.grad.abs().sum()) for _, p in params)  # type: ignore[union-attr]
        if total == 0.0:
            raise _fail(c, case, f"every parameter gradient is zero (hard={hard})")


def check_state_dict(case: StrategyCase) -> None:
    """``state_dict`` survives a safe save/load into a fresh instance and gives the same masks."""
    c = "state_dict"
    a = case.build(seed=0)
    b = case.build(seed=1)
    buf = io.BytesIO()
    try:
        torch.save(a.state_dict(), buf)
        buf.seek(0)
        sd = torch.load(buf, weights_only=True)
    except Exception as e:
        raise _fail(c, case, f"state_dict does not survive torch.save/torch.load(weights_only=True): "
                             f"{type(e).__name__}: {e}") from None
    try:
        b.load_state_dict(sd, strict=True)
    except Exception as e:
        raise _fail(c, case, f"load_state_dict(strict=True) into a fresh instance raised "
                             f"{type(e).__name__}: {e}") from None
    a.eval()
    b.eval()
    xi, xt = _inputs(case.main_shape, seed=9)
    for hard in (False, True):
        with torch.no_grad():
            ma, mb = _forward(c, case, a, xi, xt, hard), _forward(c, case, b, xi, xt, hard)
        for label in ("input_mask", "target_mask"):
            x, y = getattr(ma, label), getattr(mb, label)
            if x.shape != y.shape or not torch.allclose(x, y, atol=1e-6, rtol=1e-5):
                raise _fail(c, case, f"{label} differs after a state_dict round trip (hard={hard}); "
                                     f"keep every tensor the masks depend on in parameters or "
                                     f"persistent buffers")


def check_critic(case: StrategyCase) -> None:
    """A critic for adversarial training, when the strategy offers one (``build_critic``)."""
    from . import adversarial

    c = "critic"
    critic = case.build().build_critic()
    if critic is None:
        raise NotApplicable("the strategy offers no critic (build_critic() returns None)")
    B, D, T = case.main_shape
    xi, _ = _inputs((B, D, max(T, 16)), seed=10)
    try:  # the trainer's own check: a module returning logits [B, K]
        adversarial.check_critic(critic, xi, case.label)
    except MaskkitError as e:
        raise _fail(c, case, str(e)) from None
    except Exception as e:
        raise _fail(c, case, f"its critic raised on [B, D, T] = {tuple(xi.shape)}: "
                             f"{type(e).__name__}: {e}") from None
    xi = xi.clone().requires_grad_(True)
    logits = adversarial.frozen_logits(critic, xi)
    if not bool(torch.isfinite(logits).all()):
        raise _fail(c, case, "its critic returned NaN or Inf logits")
    adversarial.generator_loss(logits).backward()
    if xi.grad is None or not bool(torch.isfinite(xi.grad).all()) or float(xi.grad.abs().sum()) == 0.0:
        raise _fail(c, case, "no finite, non-zero gradient reaches the encodings through its critic")


def check_style(case: StrategyCase) -> None:
    """Style conditioning (``supports_style``): ``num_styles`` option, ``style=`` labels."""
    c = "style"
    if not case.cls.supports_style:
        raise NotApplicable("the strategy does not declare supports_style = True")
    fields = {f.name: f for f in dataclasses.fields(case.cls.Config)} if dataclasses.is_dataclass(
        case.cls.Config) else {}
    if "num_styles" not in fields:
        raise _fail(c, case, "supports_style is True but its Config has no option 'num_styles'")
    opts = case.options
    if opts is None or isinstance(opts, Mapping):
        styled: Any = {**(opts or {}), "num_styles": 3}
    else:
        styled = [*opts, "num_styles=3"]
    B = case.main_shape[0]
    s = dataclasses.replace(case, options=styled).build().eval()
    xi, xt = _inputs(case.main_shape, seed=11)
    labels = torch.arange(B) % 3
    with torch.no_grad():
        for style in (labels, torch.tensor(2), None):
            kw = {} if style is None else {"style": style}
            try:
                m = s(xi, xt, hard=False, **kw)
            except Exception as e:
                raise _fail(c, case, f"forward with style labels raised {type(e).__name__}: {e}") from None
            _validate(c, case, m, xi, True, f"style={None if style is None else style.tolist()}")


#: Every check, by name, in the order they run.
CHECKS: dict[str, Callable[[StrategyCase], None]] = {
    "construct": check_construct,
    "shapes": check_shapes,
    "values": check_values,
    "inputs_untouched": check_inputs_untouched,
    "dtypes": check_dtypes,
    "devices": check_devices,
    "determinism": check_determinism,
    "hard_masks": check_hard_masks,
    "complementary": check_complementary,
    "gradients": check_gradients,
    "state_dict": check_state_dict,
    "critic": check_critic,
    "style": check_style,
}


@dataclass(frozen=True)
class StrategyCheck:
    """One check on one strategy case; calling it runs the check (under pytest, a check that
    does not apply is skipped)."""

    case: StrategyCase
    check: str

    @property
    def id(self) -> str:
        return f"{self.case.label}-{self.check}"

    def run(self) -> None:
        """Run the check; raise AssertionError naming it on failure, NotApplicable if it cannot apply."""
        try:
            with torch.random.fork_rng(devices=[]):  # the caller's global RNG stays as it was
                CHECKS[self.check](self.case)
        except (AssertionError, NotApplicable):
            raise
        except Exception as e:  # anything else the strategy raised still names the check
            raise _fail(self.check, self.case, f"raised {type(e).__name__}: {e}") from e

    def __call__(self) -> None:
        try:
            self.run()
        except NotApplicable as e:
            import pytest

            pytest.skip(f"{self.id}: {e}")

    def __repr__(self) -> str:
        return f"StrategyCheck({self.id})"


def _check_names(checks: Iterable[str] | None, xfail: Mapping[str, str]) -> list[str]:
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in [*names, *xfail] if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown conformance check(s) {unknown}; the checks are: {', '.join(CHECKS)}")
    return names


def strategy_checks(strategy: type[MaskStrategy] | StrategyCase,
                    checks: Iterable[str] | None = None) -> Iterator[StrategyCheck]:
    """The checks of one strategy (or case), as callables, in order."""
    case = _as_case(strategy)
    for name in _check_names(checks, case.xfail):
        yield StrategyCheck(case, name)


def check_strategy(cls: type[MaskStrategy] | StrategyCase, *, spec: EncodingSpec | None = None,
                   options: Mapping[str, Any] | Sequence[str] | None = None,
                   xfail: Mapping[str, str] | None = None,
                   checks: Iterable[str] | None = None) -> dict[str, str]:
    """Run the conformance checks on a strategy class; raise if any fails.

    ``spec``/``options``/``xfail`` as in :class:`StrategyCase` (or pass a case); ``checks``
    limits the run to these names. Every check runs even after a failure; the
    :class:`AssertionError` raised at the end names each failed check and the strategy.
    Returns ``{check: "passed" | "skipped: why" | "xfailed: reason"}``.
    """
    if isinstance(cls, StrategyCase):
        if spec is not None or options is not None or xfail is not None:
            raise TypeError("pass spec/options/xfail inside the StrategyCase, not beside it")
        case = cls
    else:
        case = StrategyCase(cls, options=options, spec=spec, xfail=dict(xfail or {}))
    report: dict[str, str] = {}
    failures: list[str] = []
    for chk in strategy_checks(case, checks):
        reason = case.xfail.get(chk.check)
        try:
            chk.run()
        except NotApplicable as e:
            report[chk.check] = f"skipped: {e}"
            continue
        except AssertionError as e:
            if reason is not None:
                report[chk.check] = f"xfailed: {reason}"
            else:
                report[chk.check] = "failed"
                failures.append(str(e))
            continue
        if reason is not None:
            report[chk.check] = "failed"
            failures.append(f"[{chk.check}] {case.who}: declared as an expected failure ({reason}) "
                            f"but passed; remove it from xfail")
        else:
            report[chk.check] = "passed"
    if failures:
        raise AssertionError(f"{len(failures)} conformance check(s) failed for {case.who}:\n"
                             + "\n".join(f"  {f}" for f in failures))
    return report


def parametrize_strategy_checks(strategies: type[MaskStrategy] | StrategyCase
                                | Iterable[type[MaskStrategy] | StrategyCase],
                                checks: Iterable[str] | None = None) -> Any:
    """A ``pytest.mark.parametrize`` over ``strategy_check``: one test per (strategy, check).

    Test ids are ``<strategy>-<check>``; a case's ``xfail`` entries become strict
    ``pytest.mark.xfail`` marks with their reason. Use::

        @parametrize_strategy_checks([Temporal, StrategyCase(Mine, spec=SPEC)])
        def test_conformance(strategy_check):
            strategy_check()
    """
    import pytest

    if isinstance(strategies, (type, StrategyCase)):
        strategies = [strategies]
    params = []
    seen: set[str] = set()
    for obj in strategies:
        case = _as_case(obj)
        for chk in strategy_checks(case, checks):
            if chk.id in seen:
                raise ValueError(f"two strategy cases give the test id '{chk.id}'; set StrategyCase(id=...)")
            seen.add(chk.id)
            reason = case.xfail.get(chk.check)
            marks = [pytest.mark.xfail(reason=reason, strict=True, raises=AssertionError)] if reason else []
            params.append(pytest.param(chk, id=chk.id, marks=marks))
    if not params:
        raise ValueError("parametrize_strategy_checks got no strategies")
    return pytest.mark.parametrize("strategy_check", params)
