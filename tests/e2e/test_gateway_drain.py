"""A gateway stopping while clients long-poll: SIGTERM answers them at once, then it exits.

uvicorn stops accepting on SIGTERM, then waits for the requests in flight before it shuts the
app down; a ``?wait_s=60`` long poll (or an event stream) would hold the exit up to a minute.
The gateway drains its front door as the shutdown begins instead: every long poll answers as
if its ``wait_s`` had run out (the job as it is, 409 for a result, 202 for a submit), an
event stream ends, and the process exits within moments. The jobs are not touched.

Real processes: ``cortex gateway`` on NATS and Redis with no scheduler (its jobs stay
PENDING), and ``cortex up`` with a policy that holds jobs for approval.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest

from cortex_adapters.nats import stream_name
from tests.processes import Proc, claim_private_redis_db

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
PROMPTLY_S = 5.0
"""Well under the 60 s the long polls ask for: answered by the drain, not by their wait_s."""
ACCESS = {
    "CORTEX_API_KEYS": "",
    "CORTEX_API_KEYS_FILE": "",
    "CORTEX_NO_AUTH": "1",
    "CORTEX_GRPC_ADDR": "127.0.0.1:0",  # not the shared default port
    "CORTEX_RATE_LIMIT_PER_S": "0",
}
REVIEW_POLICY = """\
policy:
  default: {decision: ALLOW, reason: "no rule matched; default allow"}
  rules:
    - id: review
      decision: REQUIRE_APPROVAL
      reason: "a person must review jobs labelled review=yes"
      labels: {review: "yes"}
"""
"""``cortex up``'s scheduler holds a job labelled review=yes for approval: it never ends."""


@dataclass
class Answer:
    response: httpx.Response | None = None
    error: BaseException | None = None
    at: float = 0.0


class LongPoll:
    """One request, made in a thread of its own; ``answer`` once it has answered."""

    def __init__(self, call: Callable[[httpx.Client], httpx.Response], base: str) -> None:
        self.answer = Answer()
        self._call = call
        self._base = base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=self._base, timeout=90) as http:
                self.answer.response = self._call(http)
        except BaseException as exc:
            self.answer.error = exc
        self.answer.at = time.monotonic()

    def result(self, timeout: float) -> httpx.Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "no answer"
        assert self.answer.error is None, repr(self.answer.error)
        assert self.answer.response is not None
        return self.answer.response


def _stop(proc: Proc) -> tuple[int, float]:
    """SIGTERM, and the exit code and when it came; SIGKILL (and a failure) if it does not
    exit in time."""
    code = proc.terminate(timeout=PROMPTLY_S * 2)
    return code, time.monotonic()


def _check_exit(proc: Proc, code: int, sent: float, exited: float) -> None:
    # uvicorn raises the SIGTERM again once it has shut down gracefully: -15, or 0.
    assert code in (0, -signal.SIGTERM), proc.output
    assert exited - sent < PROMPTLY_S, proc.output
    proc.wait_for_event("Application shutdown complete.", timeout=0)  # the graceful path


async def _delete_stream(prefix: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        with contextlib.suppress(Exception):  # a gateway alone may never have created it
            await nc.jetstream().delete_stream(stream_name(prefix))
    finally:
        await nc.close()


@pytest.fixture
def gateway() -> Iterator[tuple[str, Proc]]:
    """``cortex gateway`` alone: no scheduler, so every job it takes stays PENDING."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    store, url = claim_private_redis_db()
    env = {"NATS_URL": NATS_URL, "CORTEX_SUBJECT_PREFIX": prefix, "REDIS_URL": url, **ACCESS}
    proc = Proc("gateway", "--port", "0", env=env)
    try:
        base = proc.wait_for(r"Cortex is up \(gateway.*\) on (http://\S+)").group(1)
        yield base, proc
    finally:
        if proc.popen.poll() is None:
            proc.kill()
        asyncio.run(_delete_stream(prefix))
        store.flushdb()
        store.close()


@pytest.mark.processes
@pytest.mark.nats
@pytest.mark.redis
def test_sigterm_answers_the_gateways_long_polls_and_it_exits(
    gateway: tuple[str, Proc],
) -> None:
    base, proc = gateway
    with httpx.Client(base_url=base, timeout=10) as http:
        submitted = http.post("/v1/jobs", json={"prompt": "held"})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        polls = {
            "status": LongPoll(lambda c: c.get(f"/v1/jobs/{job_id}?wait_s=60"), base),
            "result": LongPoll(lambda c: c.get(f"/v1/jobs/{job_id}/result?wait_s=60"), base),
            "submit": LongPoll(
                lambda c: c.post("/v1/jobs?wait_s=60", json={"prompt": "and wait"}), base
            ),
            "events": LongPoll(lambda c: c.get(f"/v1/jobs/{job_id}/events"), base),
        }
        # Every request is in: the second job is submitted (its wait follows), the event
        # stream has begun; and a moment for the two GETs started before them.
        deadline = time.monotonic() + 10
        while len(proc.events("job_submitted")) < 2 or "/events HTTP" not in proc.output:
            assert time.monotonic() < deadline, proc.output
            time.sleep(0.02)
        time.sleep(0.5)
        assert not any(p.answer.at for p in polls.values()), "answered before the SIGTERM"

        sent = time.monotonic()
        code, exited = _stop(proc)
        answers = {name: p.result(PROMPTLY_S) for name, p in polls.items()}

    _check_exit(proc, code, sent, exited)
    for name, poll in polls.items():
        assert poll.answer.at - sent < PROMPTLY_S, name
    # Answered as when wait_s runs out.
    assert answers["status"].status_code == 200, answers["status"].text
    assert answers["status"].json()["status"] == "PENDING"
    assert answers["result"].status_code == 409, answers["result"].text
    assert answers["result"].json()["status"] == "PENDING"
    assert answers["submit"].status_code == 202, answers["submit"].text
    assert set(answers["submit"].json()) == {"job_id", "trace_id"}
    assert answers["events"].status_code == 200
    assert answers["events"].text.count("event: status") == 1  # the job's state, then the end
    drained = proc.events("draining_waiters")
    assert [(d["component"], d["waiters"]) for d in drained] == [("gateway", 3)], proc.output


@pytest.mark.e2e
def test_sigterm_answers_cortex_ups_long_polls_and_it_exits(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(REVIEW_POLICY)
    proc = Proc(
        "up", "--port", "0", "--no-auth", "--policy", str(policy), "--log-format", "json",
        env=ACCESS,
    )  # fmt: skip
    try:
        base = proc.wait_for(r"Cortex is up \(embedded.*\) on (http://\S+)").group(1)
        held = {"prompt": "held", "labels": {"review": "yes"}}
        with httpx.Client(base_url=base, timeout=10) as http:
            submitted = http.post("/v1/jobs", json=held)
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["job_id"]
            deadline = time.monotonic() + 10
            while http.get(f"/v1/jobs/{job_id}").json()["status"] != "APPROVAL_REQUIRED":
                assert time.monotonic() < deadline, proc.output
                time.sleep(0.02)
            polls = {
                "status": LongPoll(lambda c: c.get(f"/v1/jobs/{job_id}?wait_s=60"), base),
                "submit": LongPoll(lambda c: c.post("/v1/jobs?wait_s=60", json=held), base),
            }
            deadline = time.monotonic() + 10
            while len(proc.events("job_submitted")) < 2:
                assert time.monotonic() < deadline, proc.output
                time.sleep(0.02)
            time.sleep(0.5)
            assert not any(p.answer.at for p in polls.values()), "answered before the SIGTERM"
            sent = time.monotonic()
            code, exited = _stop(proc)
            answers = {name: p.result(PROMPTLY_S) for name, p in polls.items()}
    finally:
        if proc.popen.poll() is None:
            proc.kill()

    _check_exit(proc, code, sent, exited)
    for name, poll in polls.items():
        assert poll.answer.at - sent < PROMPTLY_S, name
    assert answers["status"].status_code == 200, answers["status"].text
    assert answers["status"].json()["status"] == "APPROVAL_REQUIRED"
    assert answers["submit"].status_code == 202, answers["submit"].text
    drained = proc.events("draining_waiters")
    assert [(d["component"], d["waiters"]) for d in drained] == [("gateway", 2)], proc.output
