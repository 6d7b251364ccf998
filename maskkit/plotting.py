"""Pictures: mask heatmaps, bar charts and line panels, written as PNG files.

matplotlib is an optional extra (``pip install "maskkit[plots]"``); it is imported only
when a picture is drawn, with the non-interactive Agg backend, so that nothing here needs
a display and ``import maskkit`` never pays for matplotlib.

Functions take plain data (labels, ``[D, T]`` tensors or arrays, numbers, lines) and a path,
so any command (``maskkit bench``, ``maskkit masks``, ``maskkit curves``) can use them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MaskkitError

INSTALL_HINT = 'pip install "maskkit[plots]"'


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or a clear error saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise MaskkitError(f"plots need matplotlib, which is not installed: {INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _array(m: Any) -> Any:
    """A 2-D float numpy array from a tensor or array (``[D, T]``; leading 1-dims dropped)."""
    import numpy as np

    if hasattr(m, "detach"):
        m = m.detach().float().cpu().numpy()
    a = np.asarray(m, dtype=np.float32)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"expected a [D, T] mask, got shape {a.shape}")
    return a


def mask_gallery(panels: Sequence[tuple[str, Any, Any]], path: str | os.PathLike[str], *,
                 title: str | None = None, ylabel: str = "channel", dpi: int = 100) -> Path:
    """One row per ``(label, input_mask, target_mask)``: two heatmaps (channels x frames,
    0 to 1, the first channel at the bottom). Returns ``path``."""
    if not panels:
        raise ValueError("mask_gallery: nothing to draw (no masks were measured)")
    plt = require_matplotlib()
    n = len(panels)
    fig, axes = plt.subplots(n, 2, figsize=(10, 1.7 * n + 0.8), squeeze=False, sharex=True,
                             layout="constrained")
    image = None
    for i, (label, m_in, m_tg) in enumerate(panels):
        for j, (which, m) in enumerate((("input mask", m_in), ("target mask", m_tg))):
            ax = axes[i][j]
            image = ax.imshow(_array(m), aspect="auto", origin="lower", vmin=0.0, vmax=1.0,
                              cmap="magma", interpolation="nearest")
            ax.set_title(f"{label}: {which}", fontsize=9)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("frame", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    if image is not None:
        fig.colorbar(image, ax=axes, fraction=0.03, pad=0.01, label="kept")
    return _save(fig, plt, path, dpi)


def speed_bars(labels: Sequence[str], values: Sequence[float], path: str | os.PathLike[str], *,
               ylabel: str = "", title: str | None = None, reference_line: float | None = None,
               log: bool | None = None, dpi: int = 100) -> Path:
    """A bar chart of one value per label (e.g. speed ratios), with an optional dashed
    line (``reference_line``, e.g. 1.0 for "as fast as the reference"). A log scale is used
    when the values span more than two decades (``log=None``). Returns ``path``."""
    if len(labels) != len(values):
        raise ValueError(f"speed_bars: {len(labels)} labels for {len(values)} values")
    if not labels:
        raise ValueError("speed_bars: nothing to draw (no row was timed)")
    plt = require_matplotlib()
    vals = [float(v) for v in values]
    positive = [v for v in vals if v > 0]
    if log is None:
        log = bool(positive) and max(positive) / min(positive) > 100
    width = max(7.0, 0.8 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(width, 4.2))
    bars = ax.bar(range(len(vals)), vals, color="#4c72b0")
    for b, v in zip(bars, vals, strict=True):
        ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                    va="bottom", fontsize=7)
    if reference_line is not None:
        ax.axhline(reference_line, color="#c44e52", linestyle="--", linewidth=1)
    if log:
        ax.set_yscale("log")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if title:  # wrapped to the figure (a subtitle was once cut at both edges)
        import textwrap

        chars = int(width * 11)
        ax.set_title("\n".join(textwrap.fill(line, chars) for line in title.splitlines()), fontsize=10)
    fig.tight_layout()
    return _save(fig, plt, path, dpi)


@dataclass
class Line:
    """One line of :func:`line_panels`: ``x``, ``y``, a legend ``label`` ("" for none), a
    ``group`` (lines of one group share a colour) and a ``style``: ``"line"``, ``"faint"``
    (thin and pale, e.g. raw values under a smoothed line) or ``"points"`` (dots, dashed)."""

    x: Sequence[float]
    y: Sequence[float]
    label: str = ""
    group: int = 0
    style: str = "line"


_LINE_STYLES = {"line": {"linewidth": 1.6}, "faint": {"alpha": 0.25, "linewidth": 0.8},
                "points": {"linestyle": "--", "marker": "o", "markersize": 4, "linewidth": 1.0}}


def line_panels(panels: Sequence[tuple[str, Sequence[Line]]], path: str | os.PathLike[str], *,
                xlabel: str = "", title: str | None = None, dpi: int = 100) -> Path:
    """Panels stacked over a shared x axis, one per ``(ylabel, lines)``. Returns ``path``."""
    if not panels:
        raise ValueError("line_panels: nothing to draw")
    plt = require_matplotlib()
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.8 * len(panels) + 0.4), squeeze=False,
                             sharex=True, layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (ylabel, lines), row in zip(panels, axes, strict=True):
        ax = row[0]
        for ln in lines:
            ax.plot(list(ln.x), list(ln.y), color=colours[ln.group % len(colours)], label=ln.label or None,
                    **_LINE_STYLES[ln.style])
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if any(ln.label for ln in lines):
            ax.legend(fontsize=7, loc="best")
    axes[-1][0].set_xlabel(xlabel)
    from matplotlib.ticker import MaxNLocator

    axes[-1][0].xaxis.set_major_locator(MaxNLocator(integer=True))  # steps: no "1.5"
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, plt, path, dpi)


def _save(fig: Any, plt: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
