"""maskkit.testing, the plugin conformance kit: it passes on every built-in strategy, and it fails,
naming the check and the strategy, on strategies broken on purpose."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from maskkit import EncodingSpec, Masks, MaskStrategy
from maskkit.plugins import BUILTIN_DIST, PluginManager
from maskkit.testing import (
    CHECKS,
    StrategyCase,
    check_strategy,
    parametrize_strategy_checks,
    strategy_checks,
)

_VARS = ("MASKKIT_LOAD_PLUGINS", "MASKKIT_DISABLE_PLUGINS", "MASKKIT_NO_PLUGINS", "MASKKIT_STRICT_PLUGINS")


@contextmanager
def _plain_env():
    saved = {v: os.environ.pop(v) for v in _VARS if v in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def builtin_strategies() -> list[type[MaskStrategy]]:
    """Every strategy registered by maskkit's own distribution, through its entry points."""
    with _plain_env():
        mgr = PluginManager()  # private: the process-wide manager is left alone
        reg = mgr.strategies()
    return [e.cls for e in reg.values() if e.dist == BUILTIN_DIST]


BUILTINS = builtin_strategies()
FIXED = {"temporal", "frequency", "energy", "spectral", "hybrid", "none"}

# an STFT-like spec (real parts of 5 bins, then imaginary parts): frequency splits in Hz
STFT_LIKE = EncodingSpec(dim=10, frame_rate=50.0, sample_rate=8000,
                         channel_freqs=tuple(float(k * 1000) for k in range(5)) * 2)

#: Known failures of built-in strategies, ``{strategy name: {check: reason}}``. They become strict
#: xfails: the test fails once the strategy passes, so that the entry gets removed.
KNOWN_FAILURES: dict[str, dict[str, str]] = {}

CASES = [
    *(StrategyCase(c, xfail=KNOWN_FAILURES.get(c.name, {})) for c in BUILTINS),
    *[StrategyCase(c, spec=STFT_LIKE, id=f"{c.name}@stft-spec") for c in BUILTINS
      if c.name in ("frequency", "hybrid")],
    # small segments, so the crossfades show up at the kit's small T
    *[StrategyCase(c, options={"segment": 4, "fade": 2}, id=f"{c.name}-short") for c in BUILTINS
      if c.name in ("temporal", "hybrid")],
]


def test_every_builtin_strategy_is_checked():
    names = {c.name for c in BUILTINS}
    assert FIXED <= names, f"built-in strategies missing from the conformance run: {FIXED - names}"


@parametrize_strategy_checks(CASES)
def test_builtin_conformance(strategy_check):
    strategy_check()


# -- strategies broken on purpose --------------------------------------------------------------
class Good(MaskStrategy):
    """A correct complementary strategy the broken ones below start from."""

    name = "good"
    complementary = True

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.mean(dim=1, keepdim=True))

    def forward(self, x_input, x_target, *, hard=False):
        m = self.mask(x_input)
        if hard:
            m = (m > 0.5).to(x_input.dtype)
        return Masks(m, 1 - m)


class WrongShape(Good):
    name = "wrong-shape"

    def forward(self, x_input, x_target, *, hard=False):
        m = super().forward(x_input, x_target, hard=hard).input_mask
        m = torch.cat([m, m[..., :1]], dim=-1)  # one frame too many
        return Masks(m, 1 - m)


class NaNMask(Good):
    name = "nan-mask"

    def forward(self, x_input, x_target, *, hard=False):
        m = super().forward(x_input, x_target, hard=hard).input_mask.clone()
        m[..., 0] = float("nan")
        return Masks(m, 1 - m)


class AboveOne(Good):
    name = "above-one"

    def forward(self, x_input, x_target, *, hard=False):
        m = super().forward(x_input, x_target, hard=hard).input_mask
        return Masks(2 * m, 1 - m)


class NotComplementary(Good):
    name = "not-complementary"

    def forward(self, x_input, x_target, *, hard=False):
        m = super().forward(x_input, x_target, hard=hard).input_mask
        return Masks(m, (1 - m) if hard else 0.9 * (1 - m))  # soft masks leave 10% out


class SoftWhenHard(Good):
    name = "soft-when-hard"

    def forward(self, x_input, x_target, *, hard=False):
        return super().forward(x_input, x_target, hard=False)


class Float32Only(Good):
    name = "float32-only"

    def forward(self, x_input, x_target, *, hard=False):
        m = super().forward(x_input.float(), x_target.float(), hard=hard).input_mask
        return Masks(m, 1 - m)


class Random(Good):
    name = "random"

    def forward(self, x_input, x_target, *, hard=False):
        m = torch.rand(x_input.shape, dtype=x_input.dtype)
        if hard:
            m = m.round()
        return Masks(m, 1 - m)


class InPlace(Good):
    name = "in-place"

    def forward(self, x_input, x_target, *, hard=False):
        with torch.no_grad():
            x_input.clamp_(-1, 1)
        return super().forward(x_input, x_target, hard=hard)


@dataclass
class _Opt:
    width: int = 4


class LearnableBase(MaskStrategy):
    name = "learnable-good"
    learnable = True
    Config = _Opt

    def __init__(self, config=None, *, spec=None):
        super().__init__(config, spec=spec)
        self.proj = nn.Linear(self.spec.dim, 1)

    def forward(self, x_input, x_target, *, hard=False):
        logits = self.proj(x_input.transpose(1, 2)).transpose(1, 2)  # [B, 1, T]
        m = torch.sigmoid(logits)
        if hard:  # straight-through: forward 0/1, backward through the sigmoid
            m = (m > 0.5).to(m.dtype) + m - m.detach()
        return Masks(m, 1 - m, reg_loss=(m * (1 - m)).mean())


class UnusedParameter(LearnableBase):
    name = "unused-parameter"

    def __init__(self, config=None, *, spec=None):
        super().__init__(config, spec=spec)
        self.judge = nn.Linear(3, 1)  # never used in forward


class HardWithoutGradient(LearnableBase):
    name = "hard-no-grad"

    def forward(self, x_input, x_target, *, hard=False):
        masks = super().forward(x_input, x_target, hard=hard)
        if hard:
            m = (masks.input_mask > 0.5).to(x_input.dtype)  # no straight-through: no gradient
            return Masks(m, 1 - m)
        return masks


class UnsavedState(LearnableBase):
    name = "unsaved-state"

    def __init__(self, config=None, *, spec=None):
        super().__init__(config, spec=spec)
        self.offset = torch.randn(1)  # a plain attribute: not in state_dict

    def forward(self, x_input, x_target, *, hard=False):
        masks = super().forward(x_input + self.offset.to(x_input), x_target, hard=hard)
        return masks


class NoParameters(LearnableBase):
    name = "no-parameters"

    def __init__(self, config=None, *, spec=None):
        super().__init__(config, spec=spec)
        self.proj.requires_grad_(False)


class BadName(Good):
    name = "two words"


BROKEN = [
    (WrongShape, "shapes", "not broadcastable"),
    (NaNMask, "values", "NaN"),
    (AboveOne, "values", "outside [0, 1]"),
    (NotComplementary, "complementary", "differs from 1"),
    (SoftWhenHard, "hard_masks", "not 0 or 1"),
    (Float32Only, "dtypes", "torch.float32 for a torch.float64 input"),
    (Random, "determinism", "differs between two eval-mode calls"),
    (InPlace, "inputs_untouched", "modified its inputs in place"),
    (UnusedParameter, "gradients", "judge.weight"),
    (HardWithoutGradient, "gradients", "straight-through"),
    (UnsavedState, "state_dict", "differs after a state_dict round trip"),
    (NoParameters, "construct", "no trainable parameters"),
    (BadName, "construct", "usable as '--strategy NAME'"),
]


OPTIONAL = {"critic", "style"}  # capabilities the reference strategies do not offer: skipped


def test_reference_strategies_pass():
    report = check_strategy(Good)
    assert set(report) == set(CHECKS)
    assert all(report[k].startswith("skipped") for k in OPTIONAL), report
    assert all(v == "passed" for k, v in report.items() if k not in OPTIONAL), report
    report = check_strategy(LearnableBase)
    assert report["complementary"].startswith("skipped")
    assert all(v == "passed" for k, v in report.items() if k not in {"complementary", *OPTIONAL}), report


# -- the optional capabilities: a critic, style conditioning ---------------------------------------
class WithCritic(Good):
    name = "with-critic"

    def build_critic(self):
        return nn.Sequential(nn.Conv1d(self.spec.dim, 4, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                             nn.Linear(4, 2))


class CriticWrongShape(Good):
    name = "critic-wrong-shape"

    def build_critic(self):
        return nn.Conv1d(self.spec.dim, 2, 1)  # [B, 2, T]: not logits [B, K]


class Styled(Good):
    name = "styled"
    supports_style = True

    @dataclass
    class Config:
        num_styles: int = 0

    def forward(self, x_input, x_target, *, hard=False, style=None):
        m = self.mask(x_input)
        if style is not None:
            shift = torch.as_tensor(style, dtype=m.dtype).reshape(-1, 1, 1) / max(self.config.num_styles, 1)
            m = (m + shift).clamp(0, 1)
        if hard:
            m = (m > 0.5).to(x_input.dtype)
        return Masks(m, 1 - m)


class StyledWithoutOption(Good):
    name = "styled-without-option"
    supports_style = True


def test_optional_capabilities_are_checked_when_offered():
    assert check_strategy(WithCritic)["critic"] == "passed"
    assert check_strategy(Styled)["style"] == "passed"
    with pytest.raises(AssertionError, match=r"\[critic\] strategy 'critic-wrong-shape'.*expected logits"):
        check_strategy(CriticWrongShape, checks=["critic"])
    with pytest.raises(AssertionError, match=r"\[style\] .*no option 'num_styles'"):
        check_strategy(StyledWithoutOption, checks=["style"])


@pytest.mark.parametrize("cls, check, detail", BROKEN, ids=[b[0].name for b in BROKEN])
def test_broken_strategy_fails_the_check_that_names_it(cls, check, detail):
    with pytest.raises(AssertionError) as exc:
        check_strategy(cls, checks=[check])
    msg = str(exc.value)
    assert f"[{check}]" in msg and f"strategy '{cls.name}'" in msg and cls.__qualname__ in msg, msg
    assert detail in msg, msg
    # the full run names the same check among the failed ones
    with pytest.raises(AssertionError, match=rf"\[{check}\] strategy '{cls.name}'"):
        check_strategy(cls)


def test_broken_strategy_passes_the_checks_it_does_not_break():
    # a broken promise of complementarity is only that: the kit does not blame unrelated checks
    report = check_strategy(NotComplementary, xfail={"complementary": "broken on purpose"})
    assert report["complementary"] == "xfailed: broken on purpose"
    assert all(v == "passed" for k, v in report.items() if k not in {"complementary", *OPTIONAL}), report


def test_xfail_that_passes_is_reported():
    with pytest.raises(AssertionError, match=r"\[values\].*expected failure.*but passed"):
        check_strategy(Good, checks=["values"], xfail={"values": "stale"})


def test_unknown_check_names_are_refused():
    with pytest.raises(ValueError, match="unknown conformance check.*shapez"):
        check_strategy(Good, checks=["shapez"])
    with pytest.raises(ValueError, match="unknown conformance check.*valuez"):
        check_strategy(Good, xfail={"valuez": "typo"})


def test_parametrize_gives_one_id_per_strategy_and_check():
    mark = parametrize_strategy_checks([Good, StrategyCase(AboveOne, xfail={"values": "on purpose"})])
    argname, params = mark.args
    assert argname == "strategy_check"
    ids = [p.id for p in params]
    assert ids == [f"good-{c}" for c in CHECKS] + [f"above-one-{c}" for c in CHECKS]
    marked = {p.id: p.marks for p in params if p.marks}
    assert list(marked) == ["above-one-values"]
    (xfail,) = marked["above-one-values"]
    assert xfail.name == "xfail" and xfail.kwargs["reason"] == "on purpose" and xfail.kwargs["strict"]
    with pytest.raises(ValueError, match="test id 'good-construct'"):
        parametrize_strategy_checks([Good, Good])


@parametrize_strategy_checks([StrategyCase(AboveOne, xfail={"values": "values above 1 on purpose",
                                                            "dtypes": "values above 1 on purpose",
                                                            "devices": "values above 1 on purpose",
                                                            "hard_masks": "values above 1 on purpose",
                                                            "complementary": "values above 1 on purpose"})])
def test_xfail_marks_work_under_pytest(strategy_check):
    strategy_check()


def test_not_applicable_check_is_skipped_under_pytest():
    (chk,) = strategy_checks(LearnableBase, checks=["complementary"])
    with pytest.raises(pytest.skip.Exception, match="complementary = True"):
        chk()


def test_spec_with_channel_frequencies_fixes_D():
    case = StrategyCase(Good, spec=STFT_LIKE)
    assert {d for _, d, _ in case.all_shapes()} == {STFT_LIKE.dim}
    assert any(t == 1 for _, _, t in case.all_shapes())
    plain = StrategyCase(Good)
    assert {1, 8} <= {d for _, d, _ in plain.all_shapes()}


def test_kit_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_strategy(LearnableBase, checks=["construct", "determinism", "state_dict"])
    assert torch.equal(torch.rand(3), expected)


def test_testing_module_does_not_import_pytest():
    code = "import sys, maskkit.testing; print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
