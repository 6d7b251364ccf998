"""Checkpoints: atomic writes, safe loads, and rebuilding a model from a file alone.

A checkpoint is a dict of plain Python values and tensors (loadable with
``torch.load(..., weights_only=True)``)::

    format_version   int, CHECKPOINT_FORMAT
    maskkit_version  str
    kind             "maskkit-train"
    config           dict: the TrainConfig (model, loss, data, optimizer settings)
    strategy         dict: name, options, plugin, dist, version
    codec            dict: name, options
    spec             dict: the EncodingSpec (dim, frame_rate, sample_rate, channel_freqs)
    model            state_dict of the arrangement model; the strategy's under "strategy."
    optimizer, scheduler, scaler, epoch, step, batch_in_epoch, rng, world_size, metrics, ...

Writes go to a temporary file in the same folder, are fsynced, then ``os.replace``d over
the target, so a crash mid-write never leaves a partial file under a checkpoint's name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

CHECKPOINT_FORMAT = 1


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` through a temp file + fsync + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        try:  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a maskkit checkpoint safely (``weights_only=True``: no code runs).

    Raises :class:`CheckpointError` naming the file when it is missing, unreadable,
    refused by the safe loader, not a maskkit checkpoint, or of a newer format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot load checkpoint {path}: {msg} (maskkit loads checkpoints with "
                              f"weights_only=True and refuses files that would run code)") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a maskkit checkpoint (no 'format_version'/'model' keys)")
    if int(ckpt["format_version"]) > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format_version']}, newer than this maskkit's "
            f"{CHECKPOINT_FORMAT}: upgrade maskkit (it was written by maskkit "
            f"{ckpt.get('maskkit_version', '?')})")
    return ckpt


def spec_from_dict(d: dict[str, Any]) -> Any:
    from .strategy import EncodingSpec

    d = dict(d)
    if d.get("channel_freqs") is not None:
        d["channel_freqs"] = tuple(float(f) for f in d["channel_freqs"])
    return EncodingSpec(**d)


def strategy_from_checkpoint(ckpt_or_path: dict[str, Any] | str | os.PathLike[str],
                             map_location: str | torch.device = "cpu") -> Any:
    """Rebuild the (trained) mask strategy stored in a checkpoint, weights loaded, in eval mode."""
    from .plugins import build_strategy

    ckpt = ckpt_or_path if isinstance(ckpt_or_path, dict) else load_checkpoint(ckpt_or_path, map_location)
    info = ckpt["strategy"]
    spec = spec_from_dict(ckpt["spec"])
    strategy = build_strategy(info["name"], info.get("options") or {}, spec=spec)
    prefix = "strategy."
    state = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    if state or len(list(strategy.parameters())) > 0:
        try:
            strategy.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint's '{info['name']}' weights do not fit: {e}") from None
    return strategy.eval()
