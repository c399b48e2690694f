"""The ``cortex`` command.

* ``cortex up``: everything in one process, on in-memory adapters (no NATS or Redis).
* ``cortex gateway`` / ``cortex scheduler`` / ``cortex worker echo``: the separate processes,
  on NATS and Redis. Settings come from the environment (``NATS_URL``, ``REDIS_URL``, …, see
  ``cortex_apps.settings``); flags given here win.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import uvicorn
from litestar import Litestar

from cortex_apps.auth import NO_AUTH_BANNER
from cortex_apps.logs import LOG_FORMATS
from cortex_apps.runtime import drain
from cortex_apps.settings import Settings
from cortex_core.errors import ConfigError, CortexError
from cortex_core.scheduler import DispatchMode

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
LOG_LEVELS = ["debug", "info", "warning", "error"]
UP_SETTINGS = (
    "api_keys",
    "api_keys_file",
    "no_auth",
    "rate_limit_per_s",
    "rate_limit_burst",
    "grpc_addr",
    "otlp_endpoint",
)
"""What ``cortex up`` takes from the environment (and flags), like the gateway."""


def _http_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=DEFAULT_HOST, help=f"listen address (default {DEFAULT_HOST})")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"listen port (default {DEFAULT_PORT})"
    )
    p.add_argument(
        "--grpc-addr", help="gRPC CortexApi address (env CORTEX_GRPC_ADDR; default 127.0.0.1:50052)"
    )
    p.add_argument(
        "--no-auth",
        action="store_true",
        default=None,
        help="development only: no API keys (env CORTEX_NO_AUTH); otherwise CORTEX_API_KEYS "
        "or CORTEX_API_KEYS_FILE must name at least one key",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cortex", description="Cortex, an AI control plane.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    common.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="env CORTEX_LOG_FORMAT; default auto: JSON lines unless stderr is a terminal",
    )
    common.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics on this port, 0 for any free one (env "
        "CORTEX_METRICS_PORT; default: none; the gateway and `up` also serve /metrics on "
        "their HTTP port)",
    )
    common.add_argument(
        "--metrics-host", help="address of the /metrics port (env CORTEX_METRICS_HOST; 127.0.0.1)"
    )
    common.add_argument(
        "--otlp-endpoint",
        help="export traces over OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces (env "
        "CORTEX_OTLP_ENDPOINT; default: off)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        parents=[common],
        help="run all of Cortex in one process (no NATS or Redis needed)",
        description="Run the gateway, scheduler, safety policy and an echo worker in one process, "
        "on in-memory adapters.",
    )
    _http_flags(up)
    up.add_argument(
        "--routing", metavar="FILE", help="routing YAML (default: the shipped routing.yaml)"
    )
    up.add_argument(
        "--policy", metavar="FILE", help="safety policy YAML, reloaded on change (default: shipped)"
    )

    shared = argparse.ArgumentParser(add_help=False, parents=[common])
    shared.add_argument(
        "--nats-url", help="NATS server (env NATS_URL; default nats://127.0.0.1:4222)"
    )
    shared.add_argument(
        "--redis-url", help="Redis server (env REDIS_URL; default redis://127.0.0.1:6379/0)"
    )
    shared.add_argument(
        "--subject-prefix", help="namespace for every bus subject (env CORTEX_SUBJECT_PREFIX)"
    )

    gateway = commands.add_parser(
        "gateway", parents=[shared], help="run the REST gateway (NATS + Redis)"
    )
    _http_flags(gateway)

    scheduler = commands.add_parser(
        "scheduler", parents=[shared], help="run a scheduler replica (NATS + Redis)"
    )
    scheduler.add_argument(
        "--routing", metavar="FILE", help="routing YAML (env CORTEX_ROUTING_FILE)"
    )
    scheduler.add_argument(
        "--dispatch-mode",
        choices=["pool", "worker"],
        help="env CORTEX_DISPATCH_MODE (default pool)",
    )

    kernel = commands.add_parser(
        "safety-kernel",
        parents=[common],
        help="run the Safety Kernel (gRPC)",
        description="Serve SafetyKernel.Check and Explain over gRPC, with health and reflection, "
        "from a policy file that is validated at start and reloaded when it changes.",
    )
    kernel.add_argument(
        "--address", help="listen address (env SAFETY_KERNEL_ADDR; default 127.0.0.1:50051)"
    )
    kernel.add_argument("--policy", metavar="FILE", help="policy YAML (env CORTEX_POLICY_FILE)")

    worker = commands.add_parser("worker", parents=[common], help="run a worker (NATS + Redis)")
    kinds = worker.add_subparsers(dest="kind", required=True, metavar="KIND")
    worker_flags = argparse.ArgumentParser(add_help=False, parents=[shared])
    worker_flags.add_argument(
        "--worker-id", help="env CORTEX_WORKER_ID (default <pool>-<host>-<pid>)"
    )
    worker_flags.add_argument(
        "--max-parallel-jobs", type=int, help="env CORTEX_MAX_PARALLEL_JOBS (default 4)"
    )
    worker_flags.add_argument(
        "--job-timeout-s", type=float, help="env CORTEX_JOB_TIMEOUT_S (default: the job's deadline)"
    )
    kinds.add_parser("echo", parents=[worker_flags], help="echo (pool echo, topic job.echo)")
    kinds.add_parser(
        "log-analyzer",
        parents=[worker_flags],
        help="log analysis (pool log, topic job.log.analyze)",
    )
    kinds.add_parser(
        "llm",
        parents=[worker_flags],
        help="an OpenAI-compatible chat endpoint (pool chat-llm, topic job.chat.llm); "
        "env CORTEX_LLM_BASE_URL, CORTEX_LLM_MODEL, CORTEX_LLM_API_KEY, CORTEX_LLM_TIMEOUT_S",
    )
    run = kinds.add_parser(
        "run", parents=[worker_flags], help="your own handler: --handler module.path:function"
    )
    run.add_argument("--handler", required=True, metavar="MODULE:ATTR")
    run.add_argument("--pool", required=True)
    run.add_argument("--topic", action="append", default=[], help="repeat for several topics")
    return parser


def _banner(host: str, port: int, mode: str, no_auth: bool) -> str:
    base = f"http://{host}:{port}"
    key = "" if no_auth else " -H 'X-API-Key: <your key>'"
    lines = [
        f"Cortex is up ({mode}) on {base}",
        f"  API docs:   {base}/schema/swagger",
        "  Try it:",
        f"    curl -s -X POST {base}/v1/jobs{key} -H 'content-type: application/json' "
        '-d \'{"prompt": "hello"}\'',
        f"    curl -s{key} {base}/v1/jobs/<job_id>",
        f"    curl -s{key} {base}/v1/jobs/<job_id>/result",
    ]
    if no_auth:
        lines = [NO_AUTH_BANNER, *lines, NO_AUTH_BANNER]
    return "\n".join(lines)


class _Server(uvicorn.Server):
    """Prints the banner once the socket is bound, with the real port (``--port 0`` works).

    On SIGTERM or SIGINT it drains the app (``runtime.drain``) as it begins to shut down,
    before it waits for the requests in flight: a long poll (``?wait_s=``) or an event stream
    answers now, with the job as it is, instead of holding the exit up to a minute.
    """

    def __init__(self, config: uvicorn.Config, app: Litestar, mode: str, no_auth: bool) -> None:
        super().__init__(config)
        self.app = app
        self.mode = mode
        self.no_auth = no_auth

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers and self.servers[0].sockets:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            banner = _banner(self.config.host or host, port, self.mode, self.no_auth)
            print(banner, flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        drain(self.app)  # on the app's event loop, before uvicorn waits for in-flight requests
        await super().shutdown(sockets)


def _serve_http(app: Litestar, args: argparse.Namespace, mode: str, no_auth: bool) -> int:
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        lifespan="on",
        log_config=None,
    )
    server = _Server(config, app, mode, no_auth)
    server.run()
    return 0 if server.started else 1


def _settings(args: argparse.Namespace) -> Settings:
    flags: dict[str, object] = {
        "nats_url": getattr(args, "nats_url", None),
        "redis_url": getattr(args, "redis_url", None),
        "subject_prefix": getattr(args, "subject_prefix", None),
        "routing_file": getattr(args, "routing", None),
        "dispatch_mode": getattr(args, "dispatch_mode", None),
        "worker_id": getattr(args, "worker_id", None),
        "max_parallel_jobs": getattr(args, "max_parallel_jobs", None),
        "job_timeout_s": getattr(args, "job_timeout_s", None),
        "safety_kernel_addr": getattr(args, "address", None),
        "policy_file": getattr(args, "policy", None),
        "grpc_addr": getattr(args, "grpc_addr", None),
        "no_auth": getattr(args, "no_auth", None),
        "metrics_port": getattr(args, "metrics_port", None),
        "metrics_host": getattr(args, "metrics_host", None),
        "otlp_endpoint": getattr(args, "otlp_endpoint", None),
    }
    if flags["dispatch_mode"] is not None:
        flags["dispatch_mode"] = DispatchMode(str(flags["dispatch_mode"]))
    return Settings.load(overrides=flags)


def _up(args: argparse.Namespace) -> int:
    from cortex_apps.up import build_app, build_container

    settings = _settings(args)
    access = {name: getattr(settings, name) for name in UP_SETTINGS}
    app = build_app(
        build_container({"routing_file": args.routing, "policy_file": args.policy, **access})
    )
    mode = f"embedded: in-memory bus, stores and safety policy; gRPC on {settings.grpc_addr}"
    return _serve_http(app, args, mode, settings.no_auth)


def _gateway(args: argparse.Namespace) -> int:
    from cortex_apps.distributed import gateway_app

    settings = _settings(args)
    mode = f"gateway: NATS + Redis; gRPC on {settings.grpc_addr}"
    return _serve_http(gateway_app(settings), args, mode, settings.no_auth)


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop where it is installed (Linux and macOS; docs/adr/0013), which
    the gateway's uvicorn also picks; on asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _scheduler(args: argparse.Namespace) -> int:
    from cortex_apps.distributed import run_scheduler

    _run(run_scheduler(_settings(args)))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from cortex_apps.distributed import run_worker
    from cortex_apps.workers import BUILTIN, custom_kind

    if args.kind == "run":
        kind = custom_kind(args.handler, args.pool, args.topic)
    else:
        kind = BUILTIN[args.kind]()
    _run(run_worker(_settings(args), kind))
    return 0


def _safety_kernel(args: argparse.Namespace) -> int:
    from cortex_apps.distributed import run_safety_kernel

    _run(run_safety_kernel(_settings(args)))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "safety-kernel": _safety_kernel,
    "up": _up,
    "gateway": _gateway,
    "scheduler": _scheduler,
    "worker": _worker,
}


def main(argv: Sequence[str] | None = None) -> int:
    from cortex_apps.logs import configure

    args = _parser().parse_args(argv)
    try:
        configure(args.log_level, args.log_format or os.environ.get("CORTEX_LOG_FORMAT") or "auto")
    except ValueError as exc:
        print(
            f"cortex {args.command}: configuration error: CORTEX_LOG_FORMAT: {exc}", file=sys.stderr
        )
        return 2
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"cortex {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except (CortexError, ConnectionError, OSError) as exc:
        print(f"cortex {args.command}: cannot start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
