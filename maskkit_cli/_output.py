"""Terminal output shared by the commands: a rich console, and escaping of text that is data.

File names, paths, plugin descriptions and error messages are data: ``Song [Live].wav`` must not
be read as rich markup (which would drop ``[Live]``). rich is imported when a command prints,
not when ``maskkit --help`` runs.
"""

from __future__ import annotations

from typing import Any


def console(stderr: bool = False) -> Any:
    """A rich Console (on stderr when asked)."""
    from rich.console import Console

    return Console(stderr=stderr)


def escape(text: object) -> str:
    """``text`` as literal rich text: its ``[...]`` are shown, not read as styles."""
    from rich.markup import escape as _escape

    return _escape(str(text))
