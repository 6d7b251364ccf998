"""One resolver for every way of starting a distributed run, and the process group around it.

``maskkit train`` runs in one of four ways; :func:`resolve_launch` tells which from the
environment alone, so that every process of a job joins the *same* world (the classic bug
is "four worlds of 1 instead of one world of 4"):

==============  =====================================================================
torchrun        ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``
                (set by ``torchrun`` / ``python -m torch.distributed.run``)
SLURM (srun)    ``SLURM_PROCID``, ``SLURM_NTASKS`` (``SLURM_STEP_NUM_TASKS`` when srun sets
                it), ``SLURM_LOCALID``; the master is the first host of
                ``SLURM_STEP_NODELIST`` / ``SLURM_JOB_NODELIST`` / ``SLURM_NODELIST`` and the
                port is derived from ``SLURM_JOB_ID`` (``MASTER_ADDR`` / ``MASTER_PORT``
                override both). A SLURM job with one task is a single process.
spawn           none of the above and ``--world-size N`` > 1: maskkit starts N local
                processes itself (:func:`spawn`), on a free port chosen at run time
single          none of the above and world size 1: no process group at all
==============  =====================================================================

torchrun's variables win over SLURM's (``srun torchrun ...`` is a valid setup). gloo is the
backend on CPU and nccl on GPU; ``LOCAL_RANK`` picks the GPU.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, RendezvousError, first_line

#: SLURM job names of interactive allocations (``salloc`` + ``srun --pty bash``): a shell in
#: such a job is not one task of a training step, whatever SLURM_NTASKS says.
_INTERACTIVE_JOB_NAMES = {"bash", "interactive", "sh", "zsh"}


@dataclass(frozen=True)
class LaunchInfo:
    """Where this process sits in its job.

    ``launcher``: ``"torchrun"``, ``"slurm"``, ``"spawn"`` or ``"single"``.
    ``master_addr`` / ``master_port``: the rendezvous of the process group (unused for
    ``"single"``; for ``"spawn"`` the port is chosen when the processes start).
    """

    launcher: str
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 0

    @property
    def distributed(self) -> bool:
        """True when this process belongs to a process group of more than one rank."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# --------------------------------------------------------------------------------------------
# SLURM host lists
# --------------------------------------------------------------------------------------------
def _split_top_level(s: str) -> list[str]:
    """Split on commas that are not inside brackets: ``"a1,b[2-3]"`` -> ``["a1", "b[2-3]"]``."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in SLURM node list {s!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ValueError(f"unbalanced '[' in SLURM node list {s!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _expand_range(body: str, full: str) -> list[str]:
    """``"5-9,1"`` -> ``["5", ..., "9", "1"]``; zero padding kept (``"01-03"`` -> 01, 02, 03)."""
    out: list[str] = []
    for item in body.split(","):
        item = item.strip()
        if not item:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if m is None:
            raise ValueError(f"bad range {item!r} in SLURM node list {full!r}")
        lo, hi = m.group(1), m.group(2)
        if hi is None:
            out.append(lo)
            continue
        if int(hi) < int(lo):
            raise ValueError(f"descending range {item!r} in SLURM node list {full!r}")
        width = len(lo)
        out.extend(str(i).zfill(width) for i in range(int(lo), int(hi) + 1))
    return out


def parse_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM host list into host names, in SLURM's order.

    ``"node[5-9,1]"`` -> node5..node9, node1; ``"gpu[01-03]"`` -> gpu01, gpu02, gpu03;
    ``"a1,b[2-3]"`` -> a1, b2, b3; several bracket groups in one name expand as a product
    (``"r[1-2]n[1-2]"`` -> r1n1, r1n2, r2n1, r2n2). Raises ``ValueError`` on a malformed list.
    """
    hosts: list[str] = []
    for item in _split_top_level(nodelist.strip()):
        pieces: list[list[str]] = []
        pos = 0
        for m in re.finditer(r"\[([^\[\]]*)\]", item):
            pieces.append([item[pos:m.start()]])
            pieces.append(_expand_range(m.group(1), nodelist))
            pos = m.end()
        rest = item[pos:]
        if "[" in rest or "]" in rest:
            raise ValueError(f"bad brackets in SLURM node list {nodelist!r}")
        pieces.append([rest])
        hosts.extend("".join(p) for p in itertools.product(*pieces))
    if not hosts:
        raise ValueError(f"empty SLURM node list {nodelist!r}")
    return hosts


def first_host(nodelist: str) -> str:
    """The first host of a SLURM host list (the job's master)."""
    return parse_nodelist(nodelist)[0]


def slurm_port(job_id: str | int) -> int:
    """A rendezvous port derived from the SLURM job id: the same on every task of the job,
    different between jobs whose ids differ by less than 20,000 (jobs that share a node at the
    same time usually do), in 12000-31999 (below Linux's ephemeral range). Two jobs that still
    meet on one port keep apart: :func:`rendezvous` keys every run by its job id, and the second
    job's rank 0 stops with "port ... is taken"."""
    digits = re.sub(r"\D", "", str(job_id))
    if not digits:
        raise ValueError(f"SLURM_JOB_ID {job_id!r} holds no digits")
    return 12000 + int(digits) % 20000


# --------------------------------------------------------------------------------------------
# The resolver
# --------------------------------------------------------------------------------------------
def _int(env: Mapping[str, str], var: str) -> int:
    try:
        return int(env[var])
    except ValueError:
        raise ConfigError(f"environment variable {var}={env[var]!r} is not an integer") from None


def resolve_launch(env: Mapping[str, str] | None = None, world_size: int | None = None) -> LaunchInfo:
    """Read the launcher's environment (``os.environ`` by default) into a :class:`LaunchInfo`.

    ``world_size`` is the ``--world-size`` the user asked for (``None``: not given). Under
    torchrun or SLURM it must match the launcher's world size, or be left out; without a
    launcher, a value above 1 means ``"spawn"``. A pure function of its arguments.
    """
    env = os.environ if env is None else env
    if world_size is not None and world_size < 1:
        raise ConfigError(f"--world-size must be >= 1, got {world_size}")

    info: LaunchInfo | None = None
    if "RANK" in env and "WORLD_SIZE" in env:
        ws = _int(env, "WORLD_SIZE")
        rank = _int(env, "RANK")
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        if ws > 1:
            missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not env.get(v)]
            if missing:
                raise ConfigError(f"RANK/WORLD_SIZE are set (torchrun?) but {', '.join(missing)} is not")
            info = LaunchInfo("torchrun", rank, local, ws, env["MASTER_ADDR"], _int(env, "MASTER_PORT"))
        elif world_size is not None and world_size != 1 and "TORCHELASTIC_RUN_ID" in env:
            # torchrun --nproc-per-node 1: spawning more processes under it would make a world that
            # torchrun does not know of. (RANK/WORLD_SIZE=1 set by something else, or a SLURM
            # task of 1, may spawn: the seed's single-task way.)
            raise ConfigError(f"--world-size {world_size} disagrees with the launcher (torchrun started 1 "
                              f"process: RANK/WORLD_SIZE=1 are set): leave --world-size out under torchrun, "
                              f"or start {world_size} processes with --nproc-per-node {world_size}")
    elif "SLURM_PROCID" in env:
        # The step's size says how many processes srun started with this command (also inside an
        # interactive allocation, whose job name is "bash": `srun -n 4 maskkit train` there is a
        # world of 4). Without step variables, the allocation's size counts only outside an
        # interactive shell, which is not a task of a training step whatever SLURM_NTASKS says.
        if "SLURM_STEP_NUM_TASKS" in env:
            ws = _int(env, "SLURM_STEP_NUM_TASKS")
        elif env.get("SLURM_JOB_NAME", "") in _INTERACTIVE_JOB_NAMES:
            ws = 1
        else:
            ntasks_var = next((v for v in ("SLURM_NTASKS", "SLURM_NPROCS") if v in env), None)
            ws = _int(env, ntasks_var) if ntasks_var else 1
        if ws > 1:
            rank = _int(env, "SLURM_PROCID")
            local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
            addr = env.get("MASTER_ADDR")
            if not addr:
                nodes = next((env[v] for v in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
                              if env.get(v)), None)
                if nodes is None:
                    raise ConfigError("SLURM job with several tasks but no SLURM_JOB_NODELIST / "
                                      "SLURM_NODELIST to find the master host: set MASTER_ADDR")
                try:
                    addr = first_host(nodes)
                except ValueError as e:
                    raise ConfigError(f"{e}; set MASTER_ADDR to override") from None
            if env.get("MASTER_PORT"):
                port = _int(env, "MASTER_PORT")
            elif env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"):
                port = slurm_port(env.get("SLURM_JOB_ID") or env["SLURM_JOBID"])
            else:
                raise ConfigError("SLURM job with several tasks but no SLURM_JOB_ID to derive a port from: "
                                  "set MASTER_PORT")
            if not 0 <= rank < ws:
                raise ConfigError(f"SLURM_PROCID={rank} is outside the job's {ws} tasks")
            info = LaunchInfo("slurm", rank, local, ws, addr, port)

    if info is not None:
        if world_size is not None and world_size != info.world_size:
            raise ConfigError(
                f"--world-size {world_size} disagrees with the launcher ({info.launcher} started "
                f"{info.world_size} processes): leave --world-size out under {info.launcher}, or make "
                f"them match")
        return info
    if world_size is not None and world_size > 1:
        return LaunchInfo("spawn", 0, 0, world_size)
    return LaunchInfo("single")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now (the OS picks it); for local spawns and tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Devices and the process group
# --------------------------------------------------------------------------------------------
def resolve_device(device: Any, local_rank: int = 0) -> Any:
    """``"auto" | "cpu" | "cuda" | "cuda:N"`` (or a ``torch.device``) -> a ``torch.device`` for this rank.

    ``"cuda"`` (or ``"auto"`` with a GPU) gives ``cuda:LOCAL_RANK``; asking for CUDA where
    none is present, for a GPU index this machine does not have, or for more local ranks than
    GPUs, or anything else, is a :class:`ConfigError` naming ``--device``.
    """
    import torch

    device = str(device or "auto").lower().strip()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or device.startswith("cpu:"):
        return torch.device(device)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available here (use --device cpu)")
        n = torch.cuda.device_count()
        if ":" in device:
            try:
                index = int(device.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"--device {device}: expected cuda:N with N a GPU index") from None
            if not 0 <= index < n:
                raise ConfigError(f"--device {device}: this machine has {n} GPU(s) (cuda:0 to cuda:{n - 1})")
        else:
            # A launcher that binds one GPU per task (srun --gpus-per-task=1, CUDA_VISIBLE_DEVICES
            # set per rank) leaves each process a single visible device: use it.
            index = local_rank if n > 1 else 0
        if index >= n:
            raise ConfigError(f"local rank {local_rank} needs GPU {index}, but this node has {n} GPU(s): "
                              f"start at most {n} processes per node")
        return torch.device("cuda", index)
    if device.startswith("mps"):
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"--device {device}: no Apple GPU (MPS) is available here (use --device cpu)")
        return torch.device(device)
    try:  # another device torch knows (xpu, meta, ...): for the Python API
        return torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}") from None


def init_process_group(info: LaunchInfo, device: Any, timeout_s: float = 600.0) -> None:
    """Join the process group of ``info`` (no-op for a single process).

    gloo on CPU, nccl on CUDA; ``timeout_s`` bounds every collective, so a rank that dies
    makes the others fail with an error instead of hanging forever. Under SLURM and spawn the
    processes first meet through :func:`rendezvous`, whose wait answers SIGTERM / Ctrl-C and
    whose failures are :class:`RendezvousError` messages; the backend then starts with every
    process present. Under torchrun its agents have met already: torch's own rendezvous.
    """
    if not info.distributed:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    global _STORE
    if info.launcher == "torchrun":
        # torchrun's agents have met already and started every worker of this round; they also
        # restart a failed round, with a store and restart count of their own: torch's own
        # rendezvous (the agent's store) is the one that knows the round.
        rdzv: dict[str, Any] = {"init_method": f"tcp://{info.master_addr}:{info.master_port}"}
    else:
        rdzv = {"store": rendezvous(info, timeout_s)}
    # The backend starts in a helper thread created with SIGINT/SIGTERM blocked: the threads
    # gloo/nccl create inherit that mask, so those signals always reach the main thread (whose
    # handler only sets a flag) and never interrupt a system call inside the backend, which can
    # abort the process ("terminate called without an active exception"). The main thread
    # waits with signals open: a start that hangs (a peer gone between the rendezvous and
    # here, a torchrun restart whose old peer's port is dead) still ends on SIGTERM / Ctrl-C
    # after the grace period, not after --dist-timeout.
    outcome: list[BaseException | None] = []

    def start() -> None:
        try:
            if device.type == "cuda":
                torch.cuda.set_device(device)  # the current device is per thread
            dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size,
                                    timeout=_dt.timedelta(seconds=timeout_s), **rdzv, **kwargs)
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            outcome.append(e)

    starter = threading.Thread(target=start, name="maskkit-backend-start", daemon=True)
    with _stop_signals_blocked():
        starter.start()
    grace = _StopGrace(info.launcher)
    # Without a stop flag (the Python API outside `maskkit train`), a signal would raise
    # KeyboardInterrupt here and leave the start running behind the caller's back: the wait
    # keeps them blocked, as the start did before it moved to a thread.
    with _stop_signals_blocked() if held_stop_flag() is None else contextlib.nullcontext():
        while starter.is_alive():
            starter.join(0.1)
            signum = grace.expired()
            if signum is not None and starter.is_alive():
                _STORE = None
                _exit_stopped(signum, f"starting {backend} with the other processes")
    error = outcome[0] if outcome else RuntimeError("the backend start ended without a result")
    if error is not None:
        _STORE = None
        raise RendezvousError(
            f"rank {info.rank} of {info.world_size} ({info.launcher}) could not start {backend} with the "
            f"other processes at {info.master_addr}:{info.master_port}: {first_line(error)}") from error


_STORE: Any = None  # rank 0's store server lives as long as the process group
_RENDEZVOUS_CALLS: dict[tuple[str, int], int] = {}


def _run_key(info: LaunchInfo) -> str:
    """What tells this run's keys from another's on a shared store (or a store of another job
    that got the same port): SLURM jobs are told apart by their job ids and steps; spawned
    processes use a port chosen free at run time."""
    env = os.environ
    if info.launcher == "slurm":
        return f"slurm/{env.get('SLURM_JOB_ID') or env.get('SLURM_JOBID', '')}/{env.get('SLURM_STEP_ID', '')}"
    return info.launcher


#: Seconds a stop request waits for the missing processes before it ends the rendezvous.
RENDEZVOUS_STOP_GRACE_S = 5.0
#: getaddrinfo's answers for a name that does not exist (others, like EAI_AGAIN, may pass).
_UNKNOWN_HOST = tuple(getattr(socket, n) for n in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, n))
#: Seconds of waiting at start-up before a process says what it waits for (once).
WAIT_NOTICE_S = 10.0
#: The same for ``--world-size`` (spawn): the parent starts every process at once and stops them
#: all if one dies, so a missing one is only a slow start (importing torch on a busy machine).
SPAWN_STOP_GRACE_S = 30.0


def _stop_requested() -> int | None:
    """The signal number of a pending stop request (SIGTERM, Ctrl-C), or None."""
    flag = held_stop_flag()
    return int(flag.signum or signal.SIGTERM) if flag is not None and flag.requested else None


class _StopGrace:
    """A wait's view of the stop request: :meth:`expired` gives its signal number once it has
    been pending for the grace period (time for the missing processes to come):
    :data:`RENDEZVOUS_STOP_GRACE_S`, or :data:`SPAWN_STOP_GRACE_S` for ``launcher="spawn"``."""

    def __init__(self, launcher: str = "") -> None:
        self.since: float | None = None
        self.launcher = launcher

    def expired(self) -> int | None:
        signum = _stop_requested()
        if signum is None:
            return None
        now = time.monotonic()
        self.since = now if self.since is None else self.since
        grace = RENDEZVOUS_STOP_GRACE_S
        if self.launcher == "spawn":
            grace = max(grace, SPAWN_STOP_GRACE_S)
        return signum if now - self.since >= grace else None


def _exit_stopped(signum: int, what: str) -> None:
    """End the process with 128 + ``signum``: nothing was trained, nothing is lost."""
    import sys

    print(f"maskkit: stopped by {signal.Signals(signum).name} while {what}; nothing was trained",
          file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def rendezvous(info: LaunchInfo, timeout_s: float = 600.0) -> Any:
    """Meet the other processes of ``info``'s run; returns the store to start the backend with.

    For SLURM and spawn (torchrun's agents hold a rendezvous of their own). Rank 0 hosts a TCP
    store at ``master_port``; every process counts itself in under a key of its run (:func:`_run_key`: two
    SLURM jobs that got the same port never mix) and waits until all ``world_size`` are in. The
    waits poll, so a SIGTERM / Ctrl-C ends the process at once (128 + the signal's number),
    and each failure is a one-line :class:`RendezvousError`: the port taken, rank 0
    unreachable, or too few processes after ``timeout_s`` (with the usual cause for the
    launcher: a plain ``maskkit train`` in an sbatch script is one process, not a task each).
    """
    global _STORE
    import torch.distributed as dist

    who = f"rank {info.rank} of {info.world_size} ({info.launcher})"
    where = f"{info.master_addr}:{info.master_port}"
    deadline = time.monotonic() + timeout_s
    timeout = _dt.timedelta(seconds=timeout_s)
    hosting = info.rank == 0
    try:  # a name that does not resolve would otherwise cost a timeout and a page of C++ frames
        socket.getaddrinfo(info.master_addr, info.master_port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:  # (a temporary failure, EAI_AGAIN at a job's start: the waits retry)
        if e.errno in _UNKNOWN_HOST:
            source = "MASTER_ADDR" if os.environ.get("MASTER_ADDR") else (
                "the first host of the SLURM node list" if info.launcher == "slurm" else "the master address")
            raise RendezvousError(f"{who}: rank 0's host {info.master_addr!r} ({source}) does not resolve "
                                  f"({e.strerror or e}): set MASTER_ADDR to an address every process can "
                                  f"reach, the same for all") from None
    # (not for --world-size: its parent starts every process at once, a late one is only slow)
    waiting = _WaitNotice(who, where, timeout_s, enabled=info.launcher != "spawn")
    store = None
    if hosting:
        try:
            # The store's server thread inherits this thread's signal mask: blocked, SIGTERM / SIGINT
            # never interrupt its system calls (an interrupted one can abort the process:
            # "terminate called without an active exception"); the main thread handles them.
            with _stop_signals_blocked():
                store = dist.TCPStore(info.master_addr, info.master_port, info.world_size, is_master=True,
                                      timeout=timeout, wait_for_workers=False, **_STORE_OPTIONS)
        except Exception as e:
            text = str(e).lower()
            if "address already in use" in text or "eaddrinuse" in text or "errno: 98" in text:
                raise RendezvousError(
                    f"{who}: port {info.master_port} is taken on {socket.gethostname()} (another job on this "
                    f"node?): set MASTER_PORT to a free port, the same for every process") from None
            raise RendezvousError(f"{who}: could not open the rendezvous store at {where}: "
                                  f"{first_line(e)}") from None
    grace = _StopGrace(info.launcher)
    while store is None:
        try:
            # a plain connection first: torch's store client logs a C++ error block per failed try
            socket.create_connection((info.master_addr, info.master_port), timeout=2).close()
            store = _store_client(info, who, where, deadline)
        except RendezvousError:
            raise
        except Exception as e:
            if time.monotonic() > deadline:
                raise RendezvousError(
                    f"{who}: rank 0 was not reachable at {where} within {timeout_s:g} s "
                    f"({first_line(e)}). Is rank 0 running, and is {info.master_addr} its address?"
                    + _launch_hint(info)) from None
            signum = grace.expired()  # nobody counts on this process yet
            if signum is not None:
                _exit_stopped(signum, f"waiting for rank 0 at {where}")
            waiting.tick("for rank 0")
            time.sleep(0.1)
    store.set_timeout(timeout)
    # Every process of a run calls train() as often: a second run in the same processes (the
    # Python API) gets keys of its own.
    key = _run_key(info)
    n = _RENDEZVOUS_CALLS[(key, info.rank)] = _RENDEZVOUS_CALLS.get((key, info.rank), 0) + 1
    store = dist.PrefixStore(f"maskkit/{key}/{n}/", store)
    if hosting:
        _STORE = store
    try:
        _join(store, info, who, where, deadline, timeout_s, waiting)
    except (RendezvousError, SystemExit):
        _STORE = None  # close the server: a retry in this process can take the port again
        raise
    except Exception as e:  # the store's host went away (rank 0 died, or it was another job's)
        _STORE = None
        signum = _stop_requested()
        if signum is not None:  # stopped too: rank 0 left on the same request
            _exit_stopped(signum, f"waiting for the other processes (rank 0 at {where} left)")
        raise RendezvousError(
            f"{who}: lost the rendezvous store at {where} while waiting for the other processes "
            f"({first_line(e)}): rank 0 stopped, or another job on this node holds the same port (set "
            f"MASTER_PORT to a free port, the same for every process)") from None
    return store


def _store_client(info: LaunchInfo, who: str, where: str, deadline: float) -> Any:
    """A client of the store at ``where``, made in a helper thread: a port held by some other
    service accepts the connection and then never answers the store's handshake, and that wait
    (in C++) would neither time out nor let a stop request through."""
    import torch.distributed as dist

    result: list[Any] = []

    def connect() -> None:
        if hasattr(signal, "pthread_sigmask"):  # as the server's: signals are the main thread's
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            result.append(dist.TCPStore(info.master_addr, info.master_port, info.world_size, is_master=False,
                                        timeout=_dt.timedelta(seconds=10), **_STORE_OPTIONS))
        except Exception as e:  # noqa: BLE001 - handed to the waiting thread
            result.append(e)

    t = threading.Thread(target=connect, name="maskkit-store-connect", daemon=True)
    t.start()
    answer_by = min(deadline, time.monotonic() + 15.0)
    grace = _StopGrace(info.launcher)
    while t.is_alive():
        t.join(0.1)
        signum = grace.expired()
        if signum is not None:
            _exit_stopped(signum, f"connecting to rank 0 at {where}")
        if t.is_alive() and time.monotonic() > answer_by:
            raise RendezvousError(f"{who}: {where} accepts connections but does not answer as rank 0's "
                                  f"store (another service on this port?): set MASTER_PORT to a free port, "
                                  f"the same for every process")
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0]


def _join(store: Any, info: LaunchInfo, who: str, where: str, deadline: float, timeout_s: float,
          waiting: _WaitNotice | None = None) -> None:
    """Count this process in and wait for all of them. The outcome is agreed through one key
    set once (``compare_set``): ``complete`` when every process is in (a stop request then
    stops the run at its first step, as any start-up signal does), or ``stopped:N`` when a
    process with a stop request has waited :data:`RENDEZVOUS_STOP_GRACE_S` for the missing
    ones; every process then exits with 128 + N, none is left waiting for another."""
    ws = info.world_size
    joined = int(store.add("joined", 1))
    grace = _StopGrace(info.launcher)
    while True:
        outcome = store.get("outcome") if store.check(["outcome"]) else b""
        if joined >= ws and not outcome:
            outcome = store.compare_set("outcome", "", "complete")
        signum = grace.expired() if not outcome else None
        if signum is not None:
            outcome = store.compare_set("outcome", "", f"stopped:{signum}")
        if outcome == b"complete":
            return
        if outcome.startswith(b"stopped:"):
            seen = int(store.add("left", 1))
            if info.rank == 0:  # it may host the store: let the others read the outcome first
                wait_until = time.monotonic() + 3.0
                while seen < int(store.add("joined", 0)) and time.monotonic() < wait_until:
                    time.sleep(0.05)
                    seen = int(store.add("left", 0))
            _exit_stopped(int(outcome.split(b":")[1]), f"waiting for the other processes ({joined} of {ws} "
                                                      f"joined)")
        if time.monotonic() > deadline:
            raise RendezvousError(f"{who}: only {joined} of {ws} processes joined at {where} within "
                                  f"{timeout_s:g} s (a process that never started, or that stopped or "
                                  f"failed before it joined: see its log)." + _launch_hint(info))
        if waiting is not None:
            waiting.tick(f"for {ws - joined} more of {ws} processes")
        time.sleep(0.1)
        joined = int(store.add("joined", 0))


class _WaitNotice:
    """One line on stderr once a start-up wait has lasted :data:`WAIT_NOTICE_S`: a process
    left waiting for one that never comes (an sbatch script without ``srun``) says what it
    waits for instead of staying silent until the timeout."""

    def __init__(self, who: str, where: str, timeout_s: float, enabled: bool = True) -> None:
        self.who, self.where, self.timeout_s, self.enabled = who, where, timeout_s, enabled
        self.start = time.monotonic()
        self.said = False

    def tick(self, what: str) -> None:
        if not self.said and time.monotonic() - self.start >= WAIT_NOTICE_S and self.enabled:
            self.said = True
            print(f"maskkit: {self.who} waiting {what} at {self.where} (gives up after {self.timeout_s:g} s, "
                  f"--dist-timeout)", file=sys.stderr, flush=True)


def _launch_hint(info: LaunchInfo) -> str:
    if info.launcher == "slurm":
        return (" Under SLURM, start every task with `srun maskkit train ...` inside the job script (a plain "
                "`maskkit train` there is one process, not one per task).")
    return ""


class _stop_signals_blocked:
    """Block SIGINT / SIGTERM in the calling thread for the duration (threads started inside
    inherit the blocked mask); a signal that arrives meanwhile is delivered on exit."""

    _SIGNALS = ("SIGINT", "SIGTERM")

    def __enter__(self) -> None:
        self._old = None
        if hasattr(signal, "pthread_sigmask"):
            self._old = signal.pthread_sigmask(signal.SIG_BLOCK, {getattr(signal, n) for n in self._SIGNALS})

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old)


def destroy_process_group() -> None:
    """Leave the process group if one is active."""
    global _STORE
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _STORE = None


def is_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_(tensor: Any, op: str = "sum") -> Any:
    """In-place all-reduce (``"sum"`` or ``"max"``); identity without a process group."""
    if is_distributed():
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a list of world-size items); ``[obj]`` without a process group."""
    if not is_distributed():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank; ``obj`` itself without a process group."""
    if not is_distributed():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


# --------------------------------------------------------------------------------------------
# Local spawn
# --------------------------------------------------------------------------------------------
def spawn(worker: Callable[..., Any], nprocs: int, args: tuple[Any, ...] = (),
          on_signal: Callable[[int], None] | None = None, block_stop_signals: bool = False) -> None:
    """Start ``worker(rank, *args)`` in ``nprocs`` processes and wait for them.

    ``worker`` must be a picklable top-level function. Returns when every process exited
    with status 0; raises (``torch.multiprocessing.ProcessRaisedException`` /
    ``ProcessExitedException``) as soon as one fails, after terminating the others, so a dead
    rank never leaves the rest hanging. SIGINT/SIGTERM received by this (parent) process are
    forwarded to the children, which stop cleanly (on Windows the console's Ctrl-C reaches them
    itself); ``on_signal(signum)`` is told about them.
    ``block_stop_signals``: the children start with SIGINT/SIGTERM blocked (the mask survives
    the exec) and must unblock them once their handler is in place (:func:`hold_stop_signals`
    does): a signal during their start-up is then a stop request, not the death of a rank.
    """
    import torch.multiprocessing as mp

    forwarded: dict[int, int] = {}
    ctx: Any = None

    def forward(signum: int, frame: Any) -> None:
        forwarded[signum] = forwarded.get(signum, 0) + 1
        if on_signal is not None:
            on_signal(signum)
        if sys.platform == "win32" and frame is not None:
            # Windows: a console's Ctrl-C reaches every process attached to it, the children
            # included, which stop on their own; os.kill with a signal number would terminate them
            # on the spot (TerminateProcess), before they save. (A stop asked for before the
            # children existed, frame None, never reached them: terminating them loses nothing.)
            return
        for p in ctx.processes if ctx is not None else ():
            if p.is_alive() and p.pid is not None:
                try:
                    os.kill(p.pid, signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)
                except ProcessLookupError:
                    pass

    import logging

    # torch logs "Terminating process N via signal SIGTERM" when a rank fails; the failure is
    # reported in one line by the caller, which says the others were stopped.
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    old_level = spawn_log.level
    spawn_log.setLevel(logging.ERROR)
    old: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, forward)
            except ValueError:  # not the main thread: leave signals alone
                pass
        # A signal that reaches this process while the children start is forwarded as soon as
        # the block ends here.
        with _stop_signals_blocked() if block_stop_signals else contextlib.nullcontext():
            ctx = mp.start_processes(worker, args=args, nprocs=nprocs, join=False, start_method="spawn")
            held = held_stop_flag()  # a stop this process was asked for before the children existed
            if held is not None and held.requested and not forwarded:
                forward(held.signum, None)
        while not ctx.join():
            pass
    finally:
        spawn_log.setLevel(old_level)
        for sig, handler in old.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------------------------
# Signals: the handler only sets a flag
# --------------------------------------------------------------------------------------------
class StopFlag:
    """Set by SIGTERM / SIGINT; read once per step and combined over the ranks.

    A second Ctrl-C more than 3 s after the first aborts without saving (KeyboardInterrupt).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._first = 0.0
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.signum is not None and signum == signal.SIGINT and now - self._first > 3.0:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum, self._first = signum, now

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)
            if hasattr(signal, "siginterrupt"):  # (not on Windows)
                signal.siginterrupt(sig, False)  # restart interrupted system calls (SA_RESTART)

    def uninstall(self) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)
        self._old.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None


_HELD: StopFlag | None = None


def held_stop_flag() -> StopFlag | None:
    """The flag of the enclosing :func:`hold_stop_signals`, or None."""
    return _HELD


@contextlib.contextmanager
def hold_stop_signals() -> Iterator[StopFlag]:
    """Catch SIGINT / SIGTERM as stop requests for the whole ``with`` block.

    For a process that exits when training ends (``maskkit train``, the processes it spawns): a
    signal during start-up is a stop request the trainer honours at its first step, and one that
    arrives while the run shuts down (a second SIGTERM from the scheduler, a second Ctrl-C) no
    longer kills the process before it exits with 143 / 130. A trainer inside uses this flag
    instead of installing its own. Signals blocked by a spawning parent are unblocked once the
    handler is in place. The previous handlers are back when the block ends.
    """
    global _HELD
    if _HELD is not None:  # nested: the outer block holds them
        yield _HELD
        return
    flag = StopFlag()
    flag.install()
    _HELD = flag
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield flag
    finally:
        _HELD = None
        flag.uninstall()


#: PyTorch's Windows builds have no libuv, which TCPStore uses by default (pytorch #139990); the
#: stores torchrun and init_method URLs make read USE_LIBUV.
_STORE_OPTIONS: dict[str, Any] = {"use_libuv": False} if sys.platform == "win32" else {}
if sys.platform == "win32":
    os.environ.setdefault("USE_LIBUV", "0")


def check_not_bootstrapping(what: str) -> None:
    """Refuse to start ``what`` inside a process that is still starting: under the spawn start
    method (the default on macOS and Windows) every DataLoader worker and training process
    re-runs the top level of the user's script, and a call there, outside
    ``if __name__ == "__main__":``, would start a second run inside each of them."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise ConfigError(
            f"{what} was called while a new process was starting: with the spawn start method (the "
            f"default on macOS and Windows) each DataLoader worker and training process re-runs the top "
            f"level of your script. Put the call under `if __name__ == \"__main__\":`")


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (taskset, SLURM's
    --cpus-per-task, a container's cpuset), else every CPU of the machine."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)

