"""Benchmark: the Safety Kernel's ``Check`` over gRPC, and policy evaluation, against a baseline
measured in the same run.

Run with ``nox -s bench``. All rows are measured in interleaved rounds, and each figure is the
median over the rounds. The baseline is the in-process checker (``InProcessSafetyChecker``
on the default policy), measured in this same process, because this machine is noisy; every
row is reported in absolute figures and as a ratio to it.

Rows:
* ``in-process check`` (baseline): the policy evaluated in the caller's process, no network.
* ``grpc <codec> seq``: ``GrpcSafetyChecker`` → ``SafetyKernelServer`` on 127.0.0.1, one call
  at a time, both in this process and event loop; ``<codec>`` is the ``Check`` codec (upb on
  the wire by default, betterproto2 the typed-message alternative).
* ``grpc <codec> x32``: the same with 32 concurrent callers.
* ``grpc upb, kernel process``: the kernel in its own OS process (as deployed), so client and
  server each get a core.
* ``grpcio floor``: a bare ``grpc.aio`` server whose handler returns empty bytes, called
  through a bare channel: what any unary call costs here before a line of ours runs.
* ``breaker open``: a check denied by the open circuit breaker (no network call).
* ``evaluate N rules``: ``Policy.evaluate`` alone, worst case: every rule's topic glob matches
  and each rule fails on its last criterion, so all N are checked and none decides. ``topic
  miss`` is the same count of rules whose topics don't match, which the policy's per-topic
  candidate cache skips.

Logging is disabled while measuring (the kernel logs each decision at INFO, the client each
denial at WARNING): the rows measure the service, not a log handler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from cortex_adapters.grpc import CheckCodecName, GrpcSafetyChecker, SafetyKernelServer
from cortex_adapters.memory import InProcessSafetyChecker
from cortex_core.policy import Decision, Policy, Rule, SafetyRequest, default_policy

REQUEST = SafetyRequest(
    job_id="0f8e3c2a9b7d4e1f8a6c5b4d3e2f1a0b",
    topic="job.echo",
    tenant_id="default",
    labels={"env": "dev"},
    prompt_bytes=512,
)
CONCURRENCY = 32
GO_CLAIM = {"checks_per_s": 15_000, "p99_ms": 4.2, "vcpus": 8}

KERNEL_PROCESS = """
import asyncio, logging, sys
import grpc

from cortex_adapters.grpc import SafetyKernelServer
from cortex_core.policy import default_policy

async def main() -> None:
    logging.disable(logging.ERROR)
    server = SafetyKernelServer(policy=default_policy(), address="127.0.0.1:0")
    await server.start()
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await server.close(0)

asyncio.run(main())
"""


def _pct(sorted_ns: list[int], q: float) -> float:
    """The q-quantile of sorted nanoseconds, in microseconds (nearest rank)."""
    i = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
    return sorted_ns[i] / 1e3


Check = Callable[[SafetyRequest], Awaitable[object]]


async def measure(check: Check, calls: int, concurrency: int = 1) -> dict[str, float]:
    """Per-call latency (p50, p99, mean, µs) and throughput (calls/s) of ``calls`` awaited calls
    spread over ``concurrency`` callers."""
    latencies: list[int] = []
    per_caller = calls // concurrency

    async def caller() -> None:
        clock = time.perf_counter_ns
        for _ in range(per_caller):
            t0 = clock()
            await check(REQUEST)
            latencies.append(clock() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "p50_us": _pct(latencies, 0.50),
        "p99_us": _pct(latencies, 0.99),
        "mean_us": statistics.fmean(latencies) / 1e3,
        "checks_per_s": len(latencies) / wall,
        "calls": len(latencies),
    }


def median_row(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds (calls: their sum)."""
    row = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    row["calls"] = sum(r["calls"] for r in rounds)
    row["rounds"] = len(rounds)
    return row


def worst_case_policy(n: int, *, topic_hit: bool) -> Policy:
    return Policy(
        tuple(
            Rule(
                id=f"rule-{i}",
                decision=Decision.DENY,
                reason="never decides",
                topic="job.*" if topic_hit else f"other.{i}.*",
                tenants=frozenset({"default", "acme"}),
                labels={"env": "dev"},
                max_prompt_bytes=100,  # the request has 512: the last criterion fails
            )
            for i in range(n)
        )
    )


def evaluate_us(policy: Policy, calls: int) -> float:
    assert policy.evaluate(REQUEST).rule_id == "default"
    evaluate = policy.evaluate
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            evaluate(REQUEST)
        best = min(best, (time.perf_counter_ns() - t0) / calls / 1e3)
    return best


async def grpc_kernel(
    stack: contextlib.AsyncExitStack, codec: CheckCodecName, *, batch: bool = False
) -> Check:
    server = SafetyKernelServer(
        policy=default_policy(), address="127.0.0.1:0", check_codec_name=codec
    )
    await server.start()
    stack.push_async_callback(server.close, 0)
    client = GrpcSafetyChecker(
        address=server.target, timeout_s=5.0, check_codec_name=codec, batch=batch
    )
    await client.start()
    stack.push_async_callback(client.close)
    return client.check


async def grpcio_floor(stack: contextlib.AsyncExitStack) -> Check:
    async def nothing(_: bytes, __: object) -> bytes:
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Floor", {"Call": grpc.unary_unary_rpc_method_handler(nothing)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stack.push_async_callback(server.stop, 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stack.push_async_callback(channel.close, None)
    call = channel.unary_unary("/bench.Floor/Call", None, None)
    payload = b"x" * 60  # about the size of an encoded PolicyCheckRequest

    async def check(_: SafetyRequest) -> bytes:
        data: bytes = await call(payload, timeout=5.0)
        return data

    return check


async def kernel_process(stack: contextlib.AsyncExitStack, *, batch: bool = False) -> Check:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KERNEL_PROCESS,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    stdin = proc.stdin

    async def stop() -> None:
        stdin.close()
        await proc.wait()

    stack.push_async_callback(stop)
    port = int(await asyncio.wait_for(proc.stdout.readline(), timeout=30))
    client = GrpcSafetyChecker(address=f"127.0.0.1:{port}", timeout_s=5.0, batch=batch)
    await client.start()
    stack.push_async_callback(client.close)
    return client.check


async def breaker_open_us(calls: int) -> float:
    client = GrpcSafetyChecker(address="127.0.0.1:1", failure_threshold=1, reset_after_s=3600)
    await client.start()
    try:
        assert not (await client.check(REQUEST)).allowed  # refused: the breaker opens
        rpc_calls = client.rpc_calls
        row = await measure(client.check, calls)
        assert client.rpc_calls == rpc_calls, "the open breaker must not call out"
        return row["mean_us"]
    finally:
        await client.close()


async def run(calls: int, rounds: int, eval_calls: int) -> dict[str, object]:
    """Every row measured in ``rounds`` interleaved rounds of ``calls`` calls (the machine's noise
    spreads over all rows alike); each figure is the median over the rounds."""
    async with contextlib.AsyncExitStack() as stack:
        baseline = InProcessSafetyChecker(default_policy())
        floor = await grpcio_floor(stack)
        targets: dict[str, tuple[Check, int]] = {
            "in-process check (baseline)": (baseline.check, 1),
            "grpcio floor seq": (floor, 1),
            f"grpcio floor x{CONCURRENCY}": (floor, CONCURRENCY),
        }
        codecs: tuple[CheckCodecName, ...] = ("upb", "betterproto2")
        for codec in codecs:
            check = await grpc_kernel(stack, codec)
            targets[f"grpc {codec} seq"] = (check, 1)
            targets[f"grpc {codec} x{CONCURRENCY}"] = (check, CONCURRENCY)
        # Concurrent checks travel in CheckBatch calls (what the scheduler does); the rows
        # above send each check alone (batch=False), as every check was sent before.
        batched = await grpc_kernel(stack, "upb", batch=True)
        targets[f"grpc upb x{CONCURRENCY}, batched"] = (batched, CONCURRENCY)
        remote = await kernel_process(stack)
        targets["grpc upb seq, kernel process"] = (remote, 1)
        targets[f"grpc upb x{CONCURRENCY}, kernel process"] = (remote, CONCURRENCY)
        remote_batched = await kernel_process(stack, batch=True)
        targets[f"grpc upb x{CONCURRENCY}, kernel process, batched"] = (
            remote_batched,
            CONCURRENCY,
        )
        for check, _ in targets.values():  # warm up: connections, caches
            for _ in range(200):
                await check(REQUEST)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, (check, concurrency) in targets.items():
                samples[name].append(await measure(check, calls, concurrency))
    evaluation = {
        f"evaluate {n} rules": evaluate_us(worst_case_policy(n, topic_hit=True), eval_calls // n)
        for n in (10, 100, 1_000)
    }
    evaluation["evaluate 1000 rules, topic miss"] = evaluate_us(
        worst_case_policy(1_000, topic_hit=False), eval_calls // 10
    )
    return {
        "rows": {name: median_row(rounds) for name, rounds in samples.items()},
        "evaluation_us": evaluation,
        "breaker_open_us": await breaker_open_us(calls),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--out", type=Path, default=Path("bench/results/safety.json"))
    args = parser.parse_args()
    calls, rounds, eval_calls = (320, 3, 20_000) if args.quick else (1_280, 7, 200_000)
    logging.disable(logging.ERROR)  # the breaker row would log each denial
    result = asyncio.run(run(calls, rounds, eval_calls))
    rows: dict[str, dict[str, float]] = result["rows"]  # type: ignore[assignment]
    evaluation: dict[str, float] = result["evaluation_us"]  # type: ignore[assignment]
    base = rows["in-process check (baseline)"]["mean_us"]

    cores = os.cpu_count()
    print(
        f"Safety Check, {cores} cores, Python {platform.python_version()}; ratios ÷ baseline mean"
    )
    floor = {1: rows["grpcio floor seq"], CONCURRENCY: rows[f"grpcio floor x{CONCURRENCY}"]}

    def vs_floor(name: str, r: dict[str, float]) -> float | None:
        if not name.startswith("grpc "):
            return None
        return r["mean_us"] / floor[CONCURRENCY if f"x{CONCURRENCY}" in name else 1]["mean_us"]

    print(
        f"{'row':<46}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}{'checks/s':>11}"
        f"{'÷ base':>9}{'÷ floor':>9}"
    )
    for name, r in rows.items():
        ratio = vs_floor(name, r)
        print(
            f"{name:<46}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}{r['mean_us']:>10.1f}"
            f"{r['checks_per_s']:>11.0f}{r['mean_us'] / base:>9.1f}"
            + (f"{ratio:>9.2f}" if ratio is not None else "")
        )
    breaker = float(result["breaker_open_us"])  # type: ignore[arg-type]
    print(f"{'breaker open (no call)':<46}{'':>30}{breaker:>10.1f}{'':>11}{breaker / base:>9.1f}")
    for name, us in evaluation.items():
        print(f"{name:<46}{'':>30}{us:>10.1f}{'':>11}{us / base:>9.1f}")
    best = max(r["checks_per_s"] for name, r in rows.items() if name.startswith("grpc "))
    print(
        f"Go kernel claim: {GO_CLAIM['checks_per_s']:,} checks/s, p99 {GO_CLAIM['p99_ms']} ms on "
        f"{GO_CLAIM['vcpus']} vCPUs. Here, best gRPC row: {best:,.0f} checks/s on {cores} cores"
        " (not the same machine, load or client: not a like-for-like comparison)."
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "safety",
                "python": platform.python_version(),
                "cpu_count": cores,
                "concurrency": CONCURRENCY,
                "rows": rows,
                "ratios_vs_in_process_mean": {k: v["mean_us"] / base for k, v in rows.items()},
                "ratios_vs_grpcio_floor_mean": {
                    k: ratio for k, v in rows.items() if (ratio := vs_floor(k, v)) is not None
                },
                "breaker_open_us": breaker,
                "evaluation_us": evaluation,
                "evaluation_ratios_vs_in_process_mean": {
                    k: v / base for k, v in evaluation.items()
                },
                "go_kernel_claim": GO_CLAIM,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0  # a benchmark reports; it does not gate


if __name__ == "__main__":
    raise SystemExit(main())
