"""The mask picture: what a strategy keeps of two songs, in one PNG.

:func:`plot_masks` encodes a stretch of two songs, asks a strategy (by name, an instance,
or the trained one inside a checkpoint) for its masks and draws, on a figure of fixed
pixel size (so the file's size is predictable):

- the spectrograms of both songs (dB, from the audio);
- both masks (channels sorted by frequency when the codec gives channel frequencies);
- their overlap ``input_mask * target_mask`` and, over time, the share kept of each song,
  the per-frame coverage and overlap;
- the strategy's attention maps, when it has any: a strategy object with an
  ``attention_maps(x_input, x_target)`` method (the generic hook; no plugin is named here),
  or masks whose ``extras["attention"]`` holds ``[B, T, T]`` weights.

The metrics in the title come from :func:`maskkit.metrics.mask_metrics`, and the curves
over time from :func:`maskkit.metrics.coverage` and :func:`maskkit.metrics.overlap` on each
frame: the one definition of each. matplotlib is imported only here, with the Agg backend
(headless); without it the error says ``pip install "maskkit[plots]"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import metrics
from .arrange import DEFAULT_WINDOW_SECONDS, AudioSource, align, frame_hop
from .audio import warn_if_silent
from .distributed import resolve_device
from .errors import AudioError, ConfigError, warn
from .paths import check_output_file
from .strategy import MaskStrategy, call_strategy, check_style, resolve_style, warn_untrained

#: At most this many attention maps are drawn.
MAX_ATTENTION_MAPS = 3


@dataclass
class MaskPicture:
    """What :func:`plot_masks` drew: the file, its pixel size, the metrics in its title, the
    labels of the attention maps it found (empty when the strategy has none) and the seconds
    of audio drawn."""

    path: Path
    width: int
    height: int
    strategy: str
    metrics: dict[str, float]
    attention: list[str] = field(default_factory=list)
    seconds: float = 0.0  #: the length drawn (shorter than asked when a song ends first)
    hard: bool = False  #: hard (0/1) masks (asked for, or the checkpoint trained with them)


def _resolve(strategy: str | os.PathLike | MaskStrategy, strategy_options: Any, codec: Any,
             device: torch.device) -> tuple[MaskStrategy, Any, float | None, list[str] | None, bool]:
    """``(strategy, codec, window seconds, style names, trained on hard masks)`` from a name, an
    instance or a checkpoint path (only a checkpoint gives the last three)."""
    from .codec import resolve_codec
    from .plugins import build_untrained

    seconds = None
    styles: list[str] | None = None
    trained_hard = False
    if isinstance(strategy, MaskStrategy):
        if strategy_options:
            raise ConfigError("strategy_options is only used with a strategy given by name")
        strat = strategy
    else:
        from .plugins import strategy_names

        path = Path(strategy)
        if str(strategy) not in strategy_names() and path.is_dir():
            hint = next((f" (e.g. {path / n})" for n in ("best.pt", "last.pt") if (path / n).is_file()), "")
            raise ConfigError(f"{path} is a folder: give a strategy name or a checkpoint file{hint}")
        is_ckpt = (path.suffix in (".pt", ".pth", ".ckpt") or os.sep in str(strategy)
                   or (str(strategy) not in strategy_names() and path.is_file()))
        if is_ckpt:
            if strategy_options:
                raise ConfigError("strategy_options cannot change a checkpoint's trained strategy")
            from .train import load_model

            loaded = load_model(path, map_location=device)
            strat, ckpt_codec = loaded.model.strategy, loaded.codec
            seconds, styles = loaded.segment_seconds, loaded.styles
            trained_hard = bool(loaded.model.config.hard_masks)
            codec = codec if codec is not None else ckpt_codec
        else:
            codec = resolve_codec(codec)
            strat = build_untrained(str(strategy), strategy_options, spec=codec.spec)
            warn_untrained(strat, "masks")
    codec = resolve_codec(codec)
    return strat.to(device).eval(), codec.to(device).eval(), seconds, styles, trained_hard


def _segment(source: AudioSource, sr: int, offset: float, seconds: float, label: str) -> Tensor:
    """``[N]`` float32 mono: ``seconds`` of a song from ``offset`` (tensors: at ``sr``)."""
    from .audio import tensor_mono

    if isinstance(source, Tensor | np.ndarray):
        a = int(round(offset * sr))
        return tensor_mono(source, label)[a:a + int(round(seconds * sr))].contiguous()
    from .audio import load_audio

    path = Path(source)
    if not path.is_file():
        raise AudioError(f"{label} file not found: {path}")
    return load_audio(path, sr, mono=True, offset_seconds=offset, duration_seconds=seconds)[0].float()


def attention_maps_of(strategy: MaskStrategy, masks: Any, ei: Tensor, et: Tensor) -> list[tuple[str, Tensor]]:
    """``(label, tensor)`` for each attention map the strategy offers, as it gives them
    (``[T_q, T_k]``, ``[B, T_q, T_k]`` or ``[B, H, T_q, T_k]``, detached, float, on the CPU).

    The strategy's ``attention_maps(ei, et)`` method when it has one (the generic hook),
    else ``masks.extras["attention"]``; empty when there is neither. Pick one pair's
    ``[T_q, T_k]`` picture with :func:`attention_panel`.
    """
    fn = getattr(strategy, "attention_maps", None)
    found: Any = fn(ei, et) if callable(fn) else masks.extras.get("attention")
    if found is None:
        return []
    if isinstance(found, Tensor):
        items: list[tuple[str, Any]] = [("attention", found)]
    elif isinstance(found, Mapping):
        items = [(str(k), v) for k, v in found.items()]
    elif isinstance(found, Sequence):
        items = [(f"attention {i}", v) for i, v in enumerate(found)]
    else:
        raise TypeError(f"strategy '{strategy.name}': attention_maps returned {type(found).__name__}; "
                        f"expected a tensor, a dict of tensors or a list of tensors")
    return [(label, t.detach().float().cpu()) for label, t in items if isinstance(t, Tensor)]


def attention_panel(t: Tensor, pair: int = 0) -> Any:
    """The ``[T_q, T_k]`` numpy picture of pair ``pair`` of an attention map (see
    :func:`attention_maps_of`): ``[B, T, T]`` -> that pair (the only one when ``B == 1``);
    ``[B, H, T, T]`` -> that pair, mean over heads; ``[T, T]`` -> itself. ``None`` when the
    map has fewer than 2 dimensions."""
    t = t.detach().float().cpu()
    while t.dim() > 2:
        i = pair if t.shape[0] > pair else 0
        t = t[i] if t.dim() == 3 else t[i].mean(dim=0)
    return t.numpy() if t.dim() == 2 else None


def channel_order(freqs: Sequence[float] | None, dim: int) -> Tensor:
    """The channels sorted by frequency (stable) when the codec gives ``channel_freqs``,
    else ``0 .. dim-1``: index a ``[D, T]`` mask with it to draw low frequencies at the bottom."""
    return torch.argsort(torch.tensor(freqs), stable=True) if freqs is not None else torch.arange(dim)


def _attention_panels(strategy: MaskStrategy, masks: Any, ei: Tensor, et: Tensor) -> list[tuple[str, Any]]:
    """``(label, [T_q, T_k] array)`` for each attention map the strategy offers (first pair)."""
    panels = []
    for label, t in attention_maps_of(strategy, masks, ei, et):
        a = attention_panel(t, 0)
        if a is not None:
            panels.append((label, a))
    return panels[:MAX_ATTENTION_MAPS]


def _db(audio: Tensor, n_fft: int = 1024) -> Any:
    mag = metrics.stft_magnitude(audio.unsqueeze(0), n_fft, n_fft // 4)[0]
    return (20.0 * torch.log10(mag + 1e-6)).numpy()


@torch.inference_mode()
def plot_masks(strategy: str | os.PathLike | MaskStrategy, input: AudioSource, target: AudioSource,
               png: str | os.PathLike, *, strategy_options: Any = None, codec: Any = None,
               offset_seconds: float = 0.0, seconds: float | None = None, hard: bool | None = None,
               device: torch.device | str = "cpu", size: tuple[int, int] = (1400, 1000), dpi: int = 100,
               title: str | None = None, style: str | int | None = None) -> MaskPicture:
    """Draw what a strategy does to two songs; write a PNG of exactly ``size`` pixels.

    ``strategy``: a registered name (with ``strategy_options``), a
    :class:`~maskkit.MaskStrategy` instance, or a checkpoint path (its trained strategy and
    codec). ``input``/``target``: audio files or ``[N]``/``[C, N]`` tensors at the codec's
    rate. ``seconds`` of both songs from ``offset_seconds`` are drawn (default: the
    checkpoint's training segment, or 4 s); songs of different lengths are cut to the
    shorter. ``codec``: name or instance (default: the checkpoint's, or ``"stft"``).
    ``style``: condition the masks on a style label (a name of the checkpoint's styles, or
    an index), for strategies trained with ``--style-labels``. ``hard``: hard (0/1) or soft
    masks; ``None`` (default): hard when the checkpoint trained on them.
    """
    from .plotting import require_matplotlib

    width, height = (int(v) for v in size)
    if width < 200 or height < 200 or dpi < 10 or width > 16000 or height > 16000:
        raise ConfigError(f"picture size must be from 200x200 to 16000x16000 pixels at dpi >= 10, got "
                          f"{width}x{height} at dpi {dpi}")
    png = check_output_file(png, "--png", (".png",))
    plt = require_matplotlib()  # fail before any work when matplotlib is missing
    dev = resolve_device(device)
    strat, codec, ckpt_seconds, styles, trained_hard = _resolve(strategy, strategy_options, codec, dev)
    hard = trained_hard if hard is None else bool(hard)
    style_index = resolve_style(style, styles, strategy)
    check_style(strat, style_index)
    sr = int(codec.sample_rate)
    seconds = float(seconds or ckpt_seconds or DEFAULT_WINDOW_SECONDS)
    if seconds <= 0 or offset_seconds < 0:
        raise ConfigError(f"seconds must be > 0 and offset >= 0, got {seconds} and {offset_seconds}")
    xi = _segment(input, sr, offset_seconds, seconds, "input")
    xt = _segment(target, sr, offset_seconds, seconds, "target")
    xi, xt = align(xi, xt, "shortest")
    if xi.shape[-1] < 2 * frame_hop(codec):
        raise AudioError(f"too little audio to draw ({xi.shape[-1]} samples from offset {offset_seconds} s): "
                         f"is the offset past the end of a song?")
    drawn = xi.shape[-1] / sr
    if drawn < seconds - 0.01:
        warn(f"masks: drawing {drawn:.2f} s, not the {seconds:g} s asked: a song ends "
             f"{drawn:.2f} s after the offset ({offset_seconds:g} s)")
    for label, x in (("input", xi), ("target", xt)):
        warn_if_silent(x, f"{label} from {offset_seconds:g} s for {drawn:.2f} s", "masks")
    ei = codec.encode(xi.view(1, 1, -1).to(dev))
    et = codec.encode(xt.view(1, 1, -1).to(dev))
    kw = {} if style_index is None else {"style": torch.tensor([style_index], device=dev)}
    masks = call_strategy(strat, ei, et, hard=hard, **kw)
    B, D, T = ei.shape
    im = masks.input_mask.expand(B, D, T)[0].float().cpu()
    tm = masks.target_mask.expand(B, D, T)[0].float().cpu()
    # (one pair: no spread across a batch, so no adaptivity, which would always read 0)
    values = {k: v for k, v in metrics.mask_metrics(masks.input_mask, masks.target_mask).items()
              if k not in metrics.BATCH_METRICS}
    per_frame_cov = [float(metrics.coverage(im[:, t], tm[:, t])) for t in range(T)]
    per_frame_ovl = [float(metrics.overlap(im[:, t], tm[:, t])) for t in range(T)]
    share_in = im.mean(dim=0).numpy()
    share_tg = tm.mean(dim=0).numpy()
    attention = _attention_panels(strat, masks, ei, et)

    freqs = codec.spec.channel_freqs
    order = channel_order(freqs, D)
    dur = xi.shape[-1] / sr

    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ncols = 3 if attention else 2
    gs = fig.add_gridspec(3, ncols, left=0.06, right=0.91 if attention else 0.97, bottom=0.06, top=0.88,
                          wspace=0.36, hspace=0.45,
                          width_ratios=[1, 1, 0.8] if attention else [1, 1])
    spec_kw = {"aspect": "auto", "origin": "lower", "cmap": "magma", "interpolation": "nearest"}
    for col, (label, x) in enumerate((("input", xi), ("target", xt))):
        ax = fig.add_subplot(gs[0, col])
        db = _db(x)
        top = db.max()
        ax.imshow(db, extent=(0, dur, 0, sr / 2000), vmin=top - 80, vmax=top, **spec_kw)
        ax.set_title(f"{label} spectrogram (dB)", fontsize=9)
        ax.set_ylabel("kHz", fontsize=8)
    mask_kw = dict(spec_kw, cmap="viridis", vmin=0.0, vmax=1.0, extent=(0, dur, 0, D))
    for col, (label, m) in enumerate((("input mask", im), ("target mask", tm))):
        ax = fig.add_subplot(gs[1, col])
        image = ax.imshow(m[order].numpy(), **mask_kw)
        ax.set_title(label, fontsize=9)
        _channel_axis(ax, freqs, order, D)
    ax = fig.add_subplot(gs[2, 0])
    ax.imshow((im * tm)[order].numpy(), **mask_kw)
    ax.set_title("overlap  input_mask x target_mask", fontsize=9)
    ax.set_xlabel("seconds", fontsize=8)
    _channel_axis(ax, freqs, order, D)
    cax = ax.inset_axes((1.01, 0.0, 0.025, 1.0))  # inside the cell: the layout stays fixed
    fig.colorbar(image, cax=cax).set_label("mask value (the 3 mask panels)", fontsize=7)
    ax = fig.add_subplot(gs[2, 1])
    tt = (torch.arange(T, dtype=torch.float32) + 0.5) * (dur / T)
    # a thick input line under a dashed target line (equal shares, 0.5 each, stay visible), and
    # the thin coverage and overlap lines over both (coverage 1 where one song is kept whole)
    ax.plot(tt, share_in, label="input kept", linewidth=2.4, color="#4c72b0", zorder=1)
    ax.plot(tt, share_tg, label="target kept", linewidth=1.4, linestyle=(0, (4, 2)), color="#dd8452",
            zorder=2)
    ax.plot(tt, per_frame_cov, label="coverage", linewidth=0.9, color="black", zorder=3)
    ax.plot(tt, per_frame_ovl, label="overlap", linewidth=0.9, linestyle="--", color="#c44e52", zorder=4)
    ax.set_xlim(0, dur)
    ax.set_ylim(-0.05, max(2.05, max(per_frame_cov) + 0.05))
    ax.set_title("over time (mean over channels)", fontsize=9)
    ax.set_xlabel("seconds", fontsize=8)
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    for i, (label, a) in enumerate(attention):
        ax = fig.add_subplot(gs[i, 2])
        # in seconds, as the other panels: a query at time t attends to keys at times s
        att = ax.imshow(a, aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
                        extent=(0, dur, 0, dur))
        ax.set_title(label.replace("_", " "), fontsize=9)
        ax.set_xlabel("key time (s)", fontsize=8)
        ax.set_ylabel("query time (s)", fontsize=8)
        cax = ax.inset_axes((1.01, 0.0, 0.025, 1.0))
        fig.colorbar(att, cax=cax).set_label("attention weight", fontsize=7)  # (an offset for tiny ranges)
    for a in fig.axes:
        a.tick_params(labelsize=7)
    head = title or (f"strategy '{strat.name}'" + (" (hard)" if hard else "")
                     + (f", style '{style}'" if style is not None else ""))
    fig.suptitle(f"{head}\n" + _metric_line(values), fontsize=11)
    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(png, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return MaskPicture(path=png, width=width, height=height, strategy=strat.name, metrics=values,
                       attention=[label for label, _ in attention], seconds=drawn, hard=hard)


def _channel_axis(ax: Any, freqs: tuple[float, ...] | None, order: Tensor, D: int) -> None:
    if freqs is None:
        ax.set_ylabel("channel", fontsize=8)
        return
    ticks = [int(round(p * (D - 1))) for p in (0.0, 0.25, 0.5, 0.75, 1.0)]
    ax.set_yticks([t + 0.5 for t in ticks])
    ax.set_yticklabels([f"{freqs[int(order[t])] / 1000:.1f}" for t in ticks])
    ax.set_ylabel("kHz", fontsize=8)


def _metric_line(values: dict[str, float]) -> str:
    names = {"complementarity": ("complementarity", "{:.1f}%"), "coverage": ("coverage", "{:.3f}"),
             "coverage_error": ("coverage err", "{:.3g}"), "balance": ("balance", "{:.3f}"),
             "temporal_diversity": ("temporal div", "{:.3g}"), "adaptivity": ("adaptivity", "{:.3g}")}
    parts = []
    for k, v in values.items():
        label, fmt = names.get(k, (k, "{:.3g}"))
        parts.append(f"{label} {fmt.format(v)}")
    return "  ·  ".join(parts)


__all__ = ["plot_masks", "MaskPicture", "attention_maps_of", "attention_panel", "channel_order"]
