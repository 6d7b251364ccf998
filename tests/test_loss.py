"""The combined loss and the audio-similarity metrics."""

from __future__ import annotations

import math

import pytest
import torch

from maskkit import ConfigError
from maskkit.config import build_config
from maskkit.loss import COMPONENTS, CombinedLoss, LossConfig
from maskkit.metrics import log_spectral_distance, si_sdr, source_similarity, stft_magnitude

SR = 8000
SMALL = dict(fft_sizes=(64, 128, 256), n_mels=16, mel_n_fft=128, rms_frame=64, sample_rate=SR)


def _audio(B: int = 2, N: int = 2048, seed: int = 0, scale: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(N) / SR
    tone = torch.sin(2 * math.pi * (200.0 + 300.0 * torch.rand(B, 1, 1, generator=g)) * t)
    return scale * (tone + 0.3 * torch.randn(B, 1, N, generator=g))


@pytest.fixture
def loss_fn() -> CombinedLoss:
    return CombinedLoss(LossConfig(**SMALL))


def test_components_finite_non_negative_and_logged(loss_fn):
    out, inp, tgt = _audio(seed=0).requires_grad_(), _audio(seed=1), _audio(seed=2)
    total, comps = loss_fn(out, inp, tgt, reg_loss=torch.tensor(0.3), balance_loss=torch.tensor(0.2))
    assert list(comps) == list(COMPONENTS)
    for k, v in comps.items():
        assert v.dim() == 0 and torch.isfinite(v), k
        assert v >= 0, k
        assert v.grad_fn is None and not v.requires_grad, f"{k} is not detached"
    assert total.requires_grad
    torch.testing.assert_close(comps["total"], total.detach())
    cfg = loss_fn.config
    recon = sum(w * (cfg.rms_weight * comps[f"rms_{k}"] + cfg.stft_weight * comps[f"stft_{k}"]
                     + cfg.mel_weight * comps[f"mel_{k}"])
                for k, w in (("input", cfg.input_weight), ("target", cfg.target_weight)))
    torch.testing.assert_close(comps["reconstruction"], recon)
    torch.testing.assert_close(total.detach(), recon + 0.1 * 0.3 + cfg.balance_weight * 0.2)
    total.backward()
    assert torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0


def test_output_equal_to_input_costs_nothing_against_the_input():
    loss_fn = CombinedLoss(LossConfig(**SMALL, input_weight=1.0, target_weight=0.0))
    inp, tgt = _audio(seed=3), _audio(seed=4)
    total, comps = loss_fn(inp.clone(), inp, tgt)
    for k in ("rms_input", "stft_input", "mel_input", "total"):
        assert float(comps[k]) == pytest.approx(0.0, abs=1e-5), k
    assert comps["stft_target"] > 0.1  # the other song still differs, it just has no weight
    total_t, _ = loss_fn(tgt.clone(), inp, tgt)
    assert total_t > 0.1


def test_loss_falls_as_output_nears_reference(loss_fn):
    inp = _audio(seed=5)
    noise = _audio(seed=7)
    far, _ = loss_fn(inp + 1.0 * noise, inp, inp)
    near, _ = loss_fn(inp + 0.1 * noise, inp, inp)
    assert near < far


def test_silent_audio_gives_finite_loss_and_gradients(loss_fn):
    zeros = torch.zeros(2, 1, 1000)
    out = torch.zeros(2, 1, 1000, requires_grad=True)
    total, comps = loss_fn(out, zeros, zeros, reg_loss=None, balance_loss=None)
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in comps.values())
    total.backward()
    assert torch.isfinite(out.grad).all()
    # silent references, a loud output: large but finite
    out2 = _audio(N=1000).requires_grad_()
    total2, _ = loss_fn(out2, zeros, zeros)
    total2.backward()
    assert torch.isfinite(total2) and torch.isfinite(out2.grad).all()
    assert total2 > total


def test_absent_mask_terms_are_zero_and_weights_apply():
    inp, tgt, out = _audio(seed=8), _audio(seed=9), _audio(seed=10)
    base = CombinedLoss(LossConfig(**SMALL, mask_reg_weight=0.5, balance_weight=2.0))
    t0, c0 = base(out, inp, tgt)
    assert float(c0["mask_reg"]) == 0.0 and float(c0["balance_loss"]) == 0.0
    t1, c1 = base(out, inp, tgt, reg_loss=torch.tensor(0.4), balance_loss=torch.tensor([0.1]))
    torch.testing.assert_close(t1, t0 + 0.5 * 0.4 + 2.0 * 0.1)
    assert float(c1["mask_reg"]) == pytest.approx(0.4) and float(c1["balance_loss"]) == pytest.approx(0.1)


def test_reg_loss_gradient_flows_through_the_total(loss_fn):
    w = torch.tensor(0.7, requires_grad=True)
    total, _ = loss_fn(_audio(seed=11), _audio(seed=12), _audio(seed=13), reg_loss=w * 2.0)
    total.backward()
    assert w.grad is not None and float(w.grad) == pytest.approx(2.0 * loss_fn.config.mask_reg_weight)


def test_loss_of_a_batch_is_the_mean_of_its_equal_shards(loss_fn):
    """Per-example terms: data-parallel shards average to the global batch's loss (DDP == 1 process)."""
    out, inp, tgt = _audio(B=4, seed=14), _audio(B=4, seed=15), _audio(B=4, seed=16)
    whole, cw = loss_fn(out, inp, tgt)
    a, ca = loss_fn(out[:2], inp[:2], tgt[:2])
    b, cb = loss_fn(out[2:], inp[2:], tgt[2:])
    torch.testing.assert_close(whole, (a + b) / 2, rtol=1e-5, atol=1e-6)
    for k in COMPONENTS:
        torch.testing.assert_close(cw[k], (ca[k] + cb[k]) / 2, rtol=1e-5, atol=1e-6)


def test_bad_shapes_raise_clear_errors(loss_fn):
    with pytest.raises(ValueError, match="length=N"):
        loss_fn(_audio(N=1000), _audio(N=1024), _audio(N=1024))
    with pytest.raises(ValueError, match="mono"):
        loss_fn(torch.zeros(2, 2, 100), torch.zeros(2, 2, 100), torch.zeros(2, 2, 100))


def test_short_audio_and_2d_audio_work(loss_fn):
    x = _audio(N=40)
    total, _ = loss_fn(x, x, x)
    assert float(total) == pytest.approx(0.0, abs=1e-5)
    y = _audio(N=500)[:, 0]  # [B, N]
    t2, _ = loss_fn(y, y, y)
    assert float(t2) == pytest.approx(0.0, abs=1e-5)


def test_windows_are_buffers_and_autocast_is_bypassed(loss_fn):
    bufs = dict(loss_fn.named_buffers())
    assert {"window_64", "window_128", "window_256"} <= set(bufs)
    out, inp, tgt = _audio(seed=17), _audio(seed=18), _audio(seed=19)
    ref, _ = loss_fn(out, inp, tgt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, _ = loss_fn(out.bfloat16(), inp, tgt)
    assert total.dtype == torch.float32
    torch.testing.assert_close(total, ref, rtol=2e-2, atol=2e-2)  # only the bf16 rounding of `out`


def test_config_from_strings_and_validation():
    cfg = build_config(LossConfig, ["fft_sizes=64,128", "hop_sizes=16,32", "input_weight=0.8"])
    assert cfg.fft_sizes == (64, 128) and cfg.hops() == (16, 32) and cfg.input_weight == 0.8
    assert LossConfig().hops() == (128, 256, 512)
    assert LossConfig().mask_reg_weight == 0.1
    with pytest.raises(ConfigError, match="hop_sizes"):
        build_config(LossConfig, {"fft_sizes": "64,128", "hop_sizes": "16"})
    with pytest.raises(ConfigError, match="mel_weight"):
        build_config(LossConfig, {"mel_weight": -1})


# -- metrics ------------------------------------------------------------------------------------

def _orthogonal_noise(r: torch.Tensor, energy_ratio: float, seed: int) -> torch.Tensor:
    """Zero-mean noise orthogonal to zero-mean ``r`` with ``||n||^2 = ratio * ||r||^2``."""
    g = torch.Generator().manual_seed(seed)
    n = torch.randn(r.shape, generator=g)
    n = n - n.mean(dim=-1, keepdim=True)
    n = n - (n * r).sum(-1, keepdim=True) / (r * r).sum(-1, keepdim=True) * r
    return n * torch.sqrt(energy_ratio * (r * r).sum(-1, keepdim=True) / (n * n).sum(-1, keepdim=True))


def test_si_sdr_hand_checked():
    r = _audio(B=3, N=4000, seed=20)
    r = r - r.mean(dim=-1, keepdim=True)
    assert float(si_sdr(r, r)) > 60.0
    n = _orthogonal_noise(r, 0.1, seed=21)
    # signal 10x the noise's energy: exactly 10 dB, whatever the estimate's scale or sign or offset
    for est in (r + n, 2.0 * (r + n), -5.0 * (r + n), r + n + 0.3):
        assert float(si_sdr(est, r)) == pytest.approx(10.0, abs=1e-3)
    torch.testing.assert_close(si_sdr(2.0 * r, r), si_sdr(r, r))
    assert float(si_sdr(torch.zeros_like(r), r)) < -60.0  # silence: bounded, not NaN
    assert float(si_sdr(r + _orthogonal_noise(r, 1.0, seed=22), r)) == pytest.approx(0.0, abs=1e-3)
    per_item = si_sdr(r + n, r, reduction="none")
    assert per_item.shape == (3,)
    with pytest.raises(ValueError, match="shapes differ"):
        si_sdr(r, r[..., :100])


def test_log_spectral_distance_hand_checked():
    x = _audio(B=2, N=4096, seed=23)
    assert float(log_spectral_distance(x, x)) == pytest.approx(0.0, abs=1e-6)
    # twice the amplitude is 20 log10(2) dB louder in every bin
    assert float(log_spectral_distance(x, 2.0 * x)) == pytest.approx(20 * math.log10(2), abs=1e-3)
    y = _audio(B=2, N=4096, seed=24)
    torch.testing.assert_close(log_spectral_distance(x, y), log_spectral_distance(y, x))
    assert log_spectral_distance(x, y) > 1.0
    assert log_spectral_distance(x, y, reduction="none").shape == (2,)
    assert torch.isfinite(log_spectral_distance(torch.zeros(1, 1, 600), x[:1, :, :600]))


def test_source_similarity_says_which_song_reached_the_output():
    inp, tgt = _audio(N=4096, seed=25), _audio(N=4096, seed=26)
    sim = source_similarity(inp.clone(), inp, tgt)
    assert set(sim) == {"lsd_input", "lsd_target", "si_sdr_input", "si_sdr_target"}
    assert all(isinstance(v, float) for v in sim.values())
    assert sim["lsd_input"] == pytest.approx(0.0, abs=1e-6) and sim["lsd_target"] > 1.0
    assert sim["si_sdr_input"] > 60.0 > sim["si_sdr_target"]
    mix = source_similarity(0.8 * inp + 0.2 * tgt, inp, tgt)
    assert mix["si_sdr_input"] > mix["si_sdr_target"]
    assert mix["lsd_input"] < mix["lsd_target"]


def test_stft_magnitude_is_safe_at_zero():
    z = torch.zeros(1, 300, requires_grad=True)
    mag = stft_magnitude(z, 64, 16)
    mag.sum().backward()
    assert torch.isfinite(z.grad).all()
    assert mag.shape == (1, 33, 300 // 16 + 1)
