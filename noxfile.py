"""Sessions: ``nox`` runs lint, typecheck, proto-check, fuzz, contract and tests; ``nox -s bench``
benchmarks (never part of the tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
# The test suites run last, so that the run ends with pytest's own summary of what was tested
# (schemathesis prints a pytest-like summary line that counts warnings, not tests).
nox.options.sessions = ["lint", "typecheck", "proto-check", "fuzz", "contract", "tests"]

RUFF = "ruff==0.17.5"  # also formats the generated code: keep it pinned for reproducible output


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and end-to-end tests, including the separate processes on real NATS and Redis.

    Real-service tests fail, never skip, when NATS or Redis is down. Without those services,
    deselect them explicitly: ``nox -s tests -- -m "not nats and not redis"``.
    """
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/unit", "tests/e2e", *session.posargs)


@nox.session
def contract(session: nox.Session) -> None:
    """The contract suites, against the in-memory adapters and real NATS (NATS_URL) and Redis
    (REDIS_URL)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/contract", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Schemathesis against the REST gateway as deployed (separate processes on real NATS and
    Redis): no 5xx, and every response conforms to the OpenAPI schema it serves. Arguments go
    to ``st run`` (``-- --seed N`` replays a run)."""
    session.install("-e", ".[fuzz]")
    session.run("python", "tools/fuzz_gateway.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint + format) and the import-linter contracts that keep cortex_core pure."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over cortex_core, cortex_adapters and cortex_apps."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def proto(session: nox.Session) -> None:
    """Regenerate src/cortex_proto from proto/ (``-- --check`` only verifies)."""
    session.install("-e", ".[proto]", RUFF)
    session.run("python", "tools/gen_proto.py", *session.posargs)


@nox.session(name="proto-check")
def proto_check(session: nox.Session) -> None:
    """Fail when src/cortex_proto is stale against proto/."""
    session.install("-e", ".[proto]", RUFF)
    session.run("python", "tools/gen_proto.py", "--check")


BENCH_CLIENT_LOOP = "uvloop==0.23.0"
"""Every benchmark client runs on uvloop (bench/e2e/loadgen.py), Cortex's as the peers'."""
BENCH_PEERS: dict[str, tuple[str, ...]] = {
    # Each peer of the end-to-end benchmark (bench/bench_e2e.py) in a virtualenv of its own, so
    # that none of their dependencies enters the project's environment. Pinned to the releases
    # the benchmark was written against.
    "celery": ("celery[redis]==5.7.0", BENCH_CLIENT_LOOP),
    "dramatiq": ("dramatiq[redis]==2.2.1", BENCH_CLIENT_LOOP),
    "taskiq": ("taskiq==0.13.0", "taskiq-nats==0.7.0", "taskiq-redis==1.2.4", BENCH_CLIENT_LOOP),
}


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (not tests), each against a baseline measured in the same run: the bus codec
    (÷ betterproto2), the Safety Kernel's Check over gRPC (÷ the in-process checker), scoring
    and the scheduler's decisions over 10 to 10,000 workers, one JobStore transition (÷ a Redis
    GET), the REST gateway over HTTP, embedded and on real NATS and Redis (÷ GET /healthz, ÷ a Redis
    SET+GET), and the whole pipeline end to end against a raw NATS+Redis floor and Celery,
    Dramatiq and Taskiq (bench/bench_e2e.py; results in bench/results/e2e.json and e2e.png).
    ``-- --quick`` runs fewer iterations; the other arguments go to bench_e2e.py."""
    session.install("-e", ".[bench]")
    quick = [a for a in session.posargs if a == "--quick"]
    session.run("python", "bench/bench_codec.py", *quick)
    session.run("python", "bench/bench_safety.py", *quick)
    session.run("python", "bench/bench_scheduler.py", *quick)
    session.run("python", "bench/bench_store.py", *quick)
    session.run("python", "bench/bench_gateway.py", *quick)
    # On Ctrl-C it stops the processes it started, which takes seconds: nox must not kill it
    # first (by default nox gives a child 0.3 s after SIGINT, then 0.2 s after SIGTERM).
    session.run(
        "python", "bench/bench_e2e.py", *_peer_pythons(session), *session.posargs,
        interrupt_timeout=120, terminate_timeout=30,
    )  # fmt: skip


def _peer_pythons(session: nox.Session) -> list[str]:
    """Install the peers' virtualenvs (``nox -s bench-peer-<name> --install-only``, reused like
    every session's) and point bench_e2e.py at their interpreters."""
    sessions = [f"bench-peer-{peer}" for peer in BENCH_PEERS]
    envdir = Path(str(session.virtualenv.location)).parent
    session.run_install(
        sys.executable, "-m", "nox", "--envdir", str(envdir), "--install-only",
        "-s", *sessions, external=True,
    )  # fmt: skip
    return [f"--peer-python={s.removeprefix('bench-peer-')}={envdir / s / 'bin' / 'python'}"
            for s in sessions]  # fmt: skip


def _peer_session(peer: str, requirements: tuple[str, ...]) -> None:
    @nox.session(name=f"bench-peer-{peer}")
    def peer_session(session: nox.Session) -> None:
        session.install(*requirements)
        session.run("python", "-c", f"import {peer}; print({peer}.__name__, {peer}.__version__)")

    peer_session.__doc__ = f"The {peer} peer of bench/bench_e2e.py: {', '.join(requirements)}."


for _peer, _requirements in BENCH_PEERS.items():
    _peer_session(_peer, _requirements)
