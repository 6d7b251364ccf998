"""``maskkit``: the command-line entry point.

Commands live in their own modules and are imported when used, so ``maskkit --help`` never
imports torch. Plugins add commands through the ``register_commands`` hook.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Any

import click

from maskkit import __version__

# name -> "module:attribute"; each module imports torch (through maskkit) only inside its commands.
BUILTIN_COMMANDS = {
    "strategies": "maskkit_cli.plugins_cmd:strategies",
    "plugins": "maskkit_cli.plugins_cmd:plugins",
    "codecs": "maskkit_cli.plugins_cmd:codecs",
    "data": "maskkit_cli.data:data",
    "train": "maskkit_cli.train:train",
    "bench": "maskkit_cli.bench:bench",
    "arrange": "maskkit_cli.arrange:arrange",
    "masks": "maskkit_cli.arrange:masks",
    "curves": "maskkit_cli.curves:curves",
}


class _OneLineError(click.ClickException):
    """A maskkit error raised where click, not our ``invoke``, handles it (status 2, as there)."""

    exit_code = 2


class MaskkitGroup(click.Group):
    """Loads built-in commands lazily and plugin commands on first need."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if self._plugins_added:
            return
        self._plugins_added = True
        from maskkit.errors import MaskkitError
        from maskkit.plugins import get_manager

        try:
            get_manager().add_commands(self)
        except MaskkitError as e:  # MASKKIT_STRICT_PLUGINS and a broken plugin, while building --help
            raise _OneLineError(str(e)) from None

    adding_plugin: Any = None  # the PluginInfo whose register_commands hook is running

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """A plugin's command (built-ins are loaded lazily, never added): one with a built-in's
        name would be shadowed by it, so it is refused with a warning instead of silently (an
        error with MASKKIT_STRICT_PLUGINS)."""
        name = name or cmd.name
        if name in BUILTIN_COMMANDS:
            from maskkit.errors import PluginError
            from maskkit.plugins import strict_mode

            info = self.adding_plugin
            where = info.origin if info is not None else (getattr(cmd.callback, "__module__", None)
                                                          or "a plugin")
            message = (f"maskkit: the command '{name}' from {where} has the name of a built-in command and "
                       f"was not added; rename it")
            if strict_mode():
                raise PluginError(message.removeprefix("maskkit: "))
            warnings.warn(message, stacklevel=2)
            return
        super().add_command(cmd, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        names = set(super().list_commands(ctx))
        names.update(n for n in BUILTIN_COMMANDS if self._load_builtin(n) is not None)
        return sorted(names)

    def _load_builtin(self, name: str) -> click.Command | None:
        target = BUILTIN_COMMANDS.get(name)
        if target is None:
            return None
        mod, attr = target.split(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:  # a broken install: say so, not "No such command"
            raise click.ClickException(f"the command '{name}' failed to load from {mod}: "
                                       f"{type(e).__name__}: {e} (reinstall maskkit)") from e

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = self._load_builtin(cmd_name)
        if cmd is not None:
            return cmd
        self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _tolerant_output()
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        from maskkit.errors import MaskkitError

        try:
            return super().invoke(ctx)
        except MaskkitError as e:
            if os.environ.get("MASKKIT_TRACEBACK"):
                raise
            click.secho(f"Error: {e}", fg="red", err=True)
            sys.exit(2)
        except (OSError, MemoryError, RuntimeError) as e:
            # What the commands do not check beforehand: a file system that refuses a write
            # (a full disk, a read-only folder) and a request larger than the memory. One line,
            # naming the file or what to ask for instead; other errors keep their traceback.
            message = _system_error(e)
            if message is None or os.environ.get("MASKKIT_TRACEBACK"):
                raise
            click.secho(f"Error: {message}", fg="red", err=True)
            sys.exit(1)


def _tolerant_output() -> None:
    """Print what the terminal's encoding cannot show as '?' instead of failing: output piped or
    redirected on Windows is cp1252, where a song named 'live→1.wav' or a check mark raised
    UnicodeEncodeError (after the work was done)."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="replace")
            except (ValueError, OSError):  # a stream that cannot be reconfigured: leave it
                pass


def _system_error(e: BaseException) -> str | None:
    """A one-line message for an out-of-memory error or an OSError about a file, else None."""
    from maskkit.errors import first_line, is_out_of_memory

    if is_out_of_memory(e):
        return (f"out of memory ({first_line(e)}): ask for less at a time (a smaller --batch-size, fewer "
                f"or shorter songs, a smaller size)")
    if isinstance(e, OSError) and e.filename:
        # (a rename names its source first: the destination is the file the user asked for)
        name = f"{e.filename2} (from {e.filename})" if getattr(e, "filename2", None) else e.filename
        return f"{name}: {e.strerror or first_line(e)}"
    return None


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # type: ignore[no-untyped-def]
    """Warnings on the command line are one line: 'maskkit: ...', no source excerpt."""
    text = str(message)
    return f"{text}\n" if text.startswith("maskkit:") else f"warning: {text}\n"


warnings.formatwarning = _one_line_warning


def _no_plugins(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        os.environ["MASKKIT_NO_PLUGINS"] = "1"


def _only_plugins(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        os.environ["MASKKIT_LOAD_PLUGINS"] = value


@click.group(cls=MaskkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="maskkit")
@click.option("--no-plugins", is_flag=True, is_eager=True, expose_value=False, callback=_no_plugins,
              help="Load only the plugins shipped with maskkit (same as MASKKIT_NO_PLUGINS=1).")
@click.option("--plugins", "only", metavar="NAMES", is_eager=True, expose_value=False,
              callback=_only_plugins,
              help="Load only these plugins, comma-separated (same as MASKKIT_LOAD_PLUGINS).")
def cli() -> None:
    """maskkit: complementary masking of music, with pluggable strategies.

    \b
    Quick start:
      maskkit strategies                     list the mask strategies
      maskkit train --strategy creative-agent   train on built-in synthetic music
      maskkit bench --strategies all         compare every strategy
    """


def main() -> None:  # pragma: no cover
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
