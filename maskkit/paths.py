"""Checks that an output file or folder can be written, made before the work that fills it.

A command that computes for minutes and then cannot write its result has lost that work:
:func:`check_output_file` and :func:`check_output_dir` look at the place first and raise a
:class:`ConfigError` naming the option and the path. They create nothing: the nearest folder
that exists on the way must be a folder in which a file can be created (a uniquely named probe
file, removed at once, so that several processes may check the same place at the same time),
every name on the way must fit the file system, and nothing on the way may be a file.
What they cannot see (a disk that fills during the work) is reported when the write fails.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ConfigError

__all__ = ["check_output_dir", "check_output_file"]


def _existing_ancestor(p: Path) -> Path:
    """The nearest of ``p`` and its parents that exists (the current folder at worst)."""
    for q in (p, *p.parents):
        if os.path.lexists(q):
            return q
    return Path(".")


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):
        return 255


def _check_place(target: Path, what: str, option: str) -> Path:
    """Names not too long, no file where a folder is needed, and a file can be created in the
    nearest existing folder on the way to ``target``, the path of a folder or, when it is not
    one already, of the file to write. Returns that folder."""
    base = _existing_ancestor(target)
    if base == target and not target.is_dir():  # a file written over: its folder must take files
        base = _existing_ancestor(target.parent)
    limit = _name_max(base if base.is_dir() else base.parent)
    for part in target.parts:
        size = len(os.fsencode(part))
        if size > limit:
            raise ConfigError(f"{option}: the name {part[:40]}... is {size} bytes long, more than the "
                              f"{limit} the file system takes")
    if not base.is_dir():
        raise ConfigError(f"{what}: cannot write there ({base} is a file, not a folder)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".maskkit-write-test-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{what}: cannot write there ({base}: {e.strerror or e})") from None
    return base


def check_output_file(path: str | os.PathLike[str], option: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a :class:`Path` once it is known that a file can be written there: not a
    folder, names the file system takes, one of ``suffixes`` (when given, lower case with the
    dot) and a folder on the way in which files can be created. ``option`` names it in errors."""
    p = Path(path).expanduser()
    what = f"{option} {p}"
    if suffixes and p.suffix.lower() not in suffixes:
        raise ConfigError(f"{what}: the file is written as {suffixes[0][1:].upper()}; give a name ending in "
                          f"{' or '.join(suffixes)}")
    _check_place(p, what, option)
    if p.is_dir():
        raise ConfigError(f"{what}: is a folder; give a file name")
    return p


def check_output_dir(path: str | os.PathLike[str], option: str) -> Path:
    """``path`` as a :class:`Path` once it is known that it is (or can be made) a folder that
    files can be written in. ``option`` names it in errors."""
    p = Path(path).expanduser()
    what = f"{option} {p}"
    if os.path.lexists(p) and not p.is_dir():
        raise ConfigError(f"{what}: is a file, not a folder")
    _check_place(p, what, option)
    return p
