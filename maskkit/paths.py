"""Checks that an output file or folder can be written, made before the work that fills it.

A command that computes for minutes and then cannot write its result has lost that work:
:func:`check_output_file` and :func:`check_output_dir` probe the place first (creating and
then removing the folders that do not exist yet) and raise a :class:`ConfigError` naming the
option and the path.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

__all__ = ["check_output_dir", "check_output_file"]


def _probe_dir(folder: Path, what: str) -> None:
    """Write and delete a probe file in ``folder``; folders created for it are removed again."""
    created: list[Path] = []
    try:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for p in reversed(missing):
            p.mkdir()
            created.append(p)
        if not folder.is_dir():
            raise NotADirectoryError(20, "not a directory", str(folder))
        probe = folder / f".maskkit-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        where = e.filename if e.filename else folder
        raise ConfigError(f"{what}: cannot write there ({where}: {e.strerror or e})") from None
    finally:
        for p in reversed(created):
            try:
                p.rmdir()
            except OSError:
                pass


def _name_max(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):
        return 255


def check_output_file(path: str | os.PathLike[str], option: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a :class:`Path` once it is known that a file can be written there: not a
    folder, a name the file system takes, one of ``suffixes`` (when given, lower case with the
    dot) and a folder in which a file can be created. ``option`` names it in the error."""
    p = Path(path).expanduser()
    what = f"{option} {p}"
    limit = _name_max(p.parent)
    if len(p.name.encode()) > limit:
        raise ConfigError(f"{option}: the file name is {len(p.name.encode())} bytes long, more than the "
                          f"{limit} the file system takes ({p.name[:40]}...)")
    if suffixes and p.suffix.lower() not in suffixes:
        raise ConfigError(f"{what}: the file is written as {suffixes[0][1:].upper()}; give a name ending in "
                          f"{' or '.join(suffixes)}")
    _probe_dir(p.parent, what)
    if p.is_dir():
        raise ConfigError(f"{what}: is a folder; give a file name")
    return p


def check_output_dir(path: str | os.PathLike[str], option: str) -> Path:
    """``path`` as a :class:`Path` once it is known that it is (or can be made) a folder that
    files can be written in. ``option`` names it in the error."""
    p = Path(path).expanduser()
    what = f"{option} {p}"
    limit = _name_max(p)
    for part in p.parts:
        if len(part.encode()) > limit:
            raise ConfigError(f"{option}: the name {part[:40]}... is longer than the {limit} bytes the file "
                              f"system takes")
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what}: is a file, not a folder")
    _probe_dir(p, what)
    return p
