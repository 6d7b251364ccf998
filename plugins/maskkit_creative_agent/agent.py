"""The CreativeAgent: learned complementary masks from cross-attention, and a style discriminator.

:class:`AttentionMaskGenerator` is the seed's design (``README_CREATIVE_AGENT.md``): a Conv1d
feature extractor for each song, 4-head cross-attention both ways (the input's frames query
the target's, and the target's query the input's, with one shared ``nn.MultiheadAttention``),
and a Conv1d -> sigmoid head per song giving ``[B, D, T]`` soft masks. At the defaults it has
exactly the parameters of the seed's design (1,083,904 for D=128), in the same layout, so
its weights load from :class:`maskkit.reference.RefMaskGenerator` and speed comparisons are
fair.

It computes the same math faster (``docs/creative_agent.md`` has the measurements):

- every convolution and the attention projections run as 2-D convolutions on a channels-last
  ``[B, C, T, 1]`` layout, i.e. ``[B, T, C]`` in memory: oneDNN's kernels on CPU (about twice
  as fast as the BLAS matmuls ``nn.MultiheadAttention`` uses), cuDNN's NHWC kernels on GPU,
  and the projections come out already laid out for the heads, with no permute or copy;
- attention through :mod:`.attention`: fused scaled-dot-product attention without dropout
  and on GPU, and a cheap-random-number dropout kernel for CPU training; the ``[T, T]``
  weights are never materialized unless :meth:`AttentionMaskGenerator.attention_maps` asks;
- on CPU, the weight gradient of each (3, 1) convolution is taken as a 1x1 convolution's
  over the shifted copies of its input (:class:`_ConvCL`), about twice as fast;
- the attention's output projection and each mask head's first convolution (no
  nonlinearity between them) run as one convolution with the product of their weights.

:class:`StyleDiscriminator` and :class:`CreativeAgent` give the seed's adversarial API.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskkit import InputError, Masks, adversarial, check_encodings, metrics

from .attention import attention_weights, cross_attention, split_heads
from .multiscale import check_scales, multi_scale_cross_attention

__all__ = [
    "AttentionMaskGenerator",
    "CreativeAgent",
    "StyleDiscriminator",
    "reference_key_map",
]

#: RefMaskGenerator's module names -> AttentionMaskGenerator's (the parameters are the same).
_REF_MODULES = {
    "a_in.": "input_analyzer.",
    "a_tg.": "target_analyzer.",
    "attn.": "cross_attention.",
    "h_in.": "input_mask_head.",
    "h_tg.": "target_mask_head.",
}


def reference_key_map(ref_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A :class:`maskkit.reference.RefMaskGenerator` state dict renamed for AttentionMaskGenerator."""
    out = {}
    for key, value in ref_state.items():
        for old, new in _REF_MODULES.items():
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            raise KeyError(f"unexpected RefMaskGenerator parameter '{key}'")
    return out


def _to_cl(x: Tensor) -> Tensor:
    """``[B, C, T]`` -> ``[B, C, T, 1]`` channels-last (``[B, T, C]`` in memory)."""
    return x.unsqueeze(-1).contiguous(memory_format=torch.channels_last)


_workspaces = threading.local()


def _workspace(numel: int, like: Tensor) -> Tensor:
    """A reused flat scratch tensor (per thread, dtype and device): a fresh multi-megabyte
    allocation on every backward pass costs page faults that are slower than the copy itself."""
    cache = _workspaces.__dict__.setdefault("buffers", {})
    key = (like.dtype, like.device)
    buf = cache.get(key)
    if buf is None or buf.numel() < numel:
        buf = cache[key] = like.new_empty(numel)
    return buf[:numel]


def _im2col(x: Tensor, k: int, pad: int) -> Tensor:
    """``[B, C, T, 1]`` channels-last -> ``[B, k * C, T, 1]``: channel ``j * C + c`` is ``x[c, t + j - pad]``.

    The result lives in a per-thread workspace: use it before the next call.
    """
    B, C, T, _ = x.shape
    xs = x.permute(0, 2, 3, 1).reshape(B, T, C)
    out = _workspace(B * T * k * C, x).view(B, T, k, C)
    for j in range(k):
        o = j - pad
        lo, hi = max(0, -o), min(T, T - o)  # output frames whose source frame exists
        if hi > lo:
            out[:, lo:hi, j] = xs[:, lo + o:hi + o]
        out[:, :min(lo, T), j] = 0.0
        out[:, max(hi, lo):, j] = 0.0
    return out.view(B, T, 1, k * C).permute(0, 3, 1, 2)


class _ConvCL(torch.autograd.Function):
    """A (k, 1) convolution of a channels-last ``[B, C, T, 1]`` tensor (CPU, k > 1).

    Forward and input gradient are oneDNN's convolution; the weight gradient is taken as a
    1x1 convolution's over the k shifted copies of the input (im2col), which oneDNN computes
    about twice as fast as the (k, 1) kernel's weight gradient on channels-last data.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, pad: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.pad, ctx.has_bias = pad, bias is not None
        return F.conv2d(x, weight.unsqueeze(-1), bias, padding=(pad, 0))

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        cout, cin, k = weight.shape
        pad = ctx.pad
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        g = g.contiguous(memory_format=torch.channels_last)
        cb = torch.ops.aten.convolution_backward
        gx = gw = gb = None
        if need_x:
            gx = cb(g, x, weight.unsqueeze(-1), [cout], [1, 1], [pad, 0], [1, 1], False, [0, 0], 1,
                    [True, False, False])[0]
        if need_w or need_b:
            x3 = _im2col(x, k, pad)
            w1 = weight.new_empty(cout, k * cin, 1, 1)  # only its shape is read
            _, gw1, gb = cb(g, x3, w1, [cout], [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                            [False, need_w, need_b and ctx.has_bias])
            if gw1 is not None:
                gw = gw1.view(cout, k, cin).permute(0, 2, 1)
        return gx, gw, gb, None


def _conv_w(x: Tensor, weight: Tensor, bias: Tensor | None, pad: int) -> Tensor:
    """A Conv1d weight ``[out, in, k]`` applied to a ``[B, in, T, 1]`` channels-last tensor.

    (On a GPU the same convolutions as GEMMs over shifted copies of the input were measured and
    dropped: 4.96x vs cuDNN's 5.26x the seed design at B=256, docs/performance.md.)"""
    if (weight.shape[-1] > 1 and x.device.type == "cpu" and torch.is_grad_enabled()
            and not torch.compiler.is_compiling() and not torch.is_autocast_enabled("cpu")):
        # (under CPU autocast the plain convolution casts and differentiates in bf16 itself)
        return _ConvCL.apply(x, weight, bias, pad)
    return F.conv2d(x, weight.unsqueeze(-1), bias, padding=(pad, 0))


def _conv(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """Apply a Conv1d to a ``[B, C, T, 1]`` channels-last tensor (as a (k, 1) Conv2d)."""
    return _conv_w(x, conv.weight, conv.bias, conv.padding[0])


def _weights_dtype(x: Tensor, layer: nn.Module) -> Tensor:
    """``x`` in ``layer``'s weight dtype when both are floating and differ (a float64 encoding
    into a float32 model): without this the first convolution fails on the mismatch."""
    dtype = layer.weight.dtype
    if x.dtype != dtype and x.is_floating_point() and dtype.is_floating_point:
        return x.to(dtype)
    return x


def _analyzer(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(dim, hidden, 3, padding=1), nn.ReLU(),
                         nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU())


def _mask_head(hidden: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(hidden, hidden // 2, 3, padding=1), nn.ReLU(),
                         nn.Conv1d(hidden // 2, dim, 1), nn.Sigmoid())


class AttentionMaskGenerator(nn.Module):
    """Soft (or hard) complementary masks for a pair of encodings, from cross-attention.

    ``forward(x_input, x_target, hard=False)`` returns the seed's tuple
    ``(input_mask, target_mask, reg_loss)``; :meth:`masks` returns a :class:`maskkit.Masks`
    with every regularization component in ``extras``.

    Regularization (seed's weights by default), from :mod:`maskkit.metrics`::

        reg_loss     = overlap_weight * overlap                  mean(m_in * m_tg)
                     + coverage_weight * coverage_loss           mean((m_in + m_tg - 1)^2)
                     + diversity_weight * diversity_loss         sum over both masks of
                                                                 relu(floor - temporal variance)
        balance_loss = balance_weight * (balance - 0.5)^2        returned apart, in extras

    The seed's diversity used the unbiased variance over T; :func:`maskkit.metrics.temporal_variance`
    is the population variance (a factor ``(T - 1) / T``), the project's one definition.
    """

    def __init__(self, encoding_dim: int = 128, hidden_dim: int = 256, num_heads: int = 4,
                 dropout: float = 0.1, *, overlap_weight: float = 10.0, coverage_weight: float = 0.5,
                 diversity_weight: float = 5.0, diversity_floor: float = 0.05, balance_weight: float = 1.0,
                 gumbel_tau: float = 1.0, scales: tuple[int, ...] = (), num_styles: int = 0) -> None:
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"AttentionMaskGenerator: hidden_dim ({hidden_dim}) must be divisible by "
                             f"num_heads ({num_heads})")
        if hidden_dim < 2:
            raise ValueError(f"AttentionMaskGenerator: hidden_dim must be >= 2, got {hidden_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"AttentionMaskGenerator: dropout must be in [0, 1), got {dropout}")
        if gumbel_tau <= 0:
            raise ValueError(f"AttentionMaskGenerator: gumbel_tau must be > 0, got {gumbel_tau}")
        self.encoding_dim, self.hidden_dim, self.num_heads = encoding_dim, hidden_dim, num_heads
        self.dropout = dropout
        self.overlap_weight, self.coverage_weight = overlap_weight, coverage_weight
        self.diversity_weight, self.diversity_floor = diversity_weight, diversity_floor
        self.balance_weight, self.gumbel_tau = balance_weight, gumbel_tau

        self.input_analyzer = _analyzer(encoding_dim, hidden_dim)
        self.target_analyzer = _analyzer(encoding_dim, hidden_dim)
        # Holds the shared projection weights in nn.MultiheadAttention's layout; its forward is not used.
        self.cross_attention = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.input_mask_head = _mask_head(hidden_dim, encoding_dim)
        self.target_mask_head = _mask_head(hidden_dim, encoding_dim)
        # Multi-scale attention (:mod:`.multiscale`), off by default: no parameter is added then,
        # so the default generator keeps the seed's parameters and state-dict keys.
        self.scales = check_scales(scales)
        self.scale_logits: nn.Parameter | None = (
            nn.Parameter(torch.zeros(len(self.scales))) if self.scales else None)
        # Style conditioning, off by default: a learned (scale, shift) of the attention output
        # per style label and mask head (FiLM), zero at first, so an untrained conditioned
        # generator equals the unconditioned one; ``style=None`` always means unconditioned.
        if num_styles < 0:
            raise ValueError(f"AttentionMaskGenerator: num_styles must be >= 0, got {num_styles}")
        self.num_styles = int(num_styles)
        self.style_film: nn.Embedding | None = None
        if self.num_styles:
            self.style_film = nn.Embedding(self.num_styles, 4 * hidden_dim)
            nn.init.zeros_(self.style_film.weight)

    # -- layers ------------------------------------------------------------------------------
    def _features(self, x: Tensor, analyzer: nn.Sequential) -> Tensor:
        h = F.relu(_conv(_to_cl(x), analyzer[0]), inplace=True)  # conv backward needs no output
        return F.relu(_conv(h, analyzer[2]), inplace=True)

    def _qkv(self, f: Tensor) -> Tensor:
        """Project ``[B, H, T, 1]`` channels-last features to q, k, v, ``[B, T, 3H]`` (a view)."""
        mha = self.cross_attention
        qkv = _conv_w(f, mha.in_proj_weight[:, :, None], mha.in_proj_bias, 0)
        B, H3, T, _ = qkv.shape
        return qkv.permute(0, 2, 3, 1).reshape(B, T, H3)

    def _head(self, o: Tensor, head: nn.Sequential) -> Tensor:
        """Attention output ``[B, T, H]`` -> mask logits ``[B, D, T]``.

        ``nn.MultiheadAttention``'s output projection (1x1) and the head's first (k, 1)
        convolution have no nonlinearity between them, so they run as one convolution with
        the product of their weights (the same function, a tenth fewer convolution FLOPs).
        The projection's bias reaches the convolution through every tap, except the taps
        that read the zero padding at the first and last frames: those are taken off there.
        """
        B, T, H = o.shape
        o = o.view(B, T, 1, H).permute(0, 3, 1, 2)  # [B, H, T, 1] channels-last, no copy
        out, conv = self.cross_attention.out_proj, head[0]
        w0, pad = conv.weight, conv.padding[0]  # [H/2, H, k]
        k = w0.shape[-1]
        weight = torch.einsum("oik,ij->ojk", w0, out.weight)
        tap_bias = torch.einsum("oik,i->ko", w0, out.bias)  # [k, H/2]: the projection's bias per tap
        z = _conv_w(o, weight, conv.bias + tap_bias.sum(0), pad)
        for j in range(k):  # taps that read the zero padding at the edges
            o_ = j - pad
            edge = range(0, min(-o_, T)) if o_ < 0 else range(max(T - o_, 0), T)
            for t in edge:
                z[:, :, t].sub_(tap_bias[j].view(1, -1, 1))
        z = _conv(F.relu(z, inplace=True), head[2])  # [B, D, T, 1] channels-last
        return z.squeeze(-1).contiguous()

    def logits(self, x_input: Tensor, x_target: Tensor, style: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Pre-sigmoid mask logits ``[B, D, T]`` for the input and the target; ``style``:
        ``[B]`` style labels (generators built with ``num_styles``), or None. Encodings of
        another floating dtype than the weights (float64, say) are computed in the weights'."""
        x_input, x_target = self._check(x_input, x_target)
        film = self._style_film(style, x_input.shape[0])
        qkv_in = self._qkv(self._features(x_input, self.input_analyzer))
        qkv_tg = self._qkv(self._features(x_target, self.target_analyzer))
        p = self.dropout if self.training else 0.0
        # the input's frames query the target's, and the target's query the input's
        if self.scale_logits is None:
            o_in, o_tg = cross_attention(qkv_in, qkv_tg, self.num_heads, p)
        else:  # also at pooled (beat-, bar-sized) time scales, mixed by learned weights
            o_in, o_tg = multi_scale_cross_attention(qkv_in, qkv_tg, self.num_heads, p, self.scales,
                                                     self.scale_logits)
        if film is not None:  # [B, 4H]: scale and shift of each head's attention output
            g_in, b_in, g_tg, b_tg = film.to(o_in.dtype).unsqueeze(1).chunk(4, dim=-1)
            o_in = torch.addcmul(b_in, o_in, 1.0 + g_in)
            o_tg = torch.addcmul(b_tg, o_tg, 1.0 + g_tg)
        return self._head(o_in, self.input_mask_head), self._head(o_tg, self.target_mask_head)

    def _style_film(self, style: Tensor | None, batch: int) -> Tensor | None:
        if style is None:
            return None
        if self.style_film is None:
            raise ValueError("AttentionMaskGenerator: got a style label, but it was built without style "
                             "conditioning (num_styles=0)")
        on_host = not isinstance(style, Tensor) or style.device.type == "cpu"
        style = torch.as_tensor(style).long().reshape(-1)
        if style.numel() == 1 and batch > 1:
            style = style.expand(batch)
        if style.numel() != batch:
            raise ValueError(f"AttentionMaskGenerator: {style.numel()} style labels for a batch of {batch}")
        if on_host:  # checked where it costs nothing; labels already on a GPU (the trainer's, in
            # range by construction) are not read back, which would stall every step
            lo, hi = int(style.min()), int(style.max())
            if lo < 0 or hi >= self.num_styles:
                raise ValueError(f"AttentionMaskGenerator: style labels must be in [0, {self.num_styles}), "
                                 f"got {lo}..{hi}")
        return self.style_film(style.to(self.style_film.weight.device, non_blocking=True))

    def _check(self, x_input: Tensor, x_target: Tensor) -> tuple[Tensor, Tensor]:
        """Both encodings in the weights' dtype, after checking their shapes."""
        check_encodings(x_input, x_target, "AttentionMaskGenerator")
        if x_input.shape[1] != self.encoding_dim:
            raise InputError(f"AttentionMaskGenerator was built for encoding_dim={self.encoding_dim}, but "
                             f"the input has D={x_input.shape[1]} channels: it was built for another codec "
                             f"than the one in use (from Python: build_strategy(name, spec=codec.spec))")
        dev = self.input_analyzer[0].weight.device
        if x_input.device != dev:
            raise InputError(f"AttentionMaskGenerator: the encodings are on {x_input.device} but its weights "
                             f"on {dev}: move one to the other (.to(device))")
        return (_weights_dtype(x_input, self.input_analyzer[0]),
                _weights_dtype(x_target, self.target_analyzer[0]))

    # -- masks -------------------------------------------------------------------------------
    def regularization(self, input_mask: Tensor, target_mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(reg_loss, components)`` of two soft masks; components are scalar tensors."""
        overlap = metrics.overlap(input_mask, target_mask)
        coverage_loss = metrics.coverage_error(input_mask, target_mask)
        floor = self.diversity_floor
        diversity_loss = (torch.relu(floor - metrics.temporal_variance(input_mask))
                          + torch.relu(floor - metrics.temporal_variance(target_mask)))
        balance_loss = self.balance_weight * (metrics.balance(input_mask, target_mask) - 0.5) ** 2
        reg = (self.overlap_weight * overlap + self.coverage_weight * coverage_loss
               + self.diversity_weight * diversity_loss)
        return reg, {"overlap": overlap, "coverage_loss": coverage_loss, "diversity_loss": diversity_loss,
                     "balance_loss": balance_loss}

    def _hard(self, z_in: Tensor, z_tg: Tensor) -> tuple[Tensor, Tensor]:
        """Straight-through Gumbel-softmax over the two choices (input, target) of every cell.

        The choice logits are ``log sigmoid(z)``; the difference of two Gumbel variables is a
        logistic one, so one random number per cell suffices. The forward values are exactly
        0/1 and sum to exactly 1; the gradient is the relaxed softmax's. In eval mode no noise
        is drawn: each cell goes to the larger soft mask (deterministic).
        """
        d = F.logsigmoid(z_in.float()) - F.logsigmoid(z_tg.float())
        if self.training:
            u = torch.rand_like(d).clamp_(1e-6, 1.0 - 1e-6)
            d = d + (torch.log(u) - torch.log1p(-u))
        soft = torch.sigmoid(d / self.gumbel_tau)
        hard = (d > 0).to(soft.dtype)
        m_in = hard + (soft - soft.detach())  # exactly `hard` in value
        return m_in, 1.0 - m_in

    def masks(self, x_input: Tensor, x_target: Tensor, *, hard: bool = False, style: Tensor | None = None
              ) -> Masks:
        """The masks as a :class:`maskkit.Masks`: soft sigmoid masks, or with ``hard`` binary,
        exactly complementary ones (straight-through Gumbel-softmax). ``reg_loss`` and every
        extra are computed from the soft masks, so they keep their gradient either way."""
        z_in, z_tg = self.logits(x_input, x_target, style)
        s_in, s_tg = torch.sigmoid(z_in), torch.sigmoid(z_tg)
        reg, extras = self.regularization(s_in, s_tg)
        if hard:
            m_in, m_tg = self._hard(z_in, z_tg)
        else:
            m_in, m_tg = s_in, s_tg
        dtype = x_input.dtype
        return Masks(m_in.to(dtype), m_tg.to(dtype), reg, extras)

    def forward(self, x_input: Tensor, x_target: Tensor, hard: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """The seed's API: ``(input_mask, target_mask, reg_loss)``, masks ``[B, D, T]``."""
        m = self.masks(x_input, x_target, hard=hard)
        assert m.reg_loss is not None
        return m.input_mask, m.target_mask, m.reg_loss

    @torch.no_grad()
    def attention_maps(self, x_input: Tensor, x_target: Tensor, *, average_heads: bool = True
                       ) -> dict[str, Tensor]:
        """The cross-attention weights (no dropout), for pictures and interpretability.

        ``{"input_to_target": [B, T, T], "target_to_input": [B, T, T]}``: row ``t`` of
        ``input_to_target`` is how input frame ``t`` attends over the target's frames (rows
        sum to 1). Averaged over heads, as ``nn.MultiheadAttention`` returns them, or
        ``[B, heads, T, T]`` with ``average_heads=False``. Computed apart from :meth:`forward`,
        which never materializes them. With multi-scale attention (``scales``) these are the
        frame-scale weights only.
        """
        x_input, x_target = self._check(x_input, x_target)
        q_in, k_in, _ = split_heads(self._qkv(self._features(x_input, self.input_analyzer)), self.num_heads)
        q_tg, k_tg, _ = split_heads(self._qkv(self._features(x_target, self.target_analyzer)), self.num_heads)
        maps = {"input_to_target": attention_weights(q_in, k_tg),
                "target_to_input": attention_weights(q_tg, k_in)}
        if average_heads:
            maps = {k: v.mean(dim=1) for k, v in maps.items()}
        return maps

    def load_reference_state_dict(self, ref_state: Mapping[str, Tensor], strict: bool = True) -> None:
        """Load the weights of a :class:`maskkit.reference.RefMaskGenerator` (same parameters)."""
        self.load_state_dict(reference_key_map(ref_state), strict=strict)


class StyleDiscriminator(nn.Module):
    """Judges patterns ``[B, D, T]``: real or generated, and whether they have the real music's style.

    A Conv1d encoder downsamples T -> T/8 (three stride-2 convolutions with LeakyReLU); a
    real/fake classifier reads the time-averaged features; a style matcher reads their mean
    and standard deviation over time (the pattern's "style statistics"). Both heads give
    logits; :meth:`forward` returns probabilities. About 210K parameters for D=128.
    """

    def __init__(self, encoding_dim: int = 128, channels: tuple[int, int, int] = (64, 128, 160),
                 hidden: int = 128) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.encoder = nn.Sequential(
            nn.Conv1d(encoding_dim, c1, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv1d(c1, c2, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv1d(c2, c3, 4, stride=2, padding=1), nn.LeakyReLU(0.2))
        self.classifier = nn.Sequential(nn.Linear(c3, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
        self.style_matcher = nn.Sequential(nn.Linear(2 * c3, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def encode(self, pattern: Tensor) -> Tensor:
        """``[B, D, T]`` -> ``[B, C, T / 8]`` (shorter inputs are zero-padded to 8 frames)."""
        if pattern.shape[-1] < 8:
            pattern = F.pad(pattern, (0, 8 - pattern.shape[-1]))
        return self.encoder(pattern)

    def logits(self, pattern: Tensor) -> tuple[Tensor, Tensor]:
        """``(real_fake_logit [B, 1], style_logit [B, 1])``, in the weights' dtype."""
        h = self.encode(_weights_dtype(pattern, self.encoder[0]))
        mean = h.mean(dim=-1)
        std = h.std(dim=-1, unbiased=False)
        return self.classifier(mean), self.style_matcher(torch.cat([mean, std], dim=-1))

    def forward(self, pattern: Tensor) -> tuple[Tensor, Tensor]:
        """``(real_fake_score, style_score)``, probabilities ``[B, 1]`` (1 = real / in style)."""
        rf, st = self.logits(pattern)
        return torch.sigmoid(rf), torch.sigmoid(st)


class StyleCritic(nn.Module):
    """A :class:`StyleDiscriminator` as the trainer's critic: ``forward`` gives both heads'
    logits ``[B, 2]`` (real/fake, style), the interface of :mod:`maskkit.adversarial`."""

    def __init__(self, discriminator: StyleDiscriminator) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(self, pattern: Tensor) -> Tensor:
        return torch.cat(self.discriminator.logits(pattern), dim=-1)


class _AgentAPI:
    """The seed's CreativeAgent methods, over ``self.mask_generator`` and ``self.discriminator``."""

    mask_generator: AttentionMaskGenerator
    discriminator: StyleDiscriminator | None

    def generate_creative_masks(self, encoded_input: Tensor, encoded_target: Tensor, hard: bool = False
                                ) -> tuple[Tensor, Tensor, Tensor]:
        """``(masked_input, masked_target, reg_loss)``: both encodings times their learned masks."""
        m = self.mask_generator.masks(encoded_input, encoded_target, hard=hard)
        assert m.reg_loss is not None
        mi, mt = m.apply(encoded_input, encoded_target)
        return mi, mt, m.reg_loss

    def _require_discriminator(self, what: str) -> StyleDiscriminator:
        if self.discriminator is None:
            raise RuntimeError(f"{what} needs the StyleDiscriminator: build the CreativeAgent with "
                               f"use_discriminator=True (strategy option use_discriminator=true)")
        return self.discriminator

    def judge_quality(self, pattern: Tensor) -> tuple[Tensor, Tensor]:
        """``(real_fake_score, style_score)`` of a pattern ``[B, D, T]``, probabilities ``[B, 1]``."""
        return self._require_discriminator("judge_quality")(pattern)

    def adversarial_loss(self, fake_pattern: Tensor, real_pattern: Tensor) -> tuple[Tensor, Tensor]:
        """``(gen_loss, disc_loss)``: non-saturating GAN losses over both discriminator heads.

        ``gen_loss`` = BCE(D(fake), real) averaged over the real/fake and style heads; use it
        to step the generator. ``disc_loss`` = the mean of BCE(D(real), real) and
        BCE(D(fake.detach()), fake) over both heads; use it to step the discriminator (with its
        own optimizer, after zeroing the gradients ``gen_loss`` left in it).
        """
        disc = self._require_discriminator("adversarial_loss")
        critic = StyleCritic(disc)
        gen_loss = adversarial.generator_loss(critic(fake_pattern))
        disc_loss = adversarial.discriminator_loss(critic(real_pattern), critic(fake_pattern.detach()))
        return gen_loss, disc_loss

    def attention_maps(self, x_input: Tensor, x_target: Tensor) -> dict[str, Tensor]:
        """Head-averaged cross-attention weights ``[B, T, T]`` both ways (see
        :meth:`AttentionMaskGenerator.attention_maps`)."""
        return self.mask_generator.attention_maps(x_input, x_target)


class CreativeAgent(_AgentAPI, nn.Module):
    """The seed's wrapper: a mask generator and, optionally, a style discriminator.

    ``CreativeAgent(encoding_dim, use_discriminator=True)`` as in the seed's README; the other
    keyword arguments are :class:`AttentionMaskGenerator`'s. ``forward`` is
    :meth:`generate_creative_masks`.
    """

    def __init__(self, encoding_dim: int = 128, use_discriminator: bool = True, *, hidden_dim: int = 256,
                 num_heads: int = 4, dropout: float = 0.1, **generator_options: float) -> None:
        super().__init__()
        self.encoding_dim = encoding_dim
        self.mask_generator = AttentionMaskGenerator(encoding_dim, hidden_dim, num_heads, dropout,
                                                     **generator_options)
        self.discriminator = StyleDiscriminator(encoding_dim) if use_discriminator else None

    @property
    def use_discriminator(self) -> bool:
        return self.discriminator is not None

    def forward(self, encoded_input: Tensor, encoded_target: Tensor, hard: bool = False
                ) -> tuple[Tensor, Tensor, Tensor]:
        return self.generate_creative_masks(encoded_input, encoded_target, hard=hard)


def count_parameters(module: nn.Module | None) -> int:
    """Number of parameters of a module (0 for ``None``)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())
