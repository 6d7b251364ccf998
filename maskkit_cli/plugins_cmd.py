"""``maskkit strategies``, ``maskkit codecs`` and ``maskkit plugins``: what is installed."""

from __future__ import annotations

import click

from ._output import console as _console
from ._output import escape


@click.group("strategies", invoke_without_command=True)
@click.pass_context
def strategies(ctx: click.Context) -> None:
    """List the mask strategies of every loaded plugin."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from maskkit import EncodingSpec
    from maskkit.plugins import get_manager
    from maskkit.train import default_codec_spec

    reg = get_manager().strategies()
    codec = default_codec_spec()
    table = Table(title="Mask strategies (parameters at default options)")
    table.add_column("name", no_wrap=True)
    table.add_column("learns", no_wrap=True)
    table.add_column(f"params\n(D={EncodingSpec().dim})", justify="right", no_wrap=True)
    if codec is not None:
        table.add_column(f"as trained\n({codec[0]}, D={codec[1].dim})", justify="right", no_wrap=True)
    console = _console()
    wide = console.width >= 110  # else the descriptions go under the table, one line each
    table.add_column("from", overflow="fold", max_width=None if wide else 16)
    if wide:
        table.add_column("description", overflow="fold", ratio=1)
    summaries = []
    for name, entry in reg.items():
        cls = entry.cls
        summary = _summary(cls.description or (cls.__doc__ or ""))
        summaries.append((name, summary))
        counts = [_parameters(cls)] + ([_parameters(cls, codec[1])] if codec is not None else [])
        table.add_row(*map(escape, (name, "yes" if cls.learnable else "no", *counts,
                                    f"{entry.dist} {entry.version}", *([summary] if wide else []))))
    console.print(table)
    if not wide:
        for name, summary in summaries:
            console.print(f"[bold]{escape(name)}[/bold]: {escape(summary)}")
    _print_failed()


def _parameters(cls: type, spec: object = None) -> str:
    """The parameter count at default options (on ``spec``), or the error of a plugin whose
    constructor fails (which must not hide the other strategies, nor this one's description)."""
    try:
        return f"{cls.num_parameters_default(spec):,}"  # type: ignore[attr-defined]
    except Exception as e:
        return f"error: {type(e).__name__}: {e}"


@strategies.command("show")
@click.argument("name")
def strategies_show(name: str) -> None:
    """Show one strategy: its description and options (set with --strategy-opt key=value)."""
    from rich.table import Table

    from maskkit import EncodingSpec
    from maskkit.config import describe_config
    from maskkit.plugins import get_strategy_entry
    from maskkit.train import default_codec_spec

    entry = get_strategy_entry(name)
    cls = entry.cls
    console = _console()
    console.print(f"[bold]{escape(name)}[/bold]  ({escape(entry.origin)})")
    console.print(escape(cls.description or (cls.__doc__ or "").strip()))
    codec = default_codec_spec()
    trained = f"; {escape(_parameters(cls, codec[1]))} as `maskkit train` builds it ({codec[0]} codec, " \
              f"D={codec[1].dim})" if codec is not None and cls.learnable else ""
    console.print(f"learnable: {'yes' if cls.learnable else 'no'}; parameters at default options: "
                  f"{escape(_parameters(cls))} at D={EncodingSpec().dim}{trained}")
    rows = describe_config(cls.Config)
    if not rows:
        console.print("No options.")
        return
    table = Table(title="Options (--strategy-opt key=value)")
    for col in ("option", "type", "default", "help"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@click.command("codecs")
def codecs() -> None:
    """List the codecs (audio <-> encoding) of every loaded plugin."""
    from rich.table import Table

    from maskkit.plugins import get_manager

    table = Table(title="Codecs")
    for col in ("name", "distribution", "version", "description"):
        table.add_column(col, overflow="fold")
    for name, entry in get_manager().codecs().items():
        table.add_row(*map(escape, (name, entry.dist, entry.version, entry.cls.description or "")))
    _console().print(table)
    _print_failed()


@click.command("plugins")
@click.option("--traceback", "show_tb", is_flag=True, help="Show the full traceback of failed plugins.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(show_tb: bool, as_json: bool) -> None:
    """List plugin distributions: version, what each registers, and the ones that failed."""
    import contextlib
    import json
    import os
    import warnings

    from rich.table import Table

    from maskkit.errors import PluginError
    from maskkit.plugins import fresh_manager, get_manager, strict_mode

    # The diagnostic lists every plugin even in strict mode (which would stop at the first that
    # fails): it loads them as the default mode does, then fails with everything strict mode
    # would have refused (its warnings: failed plugins, unknown names, refused commands).
    strict = strict_mode()
    saved = os.environ.get("MASKKIT_STRICT_PLUGINS")
    clashes: list[str] = []
    if strict:
        os.environ["MASKKIT_STRICT_PLUGINS"] = "0"
    caught: list = []  # (warnings.WarningMessage)
    try:
        with warnings.catch_warnings(record=True) if strict else contextlib.nullcontext() as record:
            if strict:
                warnings.simplefilter("always")
                caught = record
            # strict: a manager of its own, loaded leniently (the process's stays strict)
            mgr = fresh_manager() if strict else get_manager()
            for fill in (mgr.strategies, mgr.codecs):  # fill in what each plugin registers
                try:
                    fill()
                except PluginError as e:  # two plugins claim one name (strict mode): say so after
                    clashes.append(str(e))
            from maskkit_cli.main import MaskkitGroup

            mgr.add_commands(MaskkitGroup("probe"))  # and each plugin's commands (on a throwaway group)
    finally:
        if strict:
            os.environ["MASKKIT_STRICT_PLUGINS"] = saved if saved is not None else "1"
    infos = sorted(mgr.plugins.values(), key=lambda p: (p.status != "loaded", p.name))
    if strict:
        said = [str(w.message).removeprefix("maskkit: ") for w in caught
                if str(w.message).startswith("maskkit:")]
        clashes += said + [f"{p.origin} failed: {p.error}" for p in infos
                           if p.status == "failed" and not any(p.origin in m for m in said)]
    if as_json:
        click.echo(json.dumps([{k: v for k, v in vars(p).items()
                                if not k.startswith("_") and (show_tb or k != "traceback")}
                               for p in infos], indent=2))
        if clashes:
            raise PluginError("; ".join(clashes))
        return
    table = Table(title="Plugins (entry-point group 'maskkit')")
    for col in ("plugin", "distribution", "version", "status", "registers"):
        table.add_column(col, overflow="fold")
    for p in infos:
        regs = "; ".join(f"{k}: {', '.join(v)}" for k, v in p.registers.items())
        status = {"loaded": "[green]loaded[/green]", "failed": "[red]failed[/red]",
                  "disabled": "[yellow]disabled[/yellow]"}.get(p.status, p.status)
        table.add_row(escape(p.name), escape(p.dist), escape(p.version), status,
                      escape(regs or (p.error or "")))
    console = _console()
    console.print(table)
    for p in infos:
        if p.status == "failed":
            console.print(f"[red]{escape(p.name)}[/red] ({escape(p.dist)} {escape(p.version)}): "
                          f"{escape(p.error)}")
            if show_tb and p.traceback:
                console.print(p.traceback, markup=False, highlight=False)
    if clashes:
        raise PluginError("; ".join(clashes))


def _summary(text: str) -> str:
    """The first clause of a description, for one table row ('show' prints it whole)."""
    import re

    return re.split(r"[.;:](\s|$)", text.strip(), maxsplit=1)[0]


def _print_failed() -> None:
    from maskkit.plugins import get_manager

    failed = [p for p in get_manager().plugins.values() if p.status == "failed"]
    if failed:
        _console().print("[yellow]Plugins that failed to load: "
                         + ", ".join(f"{escape(p.name)} ({escape(p.dist)})" for p in failed)
                         + " — see 'maskkit plugins'[/yellow]")
