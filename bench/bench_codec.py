"""Benchmark: the bus codec's encode+decode per packet, against baselines measured in the same run.

Run with ``nox -s bench``. Figures are ratios against the betterproto2 codec measured in this
same process, because this machine is noisy; the absolute microseconds are printed too.

Rows:
* ``betterproto2`` (baseline): core dataclass → betterproto2 message → bytes, and back.
* ``protobuf-upb`` (the codec on the wire): core dataclass → upb ``bus_pb2`` → bytes, and back.
* ``upb floor``: only ``SerializeToString`` + ``ParseFromString`` of a prebuilt message, the
  least any codec on this runtime can cost.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import timeit
from collections.abc import Callable
from pathlib import Path

from cortex_adapters.codec import BetterprotoCodec, ProtobufCodec
from cortex_core.messages import BusPacket, JobRequest, Priority
from cortex_proto._wire.cortex.v1 import bus_pb2

BUDGET_US = 20.0
JOB_ID = "0f8e3c2a9b7d4e1f8a6c5b4d3e2f1a0b"
PACKET = BusPacket(
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    sender_id="gateway-1",
    created_at=1_763_726_400.123456,
    payload=JobRequest(
        job_id=JOB_ID,
        topic="job.echo",
        context_ptr=f"redis://ctx:{JOB_ID}",
        priority=Priority.INTERACTIVE,
        tenant_id="default",
        labels={"env": "dev"},
        attempt=1,
    ),
)


def per_call_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    """The median over ``repeat`` rounds of the mean time per call, in microseconds."""
    rounds = timeit.repeat(fn, number=number, repeat=repeat)
    return statistics.median(rounds) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--out", type=Path, default=Path("bench/results/codec.json"))
    args = parser.parse_args()
    number, repeat = (2_000, 5) if args.quick else (20_000, 7)

    upb, bp = ProtobufCodec(), BetterprotoCodec()
    wire = upb.encode(PACKET)
    assert upb.decode(wire) == PACKET
    assert bp.decode(bp.encode(PACKET)) == PACKET
    floor_msg = bus_pb2.BusPacket()
    floor_msg.ParseFromString(wire)

    def floor() -> None:
        bus_pb2.BusPacket().ParseFromString(floor_msg.SerializeToString())

    rows = {
        "betterproto2": per_call_us(lambda: bp.decode(bp.encode(PACKET)), number // 10, repeat),
        "protobuf-upb": per_call_us(lambda: upb.decode(upb.encode(PACKET)), number, repeat),
        "upb floor": per_call_us(floor, number, repeat),
    }
    split = {
        "protobuf-upb encode": per_call_us(lambda: upb.encode(PACKET), number, repeat),
        "protobuf-upb decode": per_call_us(lambda: upb.decode(wire), number, repeat),
    }
    base = rows["betterproto2"]
    print(f"BusPacket(JobRequest), {len(wire)} bytes on the wire; encode+decode per packet")
    print(f"{'codec':<22}{'µs':>10}{'÷ betterproto2':>18}")
    for name, us in rows.items():
        print(f"{name:<22}{us:>10.2f}{us / base:>18.4f}")
    for name, us in split.items():
        print(f"{name:<22}{us:>10.2f}")
    wire_us = rows["protobuf-upb"]
    verdict = "within" if wire_us <= BUDGET_US else "OVER"
    print(f"wire codec: {wire_us:.2f} µs, {verdict} the {BUDGET_US:.0f} µs budget")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "codec",
                "packet_bytes": len(wire),
                "python": platform.python_version(),
                "us_per_encode_decode": rows,
                "us_split": split,
                "ratios_vs_betterproto2": {k: v / base for k, v in rows.items()},
                "budget_us": BUDGET_US,
                "within_budget": rows["protobuf-upb"] <= BUDGET_US,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0  # a benchmark reports; it does not gate


if __name__ == "__main__":
    raise SystemExit(main())
