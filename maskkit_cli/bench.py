"""``maskkit bench``: every strategy side by side (a thin wrapper over :mod:`maskkit.bench`)."""

from __future__ import annotations

import sys
from typing import Any

import click

from ._types import FINITE, FiniteFloatRange


@click.command("bench")
@click.option("--strategies", "strategies", default="all", show_default=True, metavar="all|NAME,NAME",
              help="Strategies to compare: 'all' registered ones, or a comma-separated list "
                   "('' for none: only the --variant rows).")
@click.option("--strategy-opt", "strategy_opts", multiple=True, metavar="NAME:KEY=VALUE",
              help="An option of one strategy, e.g. temporal:segment=100 (repeatable).")
@click.option("--variant", "variants", multiple=True, metavar="'LABEL=STRATEGY KEY=VALUE ...'",
              help="A named row: STRATEGY with these options, labelled LABEL, after the --strategies "
                   "rows; 'train.a.b=V' tokens override TrainConfig for its --train-steps run only "
                   "(repeatable).")
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="A folder of your own music instead of the built-in synthetic music.")
@click.option("--skip-bad", is_flag=True,
              help="Skip unreadable audio files of --data with a warning (default: stop, naming the file).")
@click.option("--random", "random_", is_flag=True,
              help="Random [batch, dim, frames] tensors instead of encoded audio.")
@click.option("--codec", default="stft", show_default=True, help="Codec that encodes the audio.")
@click.option("--codec-opt", "codec_opts", multiple=True, metavar="KEY=VALUE",
              help="An option of the codec, e.g. n_fft=1024 (repeatable).")
@click.option("--segment-seconds", type=FINITE, default=4.0, show_default=True,
              help="Length of each audio pair (ignored with --frames or --random).")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Pairs per batch.")
@click.option("--frames", type=int, default=None,
              help="Frames T per pair (default: 4 s of audio; 300 with --random).")
@click.option("--dim", type=int, default=128, show_default=True, help="Channels D of --random inputs.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32",
              show_default=True, help="Compute dtype (autocast for the lower precisions).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile each strategy before timing.")
@click.option("--warmup", type=int, default=2, show_default=True, help="Untimed calls before timing.")
@click.option("--repeats", type=int, default=10, show_default=True,
              help="Timed calls per figure (at most; see --max-seconds).")
@click.option("--max-seconds", type=FiniteFloatRange(min=0.0, allow_inf=True), default=3.0, show_default=True,
              help="Stop timing a figure after this long once 3 calls are timed (inf: never).")
@click.option("--threads", type=int, default=None, help="torch threads for the run (default: as set).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of data and initial weights.")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A trained checkpoint; adds a 'trained' row for its strategy (repeatable).")
@click.option("--reference", is_flag=True,
              help="Also measure the naive seed implementation and show speed ratios to it.")
@click.option("--train-steps", type=int, default=0, show_default=True,
              help="Quick training comparison: train a small model this many steps per strategy.")
@click.option("--train-opt", "train_opts", multiple=True, metavar="KEY=VALUE",
              help="A maskkit.train.TrainConfig field for --train-steps (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write every figure and the environment to this JSON file.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="Write one line per row to this CSV file.")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False), default=None,
              help="Write the tables as Markdown to this file (for docs).")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), default=None,
              help="Write masks.png and speed.png to this folder (needs matplotlib).")
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
def bench(strategy_opts: tuple[str, ...], codec_opts: tuple[str, ...], random_: bool, compile_: bool,
          checkpoints: tuple[str, ...], train_opts: tuple[str, ...], variants: tuple[str, ...],
          json_path: str | None,
          csv_path: str | None, md_path: str | None, plots_dir: str | None, no_progress: bool,
          **options: Any) -> None:
    """Compare mask strategies on the same data: mask quality, speed and cost.

    \b
    Examples:
      maskkit bench --strategies all --json out.json
      maskkit bench --strategies temporal,creative-agent --reference --plots plots/
      maskkit bench --random --batch-size 16 --frames 600 --device cuda --dtype bfloat16
      maskkit bench --strategies all --train-steps 50
      maskkit bench --strategies '' --train-steps 50 \\
          --variant "plain=creative-agent" \\
          --variant "multiscale=creative-agent scales=1,8,32" \\
          --variant "adv=creative-agent train.adversarial.weight=0.1"
    """
    from rich.console import Console

    from maskkit.bench import BenchConfig
    from maskkit.config import parse_kv, parse_named_kv
    from maskkit.paths import check_output_dir, check_output_file

    from ._output import escape

    # fail before the run, not after it
    for path, option in ((json_path, "--json"), (csv_path, "--csv"), (md_path, "--markdown")):
        if path is not None:
            check_output_file(path, option)
    if plots_dir is not None:
        from maskkit.plotting import require_matplotlib

        require_matplotlib()
        check_output_dir(plots_dir, "--plots")
    cfg = BenchConfig(**options, strategy_options=parse_named_kv(strategy_opts, "--strategy-opt"),
                      codec_options=parse_kv(codec_opts, owner="--codec-opt"), random=random_,
                      compile=compile_, checkpoints=list(checkpoints),
                      train_options=parse_kv(train_opts, owner="--train-opt"), variants=list(variants))
    console = Console()
    if not console.is_terminal:  # piped or captured: wide enough for the tables
        console = Console(width=max(console.width, 130))
    result = _run_with_progress(cfg, console, show=not no_progress)
    for table in result.tables():
        console.print(table)
    for note in result.notes():
        console.print(f"[yellow]note:[/yellow] {escape(note)}", soft_wrap=True)
    errors = result.errors()
    if errors:
        where = "tracebacks are in the JSON" if json_path else "--json FILE keeps their tracebacks"
        console.print(f"[red]{len(errors)} error(s)[/red] (the others ran; {where}):")
        for label, message in errors:
            console.print(f"  [bold]{escape(label)}[/bold]: {escape(message)}", soft_wrap=True)
    written = []
    if json_path:
        written.append(result.write_json(json_path))
    if csv_path:
        written.append(result.write_csv(csv_path))
    if md_path:
        written.append(result.write_markdown(md_path))
    if plots_dir:
        written.extend(result.write_plots(plots_dir))
    for path in written:
        console.print(f"wrote {escape(path)}")
    console.print(f"[dim]{escape(result.data)}; {result.seconds:.1f} s[/dim]")
    if errors:  # the rows that ran are printed and written; a script still learns that some failed
        sys.exit(1)


def _run_with_progress(cfg: Any, console: Any, show: bool) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from maskkit.bench import run_bench

    if not show:
        return run_bench(cfg)
    if not console.is_terminal:  # a log file or a pipe: one plain line a step, not a silent wait
        import time

        t0 = time.perf_counter()

        def log(label: str, done: int, total: int) -> None:
            step = min(done + 1, total)
            click.echo(f"bench [{step}/{total}, {time.perf_counter() - t0:.0f} s] {label}", err=True)

        return run_bench(cfg, progress=log)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("bench", total=None)

        def progress(label: str, done: int, total: int) -> None:
            bar.update(task, description=label, completed=done, total=total)

        return run_bench(cfg, progress=progress)
