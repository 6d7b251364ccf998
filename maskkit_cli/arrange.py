"""``maskkit arrange`` and ``maskkit masks``: thin wrappers over :func:`maskkit.arrange.arrange`
and :func:`maskkit.viz.plot_masks`. torch is imported inside the commands only."""

from __future__ import annotations

import click

from ._types import FiniteFloatRange


def _kv(pairs: tuple[str, ...]) -> dict[str, str] | None:
    from maskkit.config import parse_kv

    return parse_kv(pairs, "--strategy-opt") or None


def _length(value: str) -> str | float:
    if value in ("shortest", "longest"):
        return value
    import math

    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise click.BadParameter(f"expected 'shortest', 'longest' or a number of seconds > 0, got {value!r}",
                                 param_hint="--length")
    return seconds


@click.command("arrange")
@click.argument("input", type=click.Path(dir_okay=False))
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The arrangement to write (.wav, .flac, .ogg); written atomically.")
@click.option("--checkpoint", "-c", type=click.Path(dir_okay=False),
              help="A trained checkpoint (maskkit train): model, codec and window come from it.")
@click.option("--strategy", "-s", help="Use this fixed strategy instead of the checkpoint's "
              "(a model trained with another one may sound different).")
@click.option("--strategy-opt", multiple=True, metavar="KEY=VALUE", help="An option of --strategy.")
@click.option("--mix-only", is_flag=True,
              help="No transformer: apply the masks, decode each masked song and mix the two (no "
                   "checkpoint needed).")
@click.option("--codec", default=None, help="Codec for --mix-only without a checkpoint (default: stft).")
@click.option("--hard/--soft", default=None,
              help="Hard (0/1) or soft masks [default: those the checkpoint trained on; soft without one].")
@click.option("--style", metavar="NAME",
              help="Condition the masks on this style (a model trained with --style-labels; the error lists "
                   "its styles).")
@click.option("--sr", "sample_rate", type=click.IntRange(min=1000, max=768000),
              help="Sample rate of the output (default: the model's).")
@click.option("--length", default="shortest", show_default=True, metavar="shortest|longest|SECONDS",
              help="Songs of different lengths: cut to the shorter, extend the shorter, or a fixed length.")
@click.option("--fill", type=click.Choice(["loop", "pad"]), default="loop", show_default=True,
              help="How a song is extended: repeated from its start, or padded with silence.")
@click.option("--window", "window_seconds", type=FiniteFloatRange(min=0.05),
              help="Window in seconds (default: the checkpoint's training segment, or 4).")
@click.option("--overlap", type=FiniteFloatRange(0.05, 0.95), default=0.5, show_default=True,
              help="Overlap of neighbouring windows (crossfaded).")
@click.option("--crossfade", type=click.Choice(["triangle", "hann"]), default="triangle", show_default=True)
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=4, show_default=True,
              help="Windows sent to the device at a time (bounds the memory).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ... or auto.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no summary.")
def arrange(input: str, target: str, output: str, checkpoint: str | None, strategy: str | None,
            strategy_opt: tuple[str, ...], mix_only: bool, codec: str | None, hard: bool | None,
            sample_rate: int | None, length: str, fill: str, window_seconds: float | None, overlap: float,
            crossfade: str, batch_size: int, device: str, quiet: bool, style: str | None) -> None:
    """Arrange two songs INPUT and TARGET into one (any format soundfile reads, any rate,
    mono or stereo).

    \b
    Examples:
      maskkit arrange -c runs/x/best.pt a.wav b.flac -o out.wav
      maskkit arrange --mix-only -s frequency a.wav b.wav -o mix.wav
    """
    from maskkit.arrange import arrange as run

    if checkpoint is None and not mix_only:
        raise click.UsageError("give --checkpoint CKPT, or --mix-only with --strategy NAME")
    if mix_only and checkpoint is None and strategy is None:
        raise click.UsageError("--mix-only without a checkpoint needs --strategy NAME")
    if strategy_opt and strategy is None:
        raise click.UsageError("--strategy-opt needs --strategy")
    res = run(input, target, output, checkpoint=checkpoint, strategy=strategy,
              strategy_options=_kv(strategy_opt), mix_only=mix_only, codec=codec, hard=hard,
              sample_rate=sample_rate, length=_length(length), fill=fill, window_seconds=window_seconds,
              overlap=overlap, crossfade=crossfade, batch_size=batch_size, device=device, progress=not quiet,
              style=style)
    if not quiet:
        m = res.metrics
        extra = (f", complementarity {m['complementarity']:.1f}%, coverage {m['coverage']:.3f}"
                 if "complementarity" in m else "")
        mode = " (mix only)" if res.mix_only else ""
        mode += ", hard masks" if res.hard else ""
        mode += f", style '{res.style}'" if res.style is not None else ""
        from maskkit.logging_utils import plural

        windows = plural(res.num_windows, "window")
        click.echo(f"wrote {res.path}: {res.seconds:.2f} s at {res.sample_rate} Hz, strategy "
                   f"'{res.strategy}'{mode}, {windows}{extra}")


def _size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT in pixels, got {value!r}",
                                 param_hint="--size") from None
    return w, h


@click.command("masks")
@click.argument("strategy", metavar="STRATEGY|CKPT")
@click.argument("input", type=click.Path(dir_okay=False))
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--png", required=True, type=click.Path(dir_okay=False), help="The picture to write.")
@click.option("--strategy-opt", multiple=True, metavar="KEY=VALUE", help="An option of STRATEGY.")
@click.option("--codec", default=None, help="Codec (default: the checkpoint's, or stft).")
@click.option("--offset", type=FiniteFloatRange(min=0.0), default=0.0, show_default=True,
              help="Start, in seconds, of the stretch drawn.")
@click.option("--seconds", type=FiniteFloatRange(min=0.05),
              help="Length drawn (default: the checkpoint's training segment, or 4).")
@click.option("--hard/--soft", default=None,
              help="Hard (0/1) or soft masks [default: those the checkpoint trained on; soft without one].")
@click.option("--size", default="1400x1000", show_default=True, metavar="WxH", help="Picture size in pixels.")
@click.option("--style", metavar="NAME", help="Condition the masks on this style (a checkpoint trained with "
              "--style-labels).")
@click.option("--device", default="cpu", show_default=True)
def masks(strategy: str, input: str, target: str, png: str, strategy_opt: tuple[str, ...], codec: str | None,
          offset: float, seconds: float | None, hard: bool | None, size: str, device: str,
          style: str | None) -> None:
    """Draw what a strategy (a name, or a checkpoint's trained one) keeps of two songs:
    spectrograms, both masks, their overlap, coverage over time, the mask metrics, and the
    attention maps of strategies that have them.

    \b
    Example:
      maskkit masks temporal a.wav b.wav --png temporal.png
    """
    from maskkit.viz import plot_masks

    pic = plot_masks(strategy, input, target, png, strategy_options=_kv(strategy_opt), codec=codec,
                     offset_seconds=offset, seconds=seconds, hard=hard, device=device, size=_size(size),
                     style=style)
    m = pic.metrics
    click.echo(f"wrote {pic.path} ({pic.width}x{pic.height}, {pic.seconds:.2f} s from {offset:g} s): "
               f"strategy '{pic.strategy}'{' (hard masks)' if pic.hard else ''}"
               f"{f', style {style!r}' if style is not None else ''}, complementarity "
               f"{m['complementarity']:.1f}%, coverage {m['coverage']:.3f}"
               + (f", attention maps: {', '.join(pic.attention)}" if pic.attention else ""))
