"""Adversarial training: a strategy's critic judges the arrangement against real music.

A strategy may offer a *critic* (:meth:`maskkit.MaskStrategy.build_critic`): a module that
reads encodings ``[B, D, T]`` and returns real/fake logits ``[B, K]`` (``K >= 1`` heads,
positive = "real music"). With ``TrainConfig.adversarial.weight > 0`` the trainer runs
two-phase steps once ``warmup_epochs`` have passed:

1. **critic** (every ``disc_update_freq`` generator steps): real = both songs' encodings,
   fake = the model's output (detached); ``discriminator_loss`` with its own AdamW
   (``disc_lr``), gradients averaged across ranks by its own DDP wrapper;
2. **generator**: the usual combined loss plus ``weight * generator_loss(critic(output))``,
   the critic's parameters frozen for this term (:func:`frozen_logits`), so that its
   gradient reaches the mask strategy and the arrangement model but not the critic.

The losses are the non-saturating GAN losses averaged over the critic's heads (the seed's
``CreativeAgent.adversarial_loss``, whose plugin calls these functions). This module is the
one definition of them; it knows nothing of any plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError, MaskValidationError


@dataclass
class AdversarialConfig:
    """Adversarial training with the strategy's critic (off while ``weight`` is 0)."""

    weight: float = field(default=0.0, metadata={
        "help": "weight of the generator's adversarial loss (0: off; the seed suggests 0.01)", "min": 0.0})
    disc_lr: float = field(default=2e-4, metadata={"help": "the critic's learning rate (AdamW)", "min": 0.0})
    disc_update_freq: int = field(default=1, metadata={
        "help": "update the critic every N generator steps", "min": 1})
    warmup_epochs: int = field(default=1, metadata={
        "help": "epochs of plain training before the adversarial phase starts", "min": 0})
    disc_betas: tuple[float, float] = (0.5, 0.999)
    disc_weight_decay: float = field(default=0.0, metadata={"help": "the critic's weight decay", "min": 0.0})

    @property
    def enabled(self) -> bool:
        return self.weight > 0


def _bce(logits: Tensor, real: bool) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), float(real)))


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: BCE(critic(fake), real), mean over samples and heads."""
    return _bce(fake_logits, True)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The critic's loss: the mean of BCE(critic(real), real) and BCE(critic(fake), fake)."""
    return 0.5 * (_bce(real_logits, True) + _bce(fake_logits, False))


def frozen_logits(critic: nn.Module, x: Tensor) -> Tensor:
    """``critic(x)`` with the critic's parameters and buffers detached: the gradient flows
    to ``x`` only. No hook of a DDP wrapper around ``critic`` is touched."""
    state = {k: v.detach() for k, v in critic.state_dict(keep_vars=True).items()}
    return torch.func.functional_call(critic, state, (x,))


def check_critic(critic: Any, x: Tensor, strategy_name: str, origin: str = "") -> None:
    """Check once what a strategy's critic returns; raise naming the strategy."""
    who = f"strategy '{strategy_name}'" + (f" ({origin})" if origin else "")
    if not isinstance(critic, nn.Module):
        raise MaskValidationError(f"{who}: build_critic() returned {type(critic).__name__}, expected a "
                                  f"torch.nn.Module (or None: no adversarial training)")
    with torch.no_grad():
        out = critic(x)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0] or out.shape[1] < 1:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise MaskValidationError(f"{who}: its critic returned {shape} for input {tuple(x.shape)}; "
                                  f"expected logits [B, K] with B={x.shape[0]}, K >= 1")


def no_critic_error(strategy_name: str) -> ConfigError:
    """The error for adversarial training with a strategy that offers no critic, naming the
    installed strategies that do (those that override :meth:`MaskStrategy.build_critic`)."""
    from .plugins import get_manager
    from .strategy import MaskStrategy

    with_critic = sorted(name for name, entry in get_manager().strategies().items()
                         if getattr(entry.cls, "build_critic", None) is not MaskStrategy.build_critic)
    choice = f"one that does ({', '.join(with_critic)})" if with_critic else "one that does"
    return ConfigError(f"--adversarial-weight > 0 needs a critic, but strategy '{strategy_name}' offers "
                       f"none (its build_critic() returns None). Use {choice}, or drop "
                       f"--adversarial-weight")
