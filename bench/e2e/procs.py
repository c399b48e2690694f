"""Processes of the end-to-end benchmark: tests/processes.py's ``Proc`` for any command, and a
group of server processes that is always torn down.

Every process starts in a session of its own, so that a Ctrl-C on the terminal reaches only
the orchestrator, which then stops them in order: SIGTERM, then SIGKILL to the whole process
group (a peer's supervisor and its worker children) past the grace, or to what is left of the
group once the process has exited.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import cpu  # noqa: E402
from tests.processes import CORTEX, Proc  # noqa: E402

__all__ = ["CORTEX", "BenchFailed", "Command", "Group", "run_client"]


class BenchFailed(RuntimeError):
    """A system did not start, died, or its client failed: the run stops, loudly."""


class Command(Proc):
    """``Proc``'s output pump, ``wait_for`` and ``terminate``, for any command (``Proc`` runs the
    ``cortex`` command), in a process group of its own."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        grace_s: float = 20.0,
    ) -> None:
        self.name = name
        self.grace_s = grace_s
        """How long ``terminate()`` waits for a graceful exit by default."""
        self.args = tuple(argv)
        self.popen = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _signal_group(self, sig: signal.Signals) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._pump_thread.join(timeout=10)

    def terminate(self, timeout: float | None = None) -> int:
        """SIGTERM (to the process: a supervisor passes it on to its children, and a second
        one would make them hard-kill themselves), a graceful exit, or SIGKILL to the whole
        group past ``timeout``."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout=self.grace_s if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -int(signal.SIGKILL)
        self._signal_group(signal.SIGKILL)  # a straggler child of a supervisor that is gone
        self._pump_thread.join(timeout=10)
        return code

    def tail(self, lines: int = 60) -> str:
        return "".join(self.lines[-lines:])

    def ready(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """Wait for the line that says the process is up; ``BenchFailed`` with its output if it
        exits or stays silent."""
        try:
            return self.wait_for(pattern, timeout)
        except AssertionError as exc:
            raise BenchFailed(f"{self.name} did not start:\n{exc}") from None


class Group:
    """Server processes started one after the other, stopped in reverse order whatever
    happens; ``check()`` fails loudly when one of them has died."""

    def __init__(self) -> None:
        self.procs: list[Command] = []

    def start(self, name: str, argv: Sequence[str], **kwargs: Any) -> Command:
        proc = Command(name, argv, **kwargs)
        self.procs.append(proc)
        return proc

    def check(self) -> None:
        for p in self.procs:
            if p.popen.poll() is not None:
                raise BenchFailed(
                    f"{p.name} exited ({p.popen.returncode}) during the run:\n{p.tail()}"
                )

    def stop(self) -> None:
        """Stop them all, even through a Ctrl-C; the first such interruption is raised at the
        end."""
        interrupted: BaseException | None = None
        for p in reversed(self.procs):
            try:
                code = p.terminate()
            except BaseException as exc:  # keep stopping the others
                if not isinstance(exc, Exception):
                    interrupted = interrupted or exc
                    p.kill()
                print(f"{p.name}: not stopped cleanly: {exc!r}", file=sys.stderr)
                continue
            if code == -signal.SIGKILL:
                print(f"{p.name}: still up {p.grace_s:g}s after SIGTERM: killed", file=sys.stderr)
            elif code not in (0, -signal.SIGTERM):
                print(f"{p.name} exited {code}; its last output:\n{p.tail(20)}", file=sys.stderr)
        self.procs = []
        if interrupted is not None:
            raise interrupted


SHARED_SERVICES = ("nats-server", "redis-server")
"""Services every system uses: their CPU during a client's run is charged to that system."""


def _cpu_by_process(servers: Group) -> dict[str, int | None]:
    """CPU time so far of each server process's group (a supervisor's forked workers
    included), and of the shared services, in ns."""
    spent = {p.name: cpu.cpu_ns(cpu.group_pids(p.popen.pid)) for p in servers.procs}
    for name in SHARED_SERVICES:
        spent[name] = cpu.cpu_ns(cpu.pids_named(name))
    return spent


def cpu_per_job(
    before: dict[str, int | None], after: dict[str, int | None], jobs: int
) -> dict[str, float] | None:
    """Milliseconds of CPU per job, by process and in ``total``; None where unmeasurable."""
    per: dict[str, float] = {}
    for name, was in before.items():
        now = after.get(name)
        if not jobs or was is None or now is None:
            return None
        per[name] = (now - was) / 1e6 / jobs
    per["total"] = sum(per.values())
    return per


def run_client(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    out: Path,
    servers: Group,
    timeout_s: float,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run one client to its end while watching the servers; its JSON figures, with the CPU
    the servers and the shared services spent per job (``cpu_ms_per_job``, every phase
    together; the client's own is left out)."""
    out.unlink(missing_ok=True)
    before = _cpu_by_process(servers)
    client = Command(name, [*argv, "--out", str(out)], env=env, cwd=cwd)
    deadline = time.monotonic() + timeout_s
    try:
        while client.popen.poll() is None:
            servers.check()
            if time.monotonic() > deadline:
                raise BenchFailed(f"{name}: no result in {timeout_s:.0f}s:\n{client.tail()}")
            with suppress(subprocess.TimeoutExpired):
                client.popen.wait(timeout=0.5)
        after = _cpu_by_process(servers)
    finally:
        client.terminate(timeout=10)
    if client.popen.returncode != 0 or not out.exists():
        raise BenchFailed(f"{name} failed ({client.popen.returncode}):\n{client.tail()}")
    result: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    jobs = sum(result[phase]["jobs"] for phase in ("warmup", "concurrent", "sequential"))
    result["cpu_ms_per_job"] = cpu_per_job(before, after, jobs)
    if client.lines:  # warnings the client printed: worth seeing, not fatal
        print("".join(f"[{name}] {line}" for line in client.lines[-10:]), end="", file=sys.stderr)
    return result
