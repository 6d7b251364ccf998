"""Multi-scale attention of the creative-agent strategy (the ``scales`` option).

Off by default (the seed's parameter count and outputs); on, it pools the attention's q/k/v
over time at each scale, attends, upsamples back and mixes the scales with learned weights.
"""

from __future__ import annotations

import pytest
import torch
from maskkit_creative_agent import AttentionMaskGenerator
from maskkit_creative_agent.multiscale import pool_time, upsample_time
from maskkit_creative_agent.strategy import CreativeAgentStrategy

from maskkit import ConfigError, EncodingSpec
from maskkit.checkpoint import strategy_from_checkpoint
from maskkit.plugins import build_strategy
from maskkit.reference import RefMaskGenerator

SEED_PARAMETERS = 1_083_904  # the seed's design at D=128
SMALL = {"hidden_dim": 32, "num_heads": 4}


def pair(B=2, D=16, T=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, T, generator=g), torch.randn(B, D, T, generator=g)


def small_strategy(seed=0, D=16, **opts):
    torch.manual_seed(seed)
    return build_strategy("creative-agent", {**SMALL, **opts}, spec=EncodingSpec(dim=D))


# -- defaults unchanged ---------------------------------------------------------------------------
def test_default_is_off_with_the_seed_parameter_count_and_keys():
    s = build_strategy("creative-agent", {}, spec=EncodingSpec(dim=128))
    assert s.config.scales == () and s.mask_generator.scale_logits is None
    assert sum(p.numel() for p in s.parameters()) == SEED_PARAMETERS
    assert not any("scale" in k for k in s.state_dict())
    on = build_strategy("creative-agent", {"scales": "1,8,32"}, spec=EncodingSpec(dim=128))
    assert on.config.scales == (1, 8, 32)
    assert sum(p.numel() for p in on.parameters()) == SEED_PARAMETERS + 3


@pytest.mark.parametrize("T", [40, 5])
def test_default_outputs_still_match_the_reference(T):
    torch.manual_seed(0)
    ref = RefMaskGenerator(16, 32, 4, dropout=0.0).eval()
    ours = AttentionMaskGenerator(16, 32, 4, 0.0).eval()
    ours.load_reference_state_dict(ref.state_dict())
    xi, xt = pair(T=T, seed=3)
    with torch.no_grad():
        a, b, _ = ref(xi, xt)
        c, d, _ = ours(xi, xt)
    torch.testing.assert_close(c, a, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(d, b, atol=1e-6, rtol=1e-5)


def test_multi_scale_changes_the_masks_and_equal_scales_reduce_to_frames():
    """Same weights with and without the option: different masks (the coarse scales matter);
    with every window one frame long (T=1) each scale is the frame scale, so the masks agree."""
    torch.manual_seed(0)
    off = AttentionMaskGenerator(16, 32, 4, 0.0).eval()
    on = AttentionMaskGenerator(16, 32, 4, 0.0, scales=(1, 4, 16)).eval()
    on.load_state_dict(off.state_dict(), strict=False)
    xi, xt = pair(seed=4)
    with torch.no_grad():
        assert not torch.allclose(on(xi, xt)[0], off(xi, xt)[0], atol=1e-4)
        xi1, xt1 = xi[..., :1], xt[..., :1]
        torch.testing.assert_close(on(xi1, xt1)[0], off(xi1, xt1)[0], atol=1e-6, rtol=1e-5)


# -- the option on --------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [40, 37, 5, 1])  # divisible, not divisible, shorter than the scales, one frame
def test_shapes_ranges_and_hard_masks(T):
    s = small_strategy(scales=(1, 8, 32)).train()
    xi, xt = pair(T=T)
    m = s(xi, xt)
    assert m.input_mask.shape == m.target_mask.shape == (2, 16, T)
    for mask in (m.input_mask.detach(), m.target_mask.detach()):
        assert bool(torch.isfinite(mask).all()) and float(mask.min()) > 0.0 and float(mask.max()) < 1.0
    assert m.reg_loss is not None and bool(torch.isfinite(m.reg_loss))
    h = s.eval()(xi, xt, hard=True)
    assert torch.equal(h.input_mask + h.target_mask, torch.ones_like(h.input_mask))


@pytest.mark.parametrize("dropout", [0.0, 0.1])  # the fused kernel and the CPU dropout kernel
def test_gradients_reach_every_parameter(dropout):
    s = small_strategy(seed=2, scales=(1, 3, 16), dropout=dropout).train()
    xi, xt = pair(T=37)
    m = s(xi, xt)
    assert m.reg_loss is not None
    (m.reg_loss + (m.input_mask * torch.linspace(-1, 1, 37)).sum()).backward()
    missing = [n for n, p in s.named_parameters()
               if p.grad is None or not bool(torch.isfinite(p.grad).all())
               or float(p.grad.abs().sum()) == 0.0]
    assert missing == []


def test_pool_and_upsample():
    x = torch.arange(7.0).view(1, 7, 1)
    # the last window holds the one remaining frame
    torch.testing.assert_close(pool_time(x, 3).flatten(), torch.tensor([1.0, 4.0, 6.0]))
    torch.testing.assert_close(pool_time(x, 10).flatten(), torch.tensor([3.0]))  # T < s: the mean
    assert pool_time(x, 1) is x
    up = upsample_time(torch.tensor([[[1.0], [4.0], [6.0]]]), 3, 7)
    assert up.flatten().tolist() == [1, 1, 1, 4, 4, 4, 6] and up.is_contiguous()


@pytest.mark.parametrize("bad", ["0,8", "8", "1,8,8", "1,-2"])
def test_bad_scales_are_refused(bad):
    with pytest.raises(ConfigError, match="scales"):
        small_strategy(scales=bad)


# -- training and save / load ---------------------------------------------------------------------
def test_trains_a_few_steps_and_round_trips_through_the_checkpoint(tmp_path):
    from maskkit.train import TrainConfig, train

    cfg = TrainConfig.from_dict({
        "strategy": "creative-agent",
        "strategy_options": {"hidden_dim": 16, "num_heads": 2, "scales": [1, 4, 16]},
        "codec_options": {"n_fft": 64, "hop_length": 32, "sample_rate": 8000},
        "model": {"d_model": 16, "nhead": 2, "num_layers": 1, "num_transformer_layers": 1,
                  "dim_feedforward": 32, "dropout": 0.0},
        "loss": {"fft_sizes": [64, 128], "mel_n_fft": 128, "n_mels": 8, "rms_frame": 64},
        "data": {"train_pairs": 4, "val_pairs": 2, "segment_seconds": 0.25},
        "batch_size": 2, "max_steps": 2, "seed": 0, "quiet": True, "checkpoint_dir": str(tmp_path),
    })
    r = train(cfg)
    assert r.steps == 2 and r.last_checkpoint is not None
    back = strategy_from_checkpoint(r.last_checkpoint)
    assert isinstance(back, CreativeAgentStrategy) and back.config.scales == (1, 4, 16)
    logits = back.mask_generator.scale_logits
    assert logits is not None and float(logits.detach().abs().sum()) > 0.0  # the mixing weights trained
    fresh = build_strategy("creative-agent", {"hidden_dim": 16, "num_heads": 2, "scales": "1,4,16"},
                           spec=back.spec)
    fresh.load_state_dict(back.state_dict())
    xi, xt = pair(D=back.spec.dim, T=23)
    with torch.no_grad():
        a, b = back.eval()(xi, xt), fresh.eval()(xi, xt)
    assert torch.equal(a.input_mask, b.input_mask) and torch.equal(a.target_mask, b.target_mask)
