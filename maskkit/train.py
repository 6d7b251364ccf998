"""The shared trainer: any strategy, any codec, one CPU to a SLURM cluster.

``train(TrainConfig(...))`` trains the arrangement model (:class:`maskkit.model.SimpleTransformer`
around the chosen mask strategy) with the combined loss (:class:`maskkit.loss.CombinedLoss`) and
returns a :class:`TrainResult` (the settings and presets are :mod:`maskkit.train_config`'s,
reachable here too). How many processes run is decided by
:func:`maskkit.distributed.resolve_launch`:

- under ``torchrun`` or SLURM ``srun`` every process calls ``train`` and joins the launcher's
  world (nothing is spawned);
- otherwise ``world_size`` > 1 spawns that many local processes (gloo on CPU, nccl on GPU);
- otherwise training runs in this process, with no process group.

Per step: encode both songs with the codec (float32, no gradient), run the model under bf16
autocast on GPU, decode, compute the combined loss in float32, back-propagate (DDP averages
the gradients), clip the global gradient norm to ``optim.grad_clip`` (1.0), and take an AdamW
step with a cosine-with-warmup learning rate. One all-reduce per step carries the step's
metrics, the "non-finite" flag (a step with a NaN/Inf loss or gradient is skipped by every
rank; ``max_bad_steps`` in a row abort the run) and the "stop" flag (SIGTERM / SIGINT set it;
every rank stops after the same step, rank 0 saves, all exit).

Every epoch: validation on the whole validation set (sharded over the ranks, all-reduced),
early stopping on the validation loss (``patience``), and on rank 0 the metric rows and the
checkpoints (``last.pt`` every epoch, ``best.pt`` on improvement, ``epoch_NNNN.pt`` every
``save_every`` epochs, the newest ``keep_checkpoints`` of those kept), written atomically.
``resume`` continues from a checkpoint exactly: same weights, optimizer, schedule, position
inside the epoch and every rank's RNG states, so a resumed run ends where an uninterrupted one
would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import random
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import adversarial
from . import distributed as dist_utils
from ._version import __version__
from .checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_save,
    atomic_write,
    build_checkpoint_strategy,
    capture_rng_state,
    epoch_checkpoint_name,
    find_resume_checkpoint,
    install_hint,
    list_checkpoints,
    load_checkpoint,
    prune_epoch_checkpoints,
    restore_rng_state,
    spec_from_dict,
    trained_on_hard_masks,
    unloadable_checkpoints,
)
from .codec import Codec
from .distributed import LaunchInfo, StopFlag
from .errors import AudioError, CheckpointError, ConfigError, MaskkitError, first_line, is_out_of_memory
from .logging_utils import plural as _plural
from .loss import COMPONENTS, CombinedLoss, LossConfig
from .model import SimpleTransformer
from .strategy import EncodingSpec, MaskStrategy, resolve_style
from .train_config import (  # noqa: F401  (the configuration's public names stay reachable here)
    ARCHITECTURE_KEYS,
    PRESETS,
    DataConfig,
    OptimConfig,
    TrainConfig,
    _deep_merge,
    _plain,
    preset_dict,
)

#: Per-step metrics of the adversarial phase: the generator's adversarial loss, the critic's
#: loss and its mean real-probability on real songs (both from its latest update), and its
#: mean real-probability on the model's output.
ADVERSARIAL_METRICS = ("adv_gen_loss", "adv_disc_loss", "adv_d_real", "adv_d_fake")

#: Validation pairs drawn in each snapshot (``snapshot_every``).
SNAPSHOT_PAIRS = 4

#: Exit status of ``maskkit train`` after a clean stop on a signal: 128 + the signal number,
#: as a shell reports it (SIGINT 130, SIGTERM 143). The checkpoint is saved; ``--resume auto``
#: continues.
EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingError(MaskkitError):
    """Training cannot go on (e.g. the loss stays non-finite); the message says why."""


class PeerFailedError(TrainingError):
    """Another rank failed (during set-up, or died / hung during training); this rank stops with it
    (the other rank's error or exit status says why)."""


@dataclass
class TrainResult:
    """What :func:`train` returns (rank 0's view; other ranks get the same figures)."""

    run_dir: str
    last_checkpoint: str | None
    best_checkpoint: str | None
    best_val_loss: float | None
    final_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    epochs_completed: int
    steps: int
    stopped: str  # "completed" | "max_steps" | "early_stopping" | "interrupted"
    signal: str | None = None
    world_size: int = 1
    elapsed_s: float = 0.0
    train_pairs_per_s: float | None = None
    #: Sum of every parameter on each rank at the end (float64): equal on all ranks when DDP
    #: kept them in sync.
    rank_param_checksums: list[float] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return self.stopped == "interrupted"

    @property
    def exit_code(self) -> int:
        """0, or 128 + the signal number after a stop on SIGINT (130) / SIGTERM (143)."""
        if self.stopped != "interrupted" or self.signal is None:
            return 0
        return EXIT_INTERRUPTED.get(getattr(signal, self.signal, signal.SIGTERM), 143)


# --------------------------------------------------------------------------------------------
# Learning-rate schedule
# --------------------------------------------------------------------------------------------
class WarmupCosine:
    """Multiplier of the peak LR: linear warm-up, then cosine down to ``min_ratio`` (or flat).

    A class (not a lambda) so that ``LambdaLR`` can save and the spawn start method can pickle it.
    """

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float, kind: str = "cosine") -> None:
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, int(warmup_steps))
        self.min_ratio = float(min_ratio)
        self.kind = kind

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.kind == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------------------------
# Samplers: DistributedSampler's order, resumable inside an epoch
# --------------------------------------------------------------------------------------------
class _ResumableSampler(torch.utils.data.Sampler[int]):
    """A seeded ``DistributedSampler`` (shuffle, ``drop_last``) whose epoch can start at a batch.

    Rank ``r`` of ``W`` gets ``perm[r::W]``: after ``k`` batches of size ``B`` on every rank the
    job has consumed exactly ``perm[: k * B * W]``, which lets a run resume at the same sample
    even with another world size when the global batch is kept.
    """

    def __init__(self, dataset: Any, world_size: int, rank: int, seed: int, batch_size: int) -> None:
        self.inner = torch.utils.data.DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.start_batch = start_batch

    def __iter__(self) -> Iterator[int]:
        idx = list(iter(self.inner))
        return iter(idx[self.start_batch * self.batch_size:])

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.start_batch * self.batch_size)

    @property
    def batches_per_epoch(self) -> int:
        return len(self.inner) // self.batch_size


class _ShardSampler(torch.utils.data.Sampler[int]):
    """Validation: rank ``r`` takes items ``r, r + W, ...`` in order, no padding, no duplicates."""

    def __init__(self, n: int, world_size: int, rank: int) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------
def _absolute_data_path(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its data folder as an absolute path, so that the run's config.json and
    checkpoints name it from anywhere (``agent inspect``, ``bench`` of the checkpoint, a resume
    from another directory). A path that does not exist is left as typed for the data layer's
    error to name."""
    src = cfg.data.source
    if src is None or src == "synthetic" or Path(src).is_absolute():
        return cfg
    path = Path(src).expanduser()
    if not path.exists():
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=str(path.resolve())))


def train(config: TrainConfig | None = None, **overrides: Any) -> TrainResult:
    """Train as ``config`` says (fields may also be given as keyword arguments).

    Runs in this process (one process, or one rank under torchrun / srun), or spawns
    ``world_size`` local processes and returns rank 0's result. Raises
    :class:`ConfigError` for bad settings (before anything heavy runs),
    :class:`TrainingError` when the loss stays non-finite; a stop on SIGTERM / SIGINT
    returns normally with ``result.stopped == "interrupted"``.
    """
    dist_utils.check_not_bootstrapping("maskkit.train()")
    if config is None:
        cfg = TrainConfig.from_dict(_plain(overrides))
    elif overrides:  # nested sections given as dicts merge into the config's
        cfg = TrainConfig.from_dict(_deep_merge(config.to_dict(), _plain(overrides)))
    else:
        cfg = config
    cfg.validate()
    cfg.check_plugins()
    cfg = _absolute_data_path(cfg)
    info = dist_utils.resolve_launch(world_size=cfg.world_size)
    if info.launcher != "spawn":
        return _run(cfg, info)

    runtime = _portable_runtime_plugins(cfg, info.world_size)
    made_run_dir = _check_writable(cfg.run_dir) if info.is_main else False
    port = dist_utils.free_port()
    import pickle
    import tempfile

    import torch.multiprocessing as mp

    # Errors come back through a pipe (small messages); the result through a file: the parent
    # reads the pipe only once every process has ended, and a process cannot end while its
    # message waits in a full pipe (64 KiB; a result's history passes that at about 70 epochs).
    queue = mp.get_context("spawn").SimpleQueue()
    failure: BaseException | None = None
    result_dir = tempfile.mkdtemp(prefix="maskkit-result-")  # private (0700)
    result_file = os.path.join(result_dir, "result.pkl")
    try:
        try:
            dist_utils.spawn(_spawn_worker, info.world_size,
                             args=(cfg, info.world_size, port, queue, result_file, runtime),
                             block_stop_signals=True)
        except Exception as e:  # a rank failed; the others were terminated
            failure = e
            if made_run_dir:
                _remove_if_empty(cfg.run_dir)
        items = []
        while not queue.empty():
            items.append(queue.get())
        if os.path.exists(result_file):
            with open(result_file, "rb") as f:
                items.append(("result", 0, pickle.load(f)))
    finally:
        shutil.rmtree(result_dir, ignore_errors=True)
    errors = sorted((obj for kind, _, obj in items if kind == "error"),
                    key=lambda e: isinstance(e, PeerFailedError))
    if errors and not isinstance(errors[0], PeerFailedError):
        raise errors[0]  # maskkit's own error (clear message, no traceback), from the first rank that hit it
    if errors and not isinstance(failure, mp.ProcessExitedException):
        raise errors[0]  # only survivors' "another rank failed": the dead rank's exit status says more
    if failure is not None:
        if isinstance(failure, mp.ProcessExitedException):  # killed (OOM, SIGKILL): no traceback to show
            raise TrainingError(f"{failure}; the other training processes were stopped. Resume with "
                                f"--resume auto from {cfg.run_dir}") from failure
        raise failure
    results = [obj for kind, _, obj in items if kind == "result"]
    if not results:
        raise TrainingError("the spawned training processes ended without a result")
    return results[0]


_SPAWN_HINT = ("define it in a module the new processes can import (a .py file; not a notebook cell), "
               "or install it as a package")


def _unsendable(obj: Any) -> str | None:
    """Why the processes ``--world-size`` starts could not rebuild ``obj`` by import (None: they
    can): its class or module lives in an interactive ``__main__`` (a notebook, ``python -c``),
    which a new process does not have."""
    import types

    module = obj.__name__ if isinstance(obj, types.ModuleType) else type(obj).__module__
    if isinstance(obj, type):
        module = obj.__module__
    main = sys.modules.get("__main__")
    if module == "__main__" and not getattr(main, "__file__", None):
        return "it is defined in an interactive session (a notebook cell, python -c)"
    return None


def _portable_runtime_plugins(cfg: TrainConfig, world_size: int) -> list[tuple[str, str, Any, bool]]:
    """The plugins registered with ``register_plugin`` in this process, in a form the processes
    ``--world-size`` starts can rebuild (they start fresh, with only the installed plugins):
    ``(name, "module", module name, needed)`` or ``(name, "pickle", bytes, needed)``; ``needed``:
    it provides the run's strategy or codec. One that cannot be sent is an error when needed
    (named before anything starts) and left out otherwise."""
    import pickle
    import types

    from .plugins import get_codec_entry, get_strategy_entry, runtime_plugins

    needed = {get_strategy_entry(cfg.strategy).plugin, get_codec_entry(cfg.codec).plugin}
    out: list[tuple[str, str, Any, bool]] = []
    for name, obj in runtime_plugins():
        try:
            why = _unsendable(obj)
            if why is not None:
                raise ValueError(why)
            if isinstance(obj, types.ModuleType):
                out.append((name, "module", obj.__name__, name in needed))
            else:
                out.append((name, "pickle", pickle.dumps(obj), name in needed))
        except Exception as e:
            if name in needed:
                raise ConfigError(f"runtime plugin '{name}' (register_plugin) cannot be sent to the "
                                  f"{world_size} processes that --world-size starts: {first_line(e)}; "
                                  f"{_SPAWN_HINT}") from None
    return out


def _restore_runtime_plugins(items: list[tuple[str, str, Any, bool]]) -> None:
    """Register the parent's runtime plugins in a process started by ``train`` (spawn); one the
    run does not need and that does not rebuild is left out, as in the parent's check."""
    import importlib
    import pickle

    from .plugins import register_plugin

    for name, kind, payload, needed in items:
        try:
            obj = importlib.import_module(payload) if kind == "module" else pickle.loads(payload)
        except Exception as e:
            if not needed:
                continue
            raise ConfigError(f"runtime plugin '{name}' (register_plugin) could not be rebuilt in a process "
                              f"that --world-size started: {first_line(e)}; {_SPAWN_HINT}") from None
        register_plugin(obj, name)


def _spawn_worker(rank: int, cfg: TrainConfig, world_size: int, port: int, queue: Any,
                  result_file: str, runtime: list[tuple[str, str, Any, bool]] | None = None) -> None:
    """Entry point of each process started by ``train`` with ``world_size`` > 1 (picklable).

    Rank 0 writes its :class:`TrainResult` to ``result_file`` for the parent; a rank that fails
    with a maskkit error sends the error through ``queue`` (so the parent can show its message)
    and exits non-zero, which makes the parent terminate the other ranks."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, dist_utils.usable_cpus() // world_size))
    info = LaunchInfo("spawn", rank, rank, world_size, "127.0.0.1", port)
    # This process exits after training; it started with the stop signals blocked (spawn).
    with dist_utils.hold_stop_signals():
        try:
            _restore_runtime_plugins(runtime or [])
            result = _run(cfg, info)
        except MaskkitError as e:
            queue.put(("error", rank, e))
            raise
        if rank == 0:
            import pickle

            with open(result_file + ".part", "wb") as f:
                pickle.dump(result, f)
            os.replace(result_file + ".part", result_file)  # whole or absent


def _run(cfg: TrainConfig, info: LaunchInfo) -> TrainResult:
    device = dist_utils.resolve_device(cfg.device, info.local_rank)
    if device.type == "cuda":
        # Every training step has the same shapes (one segment length): cuDNN times its
        # convolution kernels once and keeps the fastest. Measured on an H100 for the
        # CreativeAgent at B=256: compiled bf16 training 3.97x -> 5.26x the seed design.
        torch.backends.cudnn.benchmark = True
    dist_utils.init_process_group(info, device, cfg.dist_timeout_s)
    trainer = Trainer(cfg, info, device)
    try:
        result = trainer.fit()
        # every rank done with every collective before any leaves the group: a peer that tears
        # its connections down while another still reads them can abort that one at exit
        dist_utils.barrier()
        return result
    except BaseException as e:
        if trainer.made_run_dir:
            trainer._unlock(remove=True)
            _remove_if_empty(trainer.run_dir)
        if isinstance(e, RuntimeError):
            _raise_peer_failure(e, cfg, info)
        raise
    finally:
        # DDP holds the process group and sits in reference cycles: free it before leaving the
        # group, and collect what leaving it frees, or the backend's threads can outlive it and
        # abort the process at exit ("terminate called without an active exception").
        trainer.release()
        del trainer
        gc.collect()
        dist_utils.destroy_process_group()
        gc.collect()


def _raise_peer_failure(e: RuntimeError, cfg: TrainConfig, info: LaunchInfo) -> None:
    """A collective that fails because a peer died (gloo: "Connection reset by peer", nccl: a
    timeout) surfaces as a backend RuntimeError with a long C++ trace that names no rank: say
    which rank(s) stopped answering and how to go on (other errors: return, to be re-raised)."""
    if not info.distributed or not _is_peer_failure(e):
        return
    others = [r for r in range(info.world_size) if r != info.rank]
    who = f"rank {others[0]}" if len(others) == 1 else "one of ranks " + ", ".join(map(str, others))
    first = first_line(e)
    how = (f"Resume with --resume auto from {cfg.run_dir}" if (cfg.run_dir / "last.pt").is_file()
           else "No checkpoint was written yet: start the run again")
    raise PeerFailedError(
        f"rank {info.rank} of {info.world_size} ({info.launcher}): {who} stopped responding during "
        f"training (it died or hung; see its log), so this rank stops too. Backend error: {first}. "
        f"{how}") from e


_PEER_FAILURE_MARKERS = ("connection reset", "connection closed", "connection refused", "broken pipe",
                         "timed out", "timeout", "nccl", "peer")


def _is_peer_failure(e: BaseException) -> bool:
    """True for the errors a collective raises when another rank died or hung."""
    text = str(e).lower()
    return any(m in text for m in _PEER_FAILURE_MARKERS)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker start-up: leave SIGINT / SIGTERM to the training process.

    A Ctrl-C or a SLURM preemption signals every process of the job, DataLoader workers
    included; a worker that died of it would crash the training process instead of letting it
    stop cleanly after the step and save. The training process shuts its workers down itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def _batches(loader: torch.utils.data.DataLoader) -> Iterator[Iterator[Any]]:
    """An iterator over ``loader`` whose worker processes are always stopped when the block
    ends, an error included: the workers ignore SIGTERM (:func:`_ignore_stop_signals`), so
    workers left for the interpreter's exit to terminate would block that exit forever."""
    it = iter(loader)
    done = False
    try:
        yield it
        done = True
    finally:
        # persistent workers (training, validation) stay for the next epoch; Trainer.fit stops them
        if not done or not loader.persistent_workers:
            _stop_workers(loader, it)


def _stop_workers(loader: torch.utils.data.DataLoader | None, it: Any = None) -> None:
    """Stop the worker processes of ``loader``'s iterator ``it`` (default: its persistent one) now:
    they ignore SIGTERM, so workers left for the interpreter's exit would block it."""
    it = it if it is not None else getattr(loader, "_iterator", None)
    shutdown = getattr(it, "_shutdown_workers", None)  # DataLoader's own clean stop
    if shutdown is not None:
        shutdown()
    if loader is not None and getattr(loader, "_iterator", None) is it:
        loader._iterator = None  # a later iter() starts fresh workers


def _worker_error_text(e: BaseException) -> str:
    """The message of an error raised in a DataLoader worker, without the worker's traceback
    text that DataLoader puts in front of it."""
    text = str(e)
    if "Original Traceback" not in text:
        return text
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1]
    prefix = f"{type(e).__module__}.{type(e).__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


def _step_unless(optimizer: torch.optim.Optimizer, bad: Tensor) -> None:
    """``optimizer.step()`` unless ``bad`` (a bool tensor on the device). A fused Adam/AdamW (the
    trainer's on CUDA) takes the flag into its kernel as GradScaler passes ``found_inf``: the
    update and the step count are left as they were, with no host-device sync. Otherwise the
    flag is read on the host (free on a CPU)."""
    if optimizer.defaults.get("fused") and getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.found_inf = bad.float().reshape(())  # type: ignore[attr-defined]
        optimizer.grad_scale = None  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf, optimizer.grad_scale  # type: ignore[attr-defined]
    elif not bool(bad):
        optimizer.step()


def _check_writable(run_dir: Path) -> bool:
    """Create ``run_dir`` if needed and check that files can be written there; True when it
    was created now (so that a run that fails before writing anything can take it away)."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write checkpoints to {run_dir}: {e.strerror or e} "
                          f"(choose another --checkpoint-dir)") from None
    return created


RUN_LOCK = ".lock"


def _lock_run_dir(run_dir: Path) -> Any:
    """An exclusive advisory lock of ``run_dir/.lock`` for this run (kept open until it ends;
    the OS drops it when the process dies, so a killed run never leaves it held). A second run
    writing into the same folder would interleave metrics and overwrite checkpoints: it is
    refused, naming the run that holds the folder."""
    import socket

    f = open(run_dir / RUN_LOCK, "a+")  # noqa: SIM115 (held for the whole run)
    if not _try_lock(f):
        try:
            f.seek(0)
            holder = f.read().strip() or "another process"
        except OSError:  # (Windows: the holder's locked byte cannot be read)
            holder = "another process"
        f.close()
        raise ConfigError(f"{run_dir} is in use by another training run ({holder}); wait for it, stop it, "
                          f"or choose another --checkpoint-dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    f.flush()
    return f


#: Seconds between the progress lines a long start-up writes to a log file (no spinner there).
_LOG_EVERY_S = 30.0


def _try_lock(f: Any) -> bool:
    """Take an exclusive lock of the open file ``f`` without waiting; False when another process
    holds it. ``flock`` on POSIX, ``msvcrt.locking`` of one byte far past the text on Windows
    (its locks are mandatory: the holder's line stays readable); both are dropped by the OS
    when the process dies."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        f.seek(2**30)  # (a region past the end of a file may be locked)
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _remove_if_empty(run_dir: Path) -> None:
    """Take away a run folder this run created when it failed before writing anything in it (a
    ``.lock`` that nobody holds any more, left by a process that was terminated, included; and
    the start-up check's cache, which only a run in that folder would read)."""
    from .data import SCAN_CACHE

    lock = run_dir / ".lock"
    try:
        names = {p.name for p in run_dir.iterdir()}
        if ".lock" in names and names <= {".lock", SCAN_CACHE}:
            with open(lock, "a+") as f:
                if not _try_lock(f):  # a run holds it
                    return
                (run_dir / SCAN_CACHE).unlink(missing_ok=True)
                if os.name != "nt":  # removed while held (Windows: after closing, as it must)
                    lock.unlink()
            if os.name == "nt":
                lock.unlink()
        elif names == {SCAN_CACHE}:  # (this run gave up its lock already)
            (run_dir / SCAN_CACHE).unlink()
        run_dir.rmdir()  # only succeeds on an empty folder
    except OSError:
        pass


@dataclass
class LoadedModel:
    """A trained model rebuilt from a checkpoint: ``model, codec = load_model(path)``."""

    model: SimpleTransformer
    codec: Codec
    config: TrainConfig
    path: str
    step: int
    epoch: int
    metrics: dict[str, Any]
    #: The style labels the model was trained with (``--style-labels``), or None.
    styles: list[str] | None = None

    @property
    def segment_seconds(self) -> float:
        """The length of the pairs it was trained on (the natural window for inference)."""
        return float(self.config.data.segment_seconds)

    def style_index(self, name: str) -> int:
        """The label index of style ``name``; :class:`ConfigError` listing the known ones."""
        index = resolve_style(name, self.styles, self.path)
        assert index is not None
        return index

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.codec))


def default_codec_spec() -> tuple[str, EncodingSpec] | None:
    """``(codec name, EncodingSpec)`` of the codec ``maskkit train`` encodes with unless told
    otherwise (its strategies are built on this spec), or None when that codec's plugin is not
    loaded."""
    from .plugins import build_codec

    cfg = TrainConfig()
    try:
        return cfg.codec, build_codec(cfg.codec, dict(cfg.codec_options)).spec
    except MaskkitError:
        return None


def _origin_of_codec(name: str) -> dict[str, str]:
    """``{"plugin", "dist", "version"}`` of a registered codec, for the checkpoint (so that a
    checkpoint whose codec plugin is gone can say which distribution to install)."""
    from .plugins import get_codec_entry

    try:
        entry = get_codec_entry(name)
    except MaskkitError:  # a codec instance given directly: nothing to record
        return {}
    return {"plugin": entry.plugin, "dist": entry.dist, "version": entry.version}


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu", *,
               strategy: str | MaskStrategy | None = None, strategy_options: Any = None,
               codec: Any = None) -> LoadedModel:
    """Rebuild codec and model (strategy included, weights loaded, eval mode) from a
    checkpoint alone: ``model, codec = maskkit.train.load_model("runs/x/best.pt")``.

    ``strategy`` (a name, with ``strategy_options``, or an instance) replaces the checkpoint's
    strategy: the arrangement model's weights are loaded, the stored strategy is neither built
    nor loaded (so its plugin need not be installed). ``codec`` (a name or an instance) replaces
    the checkpoint's codec; it must give the same D, and a strategy given by name is built on
    its spec (its channel frequencies). Raises :class:`CheckpointError` naming the file when
    the strategy or codec plugin is not installed (and which distribution to install) or the
    weights do not fit.
    """
    from .codec import resolve_codec
    from .plugins import build_codec, build_untrained

    if strategy is None and strategy_options:
        raise ConfigError("load_model: strategy_options is only used with a strategy given by name")

    ck = load_checkpoint(path, map_location="cpu", require=("config", "strategy"))
    try:
        cfg = TrainConfig.from_dict(ck["config"])
    except ConfigError as e:
        raise CheckpointError(f"{path}: its training config does not load: {e}") from None
    codec_info = ck.get("codec") or {"name": cfg.codec, "options": cfg.codec_options}
    trained = None  # the checkpoint's own codec, built only when needed (its plugin may be gone)
    if codec is None or not ck.get("spec"):
        try:
            trained = build_codec(codec_info["name"], codec_info.get("options") or {})
        except MaskkitError as e:
            raise CheckpointError(f"{path} needs codec '{codec_info['name']}'{install_hint(codec_info)}: "
                                  f"{e}") from None
    spec = spec_from_dict(ck["spec"]) if ck.get("spec") else trained.spec  # type: ignore[union-attr]
    named_spec = spec  # what a strategy given by name is built on
    if codec is None:
        codec = trained
    else:
        codec = resolve_codec(codec)
        if codec.spec.dim != spec.dim:
            raise ConfigError(f"--codec {getattr(codec, 'name', type(codec).__name__)}: gives D="
                              f"{codec.spec.dim} channels, but {path} was trained on D={spec.dim} (codec "
                              f"'{codec_info['name']}'); leave --codec out to use the checkpoint's")
        named_spec = codec.spec
    state = ck["model"]
    if strategy is None:
        strategy = build_checkpoint_strategy(ck, str(path), spec)
    else:
        if isinstance(strategy, str):
            strategy = build_untrained(strategy, strategy_options, spec=named_spec)
        elif strategy_options:
            raise ConfigError("load_model: strategy_options is only used with a strategy given by name")
        state = {k: v for k, v in state.items() if not k.startswith("strategy.")}
        state.update({f"strategy.{k}": v for k, v in strategy.state_dict().items()})
    model = SimpleTransformer(cfg.model, strategy, spec.dim)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the weights do not fit the model they describe: {e}") from None
    device = torch.device(map_location) if isinstance(map_location, str) else map_location
    return LoadedModel(model.to(device).eval(), codec.to(device).eval(), cfg, str(path),
                       int(ck.get("step", 0)), int(ck.get("epoch", 0)), dict(ck.get("metrics") or {}),
                       list(ck["styles"]) if ck.get("styles") else None)


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------
def display_name(strategy_name: str) -> str:
    """``"creative-agent"`` -> ``"Creative Agent"`` (for the seed's console lines)."""
    return " ".join(w.capitalize() for w in strategy_name.replace("_", "-").split("-") if w)


class Trainer:
    """One rank's training run. Use :func:`train`; this class is its implementation."""

    def __init__(self, cfg: TrainConfig, info: LaunchInfo, device: torch.device) -> None:
        self.cfg = cfg
        self.info = info
        self.rank, self.world = info.rank, info.world_size
        self.main = info.is_main
        self.device = device
        self.bf16 = cfg.bf16 if cfg.bf16 is not None else device.type == "cuda"
        self.run_dir = cfg.run_dir
        held = dist_utils.held_stop_flag()
        self.stop = held if held is not None else StopFlag()  # the process's, when it holds one
        self.made_run_dir = False  # created by this run (rank 0): taken away if it fails before writing
        self._replaced: list[Path] = []  # the previous run's checkpoints, with --overwrite
        self._lock: Any = None  # rank 0's lock of the run folder (one run writes it at a time)
        self.console: Any = None
        self.logger: Any = None

    def release(self) -> None:
        """Drop the DDP wrapper, model, optimizer and data loaders (before leaving the group), and
        the run folder's lock."""
        for name in ("fwd_model", "model", "optimizer", "scheduler", "loader", "val_loader", "codec",
                     "loss_fn", "ckpt", "critic", "fwd_critic", "disc_optimizer"):
            if hasattr(self, name):
                setattr(self, name, None)
        self._unlock()

    def _unlock(self, remove: bool = False) -> None:
        """Give up the run folder's lock (``remove``: and its file, when this run made the folder
        and takes it away again)."""
        if self._lock is not None:
            path = Path(self._lock.name)
            if remove and os.name != "nt":  # (POSIX: removed while held, so no other run takes it first)
                path.unlink(missing_ok=True)
            self._lock.close()  # the OS drops the lock
            self._lock = None
            if remove and os.name == "nt":  # (Windows: an open file cannot be removed)
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)

    # -- output ---------------------------------------------------------------------------------
    def print(self, *args: Any, **kwargs: Any) -> None:
        if self.main and not self.cfg.quiet and self.console is not None:
            self.console.print(*args, **kwargs)

    def warn(self, msg: str) -> None:
        if self.main:
            if self.console is not None:
                from rich.text import Text

                self.console.print(Text.assemble(("warning:", "yellow"), f" {msg}"), highlight=False)
            else:
                print(f"warning: {msg}", file=sys.stderr)

    # -- set-up ---------------------------------------------------------------------------------
    def _agree(self, error: BaseException | None) -> None:
        """Every rank raises if any rank failed (so no rank waits for a dead one)."""
        msg = f"{type(error).__name__}: {error}" if error is not None else None
        msgs = dist_utils.all_gather_object(msg) if dist_utils.is_distributed() else [msg]
        if error is not None:
            raise error
        bad = [(r, m) for r, m in enumerate(msgs) if m]
        if bad:
            r, m = bad[0]
            raise PeerFailedError(f"rank {r} failed during set-up: {m}")

    def setup(self) -> None:
        """Set-up in phases that use no collective, each followed by an agreement of the ranks
        (every rank raises if any failed, naming it): a rank that fails early (an unwritable run
        folder, a bad file only it reads) never leaves the others waiting in another collective
        (the checkpoint broadcast, DDP's parameter broadcast) until the timeout."""
        self.unloadable: list[str] = []  # damaged checkpoints --resume auto skipped (rank 0)
        resume_path = dist_utils.broadcast_object(self._phase(self._setup_run_dir))
        # a folder of songs: each rank checks a share of its files, and every rank gets all shares
        mine = self._phase(self._scan_share)
        parts = dist_utils.all_gather_object(mine.results_only() if mine is not None else None)
        self._phase(lambda: self._setup_local(resume_path, (mine, parts) if mine is not None else None))
        self._setup_collective()

    def _scan_share(self) -> Any:
        """This rank's share of the checks of a folder of songs (None for other data): a library of
        thousands of songs is checked once per job, split over its processes, with a counter."""
        t0 = time.perf_counter()
        shard = (self.rank, self.world)
        # scan threads: this process's CPUs, shared with the other processes of its node
        local = int(os.environ.get("LOCAL_WORLD_SIZE", self.world if self.info.launcher == "spawn" else 1))
        threads = max(1, min(8, dist_utils.usable_cpus() // max(1, local)))
        from .data import SCAN_CACHE, read_scan_cache

        # the checks an earlier part of this run kept: unchanged files are not read again
        known = read_scan_cache(self.run_dir / SCAN_CACHE, segment_seconds=self.cfg.data.segment_seconds)
        show = self.main and self.console is not None and not self.cfg.quiet
        spinner = show and self.console.is_terminal
        last = [t0]

        def log_line(text: str) -> None:  # a log file (SLURM, nohup): a line every 30 s, no spinner
            if time.perf_counter() - last[0] >= _LOG_EVERY_S:
                last[0] = time.perf_counter()
                self.print(f"checking audio files: {text.split(' ', 1)[0]} ...")

        status_line = self.console.status("checking the audio files ...") if spinner else None
        with status_line or contextlib.nullcontext():
            progress = ((lambda text: status_line.update(f"checking audio files: {text}")) if status_line
                        else log_line if show else None)
            part = self.cfg.data.scan_part(shard, threads, progress=progress, known=known)
        took = time.perf_counter() - t0
        if show and part is not None and took > 2.0:
            share = f" (this process's share of {len(part.audio):,})" if self.world > 1 else ""
            kept = f"; {part.reused:,} unchanged since the last check, not read again" if part.reused else ""
            self.print(f"Checked {len(part.results):,} audio files{share} in {took:.1f} s{kept}")
        return part

    def _phase(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on every rank, then :meth:`_agree`; returns this rank's value."""
        err: BaseException | None = None
        value = None
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - re-raised by _agree on every rank
            err = e
        self._agree(err)
        return value

    def _setup_run_dir(self) -> str | None:
        """Rank 0: the run folder (writable, locked) and the checkpoint to resume (it decides for
        "auto"; every rank then loads the file it names)."""
        cfg = self.cfg
        if self.main:
            from rich.console import Console

            # no markup: messages hold paths and file names, where "[Live]" is text, not a style
            self.console = Console(highlight=False, soft_wrap=True, markup=False)
            self.made_run_dir = _check_writable(self.run_dir)
            self._lock = _lock_run_dir(self.run_dir)
        if cfg.resume == "auto":
            found = find_resume_checkpoint(self.run_dir, strict=not cfg.overwrite) if self.main else None
            resume = str(found) if found else None
        else:
            resume = cfg.resume or None
        # a new run, or one continued from a checkpoint of another folder, takes this folder over
        if self.main and (resume is None or not _same_path(Path(resume).parent, self.run_dir)):
            self._claim_for_new_run()
        elif self.main:  # damaged files the rotation must not count among the ones it keeps
            self.unloadable = unloadable_checkpoints(self.run_dir)
        return resume

    def _claim_for_new_run(self) -> None:
        """Rank 0, before a new run: refuse a folder holding another run's checkpoints (a new run
        would write over them and mix its metrics with theirs), or with ``overwrite`` mark them
        for :meth:`_delete_replaced_run` (its metric rows are dropped when the files open)."""
        old = list_checkpoints(self.run_dir)
        if not old:
            return
        if not self.cfg.overwrite:
            names = ", ".join(p.name for p in old[:4]) + (", ..." if len(old) > 4 else "")
            # --resume auto never takes best.pt (older than last.pt): name it when it is all there is
            how = (f"--resume '{old[0]}' (resume={str(old[0])!r})" if all(p.name == "best.pt" for p in old)
                   else "--resume auto (resume='auto')")
            raise ConfigError(f"{self.run_dir} holds another run's checkpoints ({names}): continue it with "
                              f"{how}, start over with --overwrite (overwrite=True; deletes them), or choose "
                              f"another --checkpoint-dir")
        self._replaced = old  # deleted once the new run is set up (a bad --data loses nothing)

    def _delete_replaced_run(self) -> None:
        """Rank 0, ``overwrite``: delete the previous run's checkpoints, snapshots and TensorBoard
        events, now that the new run is set up and about to write its own."""
        old, self._replaced = self._replaced, []
        if not old:
            return
        for p in old:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        for sub in ("snapshots", "tensorboard"):
            shutil.rmtree(self.run_dir / sub, ignore_errors=True)
        self.print(f"--overwrite: deleted the previous run's {len(old)} checkpoint(s) in {self.run_dir}")

    def _setup_local(self, resume_path: str | None, scan: tuple[Any, list[Any]] | None = None) -> None:
        from .plugins import build_codec, build_strategy, get_strategy_entry

        cfg = self.cfg
        self.ckpt: dict[str, Any] | None = None
        if resume_path:
            self.ckpt = load_checkpoint(resume_path, map_location="cpu", require=("config", "strategy"))
        elif cfg.resume == "auto" and self._replaced:
            self.print(f"--resume auto: no checkpoint in {self.run_dir} loads; --overwrite starts a new run")
        elif cfg.resume == "auto":
            self.print(f"--resume auto: no checkpoint in {self.run_dir}; starting a new run")
        self.resume_path = resume_path

        # Seeds: identical model initialisation on every rank; then per-rank streams.
        torch.manual_seed(cfg.seed)
        self.entry = get_strategy_entry(cfg.strategy)
        self.codec = build_codec(cfg.codec, dict(cfg.codec_options)).to(self.device).eval()
        for p in self.codec.parameters():
            p.requires_grad_(False)
        self.spec = self.codec.spec
        self.sample_rate = int(self.codec.sample_rate)

        # Data (before the strategy: style labels decide its num_styles).
        saved_src = ((self.ckpt or {}).get("config") or {}).get("data", {}).get("source")
        if self.resume_path and cfg.data.source == saved_src:  # (not given again with --data)
            moved = cfg.data.moved_source(self.resume_path, "resume with --data and where they are now")
            if moved:
                raise AudioError(moved)
        catalog = None
        if scan is not None:  # (this rank's scan with the folder's lists, every rank's results)
            from .data import join_scan

            root = os.path.expanduser(str(cfg.data.source))
            if any(part is None for part in scan[1]):
                raise AudioError(f"{root}: not a folder of songs for every process of this job: give every "
                                 f"node the same folder")
            if self.main and all(p.digest == scan[0].digest for p in scan[1]):
                from .data import SCAN_CACHE, write_scan_cache

                write_scan_cache(self.run_dir / SCAN_CACHE, root, scan[1], scan[0],
                                 segment_seconds=cfg.data.segment_seconds)
            catalog = join_scan(root, scan[1], skip_bad=cfg.data.skip_bad, listing=scan[0])
        self.train_ds, self.val_ds = cfg.data.datasets(self.sample_rate, cfg.seed, catalog=catalog)
        self.styles: list[str] | None = list(self.train_ds.style_names) if cfg.data.style_labels else None
        if self.styles is not None:
            self._condition_on_styles(self.styles)
        if self.ckpt is not None:
            assert resume_path is not None
            self._check_resumable(self.ckpt, resume_path)

        strategy = build_strategy(cfg.strategy, dict(cfg.strategy_options), spec=self.spec)
        self.model = SimpleTransformer(cfg.model, strategy, self.spec.dim).to(self.device)
        default_rate = LossConfig.__dataclass_fields__["sample_rate"].default
        if cfg.loss.sample_rate not in (default_rate, self.sample_rate):
            raise ConfigError(f"loss option sample_rate={cfg.loss.sample_rate}: the loss always runs at the "
                              f"codec's rate ({self.sample_rate} Hz); set the codec's instead "
                              f"(--codec-opt sample_rate=N)")
        loss_cfg = dataclasses.replace(cfg.loss, sample_rate=self.sample_rate)
        self.loss_fn = CombinedLoss(loss_cfg).to(self.device)
        # The critic of adversarial training (maskkit.adversarial): built before the per-rank
        # seeds, so every rank starts from the same weights.
        self.critic: torch.nn.Module | None = None
        if cfg.adversarial.enabled:
            critic = strategy.build_critic()
            if critic is None:
                raise adversarial.no_critic_error(cfg.strategy)
            self.critic = critic.to(self.device)
        _seed_all(cfg.seed + 1_000_003 * self.rank)

        self._build_loaders()
        self._build_optimizers()

        # State.
        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.epochs_completed = 0
        self.best_val: float | None = None
        self.bad_epochs = 0
        self.best_epoch_val: float | None = None  # the best validation loss at the end of a whole epoch
        self.history: list[dict[str, Any]] = []
        self.last_metrics: dict[str, Any] = {}
        self.epoch_sums: dict[str, float] = {}
        self.epoch_count = 0
        self.best_path: Path | None = None
        self.last_path: Path | None = None
        self._saved_step: int | None = None  # the step of the last.pt this process wrote
        if self.ckpt is not None:
            try:
                self._load_state(self.ckpt)
            except MaskkitError:
                raise
            except (RuntimeError, ValueError, KeyError, TypeError) as e:
                if is_out_of_memory(e):  # not the file's fault
                    raise
                # (a damaged or hand-edited file: the sizes and keys were checked against the config)
                detail = " ".join(str(e).split())[:300]
                raise CheckpointError(f"{self.resume_path}: cannot resume from it, its saved state does not "
                                      f"fit the model it describes: {detail}") from None

        # Check the strategy once, eagerly, on two real pairs (clear error naming the plugin).
        self._check_strategy()

    def _build_loaders(self) -> None:
        """The training loader (resumable sampler, one shard per rank) and the validation loader."""
        cfg = self.cfg
        self.sampler = _ResumableSampler(self.train_ds, self.world, self.rank, cfg.seed, cfg.batch_size)
        self.accum = cfg.optim.grad_accum  # micro-batches (loader batches) per optimizer step
        self.steps_per_epoch = self.sampler.batches_per_epoch // self.accum
        # the loader batches an epoch trains (a last few that make no whole step are left out)
        self.epoch_batches = self.steps_per_epoch * self.accum
        if self.steps_per_epoch < 1:
            accum = f" x {self.accum} accumulated" if self.accum > 1 else ""
            raise ConfigError(
                f"the training set has {_plural(len(self.train_ds), 'pair')}: too few for a global batch of "
                f"{cfg.batch_size} x {self.world} processes{accum} (lower --batch-size"
                f"{' or --grad-accum' if self.accum > 1 else ''}, or add data)")
        if len(self.val_ds) < 1:
            raise ConfigError("the validation set is empty (raise --val-pairs / val_fraction, or add songs)")
        workers = cfg.data.num_workers
        loader_kw: dict[str, Any] = {"num_workers": workers, "pin_memory": self.device.type == "cuda"}
        if workers > 0:
            # Workers live for the whole run: starting them each epoch and each validation cost
            # seconds under spawn (macOS, Windows), and each new worker re-read every song to find
            # its loud parts (FolderPairs). set_epoch reaches them through shared memory.
            loader_kw.update(persistent_workers=True, worker_init_fn=_ignore_stop_signals)
        # A private generator: DataLoader draws its worker seed from it, never from the global
        # RNG, so creating an iterator mid-epoch on resume does not shift the model's RNG stream.
        self.loader = torch.utils.data.DataLoader(
            self.train_ds, batch_size=cfg.batch_size, sampler=self.sampler, drop_last=True,
            generator=torch.Generator().manual_seed(cfg.seed), **loader_kw)
        self.val_loader = torch.utils.data.DataLoader(
            self.val_ds, batch_size=cfg.batch_size,
            sampler=_ShardSampler(len(self.val_ds), self.world, self.rank),
            generator=torch.Generator().manual_seed(cfg.seed), **loader_kw)

    def _build_optimizers(self) -> None:
        """AdamW and the learning-rate schedule of the model (and of the critic, if any)."""
        cfg = self.cfg
        o = cfg.optim
        self.total_steps = self.steps_per_epoch * cfg.epochs
        # A constant schedule is the same in chunks of --max-steps as at once: its warm-up is a
        # share of the whole run's steps; a cosine spans the steps of --max-steps, warm-up too.
        warmup_of = self.total_steps
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
            warmup_of = warmup_of if o.schedule == "constant" else self.total_steps
        warmup = o.warmup_steps if o.warmup_steps is not None else round(o.warmup_fraction * warmup_of)
        # the epochs the run's steps span (fewer than --epochs under --max-steps): "epoch 2/2"
        self.planned_epochs = -(-self.total_steps // max(self.steps_per_epoch, 1))
        self.schedule = WarmupCosine(self.total_steps, warmup, o.min_lr_ratio, o.schedule)
        params = [p for p in self.model.parameters() if p.requires_grad]
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay,
                                           **fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.disc_optimizer: torch.optim.Optimizer | None = None
        if self.critic is not None:
            a = cfg.adversarial
            self.disc_optimizer = torch.optim.AdamW(
                self.critic.parameters(), lr=a.disc_lr, betas=tuple(a.disc_betas),
                weight_decay=a.disc_weight_decay, **fused)
        self._d_last: tuple[Tensor, Tensor] | None = None  # critic loss and D(real) of its last update

    def _setup_collective(self) -> None:
        """DDP over the model and the critic (gradients averaged; its construction broadcasts
        rank 0's parameters), the model optionally compiled; rank 0's metric files."""
        cfg = self.cfg
        self.fwd_model: Any = self._ddp(self.model, find_unused=self._has_unused_parameters())
        if cfg.compile:
            self.fwd_model = torch.compile(self.fwd_model)
        self.fwd_critic: Any = self._ddp(self.critic) if self.critic is not None else None

        if self.main:
            from .logging_utils import MetricsLogger

            self._delete_replaced_run()
            self.logger = MetricsLogger(self.run_dir)
            # a resumed run drops the rows logged after its checkpoint; a new run, every old row
            self.logger.truncate_after(self.step if self.ckpt is not None else 0)
            self._write_config_json()

    def _ddp(self, module: torch.nn.Module, find_unused: bool = False) -> Any:
        """``module`` in DistributedDataParallel when there are several ranks (else itself)."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(module, device_ids=ids, find_unused_parameters=find_unused)

    def _condition_on_styles(self, styles: list[str]) -> None:
        """Set the strategy's ``num_styles`` from the data's labels (in ``cfg``, so that the
        checkpoints record it and rebuild the same strategy)."""
        cfg = self.cfg
        if not self.entry.cls.supports_style:
            from .plugins import get_strategy_entry, strategy_names

            able = [n for n in strategy_names() if get_strategy_entry(n).cls.supports_style]
            raise ConfigError(f"--style-labels: strategy '{cfg.strategy}' does not support style "
                              f"conditioning; strategies that do: {', '.join(able) or 'none installed'}")
        given = cfg.strategy_options.get("num_styles")
        if given not in (None, len(styles)):
            raise ConfigError(f"strategy option num_styles={given}, but the data has {len(styles)} style "
                              f"labels ({', '.join(styles)}): drop the option, the trainer sets it")
        cfg.strategy_options = {**cfg.strategy_options, "num_styles": len(styles)}

    @property
    def step_lr(self) -> float:
        """The learning rate the last optimizer step used (logged with it): the schedule's value
        before that step, as LambdaLR set it (the peak LR before the first step)."""
        return self.cfg.optim.lr * self.schedule(max(self.step - 1, 0))

    def _resume_schedule(self, saved: dict[str, Any]) -> None:
        """Continue the LR schedule of a checkpoint under this run's settings.

        ``LambdaLR.load_state_dict`` would write the saved schedule's fields (its total steps)
        into this run's and bring back the old peak LR: a run resumed with more ``--epochs`` would
        then stay at the old cosine's floor, and a new ``--lr`` would be ignored. The cosine now
        ends at this run's total steps and peaks at this run's LR; the warm-up stays the
        checkpoint's (it has happened, or is under way).
        """
        mine = dict(vars(self.schedule))
        self.scheduler.load_state_dict(saved)
        warmup = int(vars(self.schedule).get("warmup_steps", mine["warmup_steps"]))
        vars(self.schedule).update(mine, warmup_steps=warmup)
        self.scheduler.lr_lambdas[0] = self.schedule
        self.scheduler.base_lrs = [self.cfg.optim.lr for _ in self.optimizer.param_groups]
        for g in self.optimizer.param_groups:
            g["initial_lr"] = self.cfg.optim.lr

    def _check_resumable(self, ck: dict[str, Any], path: str) -> None:
        saved = ck.get("config") or {}
        try:  # a checkpoint from before an option existed was trained with that option's default
            saved = {**saved, **TrainConfig.from_dict(saved).to_dict()}
        except MaskkitError:  # (keys this version does not know: compare them as saved)
            pass
        mine = self.cfg.to_dict()
        # options that change no parameter are "changed settings", not another architecture:
        # hard masks (fine-tuning a soft run on hard masks), and how a global batch is split
        loose = {"model": ("hard_masks",), "optim": ("grad_accum",)}

        def part(d: Mapping[str, Any], k: str) -> Any:
            v = d.get(k)
            if isinstance(v, Mapping) and k in loose:
                return {kk: vv for kk, vv in v.items() if kk not in loose[k]}
            return v

        diffs = [k for k in ARCHITECTURE_KEYS
                 if k in saved and _normalise(part(saved, k)) != _normalise(part(mine, k))]
        if diffs:
            detail = "; ".join(_difference(k, saved[k], mine[k]) for k in diffs)
            raise ConfigError(
                f"cannot resume from {path}: it was trained with other model settings ({detail}). Resume "
                f"with the checkpoint's settings (`maskkit train --resume {path}` with no model options, or "
                f"TrainConfig.from_checkpoint(path)), or train a new run in another --checkpoint-dir")
        if self.styles is not None and ck.get("styles") not in (None, self.styles):
            raise ConfigError(f"cannot resume from {path}: it was trained with the style labels "
                              f"{ck['styles']}, the data now has {self.styles}")
        changed = [k for k in ("seed", "optim", "loss", "data", "adversarial") if k in saved
                   and _normalise(part(saved, k)) != _normalise(part(mine, k))]
        if trained_on_hard_masks(ck) != self.cfg.model.hard_masks:
            changed.append("hard masks " + ("on" if self.cfg.model.hard_masks else "off"))
        if "batch_size" in saved:  # the global batch is what the run sees: 2 x 2 processes = 1 x 4
            old_accum = int((saved.get("optim") or {}).get("grad_accum", 1))
            old_global = int(saved["batch_size"]) * int(ck.get("world_size", 1)) * old_accum
            if old_global != self.cfg.batch_size * self.world * self.cfg.optim.grad_accum:
                changed.insert(0, "global batch")
        if changed:
            self.warn(f"resuming {path} with changed settings ({', '.join(changed)}): the run continues, "
                      f"but not exactly as it would have")
        before, now = ck.get("songs"), self._songs_fingerprint()
        if before and now and before != now:
            sides = "; ".join(f"{side} {before[side]['songs']:,} -> {now[side]['songs']:,} songs"
                              + ("" if before[side]["songs"] != now[side]["songs"] else " (others)")
                              for side in ("train", "val") if before[side] != now[side])
            self.warn(f"resuming {path} on other songs than it trained and validated on ({sides}): songs "
                      f"were added, removed or renamed in {self.cfg.data.source} (or this maskkit splits "
                      f"them differently); validation losses before and after are not comparable, and "
                      f"songs may have moved between training and validation")

    def _songs_fingerprint(self) -> dict[str, Any] | None:
        """Which songs this run trains and validates on (:func:`maskkit.data.songs_fingerprint`),
        computed once."""
        if not hasattr(self, "_songs"):
            from .data import songs_fingerprint

            src = self.cfg.data.source
            self._songs = (None if src in (None, "synthetic") else
                           songs_fingerprint(self.train_ds, self.val_ds, os.path.expanduser(str(src))))
        return self._songs

    def _has_unused_parameters(self) -> bool:
        """True when a forward + loss leaves some trainable parameter without a gradient
        (e.g. a strategy's optional discriminator); DDP then needs ``find_unused_parameters``."""
        return bool(getattr(self, "_unused", False))

    def _check_strategy(self) -> None:
        n = min(2, len(self.train_ds))
        pairs = [self.train_ds[i] for i in range(n)]
        x_in = torch.stack([p[0] for p in pairs]).to(self.device)
        x_tg = torch.stack([p[1] for p in pairs]).to(self.device)
        style = torch.tensor([p[2] for p in pairs], device=self.device) if self.styles is not None else None
        cpu_state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        was_training = self.model.training
        self.model.train()
        try:
            with torch.no_grad():
                e_in, e_tg = self.codec.encode(x_in), self.codec.encode(x_tg)
                self.model.check_strategy_output = True  # shapes, range, finiteness; names the plugin
                self.model.masks(e_in, e_tg, style=style)
                self.model.check_strategy_output = False  # the gradient pass below is not checked again
                if self.critic is not None:
                    adversarial.check_critic(self.critic, e_tg, self.cfg.strategy, self.entry.origin)
            total = self._forward(self.model, x_in, x_tg, style)[0]  # which parameters get no gradient
            total.backward()
            self._unused = any(p.grad is None for p in self.model.parameters() if p.requires_grad)
            self.model.zero_grad(set_to_none=True)
        finally:
            self.model.check_strategy_output = False
            self.model.train(was_training)
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state_all(cuda_state)

    def _load_state(self, ck: dict[str, Any]) -> None:
        self.model.load_state_dict(ck["model"])
        if self.critic is not None:
            assert self.disc_optimizer is not None
            if ck.get("critic"):
                self.critic.load_state_dict(ck["critic"])
                if ck.get("critic_optimizer"):
                    self.disc_optimizer.load_state_dict(ck["critic_optimizer"])
                if ck.get("critic_last"):
                    self._d_last = tuple(torch.tensor(v, device=self.device) for v in ck["critic_last"])
            else:
                self.warn("the checkpoint has no critic (it was trained without --adversarial-weight): "
                          "the adversarial phase starts with a fresh one")
        elif ck.get("critic"):
            self.warn("the checkpoint has a critic, but this run trains without --adversarial-weight: "
                      "it is not used (and not in the checkpoints this run writes)")
        if ck.get("optimizer"):
            self.optimizer.load_state_dict(ck["optimizer"])
        if ck.get("scheduler"):
            self._resume_schedule(ck["scheduler"])
        self.step = int(ck.get("step", 0))
        self.epoch = int(ck.get("epoch", 0))
        self.epochs_completed = int(ck.get("epochs_completed", self.epoch))
        self.best_val = ck.get("best_val_loss")
        self.best_epoch_val = ck.get("best_epoch_val_loss", self.best_val)  # (older checkpoints: the same)
        self.bad_epochs = int(ck.get("bad_epochs", 0))
        self.history = list(ck.get("history") or [])
        self.last_metrics = dict(ck.get("metrics") or {})
        self.epoch_sums = dict(ck.get("epoch_sums") or {})
        self.epoch_count = int(ck.get("epoch_count", 0))
        if (self.run_dir / "best.pt").is_file():
            self.best_path = self.run_dir / "best.pt"
        old_world = int(ck.get("world_size", 1))
        consumed = int(ck.get("consumed_samples",
                              int(ck.get("batch_in_epoch", 0)) * self.cfg.batch_size * old_world))
        global_batch = self.cfg.batch_size * self.world
        self.batch_in_epoch = consumed // global_batch
        if consumed % global_batch:
            self.warn(f"the checkpoint stopped {consumed} pairs into epoch {self.epoch + 1}, not a multiple "
                      f"of the global batch {global_batch}: resuming at pair "
                      f"{self.batch_in_epoch * global_batch}")
        left = max(0, self.epoch_batches - self.batch_in_epoch)  # batches of this epoch still to train
        if self.epoch >= self.cfg.epochs:  # the run is finished: no epoch is left to train
            left = 0
        if left % self.accum:
            self.warn(f"the checkpoint stopped {self.batch_in_epoch} batches into epoch {self.epoch + 1}, "
                      f"not at a step of --grad-accum {self.accum}: this epoch takes "
                      f"{left // self.accum} more step(s) and leaves its last {left % self.accum} "
                      f"batch(es) out")
        # Steps per epoch may differ from the checkpoint's (another --grad-accum, batch size or
        # number of processes): the cosine ends after the steps taken plus the steps still to take.
        later = max(0, self.cfg.epochs - self.epoch - 1) * self.steps_per_epoch
        total = self.step + left // self.accum + later
        if self.cfg.max_steps is not None:
            total = min(total, self.cfg.max_steps)
        if total != self.total_steps:
            self.total_steps = self.schedule.total_steps = max(1, total)
        for g in self.optimizer.param_groups:
            g["lr"] = self.cfg.optim.lr * self.schedule(self.step)
        rng = ck.get("rng") or []
        if old_world == self.world and len(rng) == self.world:
            restore_rng_state(rng[self.rank])
        else:
            self.warn(f"the checkpoint was written by {old_world} process(es), this run has {self.world}: "
                      f"RNG states are re-seeded (dropout draws differ from an uninterrupted run)")
            _seed_all(self.cfg.seed + 1_000_003 * self.rank + self.step)

    def _write_config_json(self) -> None:
        import json

        text = json.dumps({**self.cfg.to_dict(), "overwrite": False}, indent=2, default=str) + "\n"
        atomic_write(self.run_dir / "config.json", lambda f: f.write(text.encode()))

    # -- checkpoints ------------------------------------------------------------------------------
    def _checkpoint(self, reason: str, rng: list[Any]) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "format_version": CHECKPOINT_FORMAT,
            "maskkit_version": __version__,
            "kind": "maskkit-train",
            "config": {**cfg.to_dict(), "overwrite": False},  # a launch setting, never replayed
            "strategy": {"name": cfg.strategy, "options": self.model.strategy.config_dict(),
                         "plugin": self.entry.plugin, "dist": self.entry.dist, "version": self.entry.version,
                         "learnable": bool(self.model.strategy.learnable)},
            "codec": {"name": cfg.codec, "options": self.codec.config_dict(), **_origin_of_codec(cfg.codec)},
            "spec": dataclasses.asdict(self.spec),
            "styles": self.styles,
            "songs": self._songs_fingerprint(),
            "model": _cpu_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": None,
            "critic": _cpu_state(self.critic) if self.critic is not None else None,
            "critic_optimizer": self.disc_optimizer.state_dict() if self.disc_optimizer is not None else None,
            "critic_last": [float(v) for v in self._d_last] if self._d_last is not None else None,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "consumed_samples": self.batch_in_epoch * cfg.batch_size * self.world,
            "step": self.step,
            "epochs_completed": self.epochs_completed,
            "sampler_seed": cfg.seed,
            "world_size": self.world,
            "rng": rng,
            "metrics": self.last_metrics,
            "history": self.history,
            "best_val_loss": self.best_val,
            "best_epoch_val_loss": self.best_epoch_val,
            "bad_epochs": self.bad_epochs,
            "epoch_sums": self.epoch_sums,
            "epoch_count": self.epoch_count,
            "reason": reason,
            "interrupted": reason == "interrupted",
            "time": time.time(),
        }

    def save(self, reason: str, *, best: bool = False, periodic: bool = False) -> None:
        """Collective: every rank's RNG state goes to rank 0, which writes ``last.pt`` (and
        ``best.pt`` / ``epoch_NNNN.pt``) atomically."""
        rng = dist_utils.all_gather_object(capture_rng_state())
        if not self.main:
            return
        ck = self._checkpoint(reason, rng)
        last = self.run_dir / "last.pt"
        had_last = last.is_file()
        try:
            self.last_path = atomic_save(ck, last)
        except OSError as e:  # disk full, quota, folder gone: the file there before is untouched
            before = f" (step {_step_of(last, self._saved_step)})" if had_last else ""
            kept = (f"{last} is the checkpoint saved before{before}, unchanged; free space (or fix the "
                    f"folder) and continue with --resume auto" if had_last else
                    "no checkpoint was saved yet; free space (or fix the folder) and start again")
            raise CheckpointError(f"could not save the checkpoint of step {self.step} to {last}: "
                                  f"{e.strerror or first_line(e)}. {kept}") from e
        self._saved_step = self.step
        try:
            if best:
                self.best_path = _link_or_copy(self.last_path, self.run_dir / "best.pt")
            if periodic:
                name = epoch_checkpoint_name(self.epochs_completed)
                _link_or_copy(self.last_path, self.run_dir / name)
                if name in self.unloadable:  # a damaged file of that name is replaced by a good one now
                    self.unloadable.remove(name)
                prune_epoch_checkpoints(self.run_dir, self.cfg.keep_checkpoints, self.unloadable)
        except OSError as e:
            copy = e.filename or "(best.pt / epoch_NNNN.pt)"
            raise CheckpointError(f"saved {last} (step {self.step}, complete), but could not write its copy "
                                  f"{copy} (which keeps what it held): {e.strerror or first_line(e)}; free "
                                  f"space and continue with --resume auto") from e

    # -- one step ---------------------------------------------------------------------------------
    def _autocast(self) -> Any:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _batch(self, batch: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(input, target, style labels or None)`` of a loader batch, on the device."""
        x_in, x_tg = batch[0].to(self.device, non_blocking=True), batch[1].to(self.device, non_blocking=True)
        style = batch[2].to(self.device, non_blocking=True) if len(batch) > 2 else None
        return x_in, x_tg, style

    def _forward(self, module: Any, x_in: Tensor, x_tg: Tensor, style: Tensor | None = None
                 ) -> tuple[Tensor, dict[str, Tensor], Any, tuple[Tensor, Tensor, Tensor]]:
        """``(loss, components, masks, (enc_input, enc_target, output encoding))``."""
        with torch.no_grad():
            e_in, e_tg = self.codec.encode(x_in), self.codec.encode(x_tg)
        with self._autocast():
            out, reg, masks = module(e_in, e_tg, return_masks=True, style=style)
        audio = self.codec.decode(out.float(), length=x_in.shape[-1])
        bal = masks.extras.get("balance_loss") if isinstance(masks.extras, dict) else None
        total, comps = self.loss_fn(audio, x_in, x_tg, reg_loss=reg, balance_loss=bal)
        return total, comps, masks, (e_in, e_tg, out)

    def _clip_gradients(self, module: torch.nn.Module) -> Tensor:
        """Clip the global gradient norm of ``module`` to ``optim.grad_clip`` (0: no clipping);
        return the norm before clipping."""
        params = [p for p in module.parameters() if p.grad is not None]
        if not params:
            return torch.zeros((), device=self.device)
        clip = self.cfg.optim.grad_clip
        if clip > 0:
            return torch.nn.utils.clip_grad_norm_(params, clip)
        return torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params]))

    # -- adversarial phase (maskkit.adversarial) ---------------------------------------------------
    def adversarial_active(self) -> bool:
        """True once the warm-up epochs are over (when adversarial training is on)."""
        return self.critic is not None and self.epoch >= self.cfg.adversarial.warmup_epochs

    def _critic_due(self) -> bool:
        start = self.cfg.adversarial.warmup_epochs * self.steps_per_epoch
        return (self.step - start) % self.cfg.adversarial.disc_update_freq == 0 or self._d_last is None

    def _critic_step(self, e_in: Tensor, e_tg: Tensor, out: Tensor) -> Tensor:
        """Phase 1: one critic update, real (both songs) vs fake (the output, detached).
        Returns its non-finite flag; the update is skipped when its gradient is not finite
        (the gradient is averaged over ranks, so every rank decides alike)."""
        assert self.critic is not None and self.disc_optimizer is not None
        n_real = e_in.shape[0] + e_tg.shape[0]
        with self._autocast():
            logits = self.fwd_critic(torch.cat([e_in, e_tg, out.detach().to(e_in.dtype)]))
        logits = logits.float()
        d_loss = adversarial.discriminator_loss(logits[:n_real], logits[n_real:])
        d_loss.backward()
        norm = self._clip_gradients(self.critic)
        bad = ~torch.isfinite(norm) | ~torch.isfinite(d_loss.detach())
        _step_unless(self.disc_optimizer, bad)
        self.disc_optimizer.zero_grad(set_to_none=True)
        self._d_last = (d_loss.detach(), torch.sigmoid(logits[:n_real].detach()).mean())
        return bad

    def train_step(self, x_in: Tensor, x_tg: Tensor, style: Tensor | None = None
                   ) -> tuple[dict[str, float], bool, bool]:
        """One optimizer step on one batch. Returns (global mean metrics, skipped?, stop requested?).

        With adversarial training active: the critic's update first (every
        ``disc_update_freq`` steps), then the generator's with ``weight * generator_loss``."""
        return self.accumulated_step([(x_in, x_tg, style)])

    def accumulated_step(self, micro: list[tuple[Tensor, Tensor, Tensor | None]]
                         ) -> tuple[dict[str, float], bool, bool]:
        """One optimizer step on the gradient summed over ``micro`` batches, each loss divided by
        their number (the mean over all their pairs, as one batch of them all would give; DDP
        averages over the processes on the last one only). The critic, when due, updates on
        the first. Metrics are the means over the micro-batches."""
        from .metrics import complementarity

        self.model.train()
        n = len(micro)
        totals: list[Tensor] = []
        comp_sums: dict[str, Tensor] = {}
        compls: list[Tensor] = []
        adv_sums: list[Tensor] = []
        d_bad = torch.zeros((), dtype=torch.bool, device=self.device)
        for i, (x_in, x_tg, style) in enumerate(micro):
            last = i == n - 1
            sync = contextlib.nullcontext() if last or self.world == 1 else self.fwd_model.no_sync()
            with sync:
                total, comps, masks, (e_in, e_tg, out) = self._forward(self.fwd_model, x_in, x_tg, style)
                if self.adversarial_active():
                    assert self.critic is not None
                    if i == 0 and self._critic_due():
                        d_bad = self._critic_step(e_in, e_tg, out)
                    with self._autocast():
                        fake_logits = adversarial.frozen_logits(self.critic, out).float()
                    g_adv = adversarial.generator_loss(fake_logits)
                    total = total + self.cfg.adversarial.weight * g_adv
                    assert self._d_last is not None
                    adv = [g_adv.detach(), self._d_last[0], self._d_last[1],
                           torch.sigmoid(fake_logits.detach()).mean()]
                    adv_sums = adv if not adv_sums else [a + b for a, b in zip(adv_sums, adv, strict=True)]
                (total / n if n > 1 else total).backward()
            totals.append(total.detach())
            for k in COMPONENTS:
                comp_sums[k] = comps[k] if k not in comp_sums else comp_sums[k] + comps[k]
            with torch.no_grad():
                compls.append(complementarity(masks.input_mask.detach().float(),
                                              masks.target_mask.detach().float()))
        comps = {k: v / n for k, v in comp_sums.items()}
        compl = torch.stack(compls).mean()
        adv_values = [v / n for v in adv_sums]
        total = torch.stack(totals)
        norm = self._clip_gradients(self.model)
        with torch.no_grad():
            bad = (~torch.isfinite(total).all()) | (~torch.isfinite(norm)) | d_bad
            simulated = (self.cfg.simulate_preemption_at_step is not None
                         and self.step + 1 == self.cfg.simulate_preemption_at_step)
            stop = float(self.stop.requested or simulated)
            values = ([comps[k].float() for k in COMPONENTS] + [compl.float(), norm.float().reshape(())]
                      + [v.float() for v in adv_values])
            packed = torch.stack([torch.nan_to_num(v.reshape(()), nan=0.0, posinf=0.0, neginf=0.0)
                                  for v in values]
                                 + [bad.float().reshape(()), torch.full((), stop, device=self.device)])
        dist_utils.all_reduce_(packed, "sum")
        vals = packed.tolist()
        n = len(COMPONENTS)
        skipped, stop_all = vals[-2] > 0, vals[-1] > 0
        if not skipped:
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
        self.optimizer.zero_grad(set_to_none=True)
        metrics = {("loss" if k == "total" else k): v / self.world
                   for k, v in zip(COMPONENTS, vals[:n], strict=True)}
        metrics["complementarity"] = vals[n] / self.world
        metrics["grad_norm"] = vals[n + 1] / self.world
        if adv_values:
            for i, k in enumerate(ADVERSARIAL_METRICS):
                metrics[k] = vals[n + 2 + i] / self.world
        if stop_all and self.stop.signum is None:
            self.stop.signum = -1  # simulated preemption, or another rank's signal
        return metrics, skipped, stop_all

    # -- validation -------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, snapshot_epoch: int | None = None) -> dict[str, float]:
        """Metrics over the whole validation set (all ranks). With ``snapshot_epoch``, rank 0
        also saves mask / attention pictures and per-pair summaries of its first batch
        (:func:`maskkit.snapshots.save_validation_snapshot`) to ``<run>/snapshots/``."""
        from .metrics import BATCH_METRICS, METRICS

        self.model.eval()
        keys = list(COMPONENTS) + list(METRICS)
        spread = [k in BATCH_METRICS for k in keys]  # averaged over batches of >= 2 pairs only
        # per key: the pair-weighted sum, and the number of pairs it covers
        sums = torch.zeros(2, len(keys), dtype=torch.float64, device=self.device)
        with _batches(self.val_loader) as batches:
            for i, batch in enumerate(self._guarded(batches)):
                x_in, x_tg, style = self._batch(batch)
                if i == 0 and snapshot_epoch is not None and self.main:
                    self._snapshot(x_in, x_tg, style, snapshot_epoch)
                _, comps, masks, _ = self._forward(self.model, x_in, x_tg, style)
                im, tm = masks.input_mask.float(), masks.target_mask.float()
                vals = ([comps[k].double() for k in COMPONENTS]
                        + [METRICS[k](im, tm).double() for k in METRICS])
                b = x_in.shape[0]
                weights = torch.tensor([0.0 if sp and b < 2 else float(b) for sp in spread],
                                       dtype=torch.float64, device=self.device)
                sums[0] += torch.stack([v.reshape(()) for v in vals]) * weights
                sums[1] += weights
        dist_utils.all_reduce_(sums, "sum")
        totals, counts = sums.tolist()
        out = {("loss" if k == "total" else k): totals[i] / counts[i]
               for i, k in enumerate(keys) if counts[i] > 0}  # no batch of 2: no spread to report
        self.model.train()
        return out

    def _snapshot(self, x_in: Tensor, x_tg: Tensor, style: Tensor | None, epoch: int) -> None:
        from .snapshots import save_validation_snapshot

        n = SNAPSHOT_PAIRS
        kwargs = {"style": style[:n]} if style is not None else None
        labels = ([self.styles[i] for i in style[:n].tolist()]
                  if style is not None and self.styles is not None else None)
        try:
            snap = save_validation_snapshot(self.model, self.codec, x_in, x_tg, self.run_dir / "snapshots",
                                            epoch, max_pairs=n, strategy_kwargs=kwargs, pair_labels=labels)
        except Exception as e:  # noqa: BLE001 - a picture must never stop a training run
            self.warn(f"epoch {epoch}: could not save the validation snapshot: {type(e).__name__}: {e}")
            return
        if snap.png is None and not getattr(self, "_warned_no_png", False):
            self._warned_no_png = True
            self.warn("snapshots: matplotlib is not installed, writing the JSON summaries only "
                      "(pip install 'maskkit[plots]' for the pictures)")
        self.print(f"Snapshot: {snap.png or snap.json}")

    def _snapshot_due(self, epoch: int) -> int | None:
        """The 1-based epoch number when this epoch's validation saves a snapshot."""
        n = self.cfg.snapshot_every
        return epoch + 1 if n and (epoch + 1) % n == 0 else None

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        t_start = time.perf_counter()
        own = self.stop is not dist_utils.held_stop_flag()  # a held flag stays installed until exit
        if own:
            self.stop.install()
        try:
            self.setup()
            return self._fit(t_start)
        finally:
            for loader in (getattr(self, "loader", None), getattr(self, "val_loader", None)):
                _stop_workers(loader)
            if own:
                self.stop.uninstall()
            if self.logger is not None:
                self.logger.close()

    def _announce(self) -> None:
        cfg, m = self.cfg, self.model
        strat = m.strategy
        n_strat = sum(p.numel() for p in strat.parameters() if p.requires_grad)
        n_total = m.num_parameters()
        if strat.learnable:
            self.print(f"{display_name(strat.name)} ENABLED (strategy '{strat.name}', {n_strat:,} "
                       f"parameters, {self.entry.origin})")
        else:
            self.print(f"Strategy '{strat.name}' (fixed, no parameters; {self.entry.origin})")
        gb = cfg.batch_size * self.world * self.accum
        how = {"single": "1 process", "spawn": f"{self.world} local processes",
               "torchrun": f"torchrun, {self.world} processes", "slurm": f"SLURM, {self.world} tasks"}[
            self.info.launcher]
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        self.print(f"Model: SimpleTransformer {n_total:,} parameters, codec '{cfg.codec}' "
                   f"(D={self.spec.dim}, {self.sample_rate} Hz); {how}"
                   f"{f' ({backend})' if self.world > 1 else ''} on {self.device}"
                   f"{', bf16' if self.bf16 else ''}{', compiled' if cfg.compile else ''}"
                   f"{', hard masks' if cfg.model.hard_masks else ''}")
        src = cfg.data.source or "synthetic music"
        from .data import FolderPairs, WavPairs

        tr_set, va_set = (getattr(d, "dataset", d) for d in (self.train_ds, self.val_ds))
        if isinstance(tr_set, FolderPairs) and isinstance(va_set, FolderPairs):
            src = f"{src} ({len(tr_set.songs):,} / {len(va_set.songs):,} songs)"
        self.print(f"Data: {src}: {len(self.train_ds)} training / {len(self.val_ds)} validation pairs of "
                   f"{cfg.data.segment_seconds:g} s; batch {cfg.batch_size} per process x {self.world}"
                   f"{f' x {self.accum} accumulated' if self.accum > 1 else ''} = "
                   f"{gb}; {_plural(self.steps_per_epoch, 'step')} per epoch, {self.total_steps} in all")
        if (cfg.max_steps is not None and self.total_steps < self.steps_per_epoch * cfg.epochs
                and cfg.optim.schedule != "constant"):
            self.print(f"The learning-rate schedule (warm-up, cosine) spans the {self.total_steps} steps of "
                       f"--max-steps: a resume with more steps stretches it, so a run trained in chunks "
                       f"differs from one trained at once (--schedule constant does not)")
        if isinstance(va_set, FolderPairs) and len(va_set.songs) > 2 * len(va_set):
            self.print(f"Note: {len(va_set.songs):,} songs are held out for validation, but its "
                       f"{_plural(len(va_set), 'pair')} use at most {2 * len(va_set):,} of them; raise "
                       f"--val-pairs to validate on more, or lower --val-fraction to train on more")
        preset_data = preset_dict(cfg.preset)["data"]
        ignored = [f"--{k.replace('_', '-')} {getattr(cfg.data, k)}" for k in ("train_pairs", "val_pairs")
                   if getattr(cfg.data, k) != preset_data[k]]
        if ignored and isinstance(getattr(self.train_ds, "dataset", self.train_ds), WavPairs):
            self.print(f"Note: {' and '.join(ignored)} {'do' if len(ignored) > 1 else 'does'} not apply to a "
                       f"WAV-pairs folder, which trains on "
                       f"all its pairs (a folder of songs or synthetic music takes them)")
        skipped = list(getattr(self.train_ds, "skipped", None) or [])
        if skipped:
            from .data import problem_summary

            shown = "; ".join(f"{path}: {reason}" for path, reason in skipped[:10])
            more = f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
            kinds = f" ({problem_summary([r for _, r in skipped])})" if len(skipped) > 10 else ""
            self.warn(f"skipped {len(skipped)} bad file(s){kinds} of {cfg.data.source} (--skip-bad): "
                      f"{shown}{more}")
        if self.styles is not None:
            self.print(f"Style conditioning: {len(self.styles)} labels ({', '.join(self.styles)}), each "
                       f"pair's target song's")
        if self.critic is not None:
            a = cfg.adversarial
            n_critic = sum(p.numel() for p in self.critic.parameters())
            self.print(f"Adversarial training: critic {n_critic:,} parameters, weight {a.weight}, lr "
                       f"{a.disc_lr}, every {a.disc_update_freq} step(s), after {a.warmup_epochs} warm-up "
                       f"epoch(s)")
        if self.resume_path and self.epoch >= cfg.epochs:
            self.print(f"Resumed from {self.resume_path}: the run has already trained {self.epoch} epoch(s) "
                       f"(step {self.step}) of the {cfg.epochs} asked for, so there is nothing to train; "
                       f"give --epochs above {self.epoch} to train on")
        elif self.resume_path:
            self.print(f"Resumed from {self.resume_path}: epoch {self.epoch + 1}, batch "
                       f"{self.batch_in_epoch}, step {self.step}")
        self.print(f"Checkpoints and metrics: {self.run_dir}/")

    def _progress(self) -> Any:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        disable = (not self.main) or self.cfg.quiet or self.console is None or not self.console.is_terminal
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                        console=self.console, disable=disable, transient=False)

    def _fit(self, t_start: float) -> TrainResult:
        cfg = self.cfg
        self._announce()
        self._train_time, self._train_pairs, self._bad_in_row = 0.0, 0, 0
        self._batches_this_run = 0
        done = cfg.max_steps is not None and self.step >= cfg.max_steps
        stopped = "max_steps" if done and self.epoch < cfg.epochs else "completed"
        if stopped == "max_steps":
            self.print(f"--max-steps {cfg.max_steps} was reached before this run started (step {self.step}): "
                       f"nothing to train; pass a larger --max-steps, or 0 for no cap")
        with self._progress() as progress:
            while self.epoch < cfg.epochs and not done:
                end, epoch_time = self._train_epoch(progress, t_start)
                if end == "interrupted":
                    stopped = "interrupted"
                    break
                if end == "max_steps":
                    done, stopped = True, "max_steps"
                end = self._end_epoch(epoch_time, done)
                if end is not None:
                    stopped = end
                    break
        self._report_end(stopped)
        return self._result(stopped, t_start)

    def _train_epoch(self, progress: Any, t_start: float) -> tuple[str | None, float]:
        """Train the rest of the current epoch. Returns ``(end, seconds)``: ``end`` is
        ``"interrupted"`` (a stop request), ``"max_steps"`` (the cap was reached) or None."""
        cfg, epoch = self.cfg, self.epoch
        gb = cfg.batch_size * self.world * self.accum  # pairs per optimizer step
        if hasattr(self.train_ds, "set_epoch"):
            self.train_ds.set_epoch(epoch)
        self.sampler.set_epoch(epoch, self.batch_in_epoch)
        task = progress.add_task(f"epoch {epoch + 1}/{self.planned_epochs}", total=self.steps_per_epoch,
                                 completed=self.batch_in_epoch // self.accum, stats="")
        t_epoch = t_last = time.perf_counter()
        self._batches_this_run = 0  # this epoch's batches trained by this process (not a resumed run's)
        end = None
        micro: list[tuple[Tensor, Tensor, Tensor | None]] = []
        with _batches(self.loader) as batches:
            for batch in self._guarded(batches):
                if self.batch_in_epoch + len(micro) >= self.epoch_batches:
                    break
                micro.append(self._batch(batch))
                if len(micro) < self.accum:
                    continue
                metrics, skipped, stop_all = self.accumulated_step(micro)
                self.batch_in_epoch += len(micro)
                self._batches_this_run += len(micro)
                micro = []
                now = time.perf_counter()
                dt, t_last = now - t_last, now
                self._train_time += dt
                self._train_pairs += gb
                pps = gb / dt if dt > 0 else float("nan")
                if skipped:
                    self._skipped_step()
                else:
                    self._bad_in_row = 0
                    for k, v in metrics.items():
                        self.epoch_sums[k] = self.epoch_sums.get(k, 0.0) + v
                    self.epoch_count += 1
                    if self.main and self.step % cfg.log_every == 0:
                        self.logger.log({"kind": "step", "epoch": epoch + 1, "step": self.step,
                                         "lr": self.step_lr, **metrics, "pairs_per_s": pps,
                                         "time_s": round(time.perf_counter() - t_start, 3)})
                adv = (f"  D(real) {metrics['adv_d_real']:.2f} D(fake) {metrics['adv_d_fake']:.2f}"
                       if "adv_d_fake" in metrics else "")
                progress.update(task, advance=1, stats=(
                    f"loss {metrics['loss']:.4f}  reg {metrics['mask_reg']:.4f}  "
                    f"compl {metrics['complementarity']:.1f}%{adv}  {pps:.1f} pairs/s"))
                if stop_all:
                    end = "interrupted"
                    break
                if cfg.max_steps is not None and self.step >= cfg.max_steps:
                    end = "max_steps"
                    break
        progress.remove_task(task)
        return end, time.perf_counter() - t_epoch

    def _guarded(self, batches: Iterator[Any]) -> Iterator[Any]:
        """``batches``, but a data error while loading one (a file that turns out bad past the
        start-up scan) stops the run with the file's own message, not the DataLoader worker's
        traceback text; a single-process run first saves its position (a run of several ranks
        cannot: saving is collective, and the other ranks stop on the lost peer)."""
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except MaskkitError as e:
                msg = _worker_error_text(e)
                if self.world == 1 and self.step > 0:
                    try:
                        self.save("interrupted")
                    except CheckpointError as save_error:  # (a full disk too): both are said
                        raise type(e)(f"{msg}. Training stopped at step {self.step}, and {save_error}") from e
                    msg += (f". Training stopped at step {self.step}; checkpoint saved to "
                            f"{self.run_dir / 'last.pt'}: fix or remove the file, then --resume auto")
                raise type(e)(msg) from e
            yield batch

    def _skipped_step(self) -> None:
        """Count a step every rank skipped (non-finite); too many in a row end the run."""
        cfg = self.cfg
        self._bad_in_row += 1
        self.warn(f"step {self.step + 1}: non-finite loss or gradient on some rank; step "
                  f"skipped ({self._bad_in_row}/{cfg.max_bad_steps} in a row)")
        if self._bad_in_row >= cfg.max_bad_steps:
            raise TrainingError(
                f"{self._bad_in_row} consecutive steps with a non-finite loss or gradient "
                f"after step {self.step}: stopping. The last good checkpoint is "
                f"{self.last_path or '(none yet)'}; lower --lr or --mask-reg-weight and "
                f"resume from it")

    def _end_epoch(self, epoch_time: float, done: bool) -> str | None:
        """Validate, log the epoch's row, save the checkpoints. Returns why the run stops here
        (``"interrupted"``, ``"early_stopping"``) or None. ``done``: the step cap was reached,
        possibly inside the epoch."""
        cfg, epoch = self.cfg, self.epoch
        gb = cfg.batch_size * self.world
        val = self.validate(self._snapshot_due(epoch))
        # A stop request during validation: finish this epoch's bookkeeping, then stop.
        flag = torch.full((1,), float(self.stop.requested), device=self.device)
        dist_utils.all_reduce_(flag, "sum")
        stop_now = flag.item() > 0  # read once: one host sync per epoch
        train_means = {k: v / max(self.epoch_count, 1) for k, v in self.epoch_sums.items()}
        # --max-steps can end a run inside an epoch: its validation runs, but the checkpoint
        # keeps the position, so a resume with more steps trains the rest of that epoch; and
        # that epoch counts once towards early stopping, when it ends.
        partial = done and self.batch_in_epoch < self.epoch_batches
        improved = self.best_val is None or val["loss"] < self.best_val  # best.pt: any validation
        if improved:
            self.best_val = val["loss"]
        if not partial:  # early stopping compares whole epochs only (a chunk's mid-epoch check is not one)
            if self.best_epoch_val is None or val["loss"] < self.best_epoch_val:
                self.best_epoch_val, self.bad_epochs = val["loss"], 0
            else:
                self.bad_epochs += 1
        row = {"kind": "epoch", "epoch": epoch + 1, "step": self.step,
               "lr": self.step_lr,  # the last step's
               **{f"train_{k}": v for k, v in train_means.items()},
               **{f"val_{k}": v for k, v in val.items()},
               "best_val_loss": self.best_val, "epoch_time_s": round(epoch_time, 3),
               # the pairs this process trained in the time it took (a resumed epoch's earlier
               # batches were timed by the run before)
               "pairs_per_s": (self._batches_this_run * gb / epoch_time)
               if epoch_time > 0 and self._batches_this_run else None}
        self.history.append(row)
        self.last_metrics = row
        if not partial:
            self.epoch += 1
            self.epochs_completed = self.epoch
            self.batch_in_epoch = 0
            self.epoch_sums, self.epoch_count = {}, 0
        if self.main:
            self.logger.log(row)
        self._epoch_lines(row, train_means)
        stop_early = cfg.patience is not None and self.bad_epochs >= cfg.patience
        if stop_now and (self.epoch >= cfg.epochs or done):
            # the request came during the last validation: the run is complete, and a job
            # script must not requeue it (exit 0, not 130/143)
            self.print("A stop request arrived during the last validation: the run is complete")
            stop_now = False
        last_epoch = self.epoch >= cfg.epochs or done or stop_early or stop_now
        periodic = (self.epoch % cfg.save_every == 0 or last_epoch) and not partial
        reason = "interrupted" if stop_now else "final" if last_epoch else "epoch"
        self.save(reason, best=improved, periodic=periodic)
        if stop_now:
            if self.stop.signum is None:
                self.stop.signum = -1
            return "interrupted"
        if stop_early:
            self.print(f"Early stopping: the validation loss did not improve for {cfg.patience} epochs")
            return "early_stopping"
        return None

    def _report_end(self, stopped: str) -> None:
        """Save the exact position of a run stopped mid-epoch, and say how the run ended."""
        if stopped == "interrupted":
            if self.batch_in_epoch:  # stopped mid-epoch: save the exact position
                self.save("interrupted")
            sig = self.stop.signum
            name = signal.Signals(sig).name if sig and sig > 0 else "SIGTERM"
            self.print(f"Stopped on {name if sig and sig > 0 else 'a stop request'} after step {self.step}: "
                       f"checkpoint saved to {self.run_dir / 'last.pt'}; continue with --resume auto")
        else:
            best = f"{self.best_val:.4f}" if self.best_val is not None else "-"
            n = self.epochs_completed
            done = _plural(n, "epoch")
            if self.batch_in_epoch:  # --max-steps inside an epoch
                done = f"{done} and part of the next" if n else "part of the first epoch"
            self.print(f"Done ({stopped}): {done}, {_plural(self.step, 'step')}; best "
                       f"validation loss {best}; checkpoints in {self.run_dir}/ (curves: maskkit curves "
                       f"{self.run_dir})")

    def _result(self, stopped: str, t_start: float) -> TrainResult:
        with torch.no_grad():
            critic = self.critic.parameters() if self.critic is not None else ()
            params = [*self.model.parameters(), *critic]
            checksum = float(sum(p.detach().double().sum() for p in params))
        checksums = dist_utils.all_gather_object(checksum)
        sig = self.stop.signum
        return TrainResult(
            run_dir=str(self.run_dir),
            last_checkpoint=str(self.run_dir / "last.pt") if (self.run_dir / "last.pt").is_file() else None,
            best_checkpoint=str(self.best_path) if self.best_path else None,
            best_val_loss=self.best_val, final_metrics=dict(self.last_metrics), history=list(self.history),
            epochs_completed=self.epochs_completed, steps=self.step, stopped=stopped,
            signal=(signal.Signals(sig).name if sig and sig > 0
                    else ("SIGTERM" if stopped == "interrupted" else None)),
            world_size=self.world, elapsed_s=time.perf_counter() - t_start,
            train_pairs_per_s=(self._train_pairs / self._train_time) if self._train_time > 0 else None,
            rank_param_checksums=[float(c) for c in checksums])

    def _epoch_lines(self, row: dict[str, Any], train_means: dict[str, float]) -> None:
        cfg = self.cfg
        self.print(f"epoch {row['epoch']}/{self.planned_epochs}  step {row['step']}  "
                   f"train loss {train_means.get('loss', float('nan')):.4f}  val loss {row['val_loss']:.4f}  "
                   f"val compl {row.get('val_complementarity', float('nan')):.1f}%  "
                   f"lr {row['lr']:.2e}  "
                   + (f"{row['pairs_per_s']:.1f} pairs/s" if row["pairs_per_s"] else "no step this run"))
        if self.model.strategy.learnable or train_means.get("mask_reg", 0.0) != 0.0:
            self.print(f"{display_name(cfg.strategy)} mask regularization loss: "
                       f"{train_means.get('mask_reg', 0.0):.6f} (weight={cfg.loss.mask_reg_weight})")
        if "adv_gen_loss" in train_means:
            self.print(f"Adversarial: generator loss {train_means['adv_gen_loss']:.4f} "
                       f"(weight={cfg.adversarial.weight}), critic loss {train_means['adv_disc_loss']:.4f}, "
                       f"critic P(real): songs {train_means['adv_d_real']:.3f}, "
                       f"arrangements {train_means['adv_d_fake']:.3f}")
        elif self.critic is not None and self.epoch == cfg.adversarial.warmup_epochs:
            self.print(f"Adversarial phase starts now (after "
                       f"{_plural(cfg.adversarial.warmup_epochs, 'warm-up epoch')})")


def _seed_all(seed: int) -> None:
    """Seed torch, Python's and NumPy's generators (this rank's streams)."""
    import numpy as np

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))


def _cpu_state(module: torch.nn.Module) -> dict[str, Tensor]:
    """``module``'s state dict, detached, on the CPU (what a checkpoint stores)."""
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def _difference(key: str, saved: Any, now: Any) -> str:
    """``key: checkpoint X vs now Y``, naming only the entries that differ in a section."""
    if isinstance(saved, Mapping) and isinstance(now, Mapping):
        keys = [k for k in dict.fromkeys([*saved, *now])
                if _normalise(saved.get(k)) != _normalise(now.get(k))]
        return "; ".join(f"{key}.{k}: checkpoint {saved.get(k)!r} vs now {now.get(k)!r}" for k in keys)
    return f"{key}: checkpoint {saved!r} vs now {now!r}"


def _normalise(v: Any) -> Any:
    """Compare config values across a save/load round trip (tuples become lists, etc.)."""
    if isinstance(v, Mapping):
        return {k: _normalise(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_normalise(x) for x in v]
    return v


def _step_of(path: Path, known: int | None) -> int | str:
    """The step of the checkpoint at ``path`` (``known`` when this process wrote it), '?' if unreadable."""
    if known is not None:
        return known
    try:
        return int(load_checkpoint(path, mmap=True).get("step", 0))
    except (MaskkitError, OSError, ValueError):
        return "?"


def _link_or_copy(src: Path, dst: Path) -> Path:
    """Make ``dst`` the same file as ``src``, atomically (hard link; a copy where links fail)."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as e:  # a partial copy (disk full) is not left behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if e.filename is None or e.filename == tmp:
            e.filename = str(dst)
        raise
    return dst


warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
