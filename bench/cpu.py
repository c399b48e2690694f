"""CPU time that processes spent, read from Linux's per-thread scheduler statistics.

Throughput on a busy 2-core machine varies by ±15% from run to run; the CPU a process spends
per job varies much less, and says where the time goes. ``/proc/<pid>/task/<tid>/schedstat``
holds each thread's time on a CPU in nanoseconds (user and system together), so a short phase
is measured exactly, not in 10 ms clock ticks.

Elsewhere than on Linux every reading is None and the benchmarks print no CPU column.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def _thread_ns(pid: int) -> int:
    total = 0
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return 0  # gone
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended in between
    return total


def available() -> bool:
    return (PROC / "self" / "task").is_dir() and (PROC / "self" / "schedstat").exists()


def group_pids(pgid: int) -> list[int]:
    """Every live process of process group ``pgid`` (a supervisor and its forked workers)."""
    pids = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def pids_named(name: str) -> list[int]:
    """Live processes whose command name is ``name`` (such as ``nats-server``)."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def cpu_ns(pids: Iterable[int]) -> int | None:
    """CPU time the threads of ``pids`` have had so far, in ns; None where unavailable."""
    if not available():
        return None
    return sum(_thread_ns(pid) for pid in pids)
