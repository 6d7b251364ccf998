"""``maskkit agent``: the CreativeAgent's self-test and checkpoint inspection.

Thin wrappers over :mod:`maskkit_creative_agent.diagnostics`. Importing this module does not
import torch (it is imported while the ``maskkit`` command line is built).
"""

from __future__ import annotations

import sys

import click

from maskkit_cli._types import FiniteFloatRange


@click.group()
def agent() -> None:
    """The CreativeAgent (learned attention masks): self-test and checkpoint inspection."""


@agent.command()
@click.option("--batch-size", "-b", default=4, show_default=True, type=click.IntRange(1), help="Pairs.")
@click.option("--dim", "-d", default=128, show_default=True, type=click.IntRange(1),
              help="Encoding dimension D.")
@click.option("--frames", "-t", default=300, show_default=True, type=click.IntRange(1), help="Frames T.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the weights and inputs.")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda.")
def selftest(batch_size: int, dim: int, frames: int, seed: int, device: str) -> None:
    """Check an untrained agent (the seed's `python creative_agent.py`).

    Prints parameter counts, the untrained complementarity (about 75%), the regularization
    loss, discriminator scores, hard masks and whether gradients reach every parameter.
    Exits with status 1 if any check fails.
    """
    from rich.console import Console
    from rich.table import Table

    from .diagnostics import selftest as run

    console = Console()
    rep = run(batch_size, dim, frames, seed=seed, device=device)
    p = rep.parameters
    console.print(f"[bold]CreativeAgent self-test[/bold]  B={batch_size} D={dim} T={frames} on {device}")
    console.print(f"parameters: mask generator {p['mask_generator']:,} (seed design {p['seed_design']:,}), "
                  f"discriminator {p['discriminator']:,}, total {p['total']:,}")
    table = Table(show_header=True, header_style="bold")
    for col in ("", "check", "value", "detail"):
        table.add_column(col)
    try:  # the marks, where the terminal can show them (Windows' cp1252 cannot)
        "✅❌".encode(getattr(sys.stdout, "encoding", None) or "ascii")
        ok, bad = "✅", "❌"
    except (UnicodeEncodeError, LookupError):
        ok, bad = "ok", "FAIL"
    for c in rep.checks:
        table.add_row(f"[green]{ok}[/green]" if c.ok else f"[red]{bad}[/red]", c.name, c.value, c.detail)
    console.print(table)
    failed = [c.name for c in rep.checks if not c.ok]
    if failed:
        console.print(f"[red]{len(failed)} check(s) failed:[/red] {', '.join(failed)}")
        sys.exit(1)
    console.print(f"[green]all {len(rep.checks)} checks passed[/green]")


@agent.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--pairs", "-n", default=16, show_default=True, type=click.IntRange(1),
              help="Held-out pairs to measure on.")
@click.option("--batch-size", "-b", default=8, show_default=True, type=click.IntRange(1))
@click.option("--seconds", type=FiniteFloatRange(min=0.05), default=None,
              help="Segment length [default: the run's segment_seconds].")
@click.option("--seed", type=int, default=None, help="Data seed [default: the run's seed].")
@click.option("--data", "data", type=click.Path(exists=True, file_okay=False), default=None,
              help="The run's data folder, if it moved since training [default: the one it trained on].")
@click.option("--random", "random_", is_flag=True,
              help="Random N(0,1) encodings instead of the codec-encoded validation music.")
@click.option("--frames", "-t", default=300, show_default=True, type=click.IntRange(1),
              help="Frames of the --random encodings.")
@click.option("--hard/--soft", default=None,
              help="Measure the hard (0/1) or the soft masks [default: those the run trained on].")
@click.option("--device", default="cpu", show_default=True)
def inspect(checkpoint: str, pairs: int, batch_size: int, seconds: float | None, seed: int | None,
            random_: bool, frames: int, hard: bool | None, device: str, data: str | None) -> None:
    """Complementarity, coverage and balance of a trained checkpoint on held-out data.

    Rebuilds the checkpoint's strategy and encodes the validation split of its run (synthetic
    music or the folder it trained on) with its codec (the seed's "Test on Checkpoint").
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .diagnostics import inspect_checkpoint

    rep = inspect_checkpoint(checkpoint, pairs=pairs, batch_size=batch_size, seconds=seconds, seed=seed,
                             random=random_, frames=frames, hard=hard, device=device, data=data)
    console = Console()
    B, D, T = rep.shape
    console.print(f"[bold]{escape(rep.path)}[/bold]: strategy '{escape(rep.strategy)}'"
                  f"{' (hard masks)' if rep.hard else ''}")
    console.print(f"data: {escape(rep.data)}, {B} pairs of {D} x {T}")
    m = rep.metrics
    table = Table(show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("complementarity", f"{m['complementarity']:.1f}%")
    table.add_row("coverage", f"{m['coverage'] * 100:.1f}%")
    table.add_row("coverage error", f"{m['coverage_error']:.4f}")
    table.add_row("balance (input share)", f"{m['balance']:.3f}")
    table.add_row("energy kept: input / target",
                  f"{m['input_energy_kept'] * 100:.1f}% / {m['target_energy_kept'] * 100:.1f}%")
    table.add_row("temporal diversity", f"{m['temporal_diversity']:.4f}")
    table.add_row("adaptivity", f"{m['adaptivity']:.4f}")
    if rep.reg_loss is not None:
        table.add_row("regularization loss", f"{rep.reg_loss:.6f}")
    if rep.balance_loss is not None:
        table.add_row("balance loss", f"{rep.balance_loss:.6f}")
    console.print(table)
