"""Start Cortex commands as real OS processes and wait for what they print."""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

CORTEX = str(Path(sys.executable).with_name("cortex"))
SHARED_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CLAIM = "cortex-test:claimed-by"


class Proc:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [CORTEX, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:
            for line in self.popen.stdout:
                self.lines.append(line)
                self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        for line in list(self.lines):
            if m := regex.search(line):
                return m
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"{self.args} exited ({self.popen.wait()}):\n{self.output}")
            if m := regex.search(line):
                return m
        raise AssertionError(
            f"{self.args}: no line matching {pattern!r} in {timeout}s:\n{self.output}"
        )

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def events(self, event: str | None = None, **fields: object) -> list[dict[str, Any]]:
        """The JSON log lines printed so far (the processes log JSON: stdout is not a
        terminal), those of ``event`` with these field values if given; other lines skipped."""
        found = []
        for line in list(self.lines):
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if event is not None and record.get("event") != event:
                continue
            if all(record.get(k) == v for k, v in fields.items()):
                found.append(record)
        return found

    def wait_for_event(self, event: str, timeout: float = 30.0, **fields: object) -> dict[str, Any]:
        """The first JSON log line of ``event`` with these field values, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            if found := self.events(event, **fields):
                return found[0]
            if self.popen.poll() is not None and not self._pump_thread.is_alive():
                raise AssertionError(f"{self.args} exited ({self.popen.wait()}):\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.args}: no {event} {fields} event in {timeout}s:\n{self.output}"
                )
            time.sleep(0.02)

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._pump_thread.join(timeout=10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait for a graceful exit; SIGKILL if it does not come in time."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._pump_thread.join(timeout=10)
        return code


def redis_db_url(db: int) -> str:
    return urlunsplit(urlsplit(SHARED_REDIS_URL)._replace(path=f"/{db}"))


def claim_private_redis_db() -> tuple[redis.Redis, str]:
    """An empty logical database of the shared Redis, claimed for this test alone.

    The subject prefix keeps the tests' NATS traffic apart, but the job store has no
    namespace setting: every scheduler sweeps every RUNNING job in its Redis database. A
    scheduler of another run on the same database (another session's test suite, say) would
    requeue this test's jobs onto its own workers, and this test's schedulers theirs.
    """
    base = redis.Redis.from_url(SHARED_REDIS_URL)
    databases = int(base.config_get("databases").get("databases") or 16)
    base.close()
    token = uuid.uuid4().hex
    for db in random.sample(range(1, databases), databases - 1):
        client = redis.Redis.from_url(redis_db_url(db))
        if client.dbsize() == 0 and client.set(CLAIM, token, nx=True):
            return client, redis_db_url(db)
        client.close()
    raise AssertionError(f"no empty Redis database among 1..{databases - 1} at {SHARED_REDIS_URL}")
