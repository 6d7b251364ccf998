"""Adversarial training with a strategy's critic (maskkit.adversarial + the trainer's two phases)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train import cli_config, flat, load_checkpoint, tiny

from maskkit import adversarial
from maskkit.errors import ConfigError
from maskkit.train import ADVERSARIAL_METRICS, train

pytest.importorskip("maskkit_creative_agent")

AGENT = ("--strategy", "creative-agent", "--strategy-opt", "hidden_dim=8", "--strategy-opt", "num_heads=2")
ADV = ("--adversarial-weight", "0.5", "--adv-warmup-epochs", "0", "--disc-lr", "1e-3")


def run(run_dir: Path, *extra: str, **over):
    return train(tiny(run_dir, "--train-pairs", "8", "--batch-size", "4", *extra, strategy=AGENT, **over))


def critic_state(path: Path | str) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["critic"]


def test_losses_are_the_seed_formulas():
    real, fake = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.5, 3.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    seed_gen = 0.5 * (bce(fake[:, :1], torch.ones(1, 1)) + bce(fake[:, 1:], torch.ones(1, 1)))
    seed_disc = 0.5 * (0.5 * (bce(real[:, :1], torch.ones(1, 1)) + bce(real[:, 1:], torch.ones(1, 1)))
                       + 0.5 * (bce(fake[:, :1], torch.zeros(1, 1)) + bce(fake[:, 1:], torch.zeros(1, 1))))
    torch.testing.assert_close(adversarial.generator_loss(fake), seed_gen)
    torch.testing.assert_close(adversarial.discriminator_loss(real, fake), seed_disc)


def test_frozen_logits_give_gradients_to_the_input_only():
    critic = torch.nn.Sequential(torch.nn.Conv1d(3, 2, 3), torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten())
    x = torch.randn(2, 3, 10, requires_grad=True)
    out = adversarial.frozen_logits(critic, x)
    torch.testing.assert_close(out, critic(x))
    adversarial.generator_loss(out).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_adversarial_steps_change_generator_and_critic(tmp_path):
    one = run(tmp_path / "one", *ADV, "--max-steps", "1", "--epochs", "3")
    three = run(tmp_path / "three", *ADV, "--max-steps", "3", "--epochs", "3")
    plain = run(tmp_path / "plain", "--max-steps", "3", "--epochs", "3")
    # The critic learns: its weights move from step 1 to step 3.
    c1, c3 = flat(critic_state(one.last_checkpoint)), flat(critic_state(three.last_checkpoint))
    assert (c1 - c3).norm() > 1e-4
    # Its adversarial gradient reaches the generator: same seed and data, other weights than
    # the plain run (mask strategy included).
    adv_w = load_checkpoint(three.last_checkpoint)["model"]
    plain_w = load_checkpoint(plain.last_checkpoint)["model"]
    strat = [k for k in adv_w if k.startswith("strategy.")]
    assert strat and any(not torch.equal(adv_w[k], plain_w[k]) for k in strat)
    assert load_checkpoint(plain.last_checkpoint)["critic"] is None
    # Both losses and the critic's scores are logged every step.
    rows = [json.loads(x) for x in open(tmp_path / "three" / "metrics.jsonl")]
    steps = [r for r in rows if r["kind"] == "step"]
    assert len(steps) == 3
    for r in steps:
        assert set(ADVERSARIAL_METRICS) <= set(r)
        assert 0.0 < r["adv_d_real"] < 1.0 and 0.0 < r["adv_d_fake"] < 1.0
        assert r["adv_gen_loss"] > 0 and r["adv_disc_loss"] > 0
    epoch = [r for r in rows if r["kind"] == "epoch"]
    assert "train_adv_disc_loss" in epoch[-1]


def test_warmup_epochs_and_update_frequency(tmp_path, capsys):
    r = run(tmp_path, "--adversarial-weight", "0.5", "--adv-warmup-epochs", "1", "--disc-update-freq", "2",
            "--epochs", "2", quiet=False)
    out = capsys.readouterr().out
    assert "Adversarial phase starts now (after 1 warm-up epoch)" in out
    assert "critic P(real)" in out
    rows = [json.loads(x) for x in open(Path(r.run_dir) / "metrics.jsonl") if '"step"' in x]
    steps = [x for x in rows if x["kind"] == "step"]
    assert [("adv_gen_loss" in x) for x in steps] == [False, False, True, True]
    # The critic updates every 2nd generator step: its loss is carried over in between.
    assert steps[2]["adv_disc_loss"] == steps[3]["adv_disc_loss"]


def test_resumed_adversarial_run_continues_identically(tmp_path):
    args = (*ADV, "--epochs", "3", "--disc-update-freq", "2")
    full = run(tmp_path / "full", *args)
    assert full.steps == 6
    cut = run(tmp_path / "cut", *args, "--simulate-preemption-at-step", "3")
    assert cut.stopped == "interrupted" and cut.steps == 3
    resumed = run(tmp_path / "cut", *args, "--resume", "auto")
    assert resumed.steps == 6
    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    for part in ("model", "critic"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], atol=1e-6, rtol=0, msg=f"{part}.{k}")
    sa, sb = a["critic_optimizer"]["state"], b["critic_optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(int(sa[k]["step"]) == int(sb[k]["step"]) == 3 for k in sa)


@pytest.mark.slow
def test_two_processes_keep_generator_and_critic_in_step(tmp_path):
    r = run(tmp_path, *ADV, "--max-steps", "2", "--batch-size", "2", "--world-size", "2")
    assert r.world_size == 2 and r.steps == 2
    # The checksum covers the model and the critic: equal on both ranks (both DDP-wrapped).
    assert r.rank_param_checksums[0] == r.rank_param_checksums[1]
    assert load_checkpoint(r.last_checkpoint)["critic"] is not None


def test_a_strategy_without_critic_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"strategy 'temporal' offers none .*"
                                          r"Use one that does \(creative-agent\)"):
        train(tiny(tmp_path, "--train-pairs", "8", "--batch-size", "4", "--adversarial-weight", "0.1"))


def test_cli_flags_fill_the_config(tmp_path):
    cfg = cli_config(*AGENT, "--adversarial-weight", "0.01", "--disc-lr", "3e-4", "--disc-update-freq", "3",
                     "--adversarial-warmup-epochs", "2", "--checkpoint-dir", str(tmp_path))
    a = cfg.adversarial
    assert (a.weight, a.disc_lr, a.disc_update_freq, a.warmup_epochs, a.enabled) == (0.01, 3e-4, 3, 2, True)
    assert not cli_config(*AGENT).adversarial.enabled
    with pytest.raises(ConfigError, match="disc_update_freq"):
        cli_config(*AGENT, "--disc-update-freq", "0")


@pytest.mark.parametrize("fused", [False, True])
def test_a_flagged_critic_update_is_skipped_exactly(fused):
    """The critic's non-finite update is skipped from a device flag: a fused AdamW (the trainer's on
    CUDA) takes it into its kernel without a host sync; parameters, moments and step count stay."""
    from maskkit.train import _step_unless

    g = torch.Generator().manual_seed(0)
    start, grads = torch.randn(5, generator=g), [torch.randn(5, generator=g) for _ in range(3)]

    def run(steps):
        p = torch.nn.Parameter(start.clone())
        opt = torch.optim.AdamW([p], lr=0.1, fused=fused)
        for grad, flag in steps:
            p.grad = grad.clone()
            _step_unless(opt, torch.tensor(flag))
        st = opt.state[p]
        return [p.detach(), st["step"], st["exp_avg"], st["exp_avg_sq"]], opt

    with_skip, opt = run([(grads[0], False), (grads[1], True), (grads[2], False)])
    without, _ = run([(grads[0], False), (grads[2], False)])
    for a, b in zip(with_skip, without, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float(with_skip[1]) == 2.0 and not hasattr(opt, "found_inf")
