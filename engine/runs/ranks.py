"""A launch's ranks on this host: torchrun's workers that died while others live, stopped processes, the last log line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from engine.runs import manifest as mf
from engine.runs.processes import Member, cmdline, environ_value, launch_members
from engine.runs.workdir import WorkDir

SPAWN_S = 5.0  # torchrun starts its workers together: one missing this long after the others started has died
TAIL_BYTES = 8192
STOPPED = {"T": "stopped (SIGSTOP or ctrl-z)", "t": "stopped by a debugger"}


def _is_torchrun(argv: list[str]) -> bool:
    """True for torchrun's command line (`torchrun ...` or `python -m torch.distributed.run ...`)."""
    return any(Path(word).name == "torchrun" for word in argv[:2]) or "torch.distributed.run" in argv[1:3]


def _rank(worker: Member, launch: mf.Launch) -> int | None:
    """The global rank torchrun gave a worker (from its environment), None when that cannot be read."""
    rank = environ_value(worker.pid, "RANK")
    local = environ_value(worker.pid, "LOCAL_RANK")
    if rank and rank.isdigit():
        return int(rank)
    return launch.node_rank * launch.gpus + int(local) if local and local.isdigit() else None


def lost_ranks(launch: mf.Launch | None, now: float) -> str | None:
    """Why the run cannot go on when some of this host's ranks died while others live (None: all live, or cannot tell)."""
    if launch is None or launch.gpus < 2 or launch.slurm_job:
        return None
    members = launch_members(launch.pid, launch.create_time)
    agent = next((m for m in members if _is_torchrun(cmdline(m.pid))), None)
    workers = [m for m in members if agent is not None and m.ppid == agent.pid]
    if not workers or len(workers) >= launch.gpus or now - min(w.started for w in workers) < SPAWN_S:
        return None
    first = launch.node_rank * launch.gpus
    live = sorted(r for r in (_rank(w, launch) for w in workers) if r is not None)
    gone = [r for r in range(first, first + launch.gpus) if r not in live]
    if len(live) != len(workers):  # a rank's environment is not readable: count them instead
        return f"{launch.gpus - len(workers)} of {launch.gpus} ranks on this host died while {len(workers)} live"
    return (
        f"rank {', '.join(map(str, gone))} died while rank {', '.join(map(str, live))} live "
        f"({launch.gpus} on this host): the run cannot go on"
    )


def hang_details(work_dir: WorkDir) -> list[str]:
    """What a stalled run's processes and files say: how many live, which are stopped, the last line logged."""
    launch = work_dir.last
    members = launch_members(launch.pid, launch.create_time) if launch else []
    parts = [f"{len(members)} processes of the launch alive"] if members else []
    parts += [f"{_who(m, launch)} {STOPPED[m.state]}" for m in members if m.state in STOPPED]
    line = last_logged([*work_dir.log_files()[-1:], work_dir.console])
    return parts + ([f"last logged: {line}"] if line else [])


def _who(member: Member, launch: mf.Launch) -> str:
    """A process as the user knows it: `rank 1 (pid N)` for a torchrun worker, else `pid N`."""
    rank = _rank(member, launch) if environ_value(member.pid, "LOCAL_RANK") else None
    return f"rank {rank} (pid {member.pid})" if rank is not None else f"pid {member.pid}"


def last_logged(paths: list[Path]) -> str | None:
    """The last non-empty line of whichever regular file of `paths` was written last (its end read, bounded)."""
    newest: tuple[float, Path] | None = None
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (newest is None or st.st_mtime > newest[0]):
            newest = (st.st_mtime, path)
    if newest is None:
        return None
    try:
        fd = os.open(newest[1], os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            tail = os.pread(fd, TAIL_BYTES, max(0, size - TAIL_BYTES))
        finally:
            os.close(fd)
    except OSError:
        return None
    lines = [line.strip() for line in tail.decode("utf-8", "replace").replace("\r", "\n").split("\n") if line.strip()]
    return lines[-1][:200] if lines else None
