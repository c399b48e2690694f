"""Benchmark: the REST gateway over real HTTP, ``POST /v1/jobs`` and ``GET /v1/jobs/{job_id}``,
against baselines measured in the same run.

Run with ``nox -s bench``. Two servers, each a real ``cortex`` process on 127.0.0.1:

* ``embedded``: ``cortex up --no-auth`` (in-memory bus and stores; its scheduler, safety policy
  and echo worker run in the same process, so a submitted job is also scheduled and run there).
* ``distributed``: ``cortex gateway --no-auth`` on the real NATS (``NATS_URL``) and Redis
  (``REDIS_URL``), with ``cortex safety-kernel``, ``cortex scheduler`` and ``cortex worker echo``
  as separate processes (a private subject prefix and Redis database), as deployed.

Both with ``CORTEX_RATE_LIMIT_PER_S=0`` (the rate limit off: one client sends as fast as it can)
and ``--log-level warning`` (the rows measure the service, not a log handler). Auth is off on
both (``--no-auth``): a key check is one hash and dict lookup per request.

The client is a small asyncio HTTP/1.1 load generator in this process (one keep-alive
connection per concurrent caller, prebuilt request bytes, responses read by Content-Length), so
that as little as possible of the machine goes to the client. Each row is ``N`` requests over
``C`` callers (C = 1 and 16); every row is measured in interleaved rounds and each figure is
the median over the rounds. After each ``POST`` row the run waits for the last job it
submitted to finish, so that the next row does not compete with that backlog (the jobs of a
row are scheduled and run *while* it is measured: that is part of what a submit costs here).

Baselines, because this machine is noisy (every row is reported in absolute figures too):

* ``GET /healthz`` on the same server and connections: the framework floor (uvicorn +
  Litestar + this client) on which every route stands. ``÷ healthz`` is a row's mean latency
  over the floor's at the same C.
* ``redis SET+GET`` (distributed only): one SET and one GET of a 512-byte value from this
  process with ``redis.asyncio``, at the same C: a raw round trip to the store the gateway
  reads and writes. ``÷ redis`` is a row's mean latency over it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import nats
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cpu  # noqa: E402
from cortex_adapters.nats import stream_name  # noqa: E402
from tests.processes import Proc, claim_private_redis_db  # noqa: E402

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
CONCURRENCY = (1, 16)
BODY = json.dumps({"prompt": "hello, gateway benchmark"}).encode()
SERVER_ENV = {
    "CORTEX_RATE_LIMIT_PER_S": "0",
    "CORTEX_GRPC_ADDR": "127.0.0.1:0",  # the gRPC front door on any free port
}
QUIET = ("--log-level", "warning")
BANNER = r"Cortex is up \(.*\) on (http://\S+)"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Connection:
    """One keep-alive HTTP/1.1 connection: a request's bytes in, (status, body) out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = _CONTENT_LENGTH.search(head)
        if length is None:
            raise RuntimeError(f"no Content-Length in {head[:200]!r}")
        body = await self.reader.readexactly(int(length.group(1)))
        return int(head[9:12]), body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def get(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def post(host: str, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _pct(sorted_ns: list[int], q: float) -> float:
    """The q-quantile of sorted nanoseconds, in milliseconds (nearest rank)."""
    i = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
    return sorted_ns[i] / 1e6


Rows = dict[str, dict[str, float]]
Call = Callable[[int, int], Awaitable[None]]
"""``call(caller, i)``: the i-th request of a row, sent by caller number ``caller``."""


async def measure(call: Call, requests: int, concurrency: int) -> dict[str, float]:
    latencies: list[int] = []
    per_caller = requests // concurrency

    async def caller(c: int) -> None:
        clock = time.perf_counter_ns
        for i in range(per_caller):
            t0 = clock()
            await call(c, c * per_caller + i)
            latencies.append(clock() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "p50_ms": _pct(latencies, 0.50),
        "p99_ms": _pct(latencies, 0.99),
        "mean_ms": statistics.fmean(latencies) / 1e6,
        "requests_per_s": len(latencies) / wall,
        "requests": len(latencies),
        "wall_s": wall,
    }


def median_row(rounds: list[dict[str, float]]) -> dict[str, float]:
    row = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    row["requests"] = sum(r["requests"] for r in rounds)
    del row["wall_s"]
    row["rounds"] = len(rounds)
    return row


class Target:
    """A running gateway, its connections, and the rows measured against it."""

    def __init__(self, name: str, base: str, pid: int, *, runs_jobs: bool) -> None:
        self.name = name
        self.base = base
        self.pid = pid
        """The gateway's process (``cortex up``'s, for the embedded one): its CPU is measured."""
        self.runs_jobs = runs_jobs
        """False: nothing schedules the submitted jobs (they stay PENDING)."""
        split = urlsplit(base)
        self.host = split.netloc
        self.address = (split.hostname or "127.0.0.1", split.port or 80)
        self.connections: list[Connection] = []
        self.job_ids: list[str] = []
        self.healthz = get(self.host, "/healthz")
        self.submit = post(self.host, "/v1/jobs", BODY)

    async def open(self) -> None:
        """Fresh connections (uvicorn closes one that was idle for 5 s): not timed."""
        await self.close()
        self.connections = [await Connection.open(*self.address) for _ in range(max(CONCURRENCY))]

    async def close(self) -> None:
        for c in self.connections:
            await c.close()
        self.connections = []

    async def _expect(self, caller: int, request: bytes, status: int) -> bytes:
        got, body = await self.connections[caller].send(request)
        if got != status:
            raise RuntimeError(f"{self.name}: {request[:40]!r} answered {got}: {body[:300]!r}")
        return body

    async def call_healthz(self, caller: int, _: int) -> None:
        await self._expect(caller, self.healthz, 200)

    async def call_submit(self, caller: int, _: int) -> None:
        body = await self._expect(caller, self.submit, 202)
        self.job_ids.append(json.loads(body)["job_id"])

    async def call_status(self, caller: int, i: int) -> None:
        job_id = self.job_ids[i % len(self.job_ids)]
        await self._expect(caller, get(self.host, f"/v1/jobs/{job_id}"), 200)

    async def drain(self) -> float:
        """Wait until the last submitted job has finished (the backlog is worked off); how
        long that took, in seconds (0 when nothing runs the jobs)."""
        if not self.runs_jobs:
            return 0.0
        request = get(self.host, f"/v1/jobs/{self.job_ids[-1]}")
        timeout = 60.0
        start = time.monotonic()
        while time.monotonic() < start + timeout:
            status = json.loads(await self._expect(0, request, 200))["status"]
            if status not in ("PENDING", "RUNNING"):
                return time.monotonic() - start
            await asyncio.sleep(0.01)
        raise RuntimeError(f"{self.name}: job {self.job_ids[-1]} unfinished after {timeout}s")


def redis_call(client: aioredis.Redis) -> Call:
    value = b"x" * 512

    async def call(caller: int, i: int) -> None:
        key = f"bench:{caller}"
        await client.set(key, value)
        await client.get(key)

    return call


async def run(targets: list[Target], redis_url: str, requests: int, rounds: int) -> Rows:
    client = aioredis.Redis.from_url(redis_url, max_connections=max(CONCURRENCY))
    rows: dict[str, tuple[Target | None, str, Call, int]] = {}
    try:
        for t in targets:
            await t.open()
            for _ in range(100):  # warm up, and jobs for the status rows to read
                await t.call_healthz(0, 0)
                await t.call_submit(0, 0)
            await t.drain()
            for c in CONCURRENCY:
                rows[f"{t.name} GET /healthz x{c}"] = (t, "healthz", t.call_healthz, c)
                rows[f"{t.name} POST /v1/jobs x{c}"] = (t, "submit", t.call_submit, c)
                rows[f"{t.name} GET /v1/jobs/{{id}} x{c}"] = (t, "status", t.call_status, c)
        call = redis_call(client)
        for _ in range(100):
            await call(0, 0)
        for c in CONCURRENCY:
            rows[f"redis SET+GET x{c}"] = (None, "redis", call, c)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in rows}
        for r in range(rounds):
            for name, (target, kind, fn, c) in rows.items():
                if target is not None:
                    await target.open()
                before = cpu.cpu_ns([target.pid]) if target is not None else None
                row = await measure(fn, requests, c)
                if before is not None and target is not None:
                    spent = cpu.cpu_ns([target.pid]) or 0
                    row["gateway_cpu_us"] = (spent - before) / 1e3 / row["requests"]
                if target is not None and kind == "submit" and target.runs_jobs:
                    drained_s = await target.drain()
                    row["finished_per_s"] = row["requests"] / (row["wall_s"] + drained_s)
                samples[name].append(row)
            print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        for t in targets:
            await t.close()
        await client.aclose()
    return {name: median_row(s) for name, s in samples.items()}


@contextmanager
def embedded() -> Iterator[Target]:
    proc = Proc("up", "--no-auth", "--port", "0", *QUIET, env=SERVER_ENV)
    try:
        yield Target("embedded", proc.wait_for(BANNER).group(1), proc.popen.pid, runs_jobs=True)
    finally:
        proc.terminate()


@contextmanager
def distributed(name: str, redis_url: str, *, full: bool) -> Iterator[Target]:
    """The gateway on NATS and Redis; ``full``: with the Safety Kernel, a scheduler and an echo
    worker, each its own process (otherwise submitted jobs stay PENDING on the stream)."""
    prefix = f"bench{uuid.uuid4().hex[:10]}."
    env = {**SERVER_ENV, "REDIS_URL": redis_url, "NATS_URL": NATS_URL}
    env["CORTEX_SUBJECT_PREFIX"] = prefix
    procs: list[Proc] = []
    try:
        if full:
            procs.append(Proc("safety-kernel", "--address", "127.0.0.1:0", *QUIET, env=env))
            env["SAFETY_KERNEL_ADDR"] = procs[0].wait_for(r"safety-kernel ready on (\S+)").group(1)
        gateway = Proc("gateway", "--no-auth", "--port", "0", *QUIET, env=env)
        procs.append(gateway)
        if full:
            procs += [Proc("scheduler", *QUIET, env=env), Proc("worker", "echo", *QUIET, env=env)]
            procs[2].wait_for("cortex scheduler ready")
            procs[3].wait_for("cortex worker .* ready")
        yield Target(name, gateway.wait_for(BANNER).group(1), gateway.popen.pid, runs_jobs=full)
    finally:
        for p in reversed(procs):
            if p.popen.poll() is None:
                p.terminate()
        _delete_stream(prefix)


def _delete_stream(prefix: str) -> None:
    async def delete() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(stream_name(prefix))
        except Exception as exc:
            print(f"stream of {prefix!r} not deleted: {exc}", file=sys.stderr)
        finally:
            await nc.close()

    asyncio.run(delete())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gateway.json"))
    args = parser.parse_args()
    requests, rounds = (160, 3) if args.quick else (800, 7)

    store, redis_url = claim_private_redis_db()
    alone_store, alone_redis_url = claim_private_redis_db()
    try:
        with (
            embedded() as up,
            distributed("distributed", redis_url, full=True) as full,
            distributed("gateway-alone", alone_redis_url, full=False) as alone,
        ):
            targets = [up, full, alone]
            rows = asyncio.run(run(targets, redis_url, requests, rounds))
    finally:
        for s in (store, alone_store):
            s.flushdb()  # ours alone since the claim
            s.close()

    ratios_floor: dict[str, float] = {}
    ratios_redis: dict[str, float] = {}
    cores = os.cpu_count()
    print(
        f"REST gateway over HTTP/1.1 keep-alive, {cores} cores, Python "
        f"{platform.python_version()}; {requests} requests a row, median of {rounds} rounds; "
        "÷: mean latency over the baseline's at the same concurrency; done/s: submitted jobs "
        "finished a second, until the row's backlog is worked off; cpu µs: the gateway "
        "process's CPU time per request (cortex up's, embedded: it runs the job too)"
    )
    print(
        f"{'row':<36}{'p50 ms':>8}{'p99 ms':>8}{'mean ms':>8}{'req/s':>8}{'done/s':>8}"
        f"{'÷ healthz':>10}{'÷ redis':>8}{'cpu µs':>8}"
    )
    for name, r in rows.items():
        target, c = name.split(" ", 1)[0], name.rsplit(" ", 1)[1]
        line = (
            f"{name:<36}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['mean_ms']:>8.2f}"
            f"{r['requests_per_s']:>8.0f}"
            + (f"{r['finished_per_s']:>8.0f}" if "finished_per_s" in r else f"{'':>8}")
        )
        if target != "redis":
            ratios_floor[name] = r["mean_ms"] / rows[f"{target} GET /healthz {c}"]["mean_ms"]
            line += f"{ratios_floor[name]:>10.2f}"
            if target != "embedded":
                ratios_redis[name] = r["mean_ms"] / rows[f"redis SET+GET {c}"]["mean_ms"]
                line += f"{ratios_redis[name]:>8.1f}"
            else:
                line += f"{'':>8}"
            if "gateway_cpu_us" in r:
                line += f"{r['gateway_cpu_us']:>8.0f}"
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "gateway",
                "python": platform.python_version(),
                "cpu_count": cores,
                "concurrency": list(CONCURRENCY),
                "requests_per_row": requests,
                "rounds": rounds,
                "rate_limit_per_s": 0,
                "auth": "off (--no-auth)",
                "targets": {
                    "embedded": "cortex up (in-memory; scheduler, policy and echo worker in "
                    "the same process)",
                    "distributed": "cortex gateway + safety-kernel + scheduler + worker echo, "
                    "NATS JetStream + Redis",
                    "gateway-alone": "cortex gateway only, NATS JetStream + Redis (jobs stay "
                    "PENDING)",
                },
                "rows": rows,
                "ratios_vs_healthz_mean": ratios_floor,
                "ratios_vs_redis_set_get_mean": ratios_redis,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0  # a benchmark reports; it does not gate


if __name__ == "__main__":
    raise SystemExit(main())
