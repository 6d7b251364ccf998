"""``maskkit curves``: training curves of one or more runs (:mod:`maskkit.curves`)."""

from __future__ import annotations

import math

import click

from ._types import FiniteFloatRange


@click.command("curves")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="A metric to draw (repeatable) [default: loss, complementarity]. Any name in the run's "
                   "metrics.jsonl: stft_input, mask_reg, grad_norm, adv_gen_loss, ...")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="The picture to write [default: RUN/curves.png for one run, curves.png for several].")
@click.option("--smoothing", type=FiniteFloatRange(0.0, 1.0, max_open=True), default=0.6, show_default=True,
              help="Exponential smoothing of the training curves (0 = none).")
def curves(runs: tuple[str, ...], metrics: tuple[str, ...], png: str | None, smoothing: float) -> None:
    """Draw the training and validation curves of one or more runs, and print their summary.

    \b
      maskkit curves runs/creative-agent
      maskkit curves runs/temporal runs/creative-agent --metric loss --metric val_coverage_error
    """
    from rich.table import Table

    from maskkit.curves import DEFAULT_METRICS, load_runs, plot_curves, run_summary

    from ._output import console as make_console
    from ._output import escape

    loaded = load_runs(runs)
    path = png or (f"{runs[0]}/curves.png" if len(runs) == 1 else "curves.png")
    written = plot_curves(loaded, path, metrics=[_strip_val(m) for m in metrics] or DEFAULT_METRICS,
                          smoothing=smoothing)
    table = Table(title="Runs (validation loss and complementarity)")
    table.add_column("run", overflow="fold")
    for col in ("steps", "epochs", "best loss", "last loss", "last compl. %"):
        table.add_column(col, no_wrap=True, justify="right")
    for run in loaded:
        s = run_summary(run)
        table.add_row(escape(s["run"]), str(s["steps"]), str(s["epochs"]), _fmt(s["best_val_loss"]),
                      _fmt(s["last_val_loss"]), _fmt(s["last_val_complementarity"], ".1f"))
    console = make_console()
    console.print(table)
    console.print(f"wrote {escape(written)}")


def _strip_val(metric: str) -> str:
    """``val_loss`` and ``loss`` name the same panel (training and validation are both drawn)."""
    return metric[4:] if metric.startswith("val_") else metric


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)
