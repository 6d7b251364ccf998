"""Core: the strategy interface, the fixed strategies' values, metrics, options, registry, CLI."""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import maskkit
from maskkit import EncodingSpec, Masks, MaskStrategy, hookimpl, metrics
from maskkit.config import build_config
from maskkit.errors import ConfigError, MaskValidationError, PluginError, UnknownNameError
from maskkit.plugins import build_strategy, get_strategy_entry, strategy_names
from maskkit_cli.main import cli

FIXED = ["temporal", "frequency", "energy", "spectral", "hybrid", "none"]
REF_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def pair(B=2, D=8, T=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, T, generator=g), torch.randn(B, D, T, generator=g)


# -- registry through the installed distribution's entry points ----------------------------------
def test_entry_points_hold_the_builtins():
    eps = {ep.name: ep for ep in md.entry_points(group="maskkit")}
    assert {"fixed", "creative-agent", "codecs"} <= set(eps)
    assert eps["fixed"].dist.name == "maskkit"
    assert eps["fixed"].value == "maskkit_fixed"


def test_every_fixed_strategy_comes_from_the_maskkit_distribution():
    for name in FIXED:
        entry = get_strategy_entry(name)
        assert entry.dist == "maskkit" and entry.plugin == "fixed"
        assert entry.cls.name == name and not entry.cls.learnable


def test_core_imports_no_plugin():
    core = Path(maskkit.__file__).parent
    for f in core.glob("*.py"):
        text = f.read_text()
        for plugin in ("maskkit_fixed", "maskkit_creative_agent", "maskkit_codecs"):
            assert f"import {plugin}" not in text and f"from {plugin}" not in text, f.name


def test_unknown_strategy_lists_the_available_ones():
    with pytest.raises(UnknownNameError) as e:
        build_strategy("nope")
    for name in FIXED:
        assert name in str(e.value)


# -- temporal -------------------------------------------------------------------------------------
def test_temporal_values_at_known_frames():
    x, y = pair(T=400)
    m = build_strategy("temporal")(x, y)
    im, tm = m.input_mask[0, 0], m.target_mask[0, 0]
    assert m.input_mask.shape == (1, 1, 400)
    # fade = min(10, 150 // 15) = 10: the input fades out over frames 140..149 (1.0 .. 0.1)
    assert im[:140].eq(1).all()
    assert torch.allclose(im[140:150], torch.linspace(1.0, 0.1, 10), atol=1e-6)
    assert im[150:300].eq(0).all()
    # the input fades in after the boundary at 300: 0, 0.1, ..., 0.9, then 1
    assert torch.allclose(im[300:310], torch.arange(10) / 10.0, atol=1e-6)
    assert im[310:].eq(1).all()
    assert torch.allclose(im + tm, torch.ones(400))


def test_temporal_matches_the_seed_reference():
    sys.path.insert(0, str(REF_DIR))
    try:
        from seed_reference import ref_temporal_mask
    except ImportError:
        pytest.skip("shared/reference not beside the checkout")
    finally:
        sys.path.pop(0)
    for T, seg in [(1500, 150), (151, 150), (1000, 15), (333, 40), (100, 7)]:
        x = torch.ones(1, 1, T)
        a, b = ref_temporal_mask(x, x, seg)
        m = build_strategy("temporal", {"segment": seg})(x, x)
        assert torch.allclose(m.input_mask, a, atol=1e-6) and torch.allclose(m.target_mask, b, atol=1e-6)


def test_temporal_complementarity_at_least_96_percent():
    x, y = pair(T=1500)
    m = build_strategy("temporal")(x, y)
    assert float(metrics.complementarity(m.input_mask, m.target_mask)) >= 96.0


@pytest.mark.parametrize("T", [1, 2, 149, 150, 151])
def test_temporal_short_inputs(T):
    x, y = pair(B=3, D=1, T=T)
    m = build_strategy("temporal")(x, y)
    assert m.input_mask.shape == (1, 1, T)
    assert torch.equal(m.input_mask, torch.ones(1, 1, T)[..., :T]) if T <= 140 else True


def test_temporal_hard_is_binary_and_fade_option():
    x, y = pair(T=400)
    hard = build_strategy("temporal")(x, y, hard=True)
    assert set(hard.input_mask.unique().tolist()) <= {0.0, 1.0}
    m = build_strategy("temporal", ["segment=20", "fade=5"])(x, y)
    assert torch.allclose(m.input_mask[0, 0, 15:20], torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2]))
    with pytest.raises(ConfigError, match="fade"):
        build_strategy("temporal", {"segment": 20, "fade": 11})


def test_temporal_follows_dtype_and_device():
    x = torch.randn(2, 4, 300, dtype=torch.float64)
    m = build_strategy("temporal")(x, x)
    assert m.input_mask.dtype == torch.float64 and m.input_mask.device == x.device


# -- frequency ------------------------------------------------------------------------------------
def test_frequency_by_channel_index():
    x, y = pair(D=10, T=5)
    m = build_strategy("frequency")(x, y)
    assert m.input_mask.shape == (1, 10, 1)
    assert m.input_mask[0, :3, 0].eq(1).all() and torch.allclose(m.input_mask[0, 3:, 0], torch.tensor(0.2))
    assert torch.allclose(m.target_mask[0, :3, 0], torch.tensor(0.2)) and m.target_mask[0, 3:, 0].eq(1).all()


def test_frequency_splits_in_hz_when_the_codec_gives_frequencies():
    # channels laid out as [re_0..re_4, im_0..im_4]: index order is NOT frequency order
    freqs = (0.0, 1000.0, 2000.0, 3000.0, 4000.0) * 2
    s = build_strategy("frequency", {"split_hz": 1500.0}, spec=EncodingSpec(dim=10, channel_freqs=freqs))
    x = torch.randn(1, 10, 4)
    im = s(x, x).input_mask[0, :, 0]
    assert im.tolist() == pytest.approx([1, 1, 0.2, 0.2, 0.2] * 2)
    s2 = build_strategy("frequency", {"split_ratio": 0.5}, spec=EncodingSpec(dim=10, channel_freqs=freqs))
    assert s2(x, x).input_mask[0, :, 0].tolist() == pytest.approx([1, 1, 0.2, 0.2, 0.2] * 2)


def test_frequency_split_hz_outside_the_codecs_band_is_refused():
    freqs = (0.0, 1000.0, 2000.0, 3000.0, 4000.0) * 2
    x = torch.randn(1, 10, 4)
    for hz in (99_999.0, 0.0):  # above Nyquist / at DC: one song would get every channel
        s = build_strategy("frequency", {"split_hz": hz}, spec=EncodingSpec(dim=10, channel_freqs=freqs))
        with pytest.raises(ConfigError, match=r"'split_hz' \(.* Hz\) must lie within .*<= 4000 Hz"):
            s(x, x)


def test_frequency_split_hz_needs_frequencies():
    x = torch.randn(1, 4, 4)
    with pytest.raises(ConfigError, match="channel frequencies"):
        build_strategy("frequency", {"split_hz": 100.0})(x, x)


# -- energy, spectral, hybrid, none ---------------------------------------------------------------
def test_energy_keeps_the_loud_frames_of_the_input():
    x = torch.ones(2, 4, 10) * 0.1
    x[0, :, [2, 7]] = 5.0  # two loud frames in item 0
    x[1, :, [0, 1, 3]] = 5.0
    m = build_strategy("energy")(x, torch.randn(2, 4, 10))
    assert m.input_mask.shape == (2, 1, 10)
    assert m.input_mask[0, 0].nonzero().flatten().tolist() == [2, 7]
    assert m.input_mask[1, 0].nonzero().flatten().tolist() == [0, 1, 3]
    assert torch.equal(m.target_mask, 1 - m.input_mask)
    assert float(metrics.adaptivity(m.input_mask, m.target_mask)) > 0


def test_spectral_is_a_seeded_partition():
    x = torch.randn(1, 16, 3)
    a = build_strategy("spectral", {"seed": 3})(x, x)
    b = build_strategy("spectral", {"seed": 3})(x, x)
    c = build_strategy("spectral", {"seed": 4})(x, x)
    assert torch.equal(a.input_mask, b.input_mask) and not torch.equal(a.input_mask, c.input_mask)
    assert float(a.input_mask.sum()) == 8 and torch.equal(a.target_mask, 1 - a.input_mask)


def test_hybrid_is_a_time_frequency_checkerboard():
    x = torch.randn(1, 10, 400)
    m = build_strategy("hybrid")(x, x, hard=True)
    assert m.input_mask.shape == (1, 10, 400)
    assert m.input_mask[0, :3, :150].eq(1).all() and m.input_mask[0, 3:, :150].eq(0).all()
    assert m.input_mask[0, :3, 150:300].eq(0).all() and m.input_mask[0, 3:, 150:300].eq(1).all()
    assert torch.equal(m.target_mask, 1 - m.input_mask)


@pytest.mark.parametrize("name", ["temporal", "frequency", "spectral", "hybrid"])
def test_fixed_masks_are_built_once_per_shape_and_mode_and_stay_right(name):
    """The fixed strategies reuse their masks (no per-step host-device copy on a GPU): the same
    tensors for the same shape, fresh ones for another shape, dtype, hard flag or inference
    mode, and masks built under inference_mode do not break a later backward pass."""
    s = build_strategy(name)
    x = torch.randn(2, 10, 400)
    a, b = s(x, x), s(x.clone(), x)
    assert a.input_mask is b.input_mask and a.target_mask is b.target_mask
    other_shape = s(torch.randn(1, 10, 300), torch.randn(1, 10, 300))
    assert other_shape.input_mask.shape[-1] in (1, 300)
    assert torch.equal(s(x, x).input_mask, a.input_mask)  # the first key is still there and right
    hard = s(x, x, hard=True)
    assert set(hard.input_mask.unique().tolist()) <= {0.0, 1.0}
    assert s(x.double(), x.double()).input_mask.dtype == torch.float64
    fresh = build_strategy(name)
    with torch.inference_mode():
        inf = fresh(x, x)
    xg = torch.randn(2, 10, 400, requires_grad=True)
    m = fresh(xg, xg)
    assert m.input_mask is not inf.input_mask
    (xg * m.input_mask).sum().backward()
    assert xg.grad is not None and torch.equal(m.input_mask, a.input_mask)


def test_none_keeps_everything():
    x, y = pair()
    m = build_strategy("none")(x, y)
    assert float(metrics.complementarity(m.input_mask, m.target_mask)) == 0.0
    assert float(metrics.coverage(m.input_mask, m.target_mask)) == 2.0


@pytest.mark.parametrize("name", FIXED)
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 1, 7), (2, 5, 1), (2, 7, 160)])
def test_fixed_shapes_ranges_and_determinism(name, shape):
    x, y = torch.randn(*shape), torch.randn(*shape)
    s = build_strategy(name)
    m1, m2 = s(x, y), s(x, y)
    maskkit.validate_masks(m1, x, name)
    assert torch.equal(m1.input_mask, m2.input_mask) and torch.equal(m1.target_mask, m2.target_mask)
    assert m1.reg_loss is None


# -- validation -----------------------------------------------------------------------------------
def test_validate_masks_names_the_strategy():
    x = torch.randn(2, 3, 4)
    with pytest.raises(MaskValidationError, match="'bad'.*shape"):
        maskkit.validate_masks(Masks(torch.ones(2, 4, 4), torch.ones(1, 1, 4)), x, "bad")
    with pytest.raises(MaskValidationError, match="NaN"):
        maskkit.validate_masks(Masks(torch.full((1, 1, 4), float("nan")), torch.ones(1, 1, 4)), x, "bad")
    with pytest.raises(MaskValidationError, match="outside"):
        maskkit.validate_masks(Masks(torch.full((1, 1, 4), 1.5), torch.ones(1, 1, 4)), x, "bad")
    with pytest.raises(MaskValidationError, match="expected maskkit.Masks"):
        maskkit.validate_masks((torch.ones(1), torch.ones(1)), x, "bad")


# -- metrics on hand-computed examples ------------------------------------------------------------
def test_metric_formulas():
    im = torch.tensor([1.0, 0.5, 0.0, 1.0]).view(1, 1, 4)
    tm = torch.tensor([0.0, 0.5, 1.0, 1.0]).view(1, 1, 4)
    # overlap = (0 + .25 + 0 + 1) / 4 = 0.3125
    assert float(metrics.complementarity(im, tm)) == pytest.approx(68.75)
    assert float(metrics.coverage(im, tm)) == pytest.approx((2.5 + 2.5) / 4)
    # sums 1, 1, 1, 2 -> errors 0, 0, 0, 1
    assert float(metrics.coverage_error(im, tm)) == pytest.approx(0.25)
    assert float(metrics.balance(im, tm)) == pytest.approx(0.5)
    # population variance of [1, .5, 0, 1] is 0.171875; of [0, .5, 1, 1] also 0.171875
    assert float(metrics.temporal_diversity(im, tm)) == pytest.approx(0.171875)
    assert float(metrics.adaptivity(im, tm)) == 0.0
    two = torch.stack([torch.zeros(1, 4), torch.ones(1, 4)])  # [2, 1, 4]: items differ by 1 everywhere
    assert float(metrics.adaptivity(two, two)) == pytest.approx(0.5)
    assert set(metrics.mask_metrics(im, tm)) == set(metrics.METRICS)
    assert metrics.mask_metrics(Masks(im, tm)) == metrics.mask_metrics(im, tm)  # what a strategy returns
    with pytest.raises(ValueError, match=r"shapes \(1, 1, 4\) and \(1, 1, 3\) do not broadcast"):
        metrics.mask_metrics(im, tm[..., :3])
    with pytest.raises(TypeError, match="two mask tensors or a maskkit.Masks, got Tensor and NoneType"):
        metrics.mask_metrics(im)


def test_metrics_of_broadcast_masks_equal_the_expanded_ones():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        im = torch.rand(1, 1, 9, generator=g)
        tm = torch.rand(1, 5, 1, generator=g)
        full = metrics.mask_metrics(im.expand(3, 5, 9), tm.expand(3, 5, 9))
        # float32 sums in another order: equal to rounding (complementarity is in percent)
        assert metrics.mask_metrics(im, tm) == pytest.approx(full, rel=1e-6, abs=1e-6)


# -- options --------------------------------------------------------------------------------------
def test_options_convert_and_validate():
    @dataclass
    class Cfg:
        n: int = 1
        x: float = 0.5
        flag: bool = False
        tag: str | None = None

    c = build_config(Cfg, ["n=3", "x=0.25", "flag=yes", "tag=none"], owner="strategy 'demo'")
    assert (c.n, c.x, c.flag, c.tag) == (3, 0.25, True, None)
    with pytest.raises(ConfigError, match="unknown option 'nn'.*Valid options: flag, n, tag, x"):
        build_config(Cfg, {"nn": 1}, owner="strategy 'demo'")
    with pytest.raises(ConfigError, match="'n' expects an integer"):
        build_config(Cfg, ["n=abc"])
    with pytest.raises(ConfigError, match="key=value"):
        build_config(Cfg, ["n"])
    with pytest.raises(ConfigError, match="must be <= 1.0"):
        build_strategy("frequency", ["split_ratio=2"])


def test_a_strategy_config_of_any_form_is_checked_like_typed_options():
    temporal = get_strategy_entry("temporal").cls
    assert build_strategy("temporal", "segment=20").config.segment == 20  # one key=value string
    assert build_strategy("temporal", temporal.Config(segment=30)).config.segment == 30
    with pytest.raises(ConfigError, match="strategy 'temporal': option 'segment' must be >= 1"):
        build_strategy("temporal", temporal.Config(segment=-5))  # an instance: ranges checked too
    energy = get_strategy_entry("energy").cls
    with pytest.raises(ConfigError, match="config must be a TemporalConfig.*got EnergyConfig"):
        build_strategy("temporal", energy.Config())
    with pytest.raises(ConfigError, match="config must be a TemporalConfig.*got int"):
        build_strategy("temporal", 5)
    with pytest.raises(ConfigError, match="spec must be an EncodingSpec.*got int"):
        build_strategy("temporal", spec=514)  # type: ignore[arg-type]

    @dataclass
    class Wider(temporal.Config):  # a subclass's extra option and a derived field stay as given
        width: int = field(default=3, metadata={"min": 1})
        derived: int = field(default=0, init=False)

        def __post_init__(self) -> None:
            self.derived = 2 * self.width

    cfg = build_strategy("temporal", Wider(segment=40, width=5)).config
    assert (type(cfg), cfg.segment, cfg.width, cfg.derived) == (Wider, 40, 5, 10)
    with pytest.raises(ConfigError, match="option 'width' must be >= 1"):
        build_strategy("temporal", Wider(width=0))


@pytest.mark.parametrize("name", [*FIXED, "creative-agent"])
def test_wrong_inputs_to_a_strategy_are_named_not_misread(name):
    """A [D, T] pair (no batch axis) once gave energy masks of shape (D, 1), treating T as D."""
    s = build_strategy(name, spec=EncodingSpec(dim=8))
    x, y = pair(2, 8, 30)
    cases = [((x[0], y[0]), r"same shape \[B, D, T\].*\(8, 30\).*add the batch axis"),
             ((x[0, 0], y[0, 0]), r"same shape \[B, D, T\]"),
             ((x, y[..., :10]), r"same shape.*\(2, 8, 30\) and \(2, 8, 10\)"),
             ((x.long(), y.long()), "x_input must be floating point.*int64"),
             ((x, y.to("meta")), "x_input is on cpu but x_target on meta")]
    for args, match in cases:
        with pytest.raises(maskkit.InputError, match=match):
            s(*args)
    s(x, y)  # and the right pair still works


# -- runtime registration, duplicates, broken register hooks --------------------------------------
class Halves(MaskStrategy):
    name = "halves-test"
    description = "first half input, second half target"

    def forward(self, x_input, x_target, *, hard=False):
        T = x_input.shape[-1]
        m = (torch.arange(T) < T // 2).to(x_input.dtype).view(1, 1, T)
        return Masks(m, 1 - m)


class DupTemporal(Halves):
    name = "temporal"


def test_runtime_plugin_appears_and_duplicates_name_both(fresh_plugins):
    class Plugin:
        @hookimpl
        def register_strategies(self, register):
            register(Halves)

    fresh_plugins.register_plugin(Plugin(), "halves-plugin")
    assert "halves-test" in strategy_names()
    # a notebook cell run twice: the same name replaces it (pluggy's raw ValueError before) ...
    assert fresh_plugins.register_plugin(Plugin(), "halves-plugin") == "halves-plugin"
    assert strategy_names().count("halves-test") == 1
    # the same object under a second name: a PluginError (pluggy's raw ValueError before), and
    # the first registration stays as it was
    obj = Plugin()
    fresh_plugins.register_plugin(obj, "halves-plugin")
    with pytest.raises(PluginError, match="runtime plugin 'second-name': .*already registered"):
        fresh_plugins.register_plugin(obj, "second-name")
    assert strategy_names().count("halves-test") == 1

    class BadHook:  # a hook with a wrong argument name: pluggy's validation error, and no change
        @hookimpl
        def register_strategies(self, registr):
            registr(Halves)

    with pytest.raises(PluginError, match="(?s)runtime plugin 'halves-plugin': .*registr"):
        fresh_plugins.register_plugin(BadHook(), "halves-plugin")
    assert fresh_plugins.get_manager().pm.get_plugin("halves-plugin") is obj
    assert strategy_names().count("halves-test") == 1
    # ... but an installed plugin's name is not for taking
    with pytest.raises(PluginError, match="runtime plugin 'fixed': the name of the installed plugin 'fixed' "
                                          "from maskkit"):
        fresh_plugins.register_plugin(Plugin(), "fixed")
    assert "temporal" in strategy_names()

    class Dup:
        @hookimpl
        def register_strategies(self, register):
            register(DupTemporal)

    fresh_plugins.register_plugin(Dup(), "dup-plugin")
    # the second claimant is skipped with a warning naming both; maskkit's own stays usable
    with pytest.warns(UserWarning, match="'temporal'.*'fixed' from maskkit.*runtime plugin 'dup-plugin'"):
        reg = fresh_plugins.get_manager().strategies()
    assert reg["temporal"].plugin == "fixed" and "halves-test" in reg
    info = fresh_plugins.get_manager().plugins["dup-plugin"]
    assert info.status == "failed" and "unregister_plugin('dup-plugin')" in info.error
    fresh_plugins.unregister_plugin("dup-plugin")
    assert "temporal" in strategy_names()
    with pytest.raises(UnknownNameError, match="no plugin named 'dup-plugin' is registered.*: .*fixed"):
        fresh_plugins.unregister_plugin("dup-plugin")  # a typo was silently ignored
    # strict mode raises instead
    fresh_plugins.register_plugin(Dup(), "dup-plugin")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MASKKIT_STRICT_PLUGINS", "1")
        with pytest.raises(PluginError, match="'temporal'.*plugin 'fixed' from maskkit"):
            strategy_names()


@dataclass
class _NoDefault:
    split: float


class _NotADataclass:
    split = 0.5


@dataclass
class _BadDefault:
    split: float = field(default=2.0, metadata={"max": 1.0})


@pytest.mark.parametrize("bad, why", [
    ("instance", "an instance of Broken; register the class itself"),
    ("no-default", r"Config: option\(s\) split have no default"),
    ("not-dataclass", "Config must be a dataclass"),
    ("bad-default", r"the default of option 'split' is 2.0, but it must be <= 1.0"),
])
def test_a_bad_registration_skips_its_plugin_only(fresh_plugins, bad, why):
    """A plugin author's mistake in what it registers is reported once, naming the plugin, and
    the other strategies keep working (it never becomes every command's error)."""
    configs = {"no-default": _NoDefault, "not-dataclass": _NotADataclass, "bad-default": _BadDefault}

    class Broken(Halves):
        name = "broken-one"
        Config = configs.get(bad, Halves.Config)

    class Plugin:
        @hookimpl
        def register_strategies(self, register):
            register(Broken() if bad == "instance" else Broken)

    fresh_plugins.register_plugin(Plugin(), "author-plugin")
    with pytest.warns(UserWarning, match=rf"runtime plugin 'author-plugin' failed in register_strat.*{why}"):
        names = strategy_names()
    assert "temporal" in names and "broken-one" not in names
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0 and "author-plugin" in result.output and "failed" in result.output


class Raising(Halves):
    name = "raising"

    def forward(self, x_input, x_target, *, hard=False):
        raise RuntimeError("boom in forward")


@pytest.mark.parametrize("command", ["train", "masks", "arrange"])
def test_a_strategy_that_raises_is_named_not_a_traceback(fresh_plugins, tmp_path, command):
    """A plugin's strategy raising inside forward: the commands exit 2 with one line naming the
    strategy and its plugin (the traceback is one variable away), not a bare stack trace."""
    import numpy as np
    import soundfile as sf

    class Plugin:
        @hookimpl
        def register_strategies(self, register):
            register(Raising)

    fresh_plugins.register_plugin(Plugin(), "raiser")
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    for f, hz in ((a, 220), (b, 330)):
        sf.write(f, 0.3 * np.sin(2 * np.pi * hz * np.arange(24000) / 24000), 24000)
    a, b, out = str(a), str(b), str(tmp_path / "out")
    args = {"train": ["train", "--strategy", "raising", "--epochs", "1", "--checkpoint-dir", out],
            "masks": ["masks", "raising", a, b, "--png", out + ".png", "--seconds", "1"],
            "arrange": ["arrange", "--mix-only", "-s", "raising", a, b, "-o", out + ".wav"]}
    result = CliRunner().invoke(cli, args[command])
    assert result.exit_code == 2, result.output
    said = "strategy 'raising' (runtime plugin 'raiser') raised RuntimeError: boom in forward"
    assert said in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_a_plugin_failing_in_two_hooks_keeps_both_errors(fresh_plugins, capsys):
    class Broken:
        @hookimpl
        def register_strategies(self, register):
            raise RuntimeError("no strategies")

        @hookimpl
        def register_codecs(self, register):
            raise RuntimeError("no codecs")

        @hookimpl
        def register_commands(self, cli):
            raise RuntimeError("no commands")

    fresh_plugins.register_plugin(Broken(), "twice-broken")
    with pytest.warns(UserWarning):
        strategy_names()
        fresh_plugins.codec_names()
    fresh_plugins.get_manager().add_commands(click.Group("probe"))
    err = capsys.readouterr().err
    assert "maskkit: runtime plugin 'twice-broken' failed to add commands: no commands" in err

    class OwnError:  # a PluginError of the plugin's own is a failure like any other (not re-raised)
        @hookimpl
        def register_commands(self, cli):
            raise PluginError("plugin's own problem")

    fresh_plugins.register_plugin(OwnError(), "own-error")
    fresh_plugins.get_manager().add_commands(click.Group("probe"))
    err = capsys.readouterr().err
    assert "runtime plugin 'own-error' failed to add commands: plugin's own problem" in err
    fresh_plugins.unregister_plugin("own-error")
    with pytest.MonkeyPatch.context() as mp:  # strict mode: an error, as for the other hooks
        mp.setenv("MASKKIT_STRICT_PLUGINS", "1")
        with pytest.raises(PluginError, match="runtime plugin 'twice-broken' failed in register_commands"):
            fresh_plugins.get_manager().add_commands(click.Group("probe"))
    info = fresh_plugins.get_manager().plugins["twice-broken"]
    assert all(w in info.error for w in ("no strategies", "no codecs", "no commands")), info.error
    assert "no strategies" in info.traceback and "no commands" in info.traceback
    fresh_plugins.register_plugin(Halves, "another")  # rebuilds the registries: no error twice
    with pytest.warns(UserWarning):
        strategy_names()
    assert fresh_plugins.get_manager().plugins["twice-broken"].error.count("no strategies") == 1


def test_a_runtime_plugin_with_another_api_version_is_refused(fresh_plugins):
    import types

    for api, why in ((99, "targets maskkit plugin API 99"), ("1", "must be an integer")):
        mod = types.SimpleNamespace(MASKKIT_PLUGIN_API=api, __name__="future_plugin")
        with pytest.raises(PluginError, match=rf"runtime plugin 'future': .*{why}"):
            fresh_plugins.register_plugin(mod, "future")
    assert "future" not in fresh_plugins.get_manager().plugins


def test_a_register_hook_that_raises_is_skipped(fresh_plugins):
    class Broken:
        @hookimpl
        def register_strategies(self, register):
            raise RuntimeError("boom")

    fresh_plugins.register_plugin(Broken(), "broken-plugin")
    with pytest.warns(UserWarning, match="broken-plugin.*boom"):
        names = strategy_names()
    assert "temporal" in names
    info = fresh_plugins.get_manager().plugins["broken-plugin"]
    assert info.status == "failed" and "boom" in info.error


@pytest.mark.parametrize("bad", ["all", "bad name", "-dash", "a,b", ""])
def test_a_strategy_name_users_cannot_type_fails_its_plugin_not_maskkit(fresh_plugins, bad):
    class Good(Halves):
        name = "good-one.v2"

    class Bad(Halves):
        name = bad

    class Plugin:
        @hookimpl
        def register_strategies(self, register):
            register(Good)
            register(Bad)

    fresh_plugins.register_plugin(Plugin(), "badname-plugin")
    why = "without a name" if bad == "" else rf"{re.escape(repr(bad))}.*one word"
    with pytest.warns(UserWarning, match=rf"badname-plugin.*failed .*{why}"):
        names = strategy_names()
    assert "temporal" in names and "good-one.v2" not in names and bad not in names
    assert fresh_plugins.get_manager().plugins["badname-plugin"].status == "failed"


def test_allow_list_env_loads_nothing_else(fresh_plugins, monkeypatch):
    monkeypatch.setenv("MASKKIT_LOAD_PLUGINS", "codecs")
    assert "temporal" not in strategy_names()
    assert fresh_plugins.get_manager().plugins["fixed"].status == "disabled"
    # asking for a strategy of a plugin left out says why it is missing
    with pytest.raises(UnknownNameError, match=r"unknown strategy 'temporal'.*not loaded.*: .*fixed"):
        build_strategy("temporal")


def test_allow_or_deny_lists_naming_no_installed_plugin_warn(fresh_plugins, monkeypatch):
    monkeypatch.setenv("MASKKIT_DISABLE_PLUGINS", "fixd")
    with pytest.warns(UserWarning, match=r"no installed plugin is named 'fixd'.*installed: .*fixed"):
        names = strategy_names()
    assert "temporal" in names  # the typo disabled nothing
    fresh_plugins.reset_manager()  # a distribution's name (what pip shows) names its plugins
    monkeypatch.setenv("MASKKIT_DISABLE_PLUGINS", "maskkit")
    with pytest.warns(UserWarning, match=r"'maskkit' is a distribution: its plugin\(s\) are named codecs, "
                                         r"creative-agent, fixed"):
        strategy_names()


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_version_and_strategies_table():
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and maskkit.__version__ in r.output
    r = CliRunner().invoke(cli, ["strategies"], terminal_width=200)
    assert r.exit_code == 0, r.output
    for name in FIXED:
        assert name in r.output
    assert "maskkit" in r.output


def test_python_dash_m_maskkit_runs_the_command_line():
    """`python -m maskkit` (and so `torchrun -m maskkit train ...`) is the `maskkit` command."""
    import subprocess

    out = subprocess.run([sys.executable, "-m", "maskkit", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage: python -m maskkit" in out.stdout and "train" in out.stdout


def test_cli_strategies_on_an_80_column_terminal_keeps_names_counts_and_descriptions_whole():
    r = CliRunner().invoke(cli, ["strategies"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert max(len(line) for line in r.output.splitlines()) <= 80
    assert "temporal: Alternating time segments with short crossfades" in r.output
    line = next(ln for ln in r.output.splitlines() if "creative-agent" in ln and "│" in ln)
    assert "1,083,904" in line and "1,776,388" in line


def test_cli_strategies_show_and_unknown_name():
    r = CliRunner().invoke(cli, ["strategies", "show", "frequency"], terminal_width=200)
    assert r.exit_code == 0 and "split_ratio" in r.output and "0.3" in r.output
    assert "(0.0 to 1.0)" in r.output  # the options' ranges, so nobody has to find them by trial
    r = CliRunner().invoke(cli, ["strategies", "show", "nope"])
    assert r.exit_code == 2 and "unknown strategy 'nope'" in r.output and "temporal" in r.output


def test_cli_a_strategy_whose_constructor_fails_is_listed_and_shown_with_its_error(fresh_plugins):
    class Fragile(Halves):
        name = "fragile-test"
        learnable = True  # its parameter count needs an instance

        def __init__(self, *args, **kwargs):
            raise RuntimeError("needs a GPU")

    class Plugin:
        @hookimpl
        def register_strategies(self, register):
            register(Fragile)

    fresh_plugins.register_plugin(Plugin(), "fragile-plugin")
    for args in (["strategies"], ["strategies", "show", "fragile-test"]):
        r = CliRunner().invoke(cli, args, env={"COLUMNS": "250"})
        assert r.exit_code == 0, r.output
        assert "error: RuntimeError: needs a GPU" in r.output
    assert "first half input" in r.output  # the description still shows


def test_cli_a_broken_builtin_command_says_so_instead_of_no_such_command(monkeypatch):
    from maskkit_cli import main

    monkeypatch.setitem(main.BUILTIN_COMMANDS, "train", "maskkit_cli.no_such_module:train")
    r = CliRunner().invoke(cli, ["train", "--help"])
    assert r.exit_code != 0
    assert "the command 'train' failed to load from maskkit_cli.no_such_module" in r.output
    assert "No such command" not in r.output


def test_cli_plugins_lists_the_builtin_plugin():
    r = CliRunner().invoke(cli, ["plugins"], terminal_width=200)
    assert r.exit_code == 0 and "fixed" in r.output and "temporal" in r.output


def test_named_options_group_by_name_and_bad_items_are_named():
    from maskkit.config import parse_named_kv

    items = ["temporal:segment=100", "temporal:fade=5", "energy:quantile=0.5"]
    assert parse_named_kv(items, "--strategy-opt") == {"temporal": {"segment": "100", "fade": "5"},
                                                       "energy": {"quantile": "0.5"}}
    for bad in ("segment=100", ":segment=1", "temporal:segment"):
        with pytest.raises(ConfigError, match="--strategy-opt"):
            parse_named_kv([bad], "--strategy-opt")


def test_submodules_are_reachable_after_a_plain_import_maskkit():
    """docs/plugins.md: ``maskkit.plugins.reset_manager()`` after ``import maskkit``."""
    import subprocess

    code = ("import maskkit, sys; assert 'torch' not in sys.modules; "
            "print(maskkit.plugins.reset_manager.__name__, maskkit.train.train.__name__, "
            "maskkit.testing.__name__, maskkit.data.make_datasets.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["reset_manager", "train", "maskkit.testing", "make_datasets"]


def test_energy_kept_weighs_the_mask_by_the_songs_energy():
    """A mask that keeps the many quiet channels has a large mean but keeps little of the song."""
    from maskkit.metrics import balance, energy_kept

    x = torch.full((2, 10, 8), 0.1)
    x[:, 0] = 3.0  # one loud channel: 900 of 909 energy units per frame
    quiet_kept = torch.ones(1, 10, 1)
    quiet_kept[:, 0] = 0.0
    assert float(energy_kept(x, quiet_kept)) == pytest.approx(9 / 909, rel=1e-5)
    assert float(energy_kept(x, 1 - quiet_kept)) == pytest.approx(900 / 909, rel=1e-5)
    assert float(balance(quiet_kept, 1 - quiet_kept)) == pytest.approx(0.9)  # by mask mean: "90 % input"
    assert float(energy_kept(torch.zeros(1, 3, 4), torch.ones(1, 3, 4))) == 0.0  # silence: no NaN
    assert float(energy_kept(torch.full((1, 3, 4), 1e-7), torch.ones(1, 3, 4))) == pytest.approx(1.0)
    # masks that broadcast: a time-only mask, and one larger than the encoding
    assert float(energy_kept(x, torch.full((1, 1, 8), 0.25))) == pytest.approx(0.25)
    assert float(energy_kept(x[:1], torch.full((4, 10, 8), 0.5))) == pytest.approx(0.5)
