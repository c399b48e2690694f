"""Benchmark: the scheduler's hot decisions (scoring, dispatch, heartbeats) as the pool grows.

Run with ``nox -s bench``. Every figure is the median over interleaved rounds, and each table
carries a ratio against a baseline measured in the same run (the N=10 pool, or a bare loop),
because this machine is noisy; the absolute microseconds are printed too. The collector is off
while a round is timed (as ``timeit`` does), and logging is disabled: the rows measure the
scheduler, not a log handler.

Pools are seeded and realistic: 20% of the workers are stale (last heartbeat 16 to 290 s ago, past
``stale_after_s`` but not yet forgotten), 20% are fresh but full, and the rest have random slot,
CPU and GPU loads.

Tables:

1. ``pick_worker``: one scoring decision over N ``WorkerState``s (N = 10 … 10,000), the mixed
   pool and the worst case (every worker eligible), against a bare ``for`` loop over the same
   list. The curve is fitted as ``a + b·N``; ``b`` is the per-worker constant.
2. ``Scheduler.on_submit``: one JobRequest end to end in the core on the in-memory adapters
   (create job → safety → route → registry.workers → pick → reserve → commit → publish), with
   N workers in the pool recorded through ``on_heartbeat``. Each decision is timed alone and a
   round reports their median (a rare slow call, the machine's noise, does not move it). The
   reserved slot is released outside the timed call, so every decision sees the same pool, and
   two untimed decisions start each rig's turn in a round (warm caches). Timed the same way in
   the same rounds: ``pick_worker`` over the pool as the registry returns it, and
   ``registry.workers(pool)``; their share of the decision is reported, and "other" is what is
   left (a difference of separate medians: noisy where the parts are large). One extra row puts
   the 10 pool workers in a registry of 10,000 (the rest in another pool).
3. Heartbeat absorption: one interval of 10,000 distinct workers' heartbeats through
   ``Scheduler.on_heartbeat`` (registry.record + drain with no job waiting), and the same from
   wire bytes through ``ProtobufCodec.decode``; against an ``await`` of a no-op handler per
   packet. The CPU share is the interval's cost over the workers' 5 s heartbeat period. Then
   the case the issue's "empty queue" leaves out: every worker full and one job waiting, so
   each heartbeat drains, re-scores the whole pool and puts the job back (N = 1,000 and 10,000;
   single heartbeats timed, the interval projected as N of them).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import os
import platform
import random
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.memory import (
    InMemoryBus,
    InMemoryJobStore,
    InMemoryMetrics,
    InMemoryWorkerRegistry,
    InProcessSafetyChecker,
)
from cortex_core.messages import BusPacket, Heartbeat, JobRequest, JobStatus
from cortex_core.pointers import context_ptr
from cortex_core.routing import RoutingTable
from cortex_core.scheduler import Scheduler, SchedulerConfig
from cortex_core.scoring import ScoringWeights, WorkerState, pick_worker

SIZES = (10, 100, 1_000, 10_000)
STALE_SHARE = 0.20
FULL_SHARE = 0.20
STALE_AFTER_S = 15.0  # SchedulerConfig's default
FORGET_AFTER_S = 300.0  # InMemoryWorkerRegistry's default
HEARTBEAT_PERIOD_S = 5.0  # WorkerConfig.heartbeat_interval_s's default
HEARTBEAT_WORKERS = 10_000
MAX_SUBMITS = 2_000  # timed submits per rig per round
NOW = 1_763_726_400.0
POOL = "echo"
TOPIC = "job.echo"
ROUTING = RoutingTable.from_pools({POOL: (TOPIC,), "other": ("job.other",)})
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SEED = 20_260_101


Handler = Callable[[BusPacket], Awaitable[None]]


class FakeClock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


@dataclass(frozen=True, slots=True)
class Seen:
    heartbeat: Heartbeat
    seen_at: float


def make_pool(
    n: int,
    rng: random.Random,
    *,
    pool: str = POOL,
    prefix: str = "w",
    stale_share: float = STALE_SHARE,
    full_share: float = FULL_SHARE,
) -> list[Seen]:
    """``n`` workers: exactly ``stale_share`` stale and ``full_share`` full, loads at random."""
    kinds = ["stale"] * round(n * stale_share) + ["full"] * round(n * full_share)
    kinds += ["live"] * (n - len(kinds))
    rng.shuffle(kinds)
    out = []
    for i, kind in enumerate(kinds):
        slots = rng.choice((1, 2, 4, 8))
        out.append(
            Seen(
                Heartbeat(
                    worker_id=f"{prefix}-{i:05d}",
                    pool=pool,
                    max_parallel_jobs=slots,
                    active_jobs=slots if kind == "full" else rng.randrange(slots),
                    cpu_load=rng.randrange(257) / 256,  # exact in the wire's float32
                    gpu_utilization=rng.randrange(257) / 256,
                    region="eu-west-1",
                    type="cpu",
                ),
                NOW - rng.uniform(STALE_AFTER_S + 1, FORGET_AFTER_S - 10)
                if kind == "stale"
                else NOW - rng.uniform(0, HEARTBEAT_PERIOD_S),
            )
        )
    return out


def states(pool: Sequence[Seen]) -> list[WorkerState]:
    return [WorkerState.from_heartbeat(s.heartbeat, s.seen_at) for s in pool]


def packet(payload: Heartbeat | JobRequest, created_at: float = NOW) -> BusPacket:
    return BusPacket(trace_id=TRACE_ID, sender_id="bench", created_at=created_at, payload=payload)


def timed(fn: Callable[[], object], number: int) -> float:
    """Mean µs per call of ``number`` calls (collector off, as timeit)."""
    return timeit.timeit(fn, number=number) / number * 1e6


async def timed_async(fn: Callable[[], Awaitable[object]], number: int) -> float:
    """Mean µs per awaited call of ``number`` calls, collector off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in range(number):
            await fn()
        return (time.perf_counter_ns() - t0) / number / 1e3
    finally:
        if enabled:
            gc.enable()


async def median_call_us(fn: Callable[[], object], number: int) -> float:
    """The median µs of ``number`` calls, each timed alone (awaited if it returns an
    awaitable), collector off: one slow call (the machine's noise) does not move it."""
    clock = time.perf_counter_ns
    ns = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(number):
            t0 = clock()
            r = fn()
            if isinstance(r, Awaitable):
                await r
            ns.append(clock() - t0)
    finally:
        if enabled:
            gc.enable()
    return statistics.median(ns) / 1e3


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least squares ``y = a + b·x``: (a, b)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - b * mx, b


def exponent(n1: int, t1: float, n2: int, t2: float) -> float:
    """The local growth exponent k of t ∝ N^k between two sizes (1 = linear)."""
    return math.log(t2 / t1) / math.log(n2 / n1)


# -- 1. pick_worker ----------------------------------------------------------------------------


def bench_scoring(work: int, rounds: int) -> dict[str, object]:
    weights = ScoringWeights()
    pools: dict[int, dict[str, list[WorkerState]]] = {}
    for n in SIZES:
        rng = random.Random(SEED + n)
        pools[n] = {
            "mixed": states(make_pool(n, rng)),
            "all eligible": states(make_pool(n, rng, stale_share=0.0, full_share=0.0)),
        }
        for pool in pools[n].values():
            assert pick_worker(pool, now=NOW, stale_after=STALE_AFTER_S).worker is not None

    def pick(pool: list[WorkerState]) -> Callable[[], object]:
        return lambda: pick_worker(pool, now=NOW, stale_after=STALE_AFTER_S, weights=weights)

    def bare(pool: list[WorkerState]) -> Callable[[], object]:
        def loop() -> None:
            for _ in pool:
                pass

        return loop

    samples: dict[tuple[int, str], list[float]] = {}
    for _ in range(rounds):
        for n in SIZES:
            number = max(3, work // n)
            for name, fn in (
                ("mixed", pick(pools[n]["mixed"])),
                ("all eligible", pick(pools[n]["all eligible"])),
                ("bare loop", bare(pools[n]["mixed"])),
            ):
                samples.setdefault((n, name), []).append(timed(fn, number))
    med = {key: statistics.median(v) for key, v in samples.items()}
    rows = {
        n: {name: med[(n, name)] for name in ("mixed", "all eligible", "bare loop")} for n in SIZES
    }
    a, b = fit_line(SIZES, [rows[n]["mixed"] for n in SIZES])
    aw, bw = fit_line(SIZES, [rows[n]["all eligible"] for n in SIZES])
    return {
        "rows_us": rows,
        "fit_mixed_us": {"a": a, "b_per_worker": b},
        "fit_all_eligible_us": {"a": aw, "b_per_worker": bw},
        "exponent_1k_10k_mixed": exponent(
            1_000, rows[1_000]["mixed"], 10_000, rows[10_000]["mixed"]
        ),
    }


# -- 2. Scheduler.on_submit --------------------------------------------------------------------


@dataclass
class Rig:
    scheduler: Scheduler
    bus: InMemoryBus
    jobs: InMemoryJobStore
    registry: InMemoryWorkerRegistry
    clock: FakeClock


async def make_rig(pool: Sequence[Seen], *, codec: ProtobufCodec | None = None) -> Rig:
    """A started scheduler on in-memory adapters, the pool recorded through ``on_heartbeat``
    (at each worker's own time), a sink subscribed to the workers' subjects."""
    clock = FakeClock()
    bus = InMemoryBus(codec=codec)
    jobs = InMemoryJobStore()
    registry = InMemoryWorkerRegistry(clock=clock, forget_after_s=FORGET_AFTER_S)
    metrics = InMemoryMetrics()
    scheduler = Scheduler(
        bus=bus,
        jobs=jobs,
        safety=InProcessSafetyChecker(metrics=metrics),
        registry=registry,
        routing=ROUTING,
        metrics=metrics,
        clock=clock,
        config=SchedulerConfig(stale_after_s=STALE_AFTER_S),
    )
    await scheduler.start()

    async def sink(_: BusPacket) -> None:
        return None

    await bus.subscribe("worker.*.jobs", sink)
    for seen in sorted(pool, key=lambda s: s.seen_at):
        clock.t = seen.seen_at
        await scheduler.on_heartbeat(packet(seen.heartbeat, seen.seen_at))
    clock.t = NOW
    assert len(await registry.workers()) == len(pool)
    return Rig(scheduler, bus, jobs, registry, clock)


async def close_rig(rig: Rig) -> None:
    await rig.scheduler.close()
    await rig.bus.close()


class Submits:
    """Fresh JobRequests for one rig, each decision timed alone (their median); the slot it
    reserved is given back outside the timing, so the pool is the same for every decision."""

    def __init__(self, rig: Rig, name: str) -> None:
        self.rig = rig
        self.name = name
        self.n = 0

    async def run(self, number: int) -> float:
        rig = self.rig
        packets = []
        for _ in range(number):
            self.n += 1
            job_id = f"{self.name}-{self.n:07d}"
            packets.append(
                packet(JobRequest(job_id=job_id, topic=TOPIC, context_ptr=context_ptr(job_id)))
            )
        clock = time.perf_counter_ns
        on_submit = rig.scheduler.on_submit
        ns = []
        enabled = gc.isenabled()
        gc.disable()
        try:
            for p in packets:
                t0 = clock()
                await on_submit(p)
                ns.append(clock() - t0)
                job = await rig.jobs.get(p.payload.job_id)  # type: ignore[union-attr]
                assert job is not None
                assert job.status is JobStatus.RUNNING, job
                assert job.worker_id is not None
                await rig.registry.release(job.worker_id)
        finally:
            if enabled:
                gc.enable()
        await rig.bus.settle()  # the sink takes the dispatches off the bus, untimed
        return statistics.median(ns) / 1e3


async def bench_dispatch(work: int, rounds: int) -> dict[str, object]:
    rigs: dict[str, Rig] = {}
    for n in SIZES:
        rigs[f"N={n}"] = await make_rig(make_pool(n, random.Random(SEED + n)))
    crowded = make_pool(10, random.Random(SEED + 10)) + make_pool(
        10_000 - 10, random.Random(SEED + 1), pool="other", prefix="o"
    )
    rigs["N=10 in a registry of 10,000"] = await make_rig(crowded)
    sizes = {name: len(await rig.registry.workers(POOL)) for name, rig in rigs.items()}
    registry_sizes = {name: len(await rig.registry.workers()) for name, rig in rigs.items()}
    submits = {name: Submits(rig, f"j{i}") for i, (name, rig) in enumerate(rigs.items())}
    weights = ScoringWeights()

    async def noop() -> None:
        return None

    samples: dict[tuple[str, str], list[float]] = {}
    for warm_up in submits.values():
        await warm_up.run(20)
    for _ in range(rounds):
        for name, rig in rigs.items():
            # capped: every timed submit leaves a job in the store, and a store of hundreds of
            # thousands of jobs would make the heap, not the decision, the thing measured
            number = min(MAX_SUBMITS, max(10, work // registry_sizes[name]))
            listed = list(await rig.registry.workers(POOL))
            registry = rig.registry

            def pick(listed: list[WorkerState] = listed) -> object:
                return pick_worker(listed, now=NOW, stale_after=STALE_AFTER_S, weights=weights)

            def workers(registry: InMemoryWorkerRegistry = registry) -> Awaitable[object]:
                return registry.workers(POOL)

            await submits[name].run(2)  # untimed: the previous rig's pool has left the caches
            for part, us in (
                ("on_submit", await submits[name].run(number)),
                ("pick_worker", await median_call_us(pick, number)),
                ("registry.workers", await median_call_us(workers, number)),
                ("await no-op", await median_call_us(noop, number)),
            ):
                samples.setdefault((name, part), []).append(us)
    for rig in rigs.values():
        await close_rig(rig)
    parts = ("on_submit", "pick_worker", "registry.workers", "await no-op")
    rows = {
        name: {part: statistics.median(samples[(name, part)]) for part in parts} for name in rigs
    }
    base = rows["N=10"]["on_submit"]
    for name, r in rows.items():
        r["ratio_vs_N10"] = r["on_submit"] / base
        r["pick_share"] = r["pick_worker"] / r["on_submit"]
        r["workers_share"] = r["registry.workers"] / r["on_submit"]
        r["rest"] = r["on_submit"] - r["pick_worker"] - r["registry.workers"]
        r["pool_workers"] = sizes[name]
        r["registry_workers"] = registry_sizes[name]
    a, b = fit_line(SIZES, [rows[f"N={n}"]["on_submit"] for n in SIZES])
    return {
        "rows_us": rows,
        "fit_on_submit_us": {"a": a, "b_per_worker": b},
        "exponent_1k_10k": exponent(
            1_000, rows["N=1000"]["on_submit"], 10_000, rows["N=10000"]["on_submit"]
        ),
    }


# -- 3. heartbeats -----------------------------------------------------------------------------


async def bench_heartbeats(intervals: int, rounds: int) -> dict[str, object]:
    rng = random.Random(SEED + 3)
    pool = [s.heartbeat for s in make_pool(HEARTBEAT_WORKERS, rng, stale_share=0.0)]
    packets = [packet(hb) for hb in pool]
    codec = ProtobufCodec()
    wire = [codec.encode(p) for p in packets]
    assert codec.decode(wire[0]) == packets[0]
    assert len({hb.worker_id for hb in pool}) == HEARTBEAT_WORKERS
    rig = await make_rig([Seen(hb, NOW) for hb in pool])  # steady state: every worker known
    scheduler, registry, decode = rig.scheduler, rig.registry, codec.decode
    assert scheduler.waiting(POOL) == ()

    async def floor() -> None:
        async def handler(_: BusPacket) -> None:
            return None

        for p in packets:
            await handler(p)

    async def record() -> None:
        for p in packets:
            await registry.record(p.payload, NOW)  # type: ignore[arg-type]

    async def on_heartbeat() -> None:
        for p in packets:
            await scheduler.on_heartbeat(p)

    async def decode_only() -> None:
        for data in wire:
            decode(data)

    async def decode_on_heartbeat() -> None:
        for data in wire:
            await scheduler.on_heartbeat(decode(data))

    targets: dict[str, Callable[[], Awaitable[None]]] = {
        "await no-op handler (baseline)": floor,
        "registry.record only": record,
        "on_heartbeat": on_heartbeat,
        "ProtobufCodec.decode only": decode_only,
        "decode + on_heartbeat": decode_on_heartbeat,
    }
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for fn in targets.values():  # warm up
        await fn()
    for _ in range(rounds):
        for name, fn in targets.items():
            # µs per interval of HEARTBEAT_WORKERS heartbeats
            samples[name].append(await timed_async(fn, intervals))
    assert scheduler.waiting(POOL) == ()
    await close_rig(rig)
    base = statistics.median(samples["await no-op handler (baseline)"])
    rows = {}
    for name, values in samples.items():
        per_interval_us = statistics.median(values)
        rows[name] = {
            "ms_per_interval": per_interval_us / 1e3,
            "us_per_heartbeat": per_interval_us / HEARTBEAT_WORKERS,
            "ratio_vs_baseline": per_interval_us / base,
            "cpu_share_of_period": per_interval_us / 1e6 / HEARTBEAT_PERIOD_S,
        }
    return {"workers": HEARTBEAT_WORKERS, "period_s": HEARTBEAT_PERIOD_S, "rows": rows}


async def bench_waiting_heartbeats(calls: int, rounds: int) -> dict[str, dict[str, float]]:
    """Heartbeats while the pool is full and a job waits: each one re-scores the whole pool.

    Far too slow to run a whole interval of N heartbeats, so ``calls`` heartbeats are timed
    alone (their median) and the interval is projected: N heartbeats of that cost."""
    rigs: dict[int, tuple[Rig, list[BusPacket]]] = {}
    for n in (1_000, HEARTBEAT_WORKERS):
        pool = make_pool(n, random.Random(SEED + 4 + n), stale_share=0.0, full_share=1.0)
        rig = await make_rig([Seen(s.heartbeat, NOW) for s in pool])
        job_id = f"waiting-{n}"
        await rig.scheduler.on_submit(
            packet(JobRequest(job_id=job_id, topic=TOPIC, context_ptr=context_ptr(job_id)))
        )
        assert rig.scheduler.waiting(POOL) == (job_id,)
        rigs[n] = (rig, [packet(s.heartbeat) for s in pool])  # still full: the job keeps waiting
    samples: dict[int, list[float]] = {n: [] for n in rigs}
    for _ in range(rounds):
        for n, (rig, packets) in rigs.items():
            beats = iter(packets * (1 + calls // len(packets)))
            on_heartbeat = rig.scheduler.on_heartbeat

            def beat(
                beats: Iterator[BusPacket] = beats, hb: Handler = on_heartbeat
            ) -> Awaitable[None]:
                return hb(next(beats))

            await beat()  # untimed: the previous rig's pool has left the caches
            samples[n].append(await median_call_us(beat, calls))
    rows = {}
    for n, (rig, _) in rigs.items():
        assert len(rig.scheduler.waiting(POOL)) == 1
        await close_rig(rig)
        us = statistics.median(samples[n])
        rows[f"N={n}"] = {
            "workers": n,
            "us_per_heartbeat": us,
            "projected_ms_per_interval": us * n / 1e3,
            "cpu_share_of_period": us * n / 1e6 / HEARTBEAT_PERIOD_S,
        }
    return rows


# -- report ------------------------------------------------------------------------------------


def report(scoring: dict[str, object], dispatch: dict[str, object], hb: dict[str, object]) -> None:
    s_rows: dict[int, dict[str, float]] = scoring["rows_us"]  # type: ignore[assignment]
    s_fit: dict[str, float] = scoring["fit_mixed_us"]  # type: ignore[assignment]
    w_fit: dict[str, float] = scoring["fit_all_eligible_us"]  # type: ignore[assignment]
    print(
        f"1. pick_worker, one decision over N workers ({STALE_SHARE:.0%} stale, "
        f"{FULL_SHARE:.0%} full); ÷ N=10 and ÷ a bare loop over the same list"
    )
    print(
        f"{'N':>8}{'mixed µs':>12}{'µs/worker':>11}{'÷ N=10':>10}"
        f"{'all-eligible µs':>17}{'bare loop µs':>14}{'÷ bare':>9}"
    )
    base = s_rows[SIZES[0]]["mixed"]
    for n in SIZES:
        r = s_rows[n]
        print(
            f"{n:>8,}{r['mixed']:>12.1f}{r['mixed'] / n:>11.3f}{r['mixed'] / base:>10.1f}"
            f"{r['all eligible']:>17.1f}{r['bare loop']:>14.1f}{r['mixed'] / r['bare loop']:>9.1f}"
        )
    print(
        f"   curve: mixed ≈ {s_fit['a']:.1f} + {s_fit['b_per_worker']:.3f}·N µs; all eligible ≈ "
        f"{w_fit['a']:.1f} + {w_fit['b_per_worker']:.3f}·N µs; growth exponent 1k→10k "
        f"{scoring['exponent_1k_10k_mixed']:.2f} (1 = linear)"
    )
    print()
    d_rows: dict[str, dict[str, float]] = dispatch["rows_us"]  # type: ignore[assignment]
    d_fit: dict[str, float] = dispatch["fit_on_submit_us"]  # type: ignore[assignment]
    print(
        "2. Scheduler.on_submit, one JobRequest end to end on in-memory adapters "
        "(create → safety → route → pick → reserve → commit → publish)"
    )
    print(
        f"{'pool':<30}{'on_submit µs':>13}{'÷ N=10':>9}{'pick µs':>10}{'pick %':>8}"
        f"{'workers() µs':>14}{'workers %':>11}{'other µs':>10}"
    )
    for name, r in d_rows.items():
        print(
            f"{name:<30}{r['on_submit']:>13.1f}{r['ratio_vs_N10']:>9.1f}{r['pick_worker']:>10.1f}"
            f"{r['pick_share']:>8.0%}{r['registry.workers']:>14.1f}{r['workers_share']:>11.0%}"
            f"{r['rest']:>10.1f}"
        )
    print(
        f"   curve: on_submit ≈ {d_fit['a']:.1f} + {d_fit['b_per_worker']:.3f}·N µs; growth "
        f"exponent 1k→10k {dispatch['exponent_1k_10k']:.2f}; "
        f"per-call timer floor (await no-op) {d_rows['N=10']['await no-op']:.2f} µs"
    )
    print()
    h_rows: dict[str, dict[str, float]] = hb["rows"]  # type: ignore[assignment]
    print(
        f"3. Heartbeats: one interval of {hb['workers']:,} distinct workers, no job waiting; "
        f"CPU share of one core over a {hb['period_s']:.0f} s period"
    )
    print(f"{'row':<34}{'ms/interval':>13}{'µs/heartbeat':>14}{'÷ base':>9}{'CPU share':>11}")
    for name, r in h_rows.items():
        print(
            f"{name:<34}{r['ms_per_interval']:>13.2f}{r['us_per_heartbeat']:>14.2f}"
            f"{r['ratio_vs_baseline']:>9.1f}{r['cpu_share_of_period']:>11.2%}"
        )
    w_rows: dict[str, dict[str, float]] = hb["pool_full_one_waiting"]  # type: ignore[assignment]
    print(
        "   with the pool full and one job waiting (a full worker's heartbeat only relabels) "
        "(interval projected: N heartbeats)"
    )
    print(f"{'row':<34}{'ms/interval':>13}{'µs/heartbeat':>14}{'':>9}{'CPU share':>11}")
    for name, r in w_rows.items():
        print(
            f"{'on_heartbeat, ' + name:<34}{r['projected_ms_per_interval']:>13.0f}"
            f"{r['us_per_heartbeat']:>14.0f}{'':>9}{r['cpu_share_of_period']:>11.0%}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--out", type=Path, default=Path("bench/results/scheduler.json"))
    args = parser.parse_args()
    # scoring: worker-visits per row per round; dispatch: registry-worker visits per row per
    # round; heartbeats: intervals of 10,000 per row per round
    # and heartbeats while a job waits: single heartbeats per row per round
    if args.quick:
        score_work, score_rounds, submit_work, submit_rounds = 30_000, 3, 40_000, 3
        hb_intervals, hb_rounds, hb_waiting_calls = 1, 3, 10
    else:
        score_work, score_rounds, submit_work, submit_rounds = 300_000, 9, 300_000, 9
        hb_intervals, hb_rounds, hb_waiting_calls = 3, 11, 40
    logging.disable(logging.CRITICAL)  # scheduler and checker log each decision at INFO
    started = time.perf_counter()
    scoring = bench_scoring(score_work, score_rounds)
    dispatch = asyncio.run(bench_dispatch(submit_work, submit_rounds))
    heartbeats = asyncio.run(bench_heartbeats(hb_intervals, hb_rounds))
    heartbeats["pool_full_one_waiting"] = asyncio.run(
        bench_waiting_heartbeats(hb_waiting_calls, hb_rounds)
    )
    elapsed = time.perf_counter() - started
    cores = os.cpu_count()
    print(
        f"Scheduler hot path, {cores} cores, Python {platform.python_version()}, "
        f"{'quick' if args.quick else 'full'} run in {elapsed:.0f} s; medians over rounds\n"
    )
    report(scoring, dispatch, heartbeats)
    s_rows: dict[int, dict[str, float]] = scoring["rows_us"]  # type: ignore[assignment]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "scheduler",
                "python": platform.python_version(),
                "cpu_count": cores,
                "quick": args.quick,
                "seconds": elapsed,
                "pool_mix": {"stale": STALE_SHARE, "full": FULL_SHARE},
                "stale_after_s": STALE_AFTER_S,
                "pick_worker": {**scoring, "rows_us": {str(n): r for n, r in s_rows.items()}},
                "on_submit": dispatch,
                "heartbeats": heartbeats,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0  # a benchmark reports; it does not gate


if __name__ == "__main__":
    raise SystemExit(main())
