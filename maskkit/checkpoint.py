"""Checkpoints: atomic writes, safe loads, and rebuilding a model from a file alone.

A checkpoint is a dict of plain Python values and tensors (loadable with
``torch.load(..., weights_only=True)``)::

    format_version   int, CHECKPOINT_FORMAT
    maskkit_version  str
    kind             "maskkit-train"
    config           dict: the TrainConfig (model, loss, data, optimizer settings)
    strategy         dict: name, options, learnable, plugin, dist, version
    codec            dict: name, options
    spec             dict: the EncodingSpec (dim, frame_rate, sample_rate, channel_freqs)
    model            state_dict of the arrangement model; the strategy's under "strategy."
    optimizer        state_dict of AdamW
    scheduler        state_dict of the LR schedule
    scaler           None (bf16 autocast needs no loss scaler; kept for format stability)
    epoch            the epoch to continue in (0-based)
    batch_in_epoch   batches of that epoch already trained (0 at an epoch boundary)
    consumed_samples pairs of that epoch already trained by all ranks together
    step             optimizer steps taken so far
    epochs_completed epochs whose validation has run
    sampler_seed     seed of the DistributedSampler (shuffling is a function of seed + epoch)
    world_size       processes of the run that wrote it
    rng              list, one dict per rank: torch / cuda / numpy / python RNG states
    metrics          the last epoch's metrics; history: every epoch's
    epoch_sums, epoch_count     the running sums of the epoch's step metrics (mid-epoch resume)
    best_val_loss, bad_epochs   early-stopping state (best_epoch_val_loss: the best at a whole
                                epoch's end, which patience compares with; older files: best_val_loss)
    styles           style label names (index = label) with --style-labels, else None
    critic, critic_optimizer, critic_last   adversarial training's critic state (when on)
    time             training seconds so far
    reason           why it was written: "epoch", "interrupted", "final", ...
    interrupted      True when written on SIGTERM/SIGINT

Writes go to a temporary file in the same folder, are fsynced, then ``os.replace``d over
the target, so a crash mid-write never leaves a partial file under a checkpoint's name.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import tempfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch

from .errors import CheckpointError

if TYPE_CHECKING:
    from .strategy import EncodingSpec, MaskStrategy

CHECKPOINT_FORMAT = 1


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file (``0o666`` less the umask). ``mkstemp``'s temp
    files are ``0o600``; a file that replaces its target gets this mode instead, so colleagues
    on a shared cluster can read checkpoints and audio as they can read the metric files."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` atomically: ``write(f)`` into a temp file in the same folder, fsync,
    ``os.replace``, fsync of the folder. A crash leaves the old file or the new one, never a
    partial one (the temp file is removed on errors). The file gets :func:`new_file_mode`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, new_file_mode())
        else:  # Windows before Python 3.13 (where modes are only the read-only bit anyway)
            os.chmod(tmp, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
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


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` through a temp file + fsync + ``os.replace``."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
                    require: tuple[str, ...] = (), mmap: bool = False) -> dict[str, Any]:
    """Load a maskkit checkpoint safely (``weights_only=True``: no code runs). ``mmap``: map the
    tensors instead of reading them (to look at a checkpoint's fields without its weights).

    Raises :class:`CheckpointError` naming the file when it is missing, unreadable,
    refused by the safe loader, not a maskkit checkpoint, of a newer format, or lacks one of
    the ``require``d keys.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.pt") if not p.name.startswith("."))
        if not found:
            raise CheckpointError(f"{path} is a folder holding no checkpoint (*.pt)")
        pick = next((n for n in ("best.pt", "last.pt") if n in found), found[0])
        raise CheckpointError(f"{path} is a folder: pass one of its checkpoints ({', '.join(found)}), "
                              f"e.g. {path / pick}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):  # it names a function or class to run: never loaded
            raise CheckpointError(f"refusing to load {path}: it would run code when loaded (maskkit loads "
                                  f"checkpoints with torch.load(weights_only=True)); a maskkit checkpoint "
                                  f"never needs that, so the file is not one, or was tampered with") from None
        raise CheckpointError(_damaged(path, e)) from None
    except Exception as e:
        raise CheckpointError(_damaged(path, e)) from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a maskkit checkpoint (no 'format_version'/'model' keys)")
    if int(ckpt["format_version"]) > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format_version']}, newer than this maskkit's "
            f"{CHECKPOINT_FORMAT}: upgrade maskkit (it was written by maskkit "
            f"{ckpt.get('maskkit_version', '?')})")
    require_keys(ckpt, require, str(path))
    return ckpt


#: The first bytes of files people give for a checkpoint by mistake.
_KNOWN_HEADS = ((b"RIFF", "a WAV file"), (b"fLaC", "a FLAC file"), (b"OggS", "an OGG file"),
                (b"ID3", "an MP3 file"), (b"\x89PNG", "a PNG picture"), (b"{", "JSON text"))


def _damaged(path: Path, e: BaseException) -> str:
    """The message for a file that torch cannot read: truncated, damaged or not a checkpoint.
    Checkpoints are zip archives: a file that does not start like one is named for what it is
    (torch's own message for it, "pop from empty list" or a byte value, says nothing)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        head = b"PK"
    if not head:
        return f"cannot load checkpoint {path}: the file is empty (0 bytes; a write that never finished?)"
    if not head.startswith(b"PK"):
        what = next((name for magic, name in _KNOWN_HEADS if head.startswith(magic)), None)
        text = all(32 <= c < 127 or c in (9, 10, 13) for c in head)
        what = what or ("text" if text else "not a zip archive")
        return (f"cannot load checkpoint {path}: not a checkpoint ({what}); give a .pt file written by "
                f"`maskkit train`")
    first = str(e).split(". ")[0].splitlines()[0] if str(e) else type(e).__name__
    return f"cannot load checkpoint {path}: the file is damaged, truncated or not a checkpoint ({first})"


def require_keys(ckpt: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    """A :class:`CheckpointError` naming ``where`` (the file) when ``ckpt`` lacks one of ``keys``."""
    missing = [k for k in keys if k not in ckpt]
    if missing:
        raise CheckpointError(f"{where} lacks the entr{'y' if len(missing) == 1 else 'ies'} "
                              f"{', '.join(repr(k) for k in missing)}: it was not written by "
                              f"`maskkit train`, or is damaged")


def spec_from_dict(d: dict[str, Any]) -> EncodingSpec:
    """The :class:`maskkit.EncodingSpec` a checkpoint stores as a dict."""
    from .strategy import EncodingSpec

    d = dict(d)
    if d.get("channel_freqs") is not None:
        d["channel_freqs"] = tuple(float(f) for f in d["channel_freqs"])
    return EncodingSpec(**d)


def build_checkpoint_strategy(ckpt: dict[str, Any], where: str, spec: EncodingSpec | None = None
                              ) -> MaskStrategy:
    """A fresh instance of the strategy a checkpoint names (weights not loaded), on ``spec``
    (default: the checkpoint's). A strategy whose plugin is not installed, or whose options
    no longer load, is a :class:`CheckpointError` naming ``where``, the plugin and its
    distribution."""
    from .errors import MaskkitError
    from .plugins import build_strategy

    require_keys(ckpt, ("strategy",) if spec is not None else ("strategy", "spec"), where)
    info = ckpt["strategy"]
    try:
        return build_strategy(info["name"], info.get("options") or {},
                              spec=spec if spec is not None else spec_from_dict(ckpt["spec"]))
    except MaskkitError as e:
        raise CheckpointError(f"{where} needs strategy '{info['name']}'{install_hint(info)}: {e}") from None


def install_hint(info: dict[str, Any]) -> str:
    """`` (plugin 'x' of the distribution d 1.0: pip install d)`` for a checkpoint's record of where its
    strategy or codec came from; empty when it does not say."""
    plugin, dist, version = info.get("plugin"), info.get("dist"), info.get("version")
    if not plugin or not dist or dist == "maskkit":  # (a built-in one is missing when left out: the
        return ""                                    # lookup's own message says so)
    if dist.startswith("("):  # registered at run time, e.g. "(runtime)": no package to install
        return f" (plugin '{plugin}', registered at run time with maskkit.register_plugin)"
    if dist == "?":  # an entry point without a distribution
        return f" (plugin '{plugin}')"
    where = f" (plugin '{plugin}' of the distribution {dist} {version or ''}".rstrip()
    return f"{where}: pip install {dist})"


def strategy_from_checkpoint(ckpt_or_path: dict[str, Any] | str | os.PathLike[str],
                             map_location: str | torch.device = "cpu", *, where: str | None = None
                             ) -> MaskStrategy:
    """Rebuild the (trained) mask strategy stored in a checkpoint, weights loaded, in eval mode.
    ``where``: the file a checkpoint given as a dict came from, for the error messages."""
    if isinstance(ckpt_or_path, dict):
        ckpt, where = ckpt_or_path, where or "the checkpoint"
    else:
        ckpt, where = load_checkpoint(ckpt_or_path, map_location), str(ckpt_or_path)
    strategy = build_checkpoint_strategy(ckpt, where)
    prefix = "strategy."
    state = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    if state or len(list(strategy.parameters())) > 0:
        try:
            strategy.load_state_dict(state)
        except RuntimeError as e:
            name = ckpt["strategy"]["name"]
            raise CheckpointError(f"{where}: the '{name}' weights do not fit: {e}") from None
    return strategy.eval()


def trained_on_hard_masks(ckpt: Mapping[str, Any]) -> bool:
    """Whether the run of ``ckpt`` trained on hard masks (``maskkit train --hard-masks``): its
    users (arrange, masks, bench, agent inspect) then take the strategy's hard masks too."""
    model_cfg = (ckpt.get("config") or {}).get("model") or {}
    return bool(model_cfg.get("hard_masks", False))


# --------------------------------------------------------------------------------------------
# Run folders: which checkpoints exist, which one to resume, which to delete
# --------------------------------------------------------------------------------------------
_EPOCH_RE = re.compile(r"^epoch_(\d+)\.pt$")


def epoch_checkpoint_name(epoch: int) -> str:
    """``epoch_0007.pt`` for the checkpoint written after epoch 7 (1-based)."""
    return f"epoch_{epoch:04d}.pt"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The complete checkpoints of a run folder (``last.pt``, ``best.pt``, ``epoch_NNNN.pt``),
    newest first. Temporary files of an unfinished write (``.NAME.XXXX.tmp``) never match."""
    d = Path(run_dir)
    if not d.is_dir():
        return []
    files = [p for p in d.iterdir()
             if p.is_file() and (p.name in ("last.pt", "best.pt") or _EPOCH_RE.match(p.name))]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name != "best.pt"), reverse=True)


def find_resume_checkpoint(run_dir: str | os.PathLike[str], *, strict: bool = True) -> Path | None:
    """The checkpoint ``--resume auto`` continues from: of ``last.pt`` and the ``epoch_NNNN.pt``
    files, the one that loads and has taken the most optimizer steps (the newest on a tie).
    ``best.pt`` is never chosen (it is older than, or the same as, ``last.pt``). A file that
    fails to load (truncated by a crash outside :func:`atomic_save`) is skipped with a warning.
    ``None`` when there is nothing to resume. When there are such files but none of them loads
    (a newer maskkit wrote them, say), :class:`CheckpointError` lists them: starting a new run
    there would write over them; with ``strict=False`` (``--overwrite``: the new run deletes
    them) the answer is then ``None``."""
    best: tuple[int, Path] | None = None
    failed: list[tuple[str, CheckpointError]] = []
    for p, step, error in _scan_checkpoints(run_dir):
        if error is not None:
            failed.append((p.name, error))
        elif best is None or step > best[0]:
            best = (step, p)
    if best is None and failed:
        if not strict:
            return None
        raise CheckpointError(f"--resume auto: {run_dir} holds checkpoints, but none of them loads, so the "
                              f"run cannot continue (nothing was written):\n  "
                              + "\n  ".join(f"{name}: {e}" for name, e in failed)
                              + "\nFix or move them, start a new run there with --overwrite (deletes "
                              "them), or use another --checkpoint-dir.")
    if failed:
        import warnings

        for name, e in failed:
            warnings.warn(f"--resume auto: skipping {name}, which does not load ({e})", stacklevel=2)
    return best[1] if best else None


def _scan_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[Path, int, CheckpointError | None]]:
    """``(path, step, error)`` of every checkpoint in ``run_dir`` but ``best.pt`` (which is never
    resumed from): ``error`` is the :class:`CheckpointError` of a file that does not load."""
    out: list[tuple[Path, int, CheckpointError | None]] = []
    for p in list_checkpoints(run_dir):
        if p.name == "best.pt":
            continue
        try:
            ck = load_checkpoint(p, mmap=True)  # only its step is read
        except CheckpointError as e:
            out.append((p, 0, e))
            continue
        out.append((p, int(ck.get("step", 0)), None))
    return out


def unloadable_checkpoints(run_dir: str | os.PathLike[str]) -> list[str]:
    """The names of the checkpoint files in ``run_dir`` that do not load (damaged: cut short by
    a crash outside :func:`atomic_save`, say), which ``--resume auto`` skips."""
    return [p.name for p, _, error in _scan_checkpoints(run_dir) if error is not None]


def prune_epoch_checkpoints(run_dir: str | os.PathLike[str], keep: int,
                            unloadable: Collection[str] = ()) -> list[Path]:
    """Delete all but the ``keep`` newest ``epoch_NNNN.pt`` files (``keep`` >= 1); returns the
    deleted paths. ``last.pt`` and ``best.pt`` are never deleted. Files named in ``unloadable``
    (damaged ones that ``--resume auto`` skipped) are neither deleted nor counted among the
    ``keep``: they must not take the place of a good one."""
    d = Path(run_dir)
    epochs = sorted((p for p in d.glob("epoch_*.pt") if _EPOCH_RE.match(p.name) and p.name not in unloadable),
                    key=lambda p: int(_EPOCH_RE.match(p.name).group(1)))  # type: ignore[union-attr]
    doomed = epochs[:-keep] if keep >= 1 else []
    for p in doomed:
        try:
            p.unlink()
        except OSError:
            pass
    return doomed


# --------------------------------------------------------------------------------------------
# RNG states (every rank's, so that a resumed run draws the same numbers)
# --------------------------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """This process's torch (CPU and every CUDA device), numpy and ``random`` states, as
    tensors and plain values that ``torch.load(weights_only=True)`` accepts."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": _py_state_to_plain(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    try:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = {"kind": str(kind), "keys": torch.from_numpy(keys.astype("int64")),
                          "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state` (missing parts are left as they are)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([t.cpu() for t in cuda])
    if "python" in state:
        random.setstate(_py_state_from_plain(state["python"]))
    if "numpy" in state:
        import numpy as np

        n = state["numpy"]
        keys = n["keys"].numpy().astype("uint32")
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))


def _py_state_to_plain(st: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = st
    return [int(version), torch.tensor(internal, dtype=torch.int64), gauss]


def _py_state_from_plain(st: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = st
    return (int(version), tuple(int(v) for v in internal.tolist()), gauss)
