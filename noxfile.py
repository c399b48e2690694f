"""Sessions: ``nox`` runs lint, typecheck, proto-check, fuzz, contract and tests; ``nox -s bench``
benchmarks (never part of the tests)."""

from __future__ import annotations

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


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (not tests), each against a baseline measured in the same run: the bus codec
    (÷ betterproto2), the Safety Kernel's Check over gRPC (÷ the in-process checker), and the
    REST gateway over HTTP, embedded and on real NATS and Redis (÷ GET /healthz, ÷ a Redis
    SET+GET). ``-- --quick`` runs fewer iterations."""
    session.install("-e", ".")
    session.run("python", "bench/bench_codec.py", *session.posargs)
    session.run("python", "bench/bench_safety.py", *session.posargs)
    session.run("python", "bench/bench_scheduler.py", *session.posargs)
    session.run("python", "bench/bench_gateway.py", *session.posargs)
