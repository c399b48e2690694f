"""Benchmark: the whole pipeline end to end, Cortex against a raw NATS+Redis floor and against
Celery, Dramatiq and Taskiq, in one run, on the same NATS (JetStream) and Redis.

Run with ``nox -s bench`` (or ``nox -s bench -- --quick``); alone, after ``nox -s
bench-peer-celery bench-peer-dramatiq bench-peer-taskiq --install-only``, with
``.venv/bin/python bench/bench_e2e.py [--quick] [--only cortex-rest,floor,...]``. It writes
``bench/results/e2e.json`` and ``bench/results/e2e.png``, and prints the table and the ratios.

How it measures
---------------
Every system runs as real OS processes on loopback, started afresh for each round, against
the shared NATS and Redis: a private Redis database (claimed empty, flushed afterwards), and
private NATS subjects, streams, consumers and queue names (the streams deleted afterwards).
One worker process per system (``--workers N``), each able to run at least C jobs at once, so
that no worker pool is a cap the system would not have. Each system's client is a process of
its own, in that system's environment, and drives it with the same load generator
(bench/e2e/loadgen.py): a warm-up (not reported), M jobs with at most C in flight, then S jobs
one at a time (C=1). Every client runs on uvloop, installed in each system's environment (the
synchronous Celery and Dramatiq clients in a pool of C threads under it; Taskiq's worker also
takes uvloop when it is installed). Each job is an echo of a 128-character
payload unique to the job, and a job counts only when its result comes back equal to it;
failures are counted, reported, and make the run exit non-zero. Latency runs from just before
the submit until the client holds the verified result. Systems run in interleaved rounds (the
order rotated each round) and every figure is the median over the rounds.

What each system does per job
-----------------------------
``floor`` (bench/e2e/floor.py; core NATS): the least work the same round trip can do, with
nats-py and redis-py and no framework, in three processes (client, router, worker), one
message per hop, nothing batched. The client SETs the payload in Redis and publishes a submit;
the router HSETs the job's state RUNNING and forwards it to the workers' queue group; the
worker GETs the payload, SETs the result and publishes a result; the router HSETs COMPLETED
and notifies the client on its own subject; the client GETs the result. 5 Redis commands and
4 NATS messages; at most once (a core NATS message finds a subscriber or is gone). Each message
is handled in a task of its own; router and worker run on uvloop with hiredis, as Cortex's
processes do.

``floor-js``: the same, with the three job hops (submit, work, result) on a JetStream stream:
each publish awaits its PubAck and each is consumed by a durable push consumer (queue group,
explicit ack after the handler's writes): the at-least-once hand-off Cortex makes on its job
subjects. The completion notice to the client stays core NATS.

``celery`` (bench/e2e/peer_celery.py; Celery 5.7.0): Redis broker and Redis result backend;
one worker, ``--pool threads --concurrency C``, heartbeat, gossip and mingle off. The client
calls ``echo.delay(payload).get()``: an LPUSH of the task message; the worker's BRPOP, the
task, the result SET and PUBLISH and the ack; the client's wait is the backend's pub/sub
``ResultConsumer``. The client is synchronous: one thread of C per job in flight.

``dramatiq`` (bench/e2e/peer_dramatiq.py; Dramatiq 2.2.1): the Redis broker and the Results
middleware on Redis; one worker, ``--processes 1 --threads C``. The client calls
``echo.send(payload)`` (the broker's Lua enqueue) and ``message.get_result(block=True)`` (a
BRPOPLPUSH on the result key). The worker's consumer polls an empty queue with a backoff from
5 ms up to its worker timeout (default 1 s), capped here at 10 ms like every polling peer
(``dramatiq_worker_timeout=10``). Synchronous client: one thread of C per job in flight.

``taskiq`` (bench/e2e/peer_taskiq.py; Taskiq 0.13.0, taskiq-nats 0.7.0, taskiq-redis 1.2.4):
``PullBasedJetStreamBroker`` (a durable pull consumer on a stream of its own, one message per
fetch, acked when the result is saved) and ``RedisAsyncResultBackend``; one worker, ``--workers
1 --max-async-tasks 2C``. The client awaits ``echo.kiq(payload)`` (a JetStream publish) and
``task.wait_result()``, which polls the result key: every 0.2 s by default, 10 ms here. Its
first look comes right after the publish, so at C=1 a job is either found done at once or one
poll later: its sequential latencies are bimodal (about 2 ms or 12 ms), and its p50 can land
on either side from run to run. ``--taskiq-broker core`` takes ``NatsBroker`` instead (a core
NATS queue group, at most once).

``cortex-rest`` (bench/e2e/cortex_client.py): ``cortex safety-kernel``, ``cortex gateway
--no-auth``, ``cortex scheduler`` and N ``cortex worker echo`` (``CORTEX_MAX_PARALLEL_JOBS=C``),
as deployed, with ``--log-level warning`` and the rate limit off. Per job the gateway stores
the context and the PENDING job in Redis and publishes the submit on JetStream; the scheduler
asks the Safety Kernel over gRPC, picks the least-loaded worker, records RUNNING and dispatches
on JetStream; the worker reads the context, runs echo, stores the result and publishes it on
JetStream; the scheduler records COMPLETED and announces it on ``sys.job.done``. The client,
over HTTP/1.1 keep-alive (one connection per job in flight): one ``POST /v1/jobs?wait_s=30``,
which the gateway answers once the job has ended, with the job and its result (200); a job
not ended within it (202) is followed by one ``GET /v1/jobs/{id}/result?wait_s=30``, and
``status_calls_per_job`` counts the waiting calls.

``cortex-bus``: the same processes, the client skipping HTTP: Cortex's own ``FrontDoor`` in
the client process on NATS and Redis, ``submit``, then ``result(wait_s=30)``.

Every system's servers are also measured for the CPU they spend per job (``cpu_ms_per_job``,
bench/cpu.py), each process apart, with the shared NATS and Redis charged to the system that
ran meanwhile; the clients' own CPU is left out.

Ratios (``ratios`` in the JSON): Cortex ÷ each baseline, for jobs/s (above 1: Cortex is
faster) and for the p50s at C and at C=1 (below 1: Cortex is faster), REST and bus.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402
import redis  # noqa: E402

from bench.e2e import report  # noqa: E402
from bench.e2e.procs import BenchFailed, run_client  # noqa: E402
from bench.e2e.systems import PEERS, ROWS, SYSTEMS, RunConfig, System  # noqa: E402
from tests.processes import SHARED_REDIS_URL, claim_private_redis_db  # noqa: E402

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
DESCRIPTIONS = {
    "floor": "nats-py + redis-py, 3 processes, core NATS, per message",
    "floor-js": "nats-py + redis-py, 3 processes, JetStream job hops, per message",
    "celery": "Celery 5.7.0, Redis broker + result backend, threads pool",
    "dramatiq": "Dramatiq 2.2.1, Redis broker + Results (Redis), worker timeout 10 ms",
    "taskiq": "Taskiq 0.13.0, taskiq-nats JetStream pull + taskiq-redis, 10 ms polling",
    "cortex-rest": "Cortex: gateway (REST) + safety kernel + scheduler + echo workers",
    "cortex-bus": "Cortex: FrontDoor in the client on NATS + Redis, same processes",
    "cortex-rest-nometrics": "Cortex over REST with CORTEX_METRICS_ENABLED=false (metrics cost)",
}


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="M=600, S=60, warm-up 100, 1 round")
    parser.add_argument("--jobs", type=int, help="M, the jobs at concurrency C (default 3000)")
    parser.add_argument("--concurrency", type=int, default=64, help="C (default 64)")
    parser.add_argument("--sequential", type=int, help="S, the jobs one at a time (default 300)")
    parser.add_argument("--warmup", type=int, help="warm-up jobs at C, not reported (300)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per system")
    parser.add_argument("--only", help=f"comma-separated, of: {','.join(ROWS)}")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="where a client polls")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="per job")
    parser.add_argument("--taskiq-broker", choices=["jetstream", "core"], default="jetstream")
    parser.add_argument(
        "--peer-python",
        action="append",
        default=[],
        metavar="PEER=PATH",
        help="a peer's interpreter (default .nox/bench-peer-<peer>/bin/python)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/e2e.json")
    args = parser.parse_args()
    quick = (600, 60, 100, 1) if args.quick else (3000, 300, 300, 2)
    args.jobs = args.jobs or quick[0]
    args.sequential = args.sequential or quick[1]
    args.warmup = args.warmup if args.warmup is not None else quick[2]
    args.rounds = args.rounds or quick[3]
    rows = set(ROWS if args.only is None else args.only.split(","))
    if unknown := rows - set(ROWS):
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(ROWS)}")
    args.rows = rows
    return args


def _peer_pythons(args: argparse.Namespace, systems: list[System]) -> dict[str, Path]:
    given = dict(p.split("=", 1) for p in args.peer_python)
    found: dict[str, Path] = {}
    for peer in PEERS:
        python = Path(given.get(peer, ROOT / f".nox/bench-peer-{peer}/bin/python"))
        if any(s.peer == peer for s in systems) and not python.exists():
            raise SystemExit(
                f"no {peer} environment at {python}: run `nox -s bench-peer-{peer} "
                "--install-only` (nox -s bench does it), or pass --peer-python"
            )
        found[peer] = python
    return found


def _environment(args: argparse.Namespace, peer_python: dict[str, Path]) -> dict[str, Any]:
    async def nats_version() -> str:
        nc = await nats.connect(NATS_URL)
        try:
            v = nc.connected_server_version
            return f"{v.major}.{v.minor}.{v.patch}"
        finally:
            await nc.close()

    r = redis.Redis.from_url(SHARED_REDIS_URL)
    try:
        redis_version = str(r.info("server").get("redis_version"))
    finally:
        r.close()

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),  # anything else busy on the machine shows here
        "nats_server": asyncio.run(nats_version()),
        "redis_server": redis_version,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "peer_python": {k: str(v) for k, v in peer_python.items()},
    }


def _run(args: argparse.Namespace, systems: list[System], cfg: RunConfig) -> dict[str, list[Any]]:
    """Every round, every system: started afresh, its clients run, stopped, its Redis flushed."""
    samples: dict[str, list[Any]] = {row: [] for s in systems for row in s.rows if row in args.rows}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as scratch:  # this run's own
        for r in range(args.rounds):
            shift = r % len(systems)
            for system in systems[shift:] + systems[:shift]:
                started = time.monotonic()
                for row, result in _run_system(args, system, cfg, Path(scratch), r % 2 == 1):
                    samples[row].append(result)
                    done = (result["concurrent"], result["sequential"])
                    print(
                        f"round {r + 1}/{args.rounds} {row}: {done[0]['jobs_per_s']:.0f} jobs/s, "
                        f"p50 {done[0]['p50_ms']:.1f} ms at C={cfg.concurrency}, "
                        f"{done[1]['p50_ms']:.2f} ms at C=1, failed "
                        f"{done[0]['failed'] + done[1]['failed']}",
                        file=sys.stderr,
                        flush=True,
                    )
                print(
                    f"  ({system.name}: {time.monotonic() - started:.0f}s with start and stop)",
                    file=sys.stderr,
                    flush=True,
                )
    return samples


def _run_system(
    args: argparse.Namespace, system: System, cfg: RunConfig, scratch: Path, reverse: bool
) -> list[tuple[str, dict[str, Any]]]:
    store, redis_url = claim_private_redis_db()
    results = []
    try:
        with system.start(cfg, redis_url) as (group, clients):
            for spec in reversed(clients) if reverse else clients:
                if spec.row in args.rows:
                    result = run_client(
                        spec.row,
                        spec.argv,
                        env=spec.env,
                        out=scratch / "client.json",
                        servers=group,
                        timeout_s=60 + 0.1 * (cfg.warmup + cfg.jobs + cfg.sequential),
                    )
                    results.append((spec.row, result))
    finally:
        store.flushdb()  # ours alone since the claim
        store.close()
    return results


def _interrupted(signum: int, _: FrameType | None) -> None:
    """The first SIGINT or SIGTERM unwinds the run, which stops every process it started and
    flushes its Redis databases; later ones must not break into that."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _again)
    raise KeyboardInterrupt(f"signal {signum}")


def _again(signum: int, _: FrameType | None) -> None:
    print(f"signal {signum}: still stopping the benchmark's processes", file=sys.stderr)


def main() -> int:
    args = _parse()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupted)
    systems = [s for s in SYSTEMS if args.rows & set(s.rows)]
    peer_python = _peer_pythons(args, systems)
    cfg = RunConfig(
        nats_url=NATS_URL,
        workers=args.workers,
        concurrency=args.concurrency,
        jobs=args.jobs,
        sequential=args.sequential,
        warmup=args.warmup,
        poll_ms=args.poll_ms,
        timeout_s=args.timeout_s,
        taskiq_broker=args.taskiq_broker,
        peer_python=peer_python,
    )
    environment = _environment(args, peer_python)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"end to end: {', '.join(sorted(args.rows, key=ROWS.index))}; M={cfg.jobs} at "
        f"C={cfg.concurrency}, S={cfg.sequential} at C=1, warm-up {cfg.warmup}, "
        f"{args.rounds} round(s), {cfg.workers} worker process(es) each",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    try:
        samples = _run(args, systems, cfg)
    except BenchFailed as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc}): its processes are stopped", file=sys.stderr)
        return 130

    rows = {
        row: report.summarize(row, runs, DESCRIPTIONS.get(row, row))
        for row in ROWS
        if (runs := samples.get(row))
    }
    ratios = report.ratios(rows)
    taskiq_note = "" if args.taskiq_broker == "jetstream" else " (taskiq: core NATS broker)"
    title = (
        f"{cfg.jobs} echo jobs at C={cfg.concurrency} + {cfg.sequential} at C=1, median of "
        f"{args.rounds} round(s), {cfg.workers} worker process(es), {os.cpu_count()} cores, "
        f"Python {platform.python_version()}{taskiq_note}"
    )
    args.out.write_text(
        json.dumps(
            report.json_safe(
                {
                    "benchmark": "e2e",
                    "title": title,
                    "settings": {
                        "jobs": cfg.jobs,
                        "concurrency": cfg.concurrency,
                        "sequential": cfg.sequential,
                        "warmup": cfg.warmup,
                        "rounds": args.rounds,
                        "workers": cfg.workers,
                        "payload_chars": 128,
                        "poll_ms": cfg.poll_ms,
                        "timeout_s": cfg.timeout_s,
                        "taskiq_broker": cfg.taskiq_broker,
                        "quick": args.quick,
                        "latency": "submit to verified result in the client's hands, per job",
                    },
                    "environment": environment,
                    "rows": rows,
                    "ratios_note": "Cortex ÷ baseline: jobs_per_s above 1 and p50 below 1 mean "
                    "Cortex is faster",
                    "ratios": ratios,
                    "wall_s": time.monotonic() - started,
                }
            ),
            indent=2,
            allow_nan=False,
        )
    )
    png = args.out.with_suffix(".png")
    report.chart(rows, png, title)
    print(title)
    print(report.table(rows))
    if cpu_lines := report.cpu_table(rows):
        print("\nCPU per job by process, ms (servers and the shared NATS and Redis; all phases)")
        print(cpu_lines)
    print()
    print(report.ratio_table(ratios, cfg.concurrency))
    print(f"wrote {args.out} and {png} ({time.monotonic() - started:.0f}s)")
    failed = {name: r["failed"] for name, r in rows.items() if r["failed"]}
    if failed:
        print(f"\nJOBS FAILED: {failed}; see 'errors' in {args.out}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
