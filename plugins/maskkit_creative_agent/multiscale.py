"""Multi-scale cross-attention for the AttentionMaskGenerator (the ``scales`` option).

With ``scales=(1, 8, 32)`` the generator attends three times: over frames (scale 1), over
windows of 8 frames (about a beat at ~94 frames/s) and over windows of 32 frames (about a
bar). At scale ``s`` the q/k/v projections of both songs are average-pooled over time in
windows of ``s`` frames (the last window may be shorter; a song shorter than ``s`` frames
becomes one window), the two songs cross-attend with the same attention weights and
dropout as at the frame scale, and each window's output is copied back to its frames. The
scales' outputs are mixed with learned softmax weights (one logit per scale, zero at first,
so every scale starts at weight ``1 / len(scales)``) before the mask heads.

Pooling the projections is the same as projecting pooled features (the projection is affine
and the pooling weights sum to 1), and costs ``s`` times less. The mix sums to 1 per frame,
so the attention's output projection and its bias (fused into the mask heads' first
convolution, see ``AttentionMaskGenerator._head``) still apply unchanged. The only new
parameters are the ``len(scales)`` mixing logits; with ``scales=()`` (the default) nothing
of this module runs and the generator is the seed's design.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .attention import cross_attention

__all__ = ["check_scales", "multi_scale_cross_attention", "pool_time", "upsample_time"]


def check_scales(scales: Sequence[int], owner: str = "AttentionMaskGenerator") -> tuple[int, ...]:
    """``scales`` as a tuple, after checking it: empty (off), or two or more distinct integers >= 1.

    One scale alone would make the mix a constant 1 (its logit could never learn), so it is
    refused; use ``()`` for the seed's single frame-scale attention.
    """
    out = tuple(scales)
    if not out:
        return out
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in out):
        raise ValueError(f"{owner}: 'scales' must be integers >= 1 (frames per pooled window), got {out}")
    if len(set(out)) != len(out):
        raise ValueError(f"{owner}: 'scales' must not repeat a scale, got {out}")
    if len(out) < 2:
        raise ValueError(f"{owner}: 'scales' needs at least two scales (e.g. 1,8,32), or none to turn "
                         f"multi-scale attention off; got {out}")
    return out


def pool_time(x: Tensor, s: int) -> Tensor:
    """``[B, T, C]`` -> ``[B, ceil(T / s), C]``: the mean of each window of ``s`` frames.

    The last window holds the ``T mod s`` remaining frames when ``s`` does not divide ``T``
    (it is their mean, not diluted by padding); ``T < s`` gives one window, the song's mean.
    """
    if s == 1:
        return x
    # ceil_mode: the last, partial window averages only the frames it covers
    return F.avg_pool1d(x.transpose(1, 2), s, s, ceil_mode=True).transpose(1, 2)


def upsample_time(x: Tensor, s: int, T: int) -> Tensor:
    """``[B, ceil(T / s), C]`` -> ``[B, T, C]`` (contiguous): frame ``t`` gets window ``t // s``."""
    if s == 1:
        return x
    index = torch.arange(T, device=x.device) // s
    return x.index_select(1, index)


def multi_scale_cross_attention(qkv_a: Tensor, qkv_b: Tensor, heads: int, dropout_p: float,
                                scales: Sequence[int], scale_logits: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-attention both ways at every scale, mixed by ``softmax(scale_logits)``.

    ``qkv_a``, ``qkv_b``: the songs' ``[B, T, 3H]`` projections; returns ``(o_a, o_b)``, each
    ``[B, T, H]`` and contiguous, like :func:`.attention.cross_attention`.
    """
    T = qkv_a.shape[1]
    weights = torch.softmax(scale_logits.float(), dim=0).to(qkv_a.dtype)
    o_a = o_b = None
    for i, s in enumerate(scales):
        a, b = cross_attention(pool_time(qkv_a, s), pool_time(qkv_b, s), heads, dropout_p)
        # weighted before upsampling: s times fewer elements to scale (and to back-propagate)
        a, b = upsample_time(a * weights[i], s, T), upsample_time(b * weights[i], s, T)
        o_a = a if o_a is None else o_a + a
        o_b = b if o_b is None else o_b + b
    assert o_a is not None and o_b is not None
    return o_a, o_b
