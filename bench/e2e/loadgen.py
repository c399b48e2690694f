"""The load generator every client of the end-to-end benchmark shares.

Standard library only: it runs in the project's environment (the floor and Cortex clients) and
in each peer's own virtualenv (Celery, Dramatiq, Taskiq), imported from this directory.

A client is a ``Client``: ``submit_and_wait(payload)`` submits one echo job and returns what
the system says the job produced, once it has completed. ``drive`` runs three phases over one
client: a warm-up (not reported), ``jobs`` jobs with at most ``concurrency`` in flight, and
``sequential`` jobs one at a time. Every job carries its own 128-character payload (its phase
and index, padded), and a job counts as done only when the echo comes back equal to it: an
exception, a wrong or crossed result, is counted, and the run reports them.

Latency is per job, from just before the submit to the moment the client holds the verified
result (the peers hand the result back with the completion; Cortex's clients fetch it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

PAYLOAD_CHARS = 128
MAX_ERROR_KINDS = 5


class Client(Protocol):
    async def start(self, max_concurrency: int) -> None:
        """Connect; at most ``max_concurrency`` jobs will be in flight at once."""

    async def prepare(self, concurrency: int) -> None:
        """Before each phase, untimed (fresh keep-alive connections, say)."""

    async def submit_and_wait(self, payload: str) -> str:
        """Submit one echo job of ``payload``; return its result once it has completed."""

    def phase_stats(self) -> dict[str, float]:
        """Figures the client counted during the phase just run (then reset)."""

    async def close(self) -> None: ...


class ThreadedClient:
    """A client whose library blocks (Celery, Dramatiq): each job's submit-and-wait runs on a
    pool of as many threads as jobs in flight. Subclasses say what one job is (``run``)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    def run(self, payload: str) -> str:
        raise NotImplementedError

    async def start(self, max_concurrency: int) -> None:
        self._threads = ThreadPoolExecutor(max_concurrency, thread_name_prefix="bench-client")

    async def prepare(self, concurrency: int) -> None:
        pass

    async def submit_and_wait(self, payload: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self.run, payload)

    def phase_stats(self) -> dict[str, float]:
        return {}

    async def close(self) -> None:
        self._threads.shutdown()


def payload(tag: str, i: int) -> str:
    """Job ``i``'s payload: unique, ASCII, exactly ``PAYLOAD_CHARS`` characters."""
    head = f"{tag}:{i:08d}:"
    return head + "x" * (PAYLOAD_CHARS - len(head))


def percentile_ms(sorted_ns: list[int], q: float) -> float:
    """The q-quantile of sorted nanoseconds, in milliseconds (nearest rank)."""
    if not sorted_ns:
        return float("nan")
    i = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
    return sorted_ns[i] / 1e6


async def run_phase(client: Client, tag: str, jobs: int, concurrency: int) -> dict[str, Any]:
    """``jobs`` jobs, ``concurrency`` lanes each taking the next job when its last is done."""
    await client.prepare(concurrency)
    client.phase_stats()  # reset
    latencies: list[int] = []
    errors: Counter[str] = Counter()
    wrong = 0
    next_job = iter(range(jobs))
    clock = time.perf_counter_ns

    async def lane() -> None:
        nonlocal wrong
        for i in next_job:
            expected = payload(tag, i)
            t0 = clock()
            try:
                got = await client.submit_and_wait(expected)
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"[:300]] += 1
                continue
            t1 = clock()
            if got == expected:
                latencies.append(t1 - t0)
            else:
                wrong += 1
                errors[f"wrong result: {str(got)[:60]!r} for {expected[:20]!r}"] += 1

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()
    failed = jobs - len(latencies)
    return {
        "jobs": jobs,
        "concurrency": concurrency,
        "completed": len(latencies),
        "failed": failed,
        "wrong_results": wrong,
        "errors": dict(errors.most_common(MAX_ERROR_KINDS)),
        "wall_s": wall,
        "jobs_per_s": len(latencies) / wall,
        "p50_ms": percentile_ms(latencies, 0.50),
        "p95_ms": percentile_ms(latencies, 0.95),
        "p99_ms": percentile_ms(latencies, 0.99),
        "mean_ms": sum(latencies) / len(latencies) / 1e6 if latencies else float("nan"),
        "max_ms": latencies[-1] / 1e6 if latencies else float("nan"),
        **client.phase_stats(),
    }


async def drive(
    client: Client, *, warmup: int, jobs: int, concurrency: int, sequential: int
) -> dict[str, Any]:
    await client.start(concurrency)
    try:
        warm = await run_phase(client, "warm", warmup, concurrency)
        if warm["failed"]:  # not measured, but a system that fails here is broken: say so
            print(f"warm-up: {warm['failed']} failed: {warm['errors']}", file=sys.stderr)
        return {
            "warmup": warm,
            "concurrent": await run_phase(client, "conc", jobs, concurrency),
            "sequential": await run_phase(client, "seq1", sequential, 1),
        }
    finally:
        await client.close()


def versions(*distributions: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for d in distributions:
        try:
            found[d] = version(d)
        except PackageNotFoundError:
            found[d] = "not installed"
    return found


def _event_loop_runner() -> tuple[Callable[[Coroutine[Any, Any, dict[str, Any]]], Any], str]:
    """uvloop's ``run`` where it is installed (every system's client environment has it, so
    that no client is slowed by asyncio's own loop more than another), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run, "asyncio"
    return uvloop.run, "uvloop"


def client_main(
    name: str, make_client: Callable[[argparse.Namespace], Client], *distributions: str
) -> None:
    """The command line of every client: drive the client, write the figures as JSON.

    ``make_client`` gets the parsed arguments; system-specific settings come from the
    environment the orchestrator sets.
    """
    parser = argparse.ArgumentParser(description=f"{name}: the end-to-end benchmark's client")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--sequential", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, default=30.0, help="per job")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="where the client polls")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    run, loop = _event_loop_runner()
    result = run(
        drive(
            make_client(args),
            warmup=args.warmup,
            jobs=args.jobs,
            concurrency=args.concurrency,
            sequential=args.sequential,
        )
    )
    result["client"] = name
    result["client_loop"] = loop
    result["versions"] = versions(*distributions)
    args.out.write_text(json.dumps(result, indent=2))
