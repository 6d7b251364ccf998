"""Interpretability snapshots: what the mask strategy does on a few validation pairs.

Every few epochs the trainer calls :func:`save_validation_snapshot` with a validation
batch. It encodes up to ``max_pairs`` pairs with the codec, asks the model's strategy for
its masks (eval mode, no gradient) and writes, in ``out_dir``:

- ``epoch_NNNN.json``: the strategy name, the epoch, the metrics of the whole snapshot
  batch and, per pair, its mask metrics (:func:`maskkit.metrics.mask_metrics`, the one
  definition of each) and the share of each song kept over time (mean over channels per
  frame, averaged down to at most :data:`MAX_CURVE_POINTS` points);
- ``epoch_NNNN.png`` (when matplotlib is installed): one row per pair with the input mask,
  the target mask (channels sorted by frequency when the codec gives channel frequencies)
  and the strategy's attention maps when it has any; the title gives the epoch and the
  batch's mean complementarity. Without matplotlib only the JSON is written.

The call leaves the training run as it found it: the model's training flag is restored
and the global torch RNG state (CPU and, when CUDA is initialized, every CUDA device) is
saved and put back, so that exact resume is not disturbed. Both files are written
atomically (a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from . import metrics
from .checkpoint import atomic_write
from .errors import MaskkitError

if TYPE_CHECKING:
    from .model import SimpleTransformer

#: The over-time curves in the JSON have at most this many points.
MAX_CURVE_POINTS = 64
#: At most this many attention maps per pair are drawn.
MAX_ATTENTION_PANELS = 2
#: Pixel width of the picture; each pair adds :data:`ROW_HEIGHT` pixels (at :data:`DPI`).
WIDTH = 1200
ROW_HEIGHT = 300
DPI = 100


@dataclass
class Snapshot:
    """What :func:`save_validation_snapshot` wrote: the JSON file, the PNG (``None`` without
    matplotlib), the number of pairs drawn and each pair's mask metrics."""

    json: Path
    png: Path | None
    pairs: int
    metrics: list[dict[str, float]] = field(default_factory=list)


def _unwrap(model: Any) -> Any:
    """The model inside DDP (``.module``) or ``torch.compile`` (``._orig_mod``) wrappers."""
    for attr in ("module", "_orig_mod"):
        while hasattr(model, attr) and isinstance(getattr(model, attr), torch.nn.Module):
            model = getattr(model, attr)
    return model


def _model_device(model: torch.nn.Module, fallback: torch.device) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return fallback


def _curve(x: Tensor, max_points: int = MAX_CURVE_POINTS) -> list[float]:
    """``[T]`` -> at most ``max_points`` floats (means over nearly equal runs of frames)."""
    x = x.detach().double().cpu().reshape(-1)
    if x.numel() > max_points:
        x = torch.nn.functional.adaptive_avg_pool1d(x.view(1, 1, -1), max_points).view(-1)
    return [float(v) for v in x]


def _finite(values: Mapping[str, float]) -> dict[str, float | None]:
    """Non-finite numbers become ``None`` (strict JSON has no NaN/Infinity)."""
    return {k: (float(v) if math.isfinite(v) else None) for k, v in values.items()}


def _matplotlib() -> Any | None:
    """``matplotlib.pyplot`` (Agg backend), or ``None`` when matplotlib is not installed."""
    from .plotting import require_matplotlib

    try:
        return require_matplotlib()
    except (MaskkitError, ImportError):
        return None


def save_validation_snapshot(model: SimpleTransformer, codec: Any, x_in: Tensor, x_tg: Tensor,
                             out_dir: str | os.PathLike[str], epoch: int, *, max_pairs: int = 4,
                             strategy_kwargs: Mapping[str, Any] | None = None,
                             pair_labels: Sequence[str] | None = None) -> Snapshot:
    """Save the masks of up to ``max_pairs`` validation pairs as ``out_dir/epoch_{epoch:04d}``
    ``.json`` (always) and ``.png`` (when matplotlib is installed).

    ``model``: the :class:`~maskkit.model.SimpleTransformer` (DDP/compiled wrappers are
    unwrapped); ``codec``: the codec it trains with; ``x_in``, ``x_tg``: audio batches
    ``[B, 1, N]`` as the validation loader yields them (moved to the model's device);
    ``strategy_kwargs``: keyword arguments of ``model.masks`` (e.g. ``{"hard": True}``);
    ``pair_labels``: a label per pair (e.g. its style) for the JSON and the picture.
    The model's training flag and the global torch RNG state are the same after the call.
    Returns a :class:`Snapshot`.
    """
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    if x_in.dim() != 3 or x_tg.dim() != 3 or x_in.shape[0] != x_tg.shape[0]:
        raise ValueError(f"expected two audio batches [B, 1, N] of the same size, got "
                         f"{tuple(x_in.shape)} and {tuple(x_tg.shape)}")
    if x_in.shape[0] < 1:
        raise ValueError("the batch is empty: nothing to draw")
    model = _unwrap(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = min(int(max_pairs), int(x_in.shape[0]))
    device = _model_device(model, x_in.device)

    cpu_rng = torch.get_rng_state()
    cuda_rng = (torch.cuda.get_rng_state_all()
                if torch.cuda.is_available() and torch.cuda.is_initialized() else None)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            e_in = codec.encode(x_in[:k].to(device))
            e_tg = codec.encode(x_tg[:k].to(device))
            masks = model.masks(e_in, e_tg, **dict(strategy_kwargs or {}))
            B, D, T = e_in.shape
            im = masks.input_mask.detach().float().expand(B, D, T).cpu()
            tm = masks.target_mask.detach().float().expand(B, D, T).cpu()
            attention = _attention(model.strategy, masks, e_in, e_tg)
    finally:
        model.train(was_training)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)

    strategy_name = str(getattr(model.strategy, "name", "") or type(model.strategy).__name__)
    per_pair = [{n: v for n, v in metrics.mask_metrics(im[i:i + 1], tm[i:i + 1]).items()
                 if n not in metrics.BATCH_METRICS} for i in range(k)]  # (one pair has no spread)
    batch = metrics.mask_metrics(im, tm)
    record = {
        "epoch": int(epoch),
        "strategy": strategy_name,
        "pairs": k,
        "channels": D,
        "frames": T,
        "batch_metrics": _finite(batch),
        "attention": [label for label, _ in attention],
        "per_pair": [
            {"pair": i, **({"label": str(pair_labels[i])} if pair_labels is not None else {}),
             "metrics": _finite(per_pair[i]),
             "input_kept": _curve(im[i].mean(dim=0)), "target_kept": _curve(tm[i].mean(dim=0))}
            for i in range(k)
        ],
    }
    stem = f"epoch_{int(epoch):04d}"
    text = json.dumps(record, indent=1, allow_nan=False).encode("utf-8")
    json_path = atomic_write(out / f"{stem}.json", lambda f: f.write(text))

    png_path: Path | None = None
    plt = _matplotlib()
    if plt is not None:
        freqs = getattr(getattr(codec, "spec", None), "channel_freqs", None)
        labels = [f" [{pair_labels[i]}]" if pair_labels is not None else "" for i in range(k)]
        fig = _draw(plt, im, tm, attention, freqs, epoch, strategy_name, batch, per_pair, labels)
        try:
            png_path = atomic_write(out / f"{stem}.png", lambda f: fig.savefig(f, dpi=DPI, format="png"))
        finally:
            plt.close(fig)
    return Snapshot(json=json_path, png=png_path, pairs=k, metrics=per_pair)


def _attention(strategy: Any, masks: Any, e_in: Tensor, e_tg: Tensor) -> list[tuple[str, Tensor]]:
    """The strategy's attention maps (at most :data:`MAX_ATTENTION_PANELS`), see
    :func:`maskkit.viz.attention_maps_of`."""
    from .viz import attention_maps_of

    return attention_maps_of(strategy, masks, e_in, e_tg)[:MAX_ATTENTION_PANELS]


def _draw(plt: Any, im: Tensor, tm: Tensor, attention: list[tuple[str, Tensor]],
          freqs: Any, epoch: int, strategy: str, batch: Mapping[str, float],
          per_pair: list[dict[str, float]], labels: list[str]) -> Any:
    """The figure: one row per pair (input mask, target mask, attention maps)."""
    from .viz import _channel_axis, attention_panel, channel_order

    k, D, T = im.shape
    order = channel_order(freqs, D)
    ncols = 2 + len(attention)
    fig = plt.figure(figsize=(WIDTH / DPI, (ROW_HEIGHT * k) / DPI), dpi=DPI)
    top = 1.0 - 70.0 / (ROW_HEIGHT * k)  # room for the title, in pixels
    right = 0.95 if attention else 0.92  # (room for the last colour bar's labels)
    gs = fig.add_gridspec(k, ncols, left=0.06, right=right, bottom=40.0 / (ROW_HEIGHT * k), top=top,
                          wspace=0.45, hspace=0.55)
    mask_kw = {"aspect": "auto", "origin": "lower", "cmap": "viridis", "interpolation": "nearest",
               "vmin": 0.0, "vmax": 1.0, "extent": (0, T, 0, D)}
    for i in range(k):
        for col, (label, m) in enumerate((("input mask", im[i]), ("target mask", tm[i]))):
            ax = fig.add_subplot(gs[i, col])
            image = ax.imshow(m[order].numpy(), **mask_kw)
            # the pair's complementarity once, on its first panel
            compl = f"  (compl. {per_pair[i]['complementarity']:.1f}%)" if col == 0 else ""
            ax.set_title(f"pair {i}{labels[i]}: {label}{compl}", fontsize=8)
            _channel_axis(ax, freqs, order, D)
            ax.set_xlabel("frame", fontsize=7)
        cax = ax.inset_axes((1.02, 0.0, 0.03, 1.0))  # one scale for both mask panels of the row
        fig.colorbar(image, cax=cax).ax.tick_params(labelsize=6)
        for j, (label, t) in enumerate(attention):
            a = attention_panel(t, i)
            ax = fig.add_subplot(gs[i, 2 + j])
            if a is not None:
                att = ax.imshow(a, aspect="auto", origin="lower", cmap="magma", interpolation="nearest")
                cax = ax.inset_axes((1.02, 0.0, 0.03, 1.0))
                fig.colorbar(att, cax=cax).ax.tick_params(labelsize=5)  # (an offset for tiny ranges)
            ax.set_title(f"pair {i}: {label.replace('_', ' ')}", fontsize=8)
            ax.set_xlabel("key frame", fontsize=7)
            ax.set_ylabel("query frame", fontsize=7)
    for a in fig.axes:
        a.tick_params(labelsize=6)
    fig.suptitle(f"epoch {int(epoch)}  ·  strategy '{strategy}'  ·  mean complementarity "
                 f"{batch['complementarity']:.1f}%", fontsize=10, y=1.0 - 12.0 / (ROW_HEIGHT * k), va="top")
    return fig


__all__ = ["save_validation_snapshot", "Snapshot", "MAX_CURVE_POINTS"]
