"""Training curves of one or more runs, from their ``metrics.jsonl`` (``maskkit curves``).

A metric ``M`` is drawn twice per run: the training value of every logged step (the ``step``
rows' ``M``; faint, with an exponentially smoothed line over it) and the validation value of
every epoch (the ``epoch`` rows' ``val_M``, as dots). Runs share each panel, one colour a run,
so two strategies or two settings compare at a glance. :func:`run_summary` gives the numbers
a table shows (steps, epochs, best and last validation loss, last validation complementarity).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MaskkitError
from .logging_utils import JSONL_NAME, read_metrics
from .paths import check_output_file
from .plotting import Line, line_panels

__all__ = ["DEFAULT_METRICS", "Curve", "RunCurves", "load_runs", "plot_curves", "run_summary", "smooth"]

#: What ``maskkit curves`` draws unless told otherwise.
DEFAULT_METRICS = ("loss", "complementarity")
#: Values set by the run, not measured (the learning rate): drawn as they are, never smoothed.
UNSMOOTHED = frozenset({"lr"})


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard-style exponential smoothing, debiased so the first point is the first value:
    ``s_t = weight * s_(t-1) + (1 - weight) * v_t``, divided by ``1 - weight**t``. Non-finite
    values are skipped (the line carries the last smoothed value over them)."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out, acc, n = [], 0.0, 0
    for v in values:
        if math.isfinite(v):
            acc, n = weight * acc + (1.0 - weight) * v, n + 1
        out.append(acc / (1.0 - weight ** n) if n else float("nan"))
    return out


@dataclass
class Curve:
    """One line: ``(steps, values)`` of a metric in a run, ``kind`` ``"train"`` or ``"val"``."""

    kind: str
    steps: list[int]
    values: list[float]


@dataclass
class RunCurves:
    """A run's metric rows, read once: ``label`` names it in legends and tables."""

    path: Path
    label: str
    step_rows: list[dict[str, Any]] = field(default_factory=list)
    epoch_rows: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> list[str]:
        """Every metric name this run logged (training names; ``val_M`` listed as ``M``)."""
        names = {k for r in self.step_rows for k, v in r.items() if _number(v) is not None}
        names |= {k[4:] for r in self.epoch_rows for k in r if k.startswith("val_")}
        return sorted(names - {"step", "epoch", "time_s", "pairs_per_s"})

    def curves(self, metric: str) -> list[Curve]:
        """The training curve (step rows' ``metric``) and the validation curve (epoch rows'
        ``val_metric``), each only when logged."""
        out = []
        for kind, rows, key in (("train", self.step_rows, metric), ("val", self.epoch_rows, f"val_{metric}")):
            pts = [(_step(r), _number(r.get(key))) for r in rows]
            pts = [(s, v) for s, v in pts if s is not None and v is not None]
            if pts:
                out.append(Curve(kind, [s for s, _ in pts], [v for _, v in pts]))
        return out


def _step(row: dict[str, Any]) -> int | None:
    """A row's optimizer step, or None when it has none that is a whole number (a damaged row)."""
    v = _number(row.get("step"))
    return int(v) if v is not None and math.isfinite(v) and v == int(v) else None


def _number(v: Any) -> float | None:
    """A logged value as a float ("nan" and "inf" strings included), or None if it is not a number."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v.lower() in ("nan", "inf", "-inf"):
        return float(v)
    return None


def load_runs(run_dirs: Sequence[str | os.PathLike[str]]) -> list[RunCurves]:
    """Read each run folder's ``metrics.jsonl``. A folder that is missing, or holds no metric
    rows, is an error naming it. Labels are the folder names (with their parent's when two
    runs share a name)."""
    if not run_dirs:
        raise MaskkitError("no run folder given: pass one or more folders written by `maskkit train` "
                           "(e.g. runs/creative-agent)")
    paths = [Path(d) for d in run_dirs]
    for p in paths:
        if not p.is_dir():
            raise MaskkitError(f"run folder {p} does not exist")
        if not (p / JSONL_NAME).is_file():
            raise MaskkitError(f"{p} has no {JSONL_NAME}: is it a run folder written by `maskkit train`?")
    names = [p.resolve().name for p in paths]
    runs = []
    for p, name in zip(paths, names, strict=True):
        label = name if names.count(name) == 1 else f"{p.resolve().parent.name}/{name}"
        rows = read_metrics(p)
        run = RunCurves(p, label, [r for r in rows if r.get("kind") == "step"],
                        [r for r in rows if r.get("kind") == "epoch"])
        if not run.step_rows and not run.epoch_rows:
            raise MaskkitError(f"{p / JSONL_NAME} holds no step or epoch rows yet")
        runs.append(run)
    return runs


def run_summary(run: RunCurves) -> dict[str, Any]:
    """Steps, epochs, best / last validation loss and last validation complementarity of a run
    (None where not logged)."""
    last_step = max((s for r in [*run.step_rows, *run.epoch_rows] if (s := _step(r)) is not None), default=0)
    val = [v for r in run.epoch_rows if (v := _number(r.get("val_loss"))) is not None]
    finite = [v for v in val if math.isfinite(v)]
    compl = [v for r in run.epoch_rows if (v := _number(r.get("val_complementarity"))) is not None]
    epochs = len({r.get("epoch") for r in run.epoch_rows})  # a --max-steps stop mid-epoch logs one too
    return {"run": run.label, "steps": last_step, "epochs": epochs,
            "best_val_loss": min(finite) if finite else None, "last_val_loss": val[-1] if val else None,
            "last_val_complementarity": compl[-1] if compl else None}


def plot_curves(runs: Sequence[RunCurves], path: str | os.PathLike[str], *,
                metrics: Sequence[str] = DEFAULT_METRICS, smoothing: float = 0.6, dpi: int = 100) -> Path:
    """One panel per metric, every run in each; returns ``path`` (a PNG). A metric that no run
    logged is an error that lists the ones they did."""
    path = check_output_file(path, "--png", (".png",))
    if not metrics:
        raise MaskkitError("no metric to draw")
    if not 0.0 <= smoothing < 1.0:
        raise MaskkitError(f"smoothing must be in [0, 1), got {smoothing}")
    missing = [m for m in metrics if not any(r.curves(m) for r in runs)]
    if missing:
        known = sorted({m for r in runs for m in r.metrics()})
        raise MaskkitError(f"no run logged {', '.join(repr(m) for m in missing)}; logged metrics: "
                           f"{', '.join(known)}")
    panels = []
    for metric in metrics:
        lines = []
        for i, run in enumerate(runs):
            for curve in run.curves(metric):
                if curve.kind == "train" and metric in UNSMOOTHED:
                    lines.append(Line(curve.steps, curve.values, f"{run.label} train", i))
                elif curve.kind == "train":
                    lines.append(Line(curve.steps, curve.values, f"{run.label} train, each step", i, "faint"))
                    lines.append(Line(curve.steps, smooth(curve.values, smoothing),
                                      f"{run.label} train, smoothed ({smoothing:g})", i))
                else:
                    lines.append(Line(curve.steps, curve.values, f"{run.label} validation", i, "points"))
        panels.append((f"{metric} (%)" if "complementarity" in metric else metric, lines))
    title = "Training curves: " + ", ".join(run.label for run in runs)
    return line_panels(panels, path, xlabel="optimizer step", title=title, dpi=dpi)
