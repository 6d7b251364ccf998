"""Exceptions raised by maskkit. Each message names the file, option or plugin at fault."""

from __future__ import annotations

import os
import sys
import warnings

# Frames in these folders are maskkit's own or torch's (its no_grad / inference_mode decorators):
# a warning is attributed to the first frame outside them, the caller's line.
_OWN_DIRS = (os.path.dirname(os.path.abspath(__file__)) + os.sep,)


def _torch_dir() -> str | None:
    torch = sys.modules.get("torch")
    file = getattr(torch, "__file__", None)
    return os.path.dirname(os.path.abspath(file)) + os.sep if file else None


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the caller's code: the first frame outside maskkit (and
    torch's decorators), however deep inside maskkit the warning starts. So a notebook's
    ``warnings.filterwarnings(..., module=...)`` and the ``file:line`` printed with the
    warning point at the user's call, not at a maskkit internal."""
    skip = _OWN_DIRS + tuple(d for d in (_torch_dir(),) if d)
    frame = sys._getframe(1)  # stacklevel 2: warn()'s caller
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skip):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level if frame is not None else 2)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, without its closing period (for one-line errors
    that quote a library's long one); the exception's type when it has no message."""
    text = str(e).strip()
    return text.splitlines()[0].rstrip(".") if text else type(e).__name__


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` says the memory ran out (Python's, the CPU allocator's or a GPU's)."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


class MaskkitError(Exception):
    """Base class of maskkit's own errors (the CLI prints them without a traceback)."""


class PluginError(MaskkitError):
    """A plugin failed to load, registered something invalid or clashed with another, or its
    strategy raised while being checked."""


class UnknownNameError(MaskkitError, KeyError):
    """A strategy or codec name that no loaded plugin registers."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputError(MaskkitError, ValueError):
    """Tensors given to a strategy or model that it cannot take: the wrong shape, integer
    values, or the two songs on different devices."""


class MaskValidationError(MaskkitError, ValueError):
    """A strategy returned masks of the wrong shape, dtype or range, or non-finite values."""


class ConfigError(MaskkitError, ValueError):
    """An unknown option or a value of the wrong type."""


class AudioError(MaskkitError, ValueError):
    """An audio file that cannot be read or used; the message names the file."""


class CheckpointError(MaskkitError, ValueError):
    """A checkpoint that cannot be loaded or does not fit; the message names the file."""


class RendezvousError(MaskkitError):
    """The processes of a distributed run could not meet (a port taken, rank 0 unreachable, too
    few processes started); the message names the address, the ranks and what to check."""
