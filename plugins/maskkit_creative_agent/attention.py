"""Cross-attention kernels of the AttentionMaskGenerator, chosen for speed on CPU and GPU.

The math is ``nn.MultiheadAttention``'s (``softmax(q k^T / sqrt(d)) v`` per head, with dropout
on the attention weights); only the way it is computed differs. :func:`cross_attention`
takes the ``[B, T, 3H]`` q/k/v projections of both songs and returns both directions'
outputs as ``[B, T, H]`` (the layout the next convolution reads, no permute):

- **no dropout** (eval mode, or ``dropout=0``), and **dropout on a GPU**: PyTorch's fused
  :func:`torch.nn.functional.scaled_dot_product_attention` (flash attention; on GPU with its
  in-kernel dropout). The ``[T, T]`` weights are never materialized.
- **dropout on a CPU** (eager mode; under ``torch.compile`` the fused call above is traced
  instead): the fused CPU kernel cannot drop out, and the math fallback spends a large
  share of a training step drawing ``float`` Bernoulli numbers and streaming
  ``[B, heads, T, T]`` tensors through memory. :class:`_DropoutCrossAttention` works one
  batch item at a time (its ``[heads, T, T]`` block stays in cache), with batched matrix
  products on strided views of the projections (no relayout); it draws the keep mask as
  16-bit integers compared with an exact threshold, four per 64-bit draw
  (:func:`keep_mask`), applied as one float multiply. For the backward pass it keeps those
  2-byte random numbers and the softmax weights (up to :data:`SAVED_WEIGHTS_BYTES`, 46 MB at
  B=16, T=300: one matrix product and one softmax fewer per item, 2-12% (median 7%) of a
  training step measured side by side on 2 cores; beyond that size it recomputes the weights,
  flash-attention style), and writes the gradients of both directions straight into each
  song's q/k/v gradient. The keep probability is ``1 - round(p * 65536) / 65536``, within
  ``2**-17`` of ``1 - p``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["attention_weights", "cross_attention", "dropout_threshold", "keep_mask", "split_heads"]


def dropout_threshold(p: float) -> int:
    """The int16 threshold of :func:`keep_mask`: a value ``r`` is kept when ``r >= threshold``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    return -32768 + round(p * 65536)


def keep_mask(shape: tuple[int, ...] | torch.Size, p: float, device: torch.device | str | None = None,
              generator: torch.Generator | None = None) -> Tensor:
    """A boolean mask of ``shape``, each element True with probability ``1 - p`` (to ``2**-17``).

    Draws ``ceil(n / 4)`` 64-bit integers from the (default or given) generator and reads
    them as ``n`` independent uniform 16-bit integers; an element is kept when its integer
    is at least :func:`dropout_threshold`. Several times cheaper on a CPU than
    ``torch.bernoulli`` on floats.
    """
    thr = dropout_threshold(p)
    if thr >= 32768:  # p rounds to 1: drop everything
        return torch.zeros(shape, dtype=torch.bool, device=device)
    return _random_int16(shape, device, generator) >= thr


def _random_int16(shape: tuple[int, ...] | torch.Size, device: torch.device | str | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
    """Uniform int16 numbers of ``shape``: ``ceil(n / 4)`` 64-bit draws, each read as four."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(2**63), None, generator=generator)  # the full 64-bit range
    return words.view(torch.int16)[:n].view(shape)


def split_heads(qkv: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """``[B, T, 3H]`` -> q, k, v as ``[B, heads, T, H / heads]`` views (no copy)."""
    B, T, H3 = qkv.shape
    x = qkv.view(B, T, 3, heads, H3 // (3 * heads))
    return x[:, :, 0].transpose(1, 2), x[:, :, 1].transpose(1, 2), x[:, :, 2].transpose(1, 2)


def _merge_heads(o: Tensor) -> Tensor:
    """``[B, heads, T, d]`` -> ``[B, T, heads * d]``."""
    B, h, T, d = o.shape
    return o.transpose(1, 2).reshape(B, T, h * d)


#: Largest size of the softmax weights (both directions) that the CPU dropout kernel keeps for
#: the backward pass instead of recomputing them (B=16, T=300, 4 heads in float32: 46 MB).
SAVED_WEIGHTS_BYTES = 256 * 2**20

_softmax_out = torch.ops.aten._softmax.out
_softmax_backward_out = torch.ops.aten._softmax_backward_data.out


def _heads_of(qkv: Tensor, b: int, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v of batch item ``b`` of a ``[B, T, 3H]`` tensor as ``[heads, T, d]`` views (no copy)."""
    T, H3 = qkv.shape[1], qkv.shape[2]
    x = qkv[b].view(T, 3, heads, H3 // (3 * heads))
    return x[:, 0].transpose(0, 1), x[:, 1].transpose(0, 1), x[:, 2].transpose(0, 1)


class _DropoutCrossAttention(torch.autograd.Function):
    """Both attention directions with dropout, one batch item at a time (CPU training).

    ``forward(qkv_a, qkv_b, heads, p) -> (o_a, o_b)``: ``o_a`` is song a's queries over song
    b's keys and values, ``o_b`` the other way; all ``[B, T, 3H]`` in, ``[B, T, H]`` out.
    Each item's heads are batched matrix products on strided views of the projections (no
    relayout); the softmax scale and dropout's ``1 / (1 - p)`` ride on the products' ``alpha``.
    The ``[heads, T, T]`` work buffers are allocated once and reused (they stay in cache).
    """

    @staticmethod
    def forward(ctx, qkv_a: Tensor, qkv_b: Tensor, heads: int, p: float  # type: ignore[override]
                ) -> tuple[Tensor, Tensor]:
        qkv_a, qkv_b = qkv_a.contiguous(), qkv_b.contiguous()
        B, T, H3 = qkv_a.shape
        scale, inv_keep = 1.0 / math.sqrt(H3 // (3 * heads)), 1.0 / (1.0 - p)
        thr = dropout_threshold(p)
        # The softmax weights are kept for the backward pass when both directions' fit in
        # SAVED_WEIGHTS_BYTES (one matrix product and one softmax fewer per item there);
        # otherwise the backward recomputes them and only 2 bytes a weight are kept.
        keep_w = 2 * B * heads * T * T * qkv_a.element_size() <= SAVED_WEIGHTS_BYTES
        s = qkv_a.new_empty(heads, T, T)
        w, m = torch.empty_like(s), torch.empty_like(s)
        randoms, weights, outs = [], [], []
        for src_q, src_kv in ((qkv_a, qkv_b), (qkv_b, qkv_a)):
            out = qkv_a.new_empty(B, T, H3 // 3)
            saved = qkv_a.new_empty(B, heads, T, T) if keep_w else None
            for b in range(B):
                q, _, _ = _heads_of(src_q, b, heads)
                _, k, v = _heads_of(src_kv, b, heads)
                torch.baddbmm(s, q, k.transpose(1, 2), beta=0.0, alpha=scale, out=s)
                r = _random_int16((heads, T, T), s.device)  # kept for the backward: 2 bytes a weight
                torch.ge(r, thr, out=m)  # the keep mask as 0/1 floats: one fast multiply
                p_attn = w if saved is None else saved[b]  # the softmax, kept or not
                _softmax_out(s, -1, False, out=p_attn)
                torch.mul(p_attn, m, out=w)  # dropped out (in place when not kept)
                o = out[b].view(T, heads, -1).transpose(0, 1)  # written in place, no copy
                torch.baddbmm(o, w, v, beta=0.0, alpha=inv_keep, out=o)
                randoms.append(r)
            outs.append(out)
            if saved is not None:
                weights.append(saved)
        ctx.save_for_backward(qkv_a, qkv_b, *weights, *randoms)
        ctx.heads, ctx.thr, ctx.scale, ctx.inv_keep, ctx.n_weights = heads, thr, scale, inv_keep, len(weights)
        return outs[0], outs[1]

    @staticmethod
    def backward(ctx, grad_a: Tensor, grad_b: Tensor  # type: ignore[override]
                 ) -> tuple[Tensor, Tensor, None, None]:
        qkv_a, qkv_b, *rest = ctx.saved_tensors
        weights, randoms = rest[:ctx.n_weights], rest[ctx.n_weights:]
        heads, thr, scale, inv_keep = ctx.heads, ctx.thr, ctx.scale, ctx.inv_keep
        B, T, H3 = qkv_a.shape
        d_a, d_b = torch.empty_like(qkv_a), torch.empty_like(qkv_b)
        s = qkv_a.new_empty(heads, T, T)
        w, m, x, y = torch.empty_like(s), torch.empty_like(s), torch.empty_like(s), torch.empty_like(s)
        n = 0
        for direction, (src_q, src_kv, d_q, d_kv, grad) in enumerate(
                ((qkv_a, qkv_b, d_a, d_b, grad_a), (qkv_b, qkv_a, d_b, d_a, grad_b))):
            for b in range(B):
                q, _, _ = _heads_of(src_q, b, heads)
                _, k, v = _heads_of(src_kv, b, heads)
                dq, _, _ = _heads_of(d_q, b, heads)
                _, dk, dv = _heads_of(d_kv, b, heads)
                go = grad[b].view(T, heads, -1).transpose(0, 1)
                torch.ge(randoms[n], thr, out=m)
                n += 1
                if weights:
                    w = weights[direction][b]
                else:
                    torch.baddbmm(s, q, k.transpose(1, 2), beta=0.0, alpha=scale, out=s)  # recomputed
                    _softmax_out(s, -1, False, out=w)
                torch.mul(w, m, out=x)  # the dropped-out weights
                torch.baddbmm(dv, x.transpose(1, 2), go, beta=0.0, alpha=inv_keep, out=dv)
                torch.baddbmm(x, go, v.transpose(1, 2), beta=0.0, alpha=inv_keep, out=x)
                x.mul_(m)
                _softmax_backward_out(x, w, -1, w.dtype, grad_input=y)
                torch.baddbmm(dq, y, k, beta=0.0, alpha=scale, out=dq)
                torch.baddbmm(dk, y.transpose(1, 2), q, beta=0.0, alpha=scale, out=dk)
        return d_a, d_b, None, None


def cross_attention(qkv_a: Tensor, qkv_b: Tensor, heads: int, dropout_p: float = 0.0
                    ) -> tuple[Tensor, Tensor]:
    """Attention both ways between two songs' ``[B, T, 3H]`` q/k/v projections.

    Returns ``(o_a, o_b)``, each ``[B, T, H]``: ``o_a`` = song a's queries attending over song
    b's keys and values, ``o_b`` the other way (dropout ``dropout_p`` on the weights).
    """
    if dropout_p > 0.0 and qkv_a.device.type == "cpu" and not torch.compiler.is_compiling():
        if dropout_p >= 1.0:
            z = qkv_a.new_zeros(qkv_a.shape[0], qkv_a.shape[1], qkv_a.shape[2] // 3)
            return z, z.clone()
        return _DropoutCrossAttention.apply(qkv_a, qkv_b, heads, dropout_p)
    qa, ka, va = split_heads(qkv_a, heads)
    qb, kb, vb = split_heads(qkv_b, heads)
    o_a = F.scaled_dot_product_attention(qa, kb, vb, dropout_p=dropout_p)
    o_b = F.scaled_dot_product_attention(qb, ka, va, dropout_p=dropout_p)
    return _merge_heads(o_a), _merge_heads(o_b)


def attention_weights(q: Tensor, k: Tensor) -> Tensor:
    """The attention weights ``softmax(q k^T / sqrt(d))``, ``[B, heads, Tq, Tk]`` (no dropout)."""
    s = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-1, -2))
    return torch.softmax(s.float(), dim=-1)
