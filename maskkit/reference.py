"""Naive reference implementations of the seed's algorithms: yardsticks, not product code.

:class:`RefMaskGenerator` is the seed's learned mask generator written the way the seed
wrote it (sequence-first ``nn.MultiheadAttention`` called twice with its default
``need_weights=True``, separate analyzers, permutes between the layers), and
:func:`ref_temporal_mask` is the seed's temporal mask built frame by frame in Python loops.
Both are rewritten from ``shared/reference/seed_reference.py`` with the same layers and the
same math. The benchmarks measure the project's implementations against them side by side
in one process, and the tests check that the fast versions compute the same thing.

Nothing in maskkit uses these for real work.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RefMaskGenerator", "ref_temporal_mask"]


class RefMaskGenerator(nn.Module):
    """The seed's attention mask generator, naive layout (1,083,904 parameters at defaults).

    ``forward(x_in, x_tg)`` takes two ``[B, dim, T]`` encodings and returns
    ``(input_mask, target_mask, reg_loss)``: sigmoid masks ``[B, dim, T]`` and the seed's
    regularization ``10 * overlap + 0.5 * coverage + 5 * diversity`` (diversity uses the
    unbiased variance over T, as the seed's ``Tensor.var`` did).
    """

    def __init__(self, dim: int = 128, hidden: int = 256, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()

        def analyzer() -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(dim, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU())

        def head() -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(hidden, hidden // 2, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(hidden // 2, dim, 1), nn.Sigmoid())

        self.a_in, self.a_tg = analyzer(), analyzer()
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout)
        self.h_in, self.h_tg = head(), head()

    def forward(self, x_in: Tensor, x_tg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f_in = self.a_in(x_in).permute(2, 0, 1)  # [T, B, H]: sequence-first
        f_tg = self.a_tg(x_tg).permute(2, 0, 1)
        att_in, _ = self.attn(f_in, f_tg, f_tg)  # input queries target
        att_tg, _ = self.attn(f_tg, f_in, f_in)  # target queries input
        m_in = self.h_in(att_in.permute(1, 2, 0))
        m_tg = self.h_tg(att_tg.permute(1, 2, 0))
        overlap = (m_in * m_tg).mean()
        coverage = ((m_in + m_tg - 1.0) ** 2).mean()
        diversity = torch.relu(0.05 - m_in.var(dim=2).mean()) + torch.relu(0.05 - m_tg.var(dim=2).mean())
        reg = 10.0 * overlap + 0.5 * coverage + 5.0 * diversity
        return m_in, m_tg, reg


def ref_temporal_mask(x_in: Tensor, x_tg: Tensor, segment: int = 150) -> tuple[Tensor, Tensor]:
    """The seed's temporal masking: alternating segments with short linear fades, frame by frame.

    Returns the masked pair ``(x_in * mask, x_tg * (1 - mask))`` with ``mask`` of shape
    ``[1, 1, T]``: 1 on the 1st, 3rd, ... segment, fades of ``min(10, segment // 15)`` frames
    on both sides of every boundary.
    """
    T = x_in.shape[-1]
    mask = torch.zeros(1, 1, T, device=x_in.device)
    for i in range(0, T, segment * 2):
        mask[:, :, i:min(i + segment, T)] = 1.0
    fade = min(10, segment // 15)
    for i in range(segment, T, segment):
        start = max(0, i - fade)
        for j in range(fade):
            if start + j < T:
                mask[:, :, start + j] *= (fade - j) / fade
        for j in range(fade):
            if i + j < T:
                mask[:, :, i + j] *= j / fade
    return x_in * mask, x_tg * (1.0 - mask)
