"""The launcher resolver (torchrun / SLURM / spawn / single), SLURM host lists, and local spawn."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from maskkit.distributed import (
    LaunchInfo,
    first_host,
    free_port,
    parse_nodelist,
    rendezvous,
    resolve_launch,
    slurm_port,
    spawn,
)
from maskkit.errors import ConfigError, RendezvousError


# -- SLURM host lists ------------------------------------------------------------------------------
@pytest.mark.parametrize("nodelist, hosts", [
    ("node1", ["node1"]),
    ("node[5-9,1]", ["node5", "node6", "node7", "node8", "node9", "node1"]),
    ("gpu[01-03]", ["gpu01", "gpu02", "gpu03"]),
    ("a1,b[2-3]", ["a1", "b2", "b3"]),
    ("gpu[08-11]", ["gpu08", "gpu09", "gpu10", "gpu11"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
    ("x[1,3],y7,z[004-005]", ["x1", "x3", "y7", "z004", "z005"]),
    ("gnode[10,20,25,37]", ["gnode10", "gnode20", "gnode25", "gnode37"]),
    ("host-a.cluster,host-b.cluster", ["host-a.cluster", "host-b.cluster"]),
])
def test_parse_nodelist(nodelist, hosts):
    assert parse_nodelist(nodelist) == hosts
    assert first_host(nodelist) == hosts[0]


@pytest.mark.parametrize("bad", ["node[1-2", "node]1[", "node[a-b]", "node[5-3]", "", "n[1-2]x]"])
def test_parse_nodelist_rejects_malformed(bad):
    with pytest.raises(ValueError):
        parse_nodelist(bad)


def test_slurm_port_is_stable_and_in_range():
    assert slurm_port("123456") == slurm_port(123456)
    assert slurm_port("1") != slurm_port("2")
    for j in (0, 1, 19999, 20000, 987654321):
        assert 12000 <= slurm_port(j) < 32000
    with pytest.raises(ValueError):
        slurm_port("abc")


# -- the resolver ---------------------------------------------------------------------------------
def test_no_launcher_is_single_or_spawn():
    assert resolve_launch({}) == LaunchInfo("single")
    assert resolve_launch({}, world_size=1).launcher == "single"
    info = resolve_launch({}, world_size=4)
    assert (info.launcher, info.world_size, info.rank) == ("spawn", 4, 0)
    with pytest.raises(ConfigError):
        resolve_launch({}, world_size=0)


def test_torchrun_environment():
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "10.0.0.7",
           "MASTER_PORT": "29511", "LOCAL_WORLD_SIZE": "2"}
    info = resolve_launch(env)
    assert info == LaunchInfo("torchrun", 3, 1, 4, "10.0.0.7", 29511)
    assert resolve_launch(env, world_size=4) == info
    with pytest.raises(ConfigError, match="disagrees"):
        resolve_launch(env, world_size=2)
    # RANK/WORLD_SIZE=1 is a single process (and --world-size may then spawn) ...
    one = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "x", "MASTER_PORT": "1"}
    assert resolve_launch(one).launcher == "single"
    assert resolve_launch(one, world_size=2).launcher == "spawn"
    # ... but not under torchrun itself (--nproc-per-node 1 --world-size 2 spawned 2 unseen processes).
    with pytest.raises(ConfigError, match="--world-size 2 disagrees with the launcher \\(torchrun started 1"):
        resolve_launch({**one, "TORCHELASTIC_RUN_ID": "none"}, world_size=2)
    assert resolve_launch({**one, "TORCHELASTIC_RUN_ID": "none"}, world_size=1).launcher == "single"
    with pytest.raises(ConfigError, match="MASTER_PORT"):
        resolve_launch({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h"})


def test_slurm_environment_four_tasks_two_nodes():
    base = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "4", "SLURM_JOB_NODELIST": "gpu[07-08]",
            "SLURM_NODELIST": "gpu[07-08]", "SLURM_JOB_NAME": "train"}
    infos = [resolve_launch({**base, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r % 2)}) for r in range(4)]
    # One world of 4, not four worlds of 1: same size, same master, same port, distinct ranks.
    assert {i.launcher for i in infos} == {"slurm"}
    assert {i.world_size for i in infos} == {4}
    assert {(i.master_addr, i.master_port) for i in infos} == {("gpu07", slurm_port(4242))}
    assert [i.rank for i in infos] == [0, 1, 2, 3]
    assert [i.local_rank for i in infos] == [0, 1, 0, 1]


def test_slurm_environment_details():
    env = {"SLURM_JOB_ID": "77", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1",
           "SLURM_LOCALID": "1", "SLURM_STEP_NODELIST": "a1,b[2-3]", "SLURM_JOB_NODELIST": "z9"}
    info = resolve_launch(env)
    # srun's step size wins over the allocation's; the step's node list gives the master.
    assert (info.world_size, info.rank, info.master_addr) == (2, 1, "a1")
    # MASTER_ADDR / MASTER_PORT override the derived values.
    info = resolve_launch({**env, "MASTER_ADDR": "head", "MASTER_PORT": "12345"})
    assert (info.master_addr, info.master_port) == ("head", 12345)
    # A SLURM job with one task is a single process; --world-size may then spawn locally.
    one = {"SLURM_JOB_ID": "5", "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_NODELIST": "n1"}
    assert resolve_launch(one).launcher == "single"
    assert resolve_launch(one, world_size=2).launcher == "spawn"
    # An interactive shell inside an allocation (srun --pty bash: a step of 1 task, or no step
    # variables at all) is not a task of a training step, whatever the allocation's size ...
    shell = {**env, "SLURM_JOB_NAME": "bash", "SLURM_STEP_NUM_TASKS": "1"}
    assert resolve_launch(shell).launcher == "single"
    no_step = {k: v for k, v in shell.items() if not k.startswith("SLURM_STEP")}
    assert resolve_launch(no_step).launcher == "single"
    # ... but `srun -n 2 maskkit train` from that shell is one world of 2 (job name still "bash").
    in_alloc = resolve_launch({**env, "SLURM_JOB_NAME": "interactive"})
    assert (in_alloc.launcher, in_alloc.world_size, in_alloc.rank) == ("slurm", 2, 1)
    with pytest.raises(ConfigError, match="disagrees"):
        resolve_launch(env, world_size=4)
    with pytest.raises(ConfigError, match="SLURM_PROCID"):
        resolve_launch({**env, "SLURM_PROCID": "5"})
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        resolve_launch({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "2", "SLURM_PROCID": "0"})


def test_torchrun_wins_over_slurm():
    env = {"SLURM_JOB_ID": "9", "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_NODELIST": "n[1-2]",
           "RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "MASTER_ADDR": "n1", "MASTER_PORT": "29500"}
    info = resolve_launch(env)
    assert (info.launcher, info.rank, info.world_size) == ("torchrun", 5, 8)


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


# -- local spawn: a dead rank must not leave the others hanging ----------------------------------------
def _worker_ok(rank: int, out_dir: str) -> None:
    with open(os.path.join(out_dir, f"rank{rank}"), "w") as f:
        f.write(str(rank))


def _worker_one_dies(rank: int, out_dir: str) -> None:
    if rank == 1:
        os._exit(3)  # killed without a Python exception, like an OOM kill
    time.sleep(60)  # rank 0 would wait forever for a collective with the dead rank


def _worker_sleeps_until_term(rank: int, out_dir: str) -> None:
    got: list[int] = []
    signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    with open(os.path.join(out_dir, f"ready{rank}"), "w"):
        pass
    deadline = time.time() + 30
    while not got and time.time() < deadline:
        time.sleep(0.02)
    with open(os.path.join(out_dir, f"stopped{rank}"), "w") as f:
        f.write(str(got))


@pytest.mark.slow
def test_spawn_runs_every_rank(tmp_path):
    spawn(_worker_ok, 2, args=(str(tmp_path),))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0", "rank1"]


@pytest.mark.slow
def test_spawn_raises_when_a_rank_dies(tmp_path):
    import torch.multiprocessing as mp

    t0 = time.monotonic()
    with pytest.raises(mp.ProcessExitedException):
        spawn(_worker_one_dies, 2, args=(str(tmp_path),))
    assert time.monotonic() - t0 < 30  # the survivor was terminated, not waited for


@pytest.mark.slow
def test_spawn_forwards_sigterm_to_children(tmp_path):
    import threading

    def send_term_when_ready() -> None:
        deadline = time.time() + 30
        while time.time() < deadline and not all((tmp_path / f"ready{r}").exists() for r in range(2)):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    seen: list[int] = []
    threading.Thread(target=send_term_when_ready, daemon=True).start()
    spawn(_worker_sleeps_until_term, 2, args=(str(tmp_path),), on_signal=seen.append)
    assert seen == [signal.SIGTERM]
    for r in range(2):
        assert (tmp_path / f"stopped{r}").read_text() == f"[{int(signal.SIGTERM)}]"


# -- the rendezvous ---------------------------------------------------------------------------------
def _meet(infos: list[LaunchInfo], timeout_s: float = 20.0) -> list:
    """``rendezvous`` of each info in its own thread; its store, or the exception it raised."""
    import threading

    out: list = [None] * len(infos)

    def run(i: int) -> None:
        try:
            out[i] = rendezvous(infos[i], timeout_s)
        except BaseException as e:  # noqa: BLE001 - returned to the test
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(infos))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 10)
    return out


def test_rendezvous_meets_every_rank_and_names_what_is_missing(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    port = free_port()
    a = [LaunchInfo("slurm", r, r, 2, "127.0.0.1", port) for r in range(2)]
    stores = _meet(a)
    assert not any(isinstance(x, BaseException) for x in stores), stores
    assert int(stores[0].add("joined", 0)) == 2
    # A second job that got the same port (job ids 20,000 apart): its rank 0 cannot host, and its
    # rank 1 counts itself in under its own job's key, so the first job's count is untouched.
    monkeypatch.setenv("SLURM_JOB_ID", "24242")
    b0, b1 = (LaunchInfo("slurm", r, r, 2, "127.0.0.1", port) for r in range(2))
    with pytest.raises(RendezvousError, match=rf"rank 0 of 2 \(slurm\): port {port} is taken .*MASTER_PORT"):
        rendezvous(b0, 5)
    with pytest.raises(RendezvousError, match=r"only 1 of 2 processes joined .* within 1 s \(a process that "
                                              r"never started.*\)\. Under SLURM, start every task with "):
        rendezvous(b1, 1)
    assert int(stores[0].add("joined", 0)) == 2
    # Rank 1 with nobody at the port.
    lone = LaunchInfo("spawn", 1, 1, 2, "127.0.0.1", free_port())
    with pytest.raises(RendezvousError, match=r"rank 1 of 2 \(spawn\): rank 0 was not reachable at "
                                              r"127\.0\.0\.1:\d+ within 1 s"):
        rendezvous(lone, 1)


def test_a_waiting_process_says_so_and_a_host_that_does_not_resolve_is_named(monkeypatch, capsys):
    """A SLURM task whose partners never come (an sbatch script without srun) said nothing for the
    ten minutes of --dist-timeout; a master host that does not resolve cost the timeout and a page
    of C++ frames, then pointed at srun."""
    import maskkit.distributed as d

    monkeypatch.setattr(d, "WAIT_NOTICE_S", 0.2)
    monkeypatch.setenv("SLURM_JOB_ID", "31337")
    with pytest.raises(RendezvousError, match="only 1 of 2 processes joined"):
        rendezvous(LaunchInfo("slurm", 0, 0, 2, "127.0.0.1", free_port()), 1)
    err = capsys.readouterr().err
    assert re.search(r"rank 0 of 2 \(slurm\) waiting for 1 more of 2 processes at 127\.0\.0\.1:\d+ \(gives "
                     r"up after 1 s, --dist-timeout\)", err), err
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RendezvousError, match=r"rank 1 of 2 \(slurm\): rank 0's host 'nohost01.invalid' "
                                              r"\(the first host of the SLURM node list\) does not resolve"):
        rendezvous(LaunchInfo("slurm", 1, 1, 2, "nohost01.invalid", free_port()), 60)
    # A temporary failure (EAI_AGAIN, a name server still starting with the job) is waited out.
    import socket

    real = socket.getaddrinfo
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    with pytest.raises(RendezvousError, match="only 1 of 2 processes joined"):  # not "does not resolve"
        rendezvous(LaunchInfo("slurm", 0, 0, 2, "127.0.0.1", free_port()), 1)
    assert calls[0] == "127.0.0.1"


def test_a_backend_start_that_hangs_still_ends_on_a_stop_request(monkeypatch, capsys):
    """Under torchrun the backend starts straight away (its agents met already); when a peer is gone
    (a restart whose old peer's port is dead) that start waits for --dist-timeout, and it used to
    wait with SIGTERM blocked: torchrun's stop went unheard until it sent SIGKILL."""
    import torch
    import torch.distributed as dist

    import maskkit.distributed as d

    class Flag:
        requested, signum = True, int(signal.SIGTERM)

    monkeypatch.setattr(d, "RENDEZVOUS_STOP_GRACE_S", 0.3)
    monkeypatch.setattr(d, "held_stop_flag", lambda: Flag())
    info = LaunchInfo("torchrun", 0, 0, 2, "127.0.0.1", free_port())  # rank 1 never comes
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as stop:
        d.init_process_group(info, torch.device("cpu"), timeout_s=4)
    assert stop.value.code == 143 and time.monotonic() - t0 < 3.5
    assert "stopped by SIGTERM while starting gloo with the other processes" in capsys.readouterr().err
    assert not dist.is_initialized()


def test_rendezvous_agrees_on_a_stop_request(monkeypatch):
    """A stop request while a process is missing ends every waiting process with 128 + N after the
    grace period, the same for all (never one gone and another still waiting for it)."""
    import maskkit.distributed as d

    class Flag:
        requested, signum = True, int(signal.SIGTERM)

    monkeypatch.setattr(d, "RENDEZVOUS_STOP_GRACE_S", 0.3)
    monkeypatch.setattr(d, "held_stop_flag", lambda: Flag())
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    port = free_port()
    out = _meet([LaunchInfo("slurm", r, r, 3, "127.0.0.1", port) for r in range(2)])  # rank 2 never comes
    assert all(isinstance(x, SystemExit) and x.code == 143 for x in out), out
    # With everyone there, a stop request is left to the trainer (its first step saves and stops).
    port = free_port()
    out = _meet([LaunchInfo("slurm", r, r, 2, "127.0.0.1", port) for r in range(2)])
    assert not any(isinstance(x, BaseException) for x in out), out
