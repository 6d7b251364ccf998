"""The self-test and the checkpoint inspection behind ``maskkit agent selftest`` / ``inspect``.

Plain functions returning plain results, so that Python users (and tests) get what the
commands print: :func:`selftest` is the seed's ``python creative_agent.py``, and
:func:`inspect_checkpoint` the seed README's "Test on Checkpoint".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from maskkit import CheckpointError, metrics
from maskkit.distributed import resolve_device

#: The seed's README: an untrained agent keeps about 75% complementarity.
UNTRAINED_COMPLEMENTARITY = (70.0, 80.0)


@dataclass
class Check:
    """One self-test line: what was checked, the value seen, and whether it passed."""

    name: str
    value: str
    ok: bool
    detail: str = ""


@dataclass
class SelftestReport:
    checks: list[Check] = field(default_factory=list)
    parameters: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, value: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, value, bool(ok), detail))


def _missing_grads(module: torch.nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters()
            if p.requires_grad and (p.grad is None or not bool(torch.isfinite(p.grad).all())
                                    or float(p.grad.abs().sum()) == 0.0)]


def selftest(batch_size: int = 4, encoding_dim: int = 128, frames: int = 300, *, hidden_dim: int = 256,
             num_heads: int = 4, seed: int = 0, device: str = "cpu") -> SelftestReport:
    """Build an untrained CreativeAgent (with discriminator) and check what the seed's test checked.

    Parameter counts (the generator's equals the seed design's, :class:`maskkit.reference.RefMaskGenerator`),
    mask shapes and ranges, untrained complementarity in 70-80%, a finite regularization
    loss, discriminator scores in (0, 1), hard masks binary and complementary, attention rows
    summing to 1, and gradients reaching every parameter (soft and hard masks, generator and
    discriminator losses). The global RNG is left as it was.
    """
    from maskkit.reference import RefMaskGenerator

    from .agent import CreativeAgent, count_parameters

    rep = SelftestReport()
    dev = resolve_device(device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        agent = CreativeAgent(encoding_dim, use_discriminator=True, hidden_dim=hidden_dim,
                              num_heads=num_heads).to(dev)
        gen, disc = agent.mask_generator, agent.discriminator
        assert disc is not None
        n_ref = count_parameters(RefMaskGenerator(encoding_dim, hidden_dim, num_heads))
        rep.parameters = {"mask_generator": count_parameters(gen), "discriminator": count_parameters(disc),
                          "total": count_parameters(agent), "seed_design": n_ref}
        rep.add("parameters (mask generator)", f"{rep.parameters['mask_generator']:,}",
                rep.parameters["mask_generator"] == n_ref, f"seed design: {n_ref:,}")
        x_in = torch.randn(batch_size, encoding_dim, frames, device=dev)
        x_tg = torch.randn(batch_size, encoding_dim, frames, device=dev)

        agent.eval()
        with torch.no_grad():
            m = gen.masks(x_in, x_tg)
        shape_ok = tuple(m.input_mask.shape) == tuple(x_in.shape) == tuple(m.target_mask.shape)
        lo = min(float(m.input_mask.min()), float(m.target_mask.min()))
        hi = max(float(m.input_mask.max()), float(m.target_mask.max()))
        rep.add("mask shapes and range", f"{tuple(m.input_mask.shape)}, [{lo:.3f}, {hi:.3f}]",
                shape_ok and 0.0 <= lo and hi <= 1.0)
        comp = float(metrics.complementarity(m.input_mask, m.target_mask))
        a, b = UNTRAINED_COMPLEMENTARITY
        rep.add("complementarity (untrained)", f"{comp:.1f}%", a <= comp <= b, f"expected {a:.0f}-{b:.0f}%")
        reg = float(m.reg_loss) if m.reg_loss is not None else math.nan
        rep.add("regularization loss", f"{reg:.6f}", math.isfinite(reg) and reg >= 0.0,
                ", ".join(f"{k}={float(v):.4f}" for k, v in m.extras.items()))
        with torch.no_grad():
            mi, mt, _ = agent.generate_creative_masks(x_in, x_tg)
            rf, st = agent.judge_quality(mi + mt)
        scores_ok = (tuple(rf.shape) == (batch_size, 1) and tuple(st.shape) == (batch_size, 1)
                     and bool(((rf > 0) & (rf < 1) & (st > 0) & (st < 1)).all()))
        rep.add("discriminator scores", f"real/fake {float(rf.mean()):.3f}, style {float(st.mean()):.3f}",
                scores_ok)
        with torch.no_grad():
            h = gen.masks(x_in, x_tg, hard=True)
        binary = bool(((h.input_mask == 0) | (h.input_mask == 1)).all())
        exact = bool((h.input_mask + h.target_mask == 1).all())
        share = float(h.input_mask.mean())
        rep.add("hard masks", f"binary={binary}, sum==1: {exact}, input share {share:.2f}", binary and exact)
        maps = agent.attention_maps(x_in, x_tg)
        err = max(float((w.sum(-1) - 1).abs().max()) for w in maps.values())
        rep.add("attention rows sum to 1", f"max error {err:.1e}", err < 1e-4,
                ", ".join(f"{k} {tuple(v.shape)}" for k, v in maps.items()))

        agent.train()
        for hard in (False, True):
            agent.zero_grad(set_to_none=True)
            mi, mt, reg_t = agent.generate_creative_masks(x_in, x_tg, hard=hard)
            w = torch.rand_like(mi)
            loss = (mi * w).sum() + (mt * (1 - w)).sum()
            if not hard:  # with hard masks, the masked pair alone must reach every parameter
                gen_loss, _ = agent.adversarial_loss(mi + mt, x_in)
                loss = loss + reg_t + gen_loss
            loss.backward()
            missing = _missing_grads(gen)
            n = sum(1 for p in gen.parameters() if p.requires_grad)
            rep.add(f"gradients to the generator ({'hard' if hard else 'soft'} masks)",
                    f"{n - len(missing)}/{n} parameters", not missing, ", ".join(missing[:4]))
        agent.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = sum(agent.generate_creative_masks(x_in, x_tg)[:2])
        _, disc_loss = agent.adversarial_loss(fake, x_in)
        disc_loss.backward()
        d_loss = float(disc_loss.detach())
        missing = _missing_grads(disc)
        n = sum(1 for p in disc.parameters() if p.requires_grad)
        rep.add("gradients to the discriminator", f"{n - len(missing)}/{n} parameters, "
                f"disc_loss {d_loss:.4f}", not missing and math.isfinite(d_loss),
                ", ".join(missing[:4]))
    return rep


@dataclass
class InspectReport:
    """What :func:`inspect_checkpoint` measured."""

    path: str
    strategy: str
    data: str
    pairs: int
    shape: tuple[int, int, int]
    metrics: dict[str, float]
    reg_loss: float | None
    balance_loss: float | None
    hard: bool


def _held_out_encodings(ckpt: dict[str, Any], pairs: int, batch_size: int, seconds: float | None,
                        seed: int | None, device: torch.device, source: str | None = None,
                        where: str = "the checkpoint") -> tuple[list[Tensor], str]:
    """Encode the run's validation split (its data, seed and segment length, as the trainer
    builds it) with the checkpoint's codec; ``seconds`` / ``seed`` / ``source`` (the folder of
    its data, if it moved) override the run's."""
    import dataclasses

    from maskkit.data import iter_batches
    from maskkit.plugins import build_codec
    from maskkit.train_config import DataConfig, TrainConfig

    info = ckpt.get("codec")
    if not info:
        raise CheckpointError("the checkpoint names no codec: use --random to inspect on random encodings")
    codec = build_codec(info["name"], info.get("options") or {}).to(device).eval()
    recorded = bool(ckpt.get("config"))
    cfg = TrainConfig.from_dict(ckpt["config"]) if recorded else TrainConfig()
    data: DataConfig = dataclasses.replace(
        cfg.data, val_pairs=pairs, style_labels=False,
        source=source if source is not None else cfg.data.source,
        segment_seconds=float(seconds if seconds is not None else cfg.data.segment_seconds))
    moved = None if source is not None else data.moved_source(
        where, "pass --data with where they are now (or --random for random encodings)")
    if moved:
        raise CheckpointError(moved)
    seed = int(seed if seed is not None else cfg.seed)
    _, val = data.datasets(int(codec.sample_rate), seed)
    n = min(pairs, len(val))
    with torch.no_grad():
        batches = [torch.stack([codec.encode(a), codec.encode(b)])
                   for a, b, _ in iter_batches(val, batch_size, n, device)]
    where = "synthetic" if data.source in (None, "synthetic") else f"{data.source}:"
    note = "" if recorded else "; the checkpoint records no training config: defaults, or --seconds/--seed"
    return batches, (f"{where} validation split ({n} pairs, seed {seed}, {data.segment_seconds:g} s, "
                     f"codec '{info['name']}', {codec.sample_rate} Hz{note})")


def inspect_checkpoint(path: str | os.PathLike[str], *, pairs: int = 16, batch_size: int = 8,
                       seconds: float | None = None, seed: int | None = None, random: bool = False,
                       frames: int = 300, hard: bool | None = None, device: str = "cpu",
                       data: str | None = None) -> InspectReport:
    """Complementarity, coverage and balance of a checkpoint's trained strategy on held-out data.

    Loads the strategy with :func:`maskkit.checkpoint.strategy_from_checkpoint` (eval mode),
    encodes the run's validation split (its data: synthetic music or the folder it trained
    on, with its seed and segment length; ``pairs`` of them at most) with the checkpoint's
    codec, and computes
    :func:`maskkit.metrics.mask_metrics` over all the pairs at once. ``random=True`` uses
    random ``N(0, 1)`` encodings of ``spec.dim x frames`` instead (no codec or data needed).
    ``data``: the folder of the run's songs when it is no longer where the checkpoint says
    (any folder of songs or WAV pairs: its validation split is measured). ``hard``: measure
    the hard (0/1) or the soft masks; ``None`` (default): those the run trained on (hard
    after ``maskkit train --hard-masks``).
    """
    from maskkit.checkpoint import (
        load_checkpoint,
        spec_from_dict,
        strategy_from_checkpoint,
        trained_on_hard_masks,
    )

    dev = resolve_device(device)
    ckpt = load_checkpoint(path, require=("strategy", "spec"))
    strategy = strategy_from_checkpoint(ckpt, where=str(path)).to(dev)
    spec = spec_from_dict(ckpt["spec"])
    if hard is None:  # trained with --hard-masks: measure those
        hard = trained_on_hard_masks(ckpt)
    if random:
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        batches = []
        for i in range(0, pairs, batch_size):
            n = min(batch_size, pairs - i)
            batches.append(torch.randn(2, n, spec.dim, frames, generator=g).to(dev))
        data = f"random N(0, 1) encodings ({spec.dim} x {frames})"
    else:
        batches, data = _held_out_encodings(ckpt, pairs, batch_size, seconds, seed, dev, data, str(path))
    ims, tms, regs, bals = [], [], [], []
    energy = torch.zeros(2, 2)  # (kept, total) of the input and of the target, over every pair
    with torch.no_grad():
        for enc in batches:
            m = strategy(enc[0], enc[1], hard=hard)
            ims.append(m.input_mask.expand_as(enc[0]).float().cpu())
            tms.append(m.target_mask.expand_as(enc[1]).float().cpu())
            energy += torch.tensor([[float(v) for v in metrics.energy_sums(enc[0], m.input_mask)],
                                    [float(v) for v in metrics.energy_sums(enc[1], m.target_mask)]])
            if m.reg_loss is not None:
                regs.append(float(m.reg_loss) * enc.shape[1])
            bal = m.extras.get("balance_loss") if isinstance(m.extras, dict) else None
            if isinstance(bal, Tensor):
                bals.append(float(bal) * enc.shape[1])
    im, tm = torch.cat(ims), torch.cat(tms)
    n = int(im.shape[0])  # fewer than ``pairs`` when the run's validation split is smaller
    kept = metrics.kept_share(energy[:, 0], energy[:, 1])
    measured = {**metrics.mask_metrics(im, tm),
                **dict(zip(metrics.ENERGY_METRICS, (float(kept[0]), float(kept[1])), strict=True))}
    return InspectReport(
        path=str(path), strategy=str(ckpt["strategy"]["name"]), data=data, pairs=n,
        shape=(n, int(im.shape[1]), int(im.shape[2])), metrics=measured,
        reg_loss=sum(regs) / n if regs else None, balance_loss=sum(bals) / n if bals else None,
        hard=hard)
