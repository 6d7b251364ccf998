"""``maskkit data``: make synthetic songs, build WAV pairs from songs, check a folder.

Thin wrappers over :mod:`maskkit.synth` and :mod:`maskkit.data`. Nothing heavy is imported
at module level (``maskkit --help`` must not import torch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ._output import console as _console
from ._output import escape
from ._types import FiniteFloatRange

#: Folders with more files than this list only the files with problems in `maskkit data check`.
_LIST_ALL_UP_TO = 200


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(seconds, 60.0)
    h, m = divmod(int(m), 60)
    if h:
        return f"{h}:{m:02d}:{s:05.2f}"
    return f"{m}:{s:05.2f}" if m else f"{s:.2f} s"


@click.group("data")
def data() -> None:
    """Audio data: synthetic songs, WAV-pairs folders, folder checks."""


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--songs", "-n", "num_songs", type=click.IntRange(min=1), required=True, help="How many songs.")
@click.option("--seconds", type=FiniteFloatRange(min=0.5), default=30.0, show_default=True,
              help="Length of each song.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the set of songs.")
@click.option("--sample-rate", type=click.IntRange(min=4000), default=24000, show_default=True)
@click.option("--stems/--no-stems", default=True, show_default=True,
              help="Also write each song's drums/bass/chords/melody under OUT/stems/.")
@click.option("--by-style", is_flag=True,
              help="Write each song into a subfolder named after its drum groove "
                   "(OUT/backbeat/song_0000.wav): the layout --style-labels reads.")
@click.option("--overwrite", is_flag=True, help="Replace the songs already in OUT.")
def synth(out: Path, num_songs: int, seconds: float, seed: int, sample_rate: int, stems: bool,
          by_style: bool, overwrite: bool) -> None:
    """Write synthetic songs to OUT as WAV (16-bit), with their stems.

    \b
    OUT/song_0000.wav ...            the mixes (OUT works as a folder of songs)
    OUT/backbeat/song_0000.wav ...   the same with --by-style: one subfolder per drum groove
    OUT/stems/song_0000/drums.wav    bass.wav, chords.wav, melody.wav (mix = their sum)
    OUT/songs.json                   each song's seed, tempo, key, scale, groove
    The stems folder holds a .maskkit-ignore file, so it is not taken for songs.
    """
    from maskkit.data import write_synthetic_songs

    console = _console()

    def show(row: dict[str, Any]) -> None:
        console.print(f"{row['file']}  seed {row['seed']}  {row['bpm']:.0f} bpm  {row['key']} "
                      f"{row['scale']}  {row['groove']}", markup=False)

    write_synthetic_songs(out, num_songs, seconds=seconds, seed=seed, sample_rate=sample_rate, stems=stems,
                          overwrite=overwrite, by_style=by_style, progress=show)
    console.print(f"[green]wrote {num_songs} song(s) of {seconds:g} s at {sample_rate} Hz to "
                  f"{escape(str(out))}[/green]")


@data.command("pairs")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--segment-seconds", type=FiniteFloatRange(min=0.1), default=4.0, show_default=True)
@click.option("--pairs-per-song", type=click.IntRange(min=1), default=4, show_default=True,
              help="Pairs in which each song is the input.")
@click.option("--val-fraction", type=FiniteFloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Fraction of the songs (not segments) held out for validation.")
@click.option("--sample-rate", type=click.IntRange(min=4000), default=24000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--skip-bad", is_flag=True, help="Skip bad files (listed in a summary) instead of stopping.")
@click.option("--overwrite", is_flag=True, help="Replace pair files already in OUT.")
def pairs(src: Path, out: Path, segment_seconds: float, pairs_per_song: int, val_fraction: float,
          sample_rate: int, seed: int, skip_bad: bool, overwrite: bool) -> None:
    """Build the WAV-pairs layout (OUT/train, OUT/val) from the songs under SRC.

    Each pair joins segments of two different songs; train and val never share a song.
    OUT/pairs.json records where every segment comes from.
    """
    from maskkit.data import build_pairs_folder

    console = _console()
    with console.status("checking songs and writing pairs ...") as status:
        summary = build_pairs_folder(src, out, segment_seconds=segment_seconds, sample_rate=sample_rate,
                                     pairs_per_song=pairs_per_song, val_fraction=val_fraction, seed=seed,
                                     skip_bad=skip_bad, overwrite=overwrite,
                                     progress=lambda what: status.update(f"{what} ..."))
    console.print(f"[green]wrote {summary.train_pairs} train pairs ({summary.train_songs} songs) and "
                  f"{summary.val_pairs} val pairs ({summary.val_songs} songs) to {escape(str(out))}[/green]")
    songs = summary.train_songs + summary.val_songs
    asked = val_fraction * songs
    if abs(summary.val_songs - asked) >= 1:
        console.print(f"[yellow]note: {summary.val_songs} of {songs} songs held out for validation, not "
                      f"about {asked:.1f} (--val-fraction {val_fraction:g}): each side needs at least 2 "
                      f"songs, as a pair joins two different songs[/yellow]")
    _print_skipped(console, summary.skipped)


def _print_skipped(console: Any, skipped: list[tuple[str, str]]) -> None:
    if not skipped:
        return
    from rich.table import Table

    table = Table(title=f"Skipped {len(skipped)} bad file(s)")
    table.add_column("file", overflow="fold")
    table.add_column("problem", overflow="fold")
    for path, reason in skipped:
        table.add_row(escape(path), escape(reason))
    console.print(table)


@data.command("check")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--segment-seconds", type=FiniteFloatRange(min=0.0), default=4.0, show_default=True,
              help="Files shorter than this are reported.")
@click.option("--quick", is_flag=True, help="Probe a few windows per file instead of decoding it all.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--all", "list_all", is_flag=True,
              help=f"List every file (a folder of more than {_LIST_ALL_UP_TO} files lists only those with "
                   f"problems or notes, and counts the others).")
def check(folder: Path, segment_seconds: float, quick: bool, as_json: bool, list_all: bool) -> None:
    """Report what FOLDER holds: files, durations, rates, channels, problems.

    Exits with status 1 when any file has a problem, or when FOLDER holds no audio file at all.
    """
    from dataclasses import asdict

    from maskkit.data import MIN_SONGS, check_folder

    console = _console()
    if as_json:
        layout, reports = check_folder(folder, segment_seconds=segment_seconds, full=not quick)
    else:
        with console.status("reading files ...") as status:
            layout, reports = check_folder(folder, segment_seconds=segment_seconds, full=not quick,
                                           progress=lambda p: status.update(f"reading {p} ..."))
    ok = [r for r in reports if r.status == "ok"]
    bad = [r for r in reports if r.status == "bad"]
    ignored = [r for r in reports if r.status == "ignored"]
    total = sum(r.duration or 0.0 for r in ok)
    if as_json:
        click.echo(json.dumps({"folder": str(folder), "layout": layout, "ok": len(ok), "bad": len(bad),
                               "ignored": len(ignored), "total_seconds": round(total, 3),
                               "files": [asdict(r) for r in reports]}, indent=1))
    else:
        from rich.table import Table

        table = Table(title=f"{escape(str(folder))}  ({layout} layout)")
        table.add_column("file", overflow="fold")
        table.add_column("format", overflow="fold")
        table.add_column("rate", justify="right", no_wrap=True)
        table.add_column("ch", justify="right", no_wrap=True)
        table.add_column("duration", justify="right", no_wrap=True)
        table.add_column("status", overflow="fold")
        listed = reports
        if not list_all and len(reports) > _LIST_ALL_UP_TO:
            listed = [r for r in reports if r.status == "bad" or r.note]
            table.title = (f"{escape(str(folder))}  ({layout} layout): the {len(listed)} of {len(reports):,} "
                           f"files with problems or notes (--all lists every file)")
        for r in listed:
            rel = str(Path(r.path).relative_to(folder)) if Path(r.path).is_relative_to(folder) else r.path
            status = {"ok": "[green]ok[/green]", "ignored": "[dim]ignored (not audio)[/dim]"}.get(
                r.status, f"[red]{escape(r.problem or '')}[/red]")
            if r.note:
                status += f" [yellow]note: {escape(r.note)}[/yellow]"
            table.add_row(escape(rel), escape(r.format or "-"), str(r.sample_rate or "-"),
                          str(r.channels or "-"), _fmt_duration(r.duration), status)
        if listed:
            console.print(table)
        else:
            console.print(f"{escape(str(folder))}  ({layout} layout): no file with problems or notes")
        rates = sorted({r.sample_rate for r in ok if r.sample_rate})
        noted = sum(1 for r in reports if r.note)
        from maskkit.data import problem_summary

        kinds = f" ({escape(problem_summary([r.problem or '' for r in bad]))})" if bad else ""
        console.print(f"{len(ok)} usable file(s), {_fmt_duration(total)} in total; {len(bad)} with problems"
                      f"{kinds}; "
                      f"{len(ignored)} ignored. Rates: {', '.join(map(str, rates)) or '-'} Hz."
                      + (f" {noted} note(s) above." if noted else ""))
    if layout == "songs" and 0 < len(ok) < MIN_SONGS and not as_json:
        console.print(f"[yellow]note: {len(ok)} usable song(s); training on a folder of songs needs at least "
                      f"{MIN_SONGS} (two for training, two for validation)[/yellow]")
    if not ok and not bad:
        from maskkit.audio import AUDIO_EXTENSIONS

        click.secho(f"Error: {folder}: no audio files (looked for "
                    f"{', '.join(e.lstrip('.') for e in AUDIO_EXTENSIONS)}; hidden files and folders "
                    f"holding a .maskkit-ignore file are skipped)", fg="red", err=True)
        sys.exit(1)
    if bad:
        sys.exit(1)
