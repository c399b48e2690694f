"""A fake OpenAI-compatible chat-completions server on loopback, for the LLM worker's tests.

A real HTTP/1.1 server (stdlib ``http.server``, one thread per connection) on
``127.0.0.1:<free port>``. It serves ``POST /v1/chat/completions``, records every request it
gets (``.requests``), and answers with ``.behaviour``: a function from the recorded request
to a ``Reply``. The ready-made behaviours: ``echo`` (the default: the last message's content
comes back), ``error``, ``raw``, ``slow`` and ``hang_up``.

``close()`` wakes any reply that is still sleeping, cuts open connections and joins every
thread, so nothing outlives a test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

CHAT_PATH = "/v1/chat/completions"


@dataclasses.dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: Any
    """The JSON body, or None when it was not JSON."""

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay_s: float = 0.0
    """Sleep this long before answering (woken early by ``close()``, which then answers nothing)."""
    hang_up: bool = False
    """Close the connection without answering."""


Behaviour = Callable[[Recorded], Reply]


def completion(
    content: str | None,
    *,
    model: str = "fake-model",
    finish_reason: str = "stop",
    completion_id: str = "chatcmpl-fake",
) -> bytes:
    """A chat completion body as the OpenAI API sends it."""
    doc = {
        "id": completion_id,
        "object": "chat.completion",
        "created": 1_763_726_400,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }
    return json.dumps(doc).encode()


def echo(req: Recorded) -> Reply:
    """Answer with the last message's content, in the name of the model asked for."""
    body = req.body if isinstance(req.body, dict) else {}
    messages = body.get("messages") or [{}]
    return Reply(body=completion(messages[-1].get("content"), model=body.get("model", "?")))


def error(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
) -> Behaviour:
    """An OpenAI-style error: ``{"error": {"message", "type", "code"}}``."""
    doc = {"error": {"message": message, "type": error_type, "code": code}}
    body = json.dumps(doc).encode()
    headers = {"Retry-After": "2"} if status == 429 else {}
    return lambda req: Reply(status=status, body=body, headers=headers)


def raw(body: bytes, *, status: int = 200, content_type: str = "application/json") -> Behaviour:
    """Exactly these bytes as the body: garbage, a wrong shape, an empty choices list …"""
    return lambda req: Reply(status=status, body=body, content_type=content_type)


def slow(delay_s: float, then: Behaviour = echo) -> Behaviour:
    return lambda req: dataclasses.replace(then(req), delay_s=delay_s)


def hang_up(req: Recorded) -> Reply:
    return Reply(hang_up=True)


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the connection threads

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout test) resets the connection: expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        req = Recorded(
            method="POST",
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        fake.requests.append(req)
        if self.path != CHAT_PATH:
            reply = error(404, f"no route for {self.path}", error_type="not_found")(req)
        else:
            reply = fake.behaviour(req)
        if reply.delay_s and fake._stopping.wait(reply.delay_s):
            self.close_connection = True  # closing down: answer nothing
            return
        if reply.hang_up:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)


class FakeOpenAI:
    """``with FakeOpenAI() as server:`` … ``server.base_url`` is ``http://127.0.0.1:<port>/v1``."""

    def __init__(self, behaviour: Behaviour = echo) -> None:
        self.behaviour = behaviour
        self.requests: list[Recorded] = []
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def start(self) -> None:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai"
        )
        self._thread.start()

    def close(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive connections: wake their threads
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = None

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
