"""Cortex's two clients: over REST (the gateway), and on the bus (Cortex's own FrontDoor in this
process, no HTTP).

``rest``: per job, one request from submit to result: ``POST /v1/jobs?wait_s=30 {"prompt",
"topic": "job.echo"}``. The gateway submits the job, waits for it to end (woken by the
scheduler's ``sys.job.done`` notice) and answers 200 with the job and its result document in
``result``; the status (COMPLETED) and the echo are checked. A job not ended within wait_s is a
202 with its id, and one ``GET /v1/jobs/{id}/result?wait_s=30`` (a long poll) follows. One
keep-alive HTTP/1.1 connection per job in flight (bench_gateway.py's raw asyncio client,
responses read by Content-Length), fresh ones before each phase.

``bus``: ``FrontDoor.submit(SubmitJob(prompt, topic="job.echo"))`` on NATS and Redis, exactly
what the gateway's handler calls, then ``FrontDoor.result(job_id, wait_s=30)`` (what the
gateway's result route calls), and the echo and the COMPLETED status are checked.

Both report ``status_calls_per_job``, the calls that waited on a job: 1 means the wait was a
single call (rest: the POST itself; a job that has not ended within it, a 202, adds the GET
that follows).

Environment: ``BENCH_CORTEX_MODE`` (``rest`` or ``bus``), ``BENCH_CORTEX_URL`` (rest: the
gateway), and for ``bus`` the settings of the Cortex processes (``NATS_URL``, ``REDIS_URL``,
``CORTEX_SUBJECT_PREFIX``, …).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bench_gateway import Connection, get, post  # noqa: E402
from loadgen import client_main  # noqa: E402

from cortex_apps.distributed import build_container  # noqa: E402
from cortex_apps.runtime import running  # noqa: E402
from cortex_apps.settings import Settings  # noqa: E402
from cortex_core.frontdoor import FrontDoor, SubmitJob  # noqa: E402
from cortex_core.ports import Lifecycle  # noqa: E402

TOPIC = "job.echo"
WAIT_S = 30
SUBMIT_PATH = f"/v1/jobs?wait_s={WAIT_S}"


class RestClient:
    def __init__(self, base: str, poll_s: float, timeout_s: float) -> None:
        split = urlsplit(base)
        self._timeout_s = timeout_s
        self._host = split.netloc
        self._address = (split.hostname or "127.0.0.1", split.port or 80)
        self._poll_s = poll_s
        self._idle: list[Connection] = []
        self._status_calls = 0
        self._jobs = 0

    async def start(self, max_concurrency: int) -> None:
        pass

    async def prepare(self, concurrency: int) -> None:
        """Fresh connections (uvicorn closes one left idle for 5 s), one per job in flight."""
        await self._close_all()
        self._idle = [await Connection.open(*self._address) for _ in range(concurrency)]

    async def _send(
        self, conn: Connection, request: bytes, *want: int
    ) -> tuple[int, dict[str, Any]]:
        status, body = await conn.send(request)
        if status not in want:
            raise RuntimeError(f"{request[:40]!r} answered {status}: {body[:300]!r}")
        doc: dict[str, Any] = json.loads(body)
        return status, doc

    async def submit_and_wait(self, payload: str) -> str:
        self._jobs += 1
        conn = self._idle.pop()  # as many connections as jobs in flight
        try:
            body = json.dumps({"prompt": payload, "topic": TOPIC}).encode()
            # One request: 200 once the job has ended, with its result; 202 if not within wait_s.
            self._status_calls += 1
            status, job = await self._send(conn, post(self._host, SUBMIT_PATH, body), 200, 202)
            if status == 202:  # one long poll more: 409 if the job has not ended within it
                self._status_calls += 1
                path = f"/v1/jobs/{job['job_id']}/result?wait_s={WAIT_S}"
                _, result = await self._send(conn, get(self._host, path), 200)
            elif job["status"] != "COMPLETED":
                raise RuntimeError(f"job ended {job['status']}: {job['reason']}")
            else:
                result = job["result"]
        finally:
            self._idle.append(conn)
        echo: str = result["echo"]
        return echo

    def phase_stats(self) -> dict[str, float]:
        stats = {"status_calls_per_job": self._status_calls / max(1, self._jobs)}
        self._status_calls = self._jobs = 0
        return stats

    async def _close_all(self) -> None:
        for conn in self._idle:
            await conn.close()
        self._idle = []

    async def close(self) -> None:
        await self._close_all()


class BusClient:
    def __init__(self, poll_s: float, timeout_s: float) -> None:
        self._poll_s = poll_s
        self._timeout_s = timeout_s
        self._stack = AsyncExitStack()
        self._status_calls = 0
        self._jobs = 0

    async def start(self, max_concurrency: int) -> None:
        container = build_container(Settings.load(), "bench-e2e-client")
        components: list[Lifecycle] = [
            container.bus(),
            container.memory(),
            container.jobs(),
            container.services.watch(),  # what wakes FrontDoor.wait, as in the gateway
        ]
        await self._stack.enter_async_context(running(components))
        self._frontdoor: FrontDoor = container.services.frontdoor()

    async def prepare(self, concurrency: int) -> None:
        pass

    async def submit_and_wait(self, payload: str) -> str:
        self._jobs += 1
        fd = self._frontdoor
        job_id = (await fd.submit(SubmitJob(prompt=payload, topic=TOPIC))).job_id
        self._status_calls += 1
        job, data = await fd.result(job_id, wait_s=min(self._timeout_s, WAIT_S))
        if job.status != "COMPLETED":
            raise RuntimeError(f"job ended {job.status}: {getattr(job, 'reason', '')}")
        echo: str = json.loads(data)["echo"]
        return echo

    def phase_stats(self) -> dict[str, float]:
        stats = {"status_calls_per_job": self._status_calls / max(1, self._jobs)}
        self._status_calls = self._jobs = 0
        return stats

    async def close(self) -> None:
        await self._stack.aclose()


def _make(args: argparse.Namespace) -> RestClient | BusClient:
    mode = os.environ.get("BENCH_CORTEX_MODE", "")
    if mode == "rest":
        return RestClient(os.environ["BENCH_CORTEX_URL"], args.poll_ms / 1000, args.timeout_s)
    if mode == "bus":
        return BusClient(args.poll_ms / 1000, args.timeout_s)
    raise SystemExit(f"BENCH_CORTEX_MODE must be rest or bus, not {mode!r}")


if __name__ == "__main__":
    mode = os.environ.get("BENCH_CORTEX_MODE", "")
    client_main(f"cortex ({mode})", _make, "cortex-control-plane", "nats-py", "redis")
