"""The creative-agent plugin: AttentionMaskGenerator, hard masks, discriminator, seed API,
agreement with the seed design (maskkit.reference), the fast attention kernels, CLI."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from maskkit_creative_agent import AttentionMaskGenerator, CreativeAgent, StyleDiscriminator
from maskkit_creative_agent import attention as A
from maskkit_creative_agent.agent import reference_key_map
from maskkit_creative_agent.strategy import CreativeAgentStrategy

from maskkit import CheckpointError, ConfigError, EncodingSpec, metrics
from maskkit.checkpoint import CHECKPOINT_FORMAT, atomic_save, strategy_from_checkpoint
from maskkit.plugins import build_strategy, get_strategy_entry
from maskkit.reference import RefMaskGenerator
from maskkit_cli.main import cli

SEED_PARAMETERS = 1_083_904  # RefMaskGenerator() / the seed's design at D=128
SMALL = {"hidden_dim": 32, "num_heads": 4}


def pair(B=2, D=16, T=40, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, D, T, generator=g, dtype=dtype), torch.randn(B, D, T, generator=g, dtype=dtype))


def small_strategy(seed=0, D=16, **opts):
    torch.manual_seed(seed)
    return build_strategy("creative-agent", {**SMALL, **opts}, spec=EncodingSpec(dim=D))


def grads_missing(module):
    return [n for n, p in module.named_parameters()
            if p.grad is None or not bool(torch.isfinite(p.grad).all()) or float(p.grad.abs().sum()) == 0.0]


# -- registration, options, parameter count ------------------------------------------------------
def test_registered_as_a_learnable_strategy_with_the_seed_parameter_count():
    entry = get_strategy_entry("creative-agent")
    assert entry.cls is CreativeAgentStrategy and entry.plugin == "creative-agent"
    assert entry.cls.learnable
    assert entry.cls.num_parameters_default() == SEED_PARAMETERS
    s = build_strategy("creative-agent")  # spec default: D=128
    assert sum(p.numel() for p in s.parameters()) == SEED_PARAMETERS
    assert sum(p.numel() for p in RefMaskGenerator().parameters()) == SEED_PARAMETERS
    assert sum(p.numel() for p in AttentionMaskGenerator().parameters()) == SEED_PARAMETERS


def test_encoding_dim_comes_from_the_spec_and_discriminator_is_optional():
    s = small_strategy(D=24, use_discriminator=True)
    assert s.mask_generator.encoding_dim == 24 and isinstance(s.discriminator, StyleDiscriminator)
    n_gen = sum(p.numel() for p in s.mask_generator.parameters())
    n_disc = sum(p.numel() for p in s.discriminator.parameters())
    assert sum(p.numel() for p in s.parameters()) == n_gen + n_disc
    assert small_strategy(D=24).discriminator is None


def test_options_are_checked():
    with pytest.raises(ConfigError, match="num_heads"):
        build_strategy("creative-agent", {"hidden_dim": 30, "num_heads": 4}, spec=EncodingSpec(dim=8))
    with pytest.raises(ConfigError, match="dropout"):
        build_strategy("creative-agent", ["dropout=1.5"], spec=EncodingSpec(dim=8))
    with pytest.raises(ConfigError, match="unknown option 'encoding_dim'"):
        build_strategy("creative-agent", {"encoding_dim": 8})


def test_plugin_init_does_not_import_torch():
    code = ("import sys, maskkit_creative_agent as m; assert 'torch' not in sys.modules, 'torch imported'; "
            "import maskkit_creative_agent.cli; assert 'torch' not in sys.modules, 'cli imported torch'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# -- masks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("train", [False, True])
def test_shapes_ranges_and_extras(train):
    s = small_strategy().train(train)
    xi, xt = pair(B=3, T=37)
    m = s(xi, xt)
    for mask in (m.input_mask, m.target_mask):
        assert mask.shape == xi.shape and mask.dtype == xi.dtype and mask.is_contiguous()
        assert float(mask.detach().min()) >= 0.0 and float(mask.detach().max()) <= 1.0
    assert set(m.extras) == {"overlap", "coverage_loss", "diversity_loss", "balance_loss"}
    for v in m.extras.values():
        assert v.dim() == 0 and v.requires_grad
    # reg_loss is the weighted sum of its components; the balance loss is apart
    c = s.config
    e = {k: float(v.detach()) for k, v in m.extras.items()}
    expected = c.overlap_weight * e["overlap"] + c.coverage_weight * e["coverage_loss"] \
        + c.diversity_weight * e["diversity_loss"]
    assert float(m.reg_loss.detach()) == pytest.approx(expected, rel=1e-5)
    # components are maskkit.metrics' definitions
    im, tm = m.input_mask.detach(), m.target_mask.detach()
    assert e["overlap"] == pytest.approx(float(metrics.overlap(im, tm)), rel=1e-6)
    assert e["coverage_loss"] == pytest.approx(float(metrics.coverage_error(im, tm)), rel=1e-6)
    bal = float(metrics.balance(im, tm))
    assert e["balance_loss"] == pytest.approx(c.balance_weight * (bal - 0.5) ** 2, rel=1e-5, abs=1e-12)


def test_untrained_complementarity_about_75_percent():
    s = build_strategy("creative-agent", spec=EncodingSpec(dim=128)).eval()  # the seed's defaults
    xi, xt = pair(B=2, D=128, T=60, seed=3)
    with torch.no_grad():
        m = s(xi, xt)
    comp = float(metrics.complementarity(m.input_mask, m.target_mask))
    assert 70.0 < comp < 80.0


@pytest.mark.parametrize("train", [False, True])
def test_hard_masks_are_binary_and_exactly_complementary(train):
    s = small_strategy(seed=1).train(train)
    xi, xt = pair(B=2, T=50, seed=1)
    m = s(xi, xt, hard=True)
    assert bool(((m.input_mask == 0) | (m.input_mask == 1)).all())
    assert bool(((m.target_mask == 0) | (m.target_mask == 1)).all())
    assert bool((m.input_mask + m.target_mask == 1).all())
    share = float(m.input_mask.detach().mean())
    assert 0.05 < share < 0.95  # both songs get cells
    if not train:  # eval: no noise, each cell goes to the larger soft mask
        soft = s(xi, xt)
        assert torch.equal(m.input_mask, (soft.input_mask > soft.target_mask).float())


def test_hard_masks_follow_the_temperature_and_use_gumbel_noise_in_training():
    xi, xt = pair(B=2, T=50, seed=2)
    s = small_strategy(seed=1).train()
    torch.manual_seed(5)
    a = s(xi, xt, hard=True).input_mask
    torch.manual_seed(6)
    b = s(xi, xt, hard=True).input_mask
    assert not torch.equal(a, b)  # noisy draws differ
    torch.manual_seed(5)
    assert torch.equal(a, s(xi, xt, hard=True).input_mask)  # and are reproducible
    # the temperature scales the straight-through gradient, not the forward values
    grads = []
    for tau in (0.5, 2.0):
        s.mask_generator.gumbel_tau = tau
        xi_ = xi.clone().requires_grad_(True)
        torch.manual_seed(7)
        m = s(xi_, xt, hard=True)
        (m.input_mask * torch.linspace(0, 1, 50)).sum().backward()
        grads.append(xi_.grad.abs().sum())
    assert float(grads[0]) != pytest.approx(float(grads[1]), rel=1e-3)


@pytest.mark.parametrize("hard", [False, True])
def test_gradients_reach_every_parameter(hard):
    s = small_strategy(seed=2).train()
    xi, xt = pair(B=2, T=30, seed=4)
    m = s(xi, xt, hard=hard)
    w = torch.rand(xi.shape, generator=torch.Generator().manual_seed(0))
    loss = (xi * m.input_mask * w).sum() + (xt * m.target_mask * (1 - w)).sum()
    if not hard:  # with hard masks, the straight-through path alone must reach every parameter
        loss = loss + m.reg_loss + m.extras["balance_loss"]
    loss.backward()
    assert grads_missing(s) == []


def test_attention_maps_rows_sum_to_one():
    s = small_strategy(seed=3).eval()
    xi, xt = pair(B=2, T=25, seed=5)
    maps = s.attention_maps(xi, xt)
    assert set(maps) == {"input_to_target", "target_to_input"}
    for w in maps.values():
        assert w.shape == (2, 25, 25)
        assert float(w.min()) >= 0.0
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 25), atol=1e-5, rtol=0)
    per_head = s.mask_generator.attention_maps(xi, xt, average_heads=False)
    assert per_head["input_to_target"].shape == (2, 4, 25, 25)
    torch.testing.assert_close(per_head["input_to_target"].mean(1), maps["input_to_target"])


def test_attention_maps_match_multihead_attention_weights():
    torch.manual_seed(0)
    ref = RefMaskGenerator(16, 32, 4, dropout=0.0).eval()
    gen = AttentionMaskGenerator(16, 32, 4).eval()
    gen.load_reference_state_dict(ref.state_dict())
    xi, xt = pair(B=2, T=20, seed=6)
    with torch.no_grad():
        f_in = ref.a_in(xi).permute(2, 0, 1)
        f_tg = ref.a_tg(xt).permute(2, 0, 1)
        _, w_it = ref.attn(f_in, f_tg, f_tg)
        _, w_ti = ref.attn(f_tg, f_in, f_in)
    maps = gen.attention_maps(xi, xt)
    torch.testing.assert_close(maps["input_to_target"], w_it, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(maps["target_to_input"], w_ti, atol=1e-5, rtol=1e-4)


def test_dtypes():
    s = small_strategy(seed=4).eval()
    for dtype in (torch.float64, torch.bfloat16):
        s = s.to(dtype)
        xi, xt = pair(dtype=dtype)
        with torch.no_grad():
            m = s(xi, xt)
        assert m.input_mask.dtype == dtype and bool(torch.isfinite(m.input_mask).all())


def test_encodings_of_another_dtype_than_the_weights_are_computed_in_the_weights_dtype():
    """A float64 encoding into the float32 model (what torch.randn(..., dtype=float64) or a
    float64 codec gives) returns float64 masks equal to the float32 ones, gradients included."""
    s = small_strategy(seed=5).eval()
    xi, xt = pair(seed=5)
    m32 = s(xi, xt)
    xi64 = xi.double().requires_grad_(True)
    m64 = s(xi64, xt.double())
    assert m64.input_mask.dtype == torch.float64 and m64.target_mask.dtype == torch.float64
    torch.testing.assert_close(m64.input_mask, m32.input_mask.double())
    torch.testing.assert_close(m64.reg_loss, m32.reg_loss)
    m64.input_mask.sum().backward()
    assert xi64.grad is not None and xi64.grad.dtype == torch.float64
    maps64 = s.mask_generator.attention_maps(xi.double(), xt.double())
    maps32 = s.mask_generator.attention_maps(xi, xt)
    torch.testing.assert_close(maps64["input_to_target"], maps32["input_to_target"])
    disc = StyleDiscriminator(16)
    torch.testing.assert_close(disc(xi.double())[0], disc(xi)[0])


# -- the same math as the seed's design ----------------------------------------------------------
def _ref_and_ours(D=16, H=32, heads=4, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    ref = RefMaskGenerator(D, H, heads, dropout=dropout)
    ours = AttentionMaskGenerator(D, H, heads, dropout)
    ours.load_reference_state_dict(ref.state_dict())
    return ref, ours


def test_reference_weights_map_one_to_one():
    ref, ours = _ref_and_ours()
    mapped = reference_key_map(ref.state_dict())
    assert set(mapped) == set(ours.state_dict())
    for k, v in mapped.items():
        assert ours.state_dict()[k].shape == v.shape
    with pytest.raises(KeyError, match="unexpected"):
        reference_key_map({"bogus.weight": torch.zeros(1)})


@pytest.mark.filterwarnings("ignore:var\\(\\).*degrees of freedom")  # the seed's unbiased var at T=1
@pytest.mark.parametrize("shape", [(3, 16, 40), (2, 16, 1), (1, 16, 7)])
def test_eval_forward_matches_the_reference(shape):
    ref, ours = _ref_and_ours()
    ref.eval()
    ours.eval()
    g = torch.Generator().manual_seed(1)
    xi, xt = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    with torch.no_grad():
        a, b, r_ref = ref(xi, xt)
        c, d, r = ours(xi, xt)
    torch.testing.assert_close(c, a, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(d, b, atol=1e-6, rtol=1e-5)
    # the seed's diversity used the unbiased variance; maskkit.metrics the population one
    T = shape[-1]
    var = metrics.temporal_variance
    div = torch.relu(0.05 - var(a)) + torch.relu(0.05 - var(b))
    expected = 10.0 * (a * b).mean() + 0.5 * ((a + b - 1) ** 2).mean() + 5.0 * div
    torch.testing.assert_close(r, expected, atol=1e-6, rtol=1e-5)
    if T > 1 and float(var(a)) < 0.04 and float(var(b)) < 0.04:  # both penalties active: T/(T-1) apart
        assert float(r_ref) == pytest.approx(float(r), rel=0.05)


def test_training_gradients_match_the_reference_without_dropout():
    ref, ours = _ref_and_ours(dropout=0.0, seed=1)
    ref.train()
    ours.train()
    xi, xt = pair(B=2, T=33, seed=7)
    w = torch.rand(xi.shape, generator=torch.Generator().manual_seed(3))
    outs = []
    for model in (ref, ours):
        a, b, _ = model(xi, xt)
        loss = (a * w).sum() + (b * (1 - w)).sum() + 10.0 * (a * b).mean() + 0.5 * ((a + b - 1) ** 2).mean()
        loss.backward()
        outs.append(a)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-6, rtol=1e-5)
    ref_grads = reference_key_map({n: p.grad for n, p in ref.named_parameters()})
    for n, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[n], atol=1e-5, rtol=1e-4, msg=n)


# -- the fast attention kernels -------------------------------------------------------------------
def test_keep_mask_probability_and_threshold():
    assert A.dropout_threshold(0.1) == -32768 + 6554
    assert abs((6554 / 65536) - 0.1) < 1e-4  # the exact drop probability is within 1e-4 of p
    g = torch.Generator().manual_seed(0)
    keep = A.keep_mask((1000, 2003), 0.1, generator=g)  # n not a multiple of 4
    assert keep.dtype == torch.bool and keep.shape == (1000, 2003)
    frac = float(keep.float().mean())
    assert abs(frac - (1 - 6554 / 65536)) < 2e-3  # 2M draws: sd 2e-4
    # the four 16-bit lanes of each 64-bit draw are all used and all uniform
    lanes = keep.flatten()[: 4 * (keep.numel() // 4)].view(-1, 4).float().mean(0)
    assert float((lanes - 0.9).abs().max()) < 3e-3
    assert bool(A.keep_mask((64,), 0.0).all()) and not bool(A.keep_mask((64,), 1.0).any())


def _straightforward_cross_attention(qkv_a, qkv_b, heads, p):
    """Textbook attention with dropout, drawing the keep masks in the kernel's order (per item)."""
    qa, ka, va = A.split_heads(qkv_a, heads)
    qb, kb, vb = A.split_heads(qkv_b, heads)
    outs = []
    for q, k, v in ((qa, kb, vb), (qb, ka, va)):
        parts = []
        for i in range(q.shape[0]):
            w = torch.softmax(q[i] @ k[i].transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
            keep = A.keep_mask(w.shape, p)
            parts.append((w * keep / (1 - p)) @ v[i])
        o = torch.stack(parts)
        outs.append(o.transpose(1, 2).reshape(o.shape[0], o.shape[2], -1))
    return outs


@pytest.mark.parametrize("keep_weights", [True, False], ids=["weights-kept", "weights-recomputed"])
def test_cpu_dropout_attention_matches_straightforward_math(keep_weights, monkeypatch):
    # the kernel keeps the softmax weights for the backward pass up to a size, else recomputes them
    monkeypatch.setattr(A, "SAVED_WEIGHTS_BYTES", A.SAVED_WEIGHTS_BYTES if keep_weights else 0)
    B, T, H, heads, p = 5, 9, 8, 2, 0.3
    g = torch.Generator().manual_seed(0)
    qkv_a = torch.randn(B, T, 3 * H, generator=g, dtype=torch.float64, requires_grad=True)
    qkv_b = torch.randn(B, T, 3 * H, generator=g, dtype=torch.float64, requires_grad=True)
    go = [torch.randn(B, T, H, generator=g, dtype=torch.float64) for _ in range(2)]
    torch.manual_seed(11)
    fast = A.cross_attention(qkv_a, qkv_b, heads, p)
    d_fast = torch.autograd.grad(fast, (qkv_a, qkv_b), go)
    torch.manual_seed(11)
    slow = _straightforward_cross_attention(qkv_a, qkv_b, heads, p)
    d_slow = torch.autograd.grad(slow, (qkv_a, qkv_b), go)
    for x, y in zip((*fast, *d_fast), (*slow, *d_slow), strict=True):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-10)
    # without dropout the kernel is plain attention
    torch.manual_seed(11)
    plain = A.cross_attention(qkv_a, qkv_b, heads, 0.0)
    torch.testing.assert_close(plain[0], _straightforward_cross_attention(qkv_a, qkv_b, heads, 0.0)[0])


@pytest.mark.parametrize("keep_weights", [True, False], ids=["weights-kept", "weights-recomputed"])
def test_cpu_dropout_attention_gradcheck(keep_weights, monkeypatch):
    monkeypatch.setattr(A, "SAVED_WEIGHTS_BYTES", A.SAVED_WEIGHTS_BYTES if keep_weights else 0)
    g = torch.Generator().manual_seed(1)
    qkv_a = torch.randn(2, 5, 12, generator=g, dtype=torch.float64, requires_grad=True)
    qkv_b = torch.randn(2, 5, 12, generator=g, dtype=torch.float64, requires_grad=True)

    def f(a, b):
        torch.manual_seed(3)  # the same keep masks on every call
        return A.cross_attention(a, b, 2, 0.25)

    assert torch.autograd.gradcheck(f, (qkv_a, qkv_b))


@pytest.mark.parametrize("T", [1, 2, 6])
def test_channels_last_conv_gradients(T):
    from maskkit_creative_agent.agent import _ConvCL

    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, T, 1, generator=g, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    w = torch.randn(4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: _ConvCL.apply(x, w, b, 1), (x, w, b))
    expected = torch.nn.functional.conv1d(x.squeeze(-1), w, b, padding=1)
    torch.testing.assert_close(_ConvCL.apply(x, w, b, 1).squeeze(-1), expected)


@pytest.mark.parametrize("scales", [(), (1, 4)])
def test_training_under_cpu_bf16_autocast_reaches_every_parameter(scales):
    """maskkit train --bf16 --device cpu / bench --dtype bfloat16: the CPU kernels step aside.
    (Seeded: at some inits the two scale logits' bf16 gradients cancel to exactly 0.)"""
    torch.manual_seed(0)
    gen = AttentionMaskGenerator(16, 32, 4, scales=scales).train()
    xi, xt = pair(B=2, D=16, T=20, seed=9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b, r = gen(xi, xt)
    (a.float().sum() + b.float().sum() + r.float()).backward()
    assert grads_missing(gen) == []


def test_dropout_is_on_in_training_only_and_follows_the_seed():
    s = small_strategy(seed=5).train()
    xi, xt = pair(B=2, T=30, seed=8)
    torch.manual_seed(1)
    a = s(xi, xt).input_mask
    torch.manual_seed(2)
    b = s(xi, xt).input_mask
    torch.manual_seed(1)
    c = s(xi, xt).input_mask
    assert not torch.equal(a, b) and torch.equal(a, c)
    s.eval()
    assert torch.equal(s(xi, xt).input_mask, s(xi, xt).input_mask)
    s0 = small_strategy(seed=5, dropout=0.0).train()
    s0.load_state_dict(s.state_dict())
    torch.testing.assert_close(s0(xi, xt).input_mask, s(xi, xt).input_mask)  # dropout 0 = eval


# -- learning the regularization ------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_regularization_alone_learns_complementary_masks(seed):
    # The seed's overlap (10) and diversity (5) weights; coverage 5 instead of 0.5: with 0.5 the
    # overlap term wins on the regularization alone and both masks shrink (coverage error ~0.2).
    s = small_strategy(seed=seed, coverage_weight=5.0).train()
    opt = torch.optim.Adam(s.parameters(), lr=1e-2)
    xi, xt = pair(B=4, T=40, seed=9 + seed)
    for _ in range(300):
        loss = s(xi, xt).reg_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    s.eval()
    with torch.no_grad():
        vi, vt = pair(B=8, T=40, seed=10)  # unseen inputs
        m = s(vi, vt)
    r = metrics.mask_metrics(m.input_mask, m.target_mask)
    assert r["complementarity"] > 95.0
    assert r["coverage_error"] < 0.02


# -- save / load ----------------------------------------------------------------------------------
def test_state_dict_and_checkpoint_round_trip(tmp_path):
    s = small_strategy(seed=6, use_discriminator=True, gumbel_tau=0.5).eval()
    ckpt = {"format_version": CHECKPOINT_FORMAT,
            "strategy": {"name": "creative-agent", "options": s.config_dict()},
            "spec": {"dim": 16, "frame_rate": None, "sample_rate": None, "channel_freqs": None},
            "model": {f"strategy.{k}": v for k, v in s.state_dict().items()}}
    path = atomic_save(ckpt, tmp_path / "ckpt.pt")
    back = strategy_from_checkpoint(path)
    assert isinstance(back, CreativeAgentStrategy) and not back.training
    assert back.config == s.config and back.discriminator is not None
    xi, xt = pair(seed=11)
    with torch.no_grad():
        for hard in (False, True):
            a, b = s(xi, xt, hard=hard), back(xi, xt, hard=hard)
            assert torch.equal(a.input_mask, b.input_mask) and torch.equal(a.target_mask, b.target_mask)
        torch.testing.assert_close(s.judge_quality(xi), back.judge_quality(xi))


# -- the seed's API ---------------------------------------------------------------------------------
def test_seed_api():
    torch.manual_seed(0)
    agent = CreativeAgent(16, use_discriminator=True, hidden_dim=32)
    xi, xt = pair(B=3, T=40, seed=12)
    masked_input, masked_target, reg_loss = agent.generate_creative_masks(xi, xt, hard=False)
    assert masked_input.shape == xi.shape and reg_loss.dim() == 0
    im, tm, reg2 = agent.mask_generator(xi, xt)  # the README's "Test on Checkpoint" call
    agent.eval()
    im, tm, _ = agent.mask_generator(xi, xt)
    torch.testing.assert_close(agent.generate_creative_masks(xi, xt)[0], xi * im)
    rf, st = agent.judge_quality(masked_input + masked_target)
    assert rf.shape == (3, 1) and st.shape == (3, 1)
    assert bool(((rf > 0) & (rf < 1) & (st > 0) & (st < 1)).all())
    agent.train()
    mi, mt, _ = agent(xi, xt)
    fake = mi + mt
    gen_loss, disc_loss = agent.adversarial_loss(fake, xt)
    assert math.isfinite(float(gen_loss.detach())) and math.isfinite(float(disc_loss.detach()))
    gen_loss.backward(retain_graph=True)
    assert grads_missing(agent.mask_generator) == []
    agent.zero_grad(set_to_none=True)
    disc_loss.backward()
    assert grads_missing(agent.discriminator) == []
    assert all(p.grad is None for p in agent.mask_generator.parameters())  # fake is detached there
    with pytest.raises(RuntimeError, match="use_discriminator=True"):
        CreativeAgent(16, use_discriminator=False, hidden_dim=32).judge_quality(xi)


def test_style_discriminator_size_and_downsampling():
    d = StyleDiscriminator(128)
    n = sum(p.numel() for p in d.parameters())
    assert 150_000 < n < 250_000  # the seed's "~200K"
    assert d.encode(torch.randn(2, 128, 300)).shape[-1] == 300 // 8
    rf, st = d(torch.randn(2, 128, 3))  # shorter than 8 frames: padded
    assert rf.shape == st.shape == (2, 1)


# -- command line ----------------------------------------------------------------------------------
def test_cli_strategies_lists_creative_agent():
    r = CliRunner().invoke(cli, ["strategies"], terminal_width=200, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if "creative-agent" in ln)
    assert "yes" in line and "1,083,904" in line  # the seed's design, at D=128
    # and as `maskkit train` builds it on the default stft codec (D=514), the count train prints
    from maskkit.train import default_codec_spec

    name, spec = default_codec_spec()
    n = build_strategy("creative-agent", spec=spec)
    assert f"{sum(p.numel() for p in n.parameters()):,}" in line and name == "stft" and spec.dim == 514


def test_cli_selftest_passes_and_fails_loudly(monkeypatch):
    args = ["agent", "selftest", "--dim", "16", "--frames", "40", "--batch-size", "2"]
    r = CliRunner().invoke(cli, args, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "complementarity" in r.output and "all 10 checks passed" in r.output
    from maskkit_creative_agent import diagnostics

    monkeypatch.setattr(diagnostics, "UNTRAINED_COMPLEMENTARITY", (90.0, 100.0))
    r = CliRunner().invoke(cli, args, env={"COLUMNS": "200"})
    assert r.exit_code == 1 and "failed" in r.output


def _trained_checkpoint(tmp_path, spec, codec=None, steps=60, data=None):
    s = build_strategy("creative-agent", {**SMALL, "coverage_weight": 5.0},
                       spec=EncodingSpec(**spec))
    opt = torch.optim.Adam(s.parameters(), lr=1e-2)
    xi, xt = pair(B=4, D=spec["dim"], T=30, seed=13)
    for _ in range(steps):
        loss = s(xi, xt).reg_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    ckpt = {"format_version": CHECKPOINT_FORMAT, "kind": "maskkit-train",
            "config": {"seed": 0, "data": {"segment_seconds": 0.1, **(data or {})}},
            "strategy": {"name": "creative-agent", "options": s.config_dict()}, "spec": spec,
            "model": {f"strategy.{k}": v for k, v in s.state_dict().items()}}
    if codec is not None:
        ckpt["codec"] = codec
    return atomic_save(ckpt, tmp_path / "trained.pt")


def test_cli_inspect_on_random_encodings(tmp_path):
    path = _trained_checkpoint(tmp_path, {"dim": 16})
    r = CliRunner().invoke(cli, ["agent", "inspect", str(path), "--random", "--pairs", "4", "--frames", "30"],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    comp = float(r.output.split("complementarity")[1].split("%")[0].strip(" │|"))
    assert comp > 90.0  # trained, unlike the untrained ~75%
    assert "coverage" in r.output and "balance" in r.output and "random" in r.output


def test_inspect_encodes_the_validation_music_with_the_checkpoint_codec(tmp_path):
    from maskkit_creative_agent.diagnostics import inspect_checkpoint

    from maskkit.plugins import build_codec

    opts = {"sample_rate": 8000, "n_fft": 32, "hop_length": 16}
    codec = build_codec("stft", opts)
    spec = {"dim": codec.spec.dim, "frame_rate": None, "sample_rate": None, "channel_freqs": None}
    path = _trained_checkpoint(tmp_path, spec, codec={"name": "stft", "options": opts}, steps=5)
    rep = inspect_checkpoint(path, pairs=3, batch_size=2)
    assert rep.shape == (3, codec.spec.dim, codec.num_frames(800))
    assert "validation" in rep.data and "stft" in rep.data
    assert "records no training config" not in rep.data
    assert set(rep.metrics) >= {"complementarity", "coverage", "balance", "input_energy_kept",
                                "target_energy_kept"}
    assert 0.0 <= rep.metrics["balance"] <= 1.0
    assert 0.0 < rep.metrics["input_energy_kept"] < 1.0 and 0.0 < rep.metrics["target_energy_kept"] < 1.0


def test_inspect_of_a_run_on_a_folder_of_songs_measures_that_folders_validation_songs(tmp_path):
    """Not synthetic music: the run's own held-out songs (its data config)."""
    import numpy as np
    import soundfile as sf
    from maskkit_creative_agent.diagnostics import inspect_checkpoint

    from maskkit.plugins import build_codec

    songs = tmp_path / "songs"
    songs.mkdir()
    t = np.arange(8000) / 8000
    for i in range(6):
        tone = 0.3 * np.sin(2 * np.pi * (110 + 40 * i) * t)
        sf.write(songs / f"song{i}.wav", tone.astype(np.float32), 8000)
    opts = {"sample_rate": 8000, "n_fft": 32, "hop_length": 16}
    codec = build_codec("stft", opts)
    spec = {"dim": codec.spec.dim, "frame_rate": None, "sample_rate": None, "channel_freqs": None}
    path = _trained_checkpoint(tmp_path, spec, codec={"name": "stft", "options": opts}, steps=1,
                               data={"source": str(songs), "val_fraction": 0.4})
    rep = inspect_checkpoint(path, pairs=5, batch_size=4)
    assert str(songs) in rep.data and "synthetic" not in rep.data
    assert rep.pairs == rep.shape[0] == 5
    assert rep.shape[1:] == (codec.spec.dim, codec.num_frames(800))
    moved = songs.rename(tmp_path / "moved")
    # the data moved: the error names the folder and says how to point at the new place
    with pytest.raises(CheckpointError, match=f"{songs}: no such file or directory.*pass --data"):
        inspect_checkpoint(path, pairs=2)
    rep = inspect_checkpoint(path, pairs=5, batch_size=4, data=str(moved))
    assert str(moved) in rep.data and rep.pairs == 5
    for f in moved.iterdir():
        f.unlink()
    with pytest.raises(Exception, match=str(moved)):  # an empty folder is named too
        inspect_checkpoint(path, pairs=2, data=str(moved))


def test_inspect_without_a_codec_asks_for_random(tmp_path):
    from maskkit_creative_agent.diagnostics import inspect_checkpoint

    path = _trained_checkpoint(tmp_path, {"dim": 16}, steps=1)
    with pytest.raises(CheckpointError, match="--random"):
        inspect_checkpoint(path, pairs=2)
