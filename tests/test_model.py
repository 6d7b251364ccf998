"""The cascade SimpleTransformer: shapes, every strategy, gradients, return API, mask checks."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import maskkit
from maskkit import ConfigError, EncodingSpec, Masks, MaskStrategy, MaskValidationError
from maskkit.config import build_config
from maskkit.loss import CombinedLoss, LossConfig
from maskkit.model import ModelConfig, SimpleTransformer, build_model, sinusoidal_encoding

TINY = ModelConfig(d_model=16, nhead=2, num_layers=1, num_transformer_layers=2, dim_feedforward=32,
                   dropout=0.0, max_frames=64)


def _strategy_names() -> list[str]:
    with warnings.catch_warnings():  # a plugin being written elsewhere may fail to load
        warnings.simplefilter("ignore")
        names = set(maskkit.strategy_names())
    return sorted(names | {"creative-agent"})


def _build(name: str, D: int) -> MaskStrategy:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name not in maskkit.strategy_names():
            pytest.skip(f"strategy '{name}' is not registered (its plugin is missing or failed to load)")
    return maskkit.build_strategy(name, spec=EncodingSpec(dim=D))


def _pair(B: int, D: int, T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, T, generator=g), torch.randn(B, D, T, generator=g)


class ShapedMask(MaskStrategy):
    """A test strategy whose masks have a chosen broadcastable shape."""

    name = "test-shaped"

    @dataclass
    class Config:
        shape: str = "bdt"

    def forward(self, x_input, x_target, *, hard=False):
        B, D, T = x_input.shape
        dims = {"11t": (1, 1, T), "1d1": (1, D, 1), "b1t": (B, 1, T), "bdt": (B, D, T)}[self.config.shape]
        g = torch.Generator().manual_seed(1)
        m = torch.rand(dims, generator=g).to(x_input)
        return Masks(m, 1.0 - m)


class Learned(MaskStrategy):
    """A tiny learnable strategy: one logit per channel, overlap as its regularization."""

    name = "test-learned"
    learnable = True

    def __init__(self, config=None, *, spec=None):
        super().__init__(config, spec=spec)
        self.logit = nn.Parameter(torch.linspace(-1, 1, self.spec.dim))

    def forward(self, x_input, x_target, *, hard=False):
        m = torch.sigmoid(self.logit).view(1, -1, 1)
        reg = (m * (1 - m)).mean()
        return Masks(m, 1 - m, reg_loss=reg, extras={"balance_loss": (m.mean() - 0.5) ** 2})


class OutOfRange(MaskStrategy):
    name = "test-out-of-range"

    def forward(self, x_input, x_target, *, hard=False):
        return Masks(torch.full((1, 1, x_input.shape[-1]), 2.0), torch.zeros(1, 1, 1))


@pytest.mark.parametrize("B,D,T", [(1, 1, 1), (2, 7, 5), (3, 66, 33), (2, 514, 12)])
def test_output_shape_for_any_d_t_b(B, D, T):
    torch.manual_seed(0)
    model = SimpleTransformer(TINY, ShapedMask(spec=EncodingSpec(dim=D)), D)
    x, y = _pair(B, D, T)
    out, reg = model(x, y)
    assert out.shape == (B, D, T)
    assert reg is None
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", _strategy_names())
def test_every_strategy_shapes_masks_and_gradients(name):
    D, T, B = 12, 20, 2
    torch.manual_seed(0)
    strategy = _build(name, D)
    model = SimpleTransformer(TINY, strategy, D)
    model.check_strategy_output = True  # validate what the plugin returns
    x, y = _pair(B, D, T)
    out, reg, masks = model(x, y, return_masks=True)
    assert out.shape == (B, D, T) and torch.isfinite(out).all()
    assert isinstance(masks, Masks)
    if strategy.learnable:
        assert reg is not None and reg.numel() == 1 and torch.isfinite(reg)
    else:
        assert reg is None
        assert len(list(strategy.parameters())) == 0
    loss = out.square().mean() + (reg if reg is not None else 0.0)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), pname
    stage_grads = [p.grad.abs().sum() for p in model.stages.parameters()]
    assert all(g > 0 for g in stage_grads)
    # the hard variant runs too (inference)
    out_hard, _ = model(x, y, hard=True)
    assert out_hard.shape == (B, D, T)


@pytest.mark.parametrize("shape", ["11t", "1d1", "b1t", "bdt"])
def test_masks_of_every_broadcastable_shape_are_applied(shape):
    """With the stages' output zeroed, a residual model returns the masked mix exactly."""
    B, D, T = 3, 6, 9
    strategy = ShapedMask({"shape": shape}, spec=EncodingSpec(dim=D))
    cfg = build_config(ModelConfig, {**TINY.__dict__, "num_transformer_layers": 1})
    model = SimpleTransformer(cfg, strategy, D)
    nn.init.zeros_(model.stages[0].out_proj.weight)
    nn.init.zeros_(model.stages[0].out_proj.bias)
    x, y = _pair(B, D, T)
    out, _, masks = model(x, y, return_masks=True)
    expected = x * masks.input_mask + y * masks.target_mask
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_return_api_and_reg_loss_passthrough():
    D, T = 5, 8
    strategy = Learned(spec=EncodingSpec(dim=D))
    model = SimpleTransformer(TINY, strategy, D)
    x, y = _pair(2, D, T)
    two = model(x, y)
    assert isinstance(two, tuple) and len(two) == 2
    three = model(x, y, return_masks=True)
    assert isinstance(three, tuple) and len(three) == 3
    out, reg, masks = three
    expected_reg = strategy(x, y).reg_loss
    torch.testing.assert_close(reg, expected_reg)
    assert reg is masks.reg_loss
    assert "balance_loss" in masks.extras
    reg.backward()
    assert strategy.logit.grad is not None and strategy.logit.grad.abs().sum() > 0


def test_strategy_is_a_submodule_named_strategy():
    D = 4
    model = SimpleTransformer(TINY, Learned(spec=EncodingSpec(dim=D)), D)
    keys = list(model.state_dict())
    assert "strategy.logit" in keys
    assert model.strategy_name == "test-learned"
    # the strategy is trained by the same optimizer as the stages
    assert any(p is model.strategy.logit for p in model.parameters())
    # the positional table is not saved: checkpoints do not depend on max_frames
    assert not any(k.endswith(".pe") for k in keys)


def test_check_strategy_output_validates_only_when_asked():
    D, T = 3, 6
    model = SimpleTransformer(TINY, OutOfRange(spec=EncodingSpec(dim=D)), D)
    x, y = _pair(1, D, T)
    model(x, y)  # off by default: no device sync, no error
    model.check_strategy_output = True
    with pytest.raises(MaskValidationError, match="test-out-of-range"):
        model(x, y)


def test_wrong_encoding_dim_or_shapes_raise_clear_errors():
    model = SimpleTransformer(TINY, ShapedMask(spec=EncodingSpec(dim=8)), 8)
    x, y = _pair(1, 6, 4)
    with pytest.raises(ValueError, match="D=8"):
        model(x, y)
    a, _ = _pair(1, 8, 4)
    b, _ = _pair(1, 8, 5)
    with pytest.raises(ValueError, match="same shape"):
        model(a, b)
    with pytest.raises(TypeError, match="MaskStrategy"):
        SimpleTransformer(TINY, nn.Identity(), 8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="enc_input is on cpu but enc_target on meta"):
        model(a, a.to("meta"))
    with pytest.raises(ValueError, match="encodings are on meta but its weights on cpu"):
        model(a.to("meta"), a.to("meta"))


def test_a_float64_pair_runs_in_the_weights_dtype():
    """As the CreativeAgent does: a float64 encoding into a float32 model (torch's 'expected m1 and
    m2 to have the same dtype' before)."""
    model = SimpleTransformer(TINY, ShapedMask(spec=EncodingSpec(dim=8)), 8).eval()
    x, y = _pair(2, 8, 12)
    out64, _ = model(x.double(), y.double())
    out32, _ = model(x, y)
    assert out64.dtype == torch.float32
    torch.testing.assert_close(out64, out32)


def test_longer_than_max_frames_still_works():
    D, T = 4, 100  # TINY.max_frames == 64
    model = SimpleTransformer(TINY, ShapedMask(spec=EncodingSpec(dim=D)), D)
    out, _ = model(*_pair(1, D, T))
    assert out.shape == (1, D, T)
    pe = sinusoidal_encoding(T, 16)
    torch.testing.assert_close(pe[:64], model.stages[0].pos.pe)
    assert pe.shape == (100, 16) and pe.abs().max() <= 1.0
    assert sinusoidal_encoding(3, 5).shape == (3, 5)  # odd width


def test_scale_equivariant_with_normalized_input():
    D, T = 6, 10
    torch.manual_seed(0)
    model = SimpleTransformer(TINY, ShapedMask(spec=EncodingSpec(dim=D)), D).eval()
    x, y = _pair(2, D, T)
    out1, _ = model(x, y)
    out2, _ = model(100.0 * x, 100.0 * y)
    torch.testing.assert_close(out2 / 100.0, out1, rtol=1e-4, atol=1e-4)


def test_config_from_strings_and_validation():
    cfg = build_config(ModelConfig, ["d_model=32", "nhead=8", "num_transformer_layers=1"])
    assert cfg.d_model == 32 and cfg.num_transformer_layers == 1
    with pytest.raises(ConfigError, match="divisible"):
        build_config(ModelConfig, {"d_model": 30, "nhead": 4})
    with pytest.raises(ConfigError, match="num_layers"):
        build_config(ModelConfig, {"num_layers": 0})
    model = SimpleTransformer(cfg, ShapedMask(spec=EncodingSpec(dim=3)), 3)
    assert len(model.stages) == 1


def test_default_config_size():
    """The defaults stay small enough to train on a laptop CPU (stft codec, D=514)."""
    model = SimpleTransformer(ModelConfig(), ShapedMask(spec=EncodingSpec(dim=514)), 514)
    n = model.num_parameters()
    assert 1_000_000 < n < 2_500_000
    assert len(model.stages) == 3
    assert model.stages[0].in_proj.in_features == 2 * 514
    assert all(s.in_proj.in_features == 3 * 514 for s in model.stages[1:])


def test_build_model_by_name():
    model = build_model({"d_model": 16, "nhead": 2, "num_layers": 1}, "temporal", spec=EncodingSpec(dim=10),
                        strategy_options={"segment": 4})
    assert model.strategy.name == "temporal" and model.strategy.config.segment == 4
    assert model.config.num_transformer_layers == 3
    out, reg = model(*_pair(1, 10, 12))
    assert out.shape == (1, 10, 12) and reg is None


# -- end to end: a tiny model overfits one batch through a tiny STFT codec and the combined loss --

N_FFT, HOP, SR, N = 32, 8, 8000, 1024


def _encode(audio: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(audio[:, 0], N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    return torch.cat([spec.real, spec.imag], dim=1)


def _decode(enc: torch.Tensor) -> torch.Tensor:
    F_ = N_FFT // 2 + 1
    spec = torch.complex(enc[:, :F_], enc[:, F_:])
    return torch.istft(spec, N_FFT, HOP, window=torch.hann_window(N_FFT), length=N).unsqueeze(1)


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    t = torch.arange(N) / SR
    g = torch.Generator().manual_seed(0)
    # tones plus a little noise (pure tones leave near-empty bins that dominate log-magnitudes)
    inp = torch.stack([0.5 * torch.sin(2 * math.pi * f * t) for f in (300.0, 500.0)]).unsqueeze(1)
    tgt = torch.stack([0.3 * torch.sin(2 * math.pi * f * t) for f in (1200.0, 2000.0)]).unsqueeze(1)
    inp = inp + 0.05 * torch.randn(inp.shape, generator=g)
    tgt = tgt + 0.05 * torch.randn(tgt.shape, generator=g)
    torch.testing.assert_close(_decode(_encode(inp)), inp, rtol=1e-4, atol=1e-4)
    D = 2 * (N_FFT // 2 + 1)
    cfg = ModelConfig(d_model=32, nhead=2, num_layers=1, num_transformer_layers=2, dim_feedforward=64,
                      dropout=0.0)
    model = SimpleTransformer(cfg, Learned(spec=EncodingSpec(dim=D)), D)
    loss_fn = CombinedLoss(LossConfig(fft_sizes=(64, 128), n_mels=16, mel_n_fft=128, rms_frame=64,
                                      sample_rate=SR, input_weight=1.0, target_weight=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    ei, et = _encode(inp), _encode(tgt)
    losses = []
    for _ in range(40):
        out, reg, masks = model(ei, et, return_masks=True)
        total, comps = loss_fn(_decode(out), inp, tgt, reg, masks.extras["balance_loss"])
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(comps["total"]))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.6 * losses[0], losses
