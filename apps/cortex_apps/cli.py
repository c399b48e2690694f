"""The ``cortex`` command."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

import uvicorn

from cortex_core.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cortex", description="Cortex, an AI control plane.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser(
        "up",
        help="run all of Cortex in one process (no NATS or Redis needed)",
        description="Run the gateway, scheduler, safety policy and an echo worker in one process, "
        "on in-memory adapters.",
    )
    up.add_argument("--host", default=DEFAULT_HOST, help=f"listen address (default {DEFAULT_HOST})")
    up.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"listen port (default {DEFAULT_PORT})"
    )
    up.add_argument(
        "--routing", metavar="FILE", help="routing YAML (default: the shipped routing.yaml)"
    )
    up.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def _banner(host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    return "\n".join(
        [
            f"Cortex is up (embedded: in-memory bus, stores and safety policy) on {base}",
            f"  API docs:   {base}/schema/swagger",
            "  Try it:",
            f"    curl -s -X POST {base}/v1/jobs -H 'content-type: application/json' "
            '-d \'{"prompt": "hello"}\'',
            f"    curl -s {base}/v1/jobs/<job_id>",
            f"    curl -s {base}/v1/jobs/<job_id>/result",
        ]
    )


def up(args: argparse.Namespace) -> int:
    from cortex_apps.logs import configure
    from cortex_apps.up import build_app, build_container

    configure(args.log_level)
    try:
        container = build_container({"routing_file": args.routing})
        app = build_app(container)
    except ConfigError as exc:
        print(f"cortex up: configuration error: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        lifespan="on",
        log_config=None,
    )
    server = _Server(config)
    server.run()
    return 0 if server.started else 1


class _Server(uvicorn.Server):
    """Prints the banner once the socket is bound, with the real port (``--port 0`` works)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers and self.servers[0].sockets:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(_banner(self.config.host or host, port), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        return up(args)
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
