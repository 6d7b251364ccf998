"""Property tests (hypothesis): every built-in strategy and every mask metric, on any small shape,
dtype and content (zeros, huge values, negative values, random noise).

What must hold whatever the input:
- a strategy's masks are floating, finite, in [0, 1] and broadcastable to the input's ``[B, D, T]``
  (checked by :func:`maskkit.strategy.validate_masks`, the same check the trainer runs, and again
  here element-wise);
- where the strategy class promises ``complementary = True``, ``input_mask + target_mask == 1``
  within 1e-6; ``hard=True`` masks are exactly 0 or 1 and complementary for every strategy that
  promises it, and for creative-agent (its documented hard mode);
- every metric of :data:`maskkit.metrics.METRICS` is finite and in its documented range.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import maskkit
from maskkit.metrics import METRICS
from maskkit.plugins import build_strategy, get_strategy_entry, strategy_names
from maskkit.strategy import validate_masks

PROPS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])

#: Strategies whose ``hard=True`` masks are binary and exactly complementary: every strategy that
#: promises complementarity, and creative-agent, whose soft masks are not but whose hard ones are.
HARD_COMPLEMENTARY_EXTRA = {"creative-agent"}

#: Documented ranges of the mask metrics (for masks in [0, 1]); see maskkit/metrics.py.
METRIC_RANGES = {
    "complementarity": (0.0, 100.0),   # percent
    "coverage": (0.0, 2.0),            # mean(im) + mean(tm)
    "coverage_error": (0.0, 1.0),      # mean((im + tm - 1)^2)
    "balance": (0.0, 1.0),             # share of the input
    "temporal_diversity": (0.0, 0.25),  # variance of values in [0, 1] is at most 1/4
    "adaptivity": (0.0, 0.5),          # mean absolute deviation of values in [0, 1] is at most 1/2
}

DTYPES = (torch.float32, torch.float64)
#: Content kinds: each is (name, builder(generator, shape, dtype)).
CONTENTS = ("zeros", "ones", "noise", "negative", "huge", "tiny", "mixed-sign-huge", "constant")


#: The "huge" magnitude: 1e30 for the fixed rules; 1e15 for learned strategies, whose float32
#: attention products (squares of features) overflow past about 1e19 - far above any codec's
#: encoding, and a limit of float32, not of the strategy.
HUGE_FIXED, HUGE_LEARNED = 1e30, 1e15


def _content(kind: str, seed: int, shape: tuple[int, ...], dtype: torch.dtype,
             huge: float = HUGE_FIXED) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    if kind == "zeros":
        x = torch.zeros(shape, dtype=torch.float64)
    elif kind == "ones":
        x = torch.ones(shape, dtype=torch.float64)
    elif kind == "noise":
        x = noise
    elif kind == "negative":
        x = -noise.abs() - 1.0
    elif kind == "huge":
        x = noise.abs() * huge
    elif kind == "tiny":
        x = noise.abs() * 1e-30
    elif kind == "mixed-sign-huge":
        x = noise * huge
    elif kind == "constant":
        x = torch.full(shape, 3.5, dtype=torch.float64)
    else:  # pragma: no cover - a typo in CONTENTS
        raise AssertionError(kind)
    return x.to(dtype)


@functools.cache
def _strategy(name: str, dim: int, dtype: torch.dtype) -> torch.nn.Module:
    """One instance per (strategy, D, dtype), in eval mode (dropout off: a property, not a
    sample). A learned strategy's parameters are cast to the input's dtype, as a user running it
    in float64 would (an nn.Module computes in its parameters' dtype)."""
    torch.manual_seed(0)
    s = build_strategy(name, spec=maskkit.EncodingSpec(dim=dim)).eval()
    return s.to(dtype) if s.learnable else s


@st.composite
def pairs(draw: st.DrawFn) -> tuple[tuple[int, int, int], torch.dtype, tuple[str, int], tuple[str, int]]:
    """A shape, a dtype and the (content kind, seed) of the input and of the target."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 200)))
    dtype = draw(st.sampled_from(DTYPES))
    kinds = [(draw(st.sampled_from(CONTENTS)), draw(st.integers(0, 2**16))) for _ in range(2)]
    return shape, dtype, kinds[0], kinds[1]


def _build(name: str, data) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    shape, dtype, (ki, si), (kt, stt) = data
    huge = HUGE_LEARNED if get_strategy_entry(name).cls.learnable else HUGE_FIXED
    xi, xt = _content(ki, si, shape, dtype, huge), _content(kt, stt, shape, dtype, huge)
    return _strategy(name, shape[1], dtype), xi, xt


def _check_masks(name: str, masks: maskkit.Masks, x: torch.Tensor, complementary: bool) -> None:
    validate_masks(masks, x, name)  # floating, 3-D, broadcastable, finite, in [0, 1]
    for m in (masks.input_mask, masks.target_mask):
        assert torch.broadcast_shapes(m.shape, x.shape) == x.shape
        assert bool(torch.isfinite(m).all())
        assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    if complementary:
        total = (masks.input_mask + masks.target_mask).double()
        assert float((total - 1.0).abs().max()) <= 1e-6, f"{name}: masks do not sum to 1"
    if masks.reg_loss is not None:
        assert bool(torch.isfinite(masks.reg_loss).all()), f"{name}: reg_loss not finite"


STRATEGIES = strategy_names()


def test_every_builtin_strategy_is_covered():
    # The list comes from the registry; this fails if the built-ins vanish (a plugin that stops
    # loading would otherwise make the property tests below silently test nothing).
    assert {"temporal", "frequency", "energy", "spectral", "hybrid", "none"} <= set(STRATEGIES)


@pytest.mark.parametrize("name", STRATEGIES)
@PROPS
@given(data=pairs(), hard=st.booleans())
def test_strategy_masks_are_valid_for_any_input(name, data, hard):
    cls = get_strategy_entry(name).cls
    strategy, xi, xt = _build(name, data)
    with torch.no_grad():
        masks = strategy(xi, xt, hard=hard)
    complementary = bool(cls.complementary) or (hard and name in HARD_COMPLEMENTARY_EXTRA)
    _check_masks(name, masks, xi, complementary)
    if hard and complementary:
        for m in (masks.input_mask, masks.target_mask):
            assert bool(((m == 0) | (m == 1)).all()), f"{name}: hard masks are not binary"


@pytest.mark.parametrize("name", STRATEGIES)
@PROPS
@given(data=pairs())
def test_strategy_masks_give_metrics_in_range(name, data):
    strategy, xi, xt = _build(name, data)
    with torch.no_grad():
        masks = strategy(xi, xt)
    im = masks.input_mask.expand_as(xi)
    tm = masks.target_mask.expand_as(xi)
    for metric, value in maskkit.metrics.mask_metrics(im, tm).items():
        lo, hi = METRIC_RANGES[metric]
        assert lo - 1e-6 <= value <= hi + 1e-6, f"{name}: {metric} = {value} outside [{lo}, {hi}]"


def test_every_metric_has_a_documented_range():
    assert set(METRIC_RANGES) == set(METRICS)


@st.composite
def mask_pairs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Two masks in [0, 1], each of shape [B, D, T] or a broadcastable [1, 1, T] / [1, D, 1]."""
    B, D, T = draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 200))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        shape = draw(st.sampled_from([(B, D, T), (1, 1, T), (1, D, 1)]))
        kind = draw(st.sampled_from(["uniform", "binary", "zeros", "ones", "constant"]))
        u = torch.rand(shape, generator=g, dtype=torch.float64)
        if kind == "binary":
            u = (u > 0.5).double()
        elif kind == "zeros":
            u = torch.zeros(shape, dtype=torch.float64)
        elif kind == "ones":
            u = torch.ones(shape, dtype=torch.float64)
        elif kind == "constant":
            u = torch.full(shape, float(u.flatten()[0]), dtype=torch.float64)
        out.append(u.to(dtype))
    return out[0], out[1]


@pytest.mark.parametrize("metric", sorted(METRICS))
@PROPS
@given(masks=mask_pairs())
def test_metrics_are_finite_and_in_range(metric, masks):
    im, tm = masks
    value = METRICS[metric](im, tm)
    assert value.dim() == 0 and bool(torch.isfinite(value))
    lo, hi = METRIC_RANGES[metric]
    assert lo - 1e-6 <= float(value) <= hi + 1e-6, f"{metric} = {float(value)} outside [{lo}, {hi}]"


@PROPS
@given(masks=mask_pairs())
def test_metric_identities(masks):
    im, tm = masks
    # complementarity is (1 - overlap) * 100; complementary masks have zero coverage error.
    ov = float((im * tm).mean())
    assert float(METRICS["complementarity"](im, tm)) == pytest.approx((1 - ov) * 100, abs=1e-4)
    full = im.expand(torch.broadcast_shapes(im.shape, tm.shape))
    assert float(METRICS["coverage_error"](full, 1 - full)) == pytest.approx(0.0, abs=1e-10)
    assert float(METRICS["coverage"](full, 1 - full)) == pytest.approx(1.0, abs=1e-6)
