"""Processes of a run: liveness by pid + start time, the session the launch made, and stopping all of it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import psutil


def is_alive(pid: int, create_time: float) -> bool:
    """True when `pid` is still the process that was started at `create_time`."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, OSError):
        return False


def _stat_fields(pid: str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read(4096)
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()


@dataclass(frozen=True, slots=True)
class Member:
    """One live process of a launch: its pid, its parent's, its state letter (R, S, D, T stopped...), its start time."""

    pid: int
    ppid: int
    state: str
    started: float  # seconds since the epoch


def launch_members(sid: int, since: float = 0.0) -> list[Member]:
    """Live processes of the launch whose session is `sid`: the session, and every descendant that started a session
    of its own (torchrun puts each rank in one), started at or after `since` (a pid reused since then is not ours)."""
    boot = psutil.boot_time()
    ticks = os.sysconf("SC_CLK_TCK")
    live: dict[int, tuple[Member, str]] = {}
    for name in os.listdir("/proc"):  # stat: state ppid pgrp session ... starttime (the 20th after state)
        fields = _stat_fields(name) if name.isdigit() else None
        if not fields or len(fields) < 20 or fields[0] in ("Z", "X"):
            continue
        started = boot + int(fields[19]) / ticks
        if started >= since - 0.05:
            live[int(name)] = (Member(int(name), int(fields[1]), fields[0], started), fields[3])
    members = {pid for pid, (_, session) in live.items() if session == str(sid)}
    grown = True
    while grown:  # add children of members until none is left to add
        found = {pid for pid, (member, _) in live.items() if member.ppid in members} - members
        members |= found
        grown = bool(found)
    return [live[pid][0] for pid in sorted(members)]


def launch_of(pid: int, launches: Collection[int]) -> int | None:
    """The launch among `launches` (pids that lead a session, or a trainer found running) that `pid` belongs to: it
    or a parent is one, or is in one's session (torchrun starts each rank in a session of its own, under torchrun in
    the launch's); None when it belongs to none of them."""
    for _ in range(64):  # parent after parent, up to init
        fields = _stat_fields(str(pid))
        if not fields or len(fields) < 4:
            return None
        for found in (pid, int(fields[3])):
            if found in launches:
                return found
        pid = int(fields[1])
        if pid <= 1:
            return None
    return None


def session_members(sid: int, since: float = 0.0) -> list[int]:
    """Pids of the launch's live processes (the launched tree, ranks included, whatever was signalled), read from /proc."""
    return [member.pid for member in launch_members(sid, since)]


def cmdline(pid: int) -> list[str]:
    """The command line of `pid` ([] when it is gone or not readable)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read(65536)
    except OSError:
        return []
    return raw.decode(errors="replace").rstrip("\0").split("\0") if raw else []


def environ_value(pid: int, key: str) -> str | None:
    """One variable of the environment `pid` started with (None when absent or not readable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read(1 << 20)
    except OSError:
        return None
    prefix = key.encode() + b"="
    found = next((item for item in raw.split(b"\0") if item.startswith(prefix)), None)
    return found[len(prefix) :].decode(errors="replace") if found is not None else None


_SCAN_TTL_S = 5.0
_scan: tuple[float, list[tuple[int, list[str], str]]] = (float("-inf"), [])


def _xtuner_processes() -> list[tuple[int, list[str], str]]:
    """(pid, cmdline, cwd) of every process whose command line mentions xtuner; rescanned every few seconds.

    Read straight from Linux's /proc: a psutil.Process per process costs six times as much.
    """
    global _scan
    now = time.monotonic()
    if now - _scan[0] >= _SCAN_TTL_S:
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    raw = f.read()
            except OSError:  # gone meanwhile
                continue
            if b"xtuner" not in raw:
                continue
            try:
                cwd = os.readlink(f"/proc/{name}/cwd")
            except OSError:  # another user's process: an absolute --work-dir still matches
                cwd = "/"
            found.append((int(name), raw.decode(errors="replace").rstrip("\0").split("\0"), cwd))
        _scan = (now, found)
    return _scan[1]


def processes_of_work_dir(work_dir: Path) -> list[int]:
    """Pids of trainers started outside xtui whose command line names this work dir."""
    target = str(work_dir.resolve())
    found = []
    for pid, cmdline, cwd in _xtuner_processes():
        for flag, value in zip(cmdline, cmdline[1:]):
            if flag == "--work-dir" or flag.startswith("--work-dir="):
                value = flag.split("=", 1)[1] if "=" in flag else value
                if str((Path(cwd) / value).resolve()) == target:
                    found.append(pid)
                break
    return found


def stop_session(sid: int, since: float = 0.0, grace: float = 10.0) -> bool:
    """TERM every process of the session, KILL what is left after `grace` s; True when none is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        members = session_members(sid, since)
        if not members:
            return True
        for pid in members:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
            except PermissionError:
                return False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not session_members(sid, since):
                return True
            time.sleep(0.1)
    return not session_members(sid, since)
