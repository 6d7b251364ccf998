"""The ``creative-agent`` mask strategy: the CreativeAgent behind maskkit's strategy interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from maskkit import ConfigError, EncodingSpec, Masks, MaskStrategy

from .agent import AttentionMaskGenerator, StyleCritic, StyleDiscriminator, _AgentAPI
from .multiscale import check_scales


@dataclass
class CreativeAgentConfig:
    """Options of the ``creative-agent`` strategy (the seed's defaults).

    ``encoding_dim`` is not an option: it is the codec's D (``EncodingSpec.dim``).
    """

    hidden_dim: int = field(default=256, metadata={
        "help": "width of the feature extractors and of the attention", "min": 2})
    num_heads: int = field(default=4, metadata={"help": "attention heads (must divide hidden_dim)", "min": 1})
    dropout: float = field(default=0.1, metadata={
        "help": "dropout on the attention weights while training", "min": 0.0, "max": 0.9})
    overlap_weight: float = field(default=10.0, metadata={
        "help": "weight of the overlap mean(m_in * m_tg) in reg_loss", "min": 0.0})
    coverage_weight: float = field(default=0.5, metadata={
        "help": "weight of the coverage error mean((m_in + m_tg - 1)^2) in reg_loss", "min": 0.0})
    diversity_weight: float = field(default=5.0, metadata={
        "help": "weight of the temporal-diversity penalty in reg_loss", "min": 0.0})
    diversity_floor: float = field(default=0.05, metadata={
        "help": "temporal variance of each mask below which the diversity penalty applies", "min": 0.0})
    balance_weight: float = field(default=1.0, metadata={
        "help": "scale of extras['balance_loss'] = (balance - 0.5)^2 (the trainer adds it with its own "
                "weight; not part of reg_loss)", "min": 0.0})
    gumbel_tau: float = field(default=1.0, metadata={
        "help": "temperature of the straight-through Gumbel-softmax of hard masks (below about 0.01 the "
                "hard masks pass almost no gradient)", "min": 1e-4})
    use_discriminator: bool = field(default=False, metadata={
        "help": "also build the StyleDiscriminator (its ~210K parameters join the strategy's)"})
    scales: tuple[int, ...] = field(default=(), metadata={
        "help": "multi-scale attention: frames per pooled window of each scale, e.g. 1,8,32 (frames, "
                "~beats, ~bars at ~94 frames/s), mixed by learned weights; empty = off (the seed's design)"})

    num_styles: int = field(default=0, metadata={
        "help": "style conditioning: number of style labels, each a learned scale and shift of the attention "
                "output before the mask heads (the trainer sets it from the data with --style-labels); "
                "0 = off", "min": 0})

    def validate(self) -> None:
        if self.hidden_dim % self.num_heads:
            raise ConfigError(f"strategy 'creative-agent': option 'hidden_dim' ({self.hidden_dim}) must be "
                              f"divisible by 'num_heads' ({self.num_heads})")
        try:
            self.scales = check_scales(self.scales, owner="strategy 'creative-agent'")
        except ValueError as e:
            raise ConfigError(str(e)) from None


class CreativeAgentStrategy(_AgentAPI, MaskStrategy):
    """Learned complementary masks from cross-attention between the two songs (the seed's
    CreativeAgent). Soft sigmoid masks; ``hard=True`` gives binary, exactly complementary masks
    through a straight-through Gumbel-softmax. ``reg_loss`` is the seed's regularization;
    ``extras`` holds ``overlap``, ``coverage_loss``, ``diversity_loss`` and ``balance_loss``.
    """

    name = "creative-agent"
    description = ("Learned masks from cross-attention between the two songs (the seed's CreativeAgent); "
                   "conv feature extractors, 4 heads both ways, sigmoid mask heads.")
    learnable = True
    supports_style = True
    Config = CreativeAgentConfig

    def __init__(self, config: Any = None, *, spec: EncodingSpec | None = None) -> None:
        super().__init__(config, spec=spec)
        c: CreativeAgentConfig = self.config
        c.validate()  # also when given a ready-made Config instance
        D = self.spec.dim
        self.mask_generator = AttentionMaskGenerator(
            D, c.hidden_dim, c.num_heads, c.dropout, overlap_weight=c.overlap_weight,
            coverage_weight=c.coverage_weight, diversity_weight=c.diversity_weight,
            diversity_floor=c.diversity_floor, balance_weight=c.balance_weight, gumbel_tau=c.gumbel_tau,
            scales=c.scales, num_styles=c.num_styles)
        self.discriminator: StyleDiscriminator | None = (
            StyleDiscriminator(D) if c.use_discriminator else None)

    def forward(self, x_input: Tensor, x_target: Tensor, *, hard: bool = False,
                style: Tensor | None = None) -> Masks:
        return self.mask_generator.masks(x_input, x_target, hard=hard, style=style)

    def build_critic(self) -> nn.Module:
        """A fresh StyleDiscriminator (both heads' logits) for the trainer's adversarial phase."""
        return StyleCritic(StyleDiscriminator(self.spec.dim))
