"""The real `cortex up` command: a process on a real socket, driven like the README's curls."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.policies import FORBIDDEN_TOPIC_POLICY

pytestmark = pytest.mark.e2e

CORTEX = Path(sys.executable).with_name("cortex")
ACCESS_ENV = ("CORTEX_API_KEYS", "CORTEX_API_KEYS_FILE", "CORTEX_NO_AUTH", "CORTEX_GRPC_ADDR")


def _env() -> dict[str, str]:
    """The environment without any access settings of the developer's shell."""
    return {k: v for k, v in os.environ.items() if k not in ACCESS_ENV}


@pytest.fixture
def cortex_up(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(FORBIDDEN_TOPIC_POLICY)
    proc = subprocess.Popen(
        [
            str(CORTEX),
            "up",
            "--port",
            "0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--no-auth",
            "--policy",
            str(policy),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    base = None
    deadline = time.monotonic() + 30
    seen: list[str] = []
    while base is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if m := re.search(r"Cortex is up .* on (http://127\.0\.0\.1:\d+)", line):
            base = m.group(1)
    assert base is not None, "".join(seen)
    banner = "".join(proc.stdout.readline() for _ in range(6))
    assert f"curl -s -X POST {base}/v1/jobs" in banner
    # --no-auth is announced loudly, before and after the banner.
    assert "AUTH IS OFF" in seen[-2], "".join(seen)
    assert "AUTH IS OFF" in banner.splitlines()[-1], banner
    try:
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_submit_status_result_then_clean_shutdown(
    cortex_up: tuple[str, subprocess.Popen[str]],
) -> None:
    base, proc = cortex_up
    with httpx.Client(base_url=base, timeout=5) as http:
        r = http.post("/v1/jobs", json={"prompt": "over a real socket"})
        assert r.status_code == 202
        job_id = r.json()["job_id"]
        for _ in range(500):
            status = http.get(f"/v1/jobs/{job_id}").json()
            if status["status"] == "COMPLETED":
                break
            time.sleep(0.01)
        assert status["status"] == "COMPLETED"
        assert http.get(f"/v1/jobs/{job_id}/result").json()["echo"] == "over a real socket"
        refused = http.post("/v1/jobs", json={"prompt": "x", "topic": "sys.destroy"})
        assert refused.status_code == 400, refused.text
        assert refused.json()["field"] == "topic"
        denied = http.post("/v1/jobs", json={"prompt": "x", "topic": "job.forbidden"}).json()[
            "job_id"
        ]
        for _ in range(500):
            status = http.get(f"/v1/jobs/{denied}").json()
            if status["status"] != "PENDING":
                break
            time.sleep(0.01)
        assert (status["status"], status["reason"]) == (
            "DENIED",
            "topic job.forbidden is forbidden",
        )
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal (the conventional exit status).
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    assert proc.stdout is not None
    rest = proc.stdout.read()
    assert "Application shutdown complete" in rest, rest
    assert "Traceback" not in rest, rest


def test_a_broken_routing_file_is_refused_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "routing.yaml"
    bad.write_text("routing:\n  pools:\n    echo:\n      topics: ['job.*']\n")
    proc = subprocess.run(
        [str(CORTEX), "up", "--port", "0", "--no-auth", "--routing", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=_env(),
    )
    assert proc.returncode == 2
    assert "routing.pools.echo.topics[0]" in proc.stderr


def test_without_api_keys_or_no_auth_it_refuses_to_start() -> None:
    proc = subprocess.run(
        [str(CORTEX), "up", "--port", "0", "--grpc-addr", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=_env(),
    )
    assert proc.returncode != 0
    assert "CORTEX_API_KEYS" in proc.stderr, proc.stderr
    assert "Cortex is up" not in proc.stdout, proc.stdout


def test_with_api_keys_it_asks_for_one(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(CORTEX), "up", "--port", "0", "--grpc-addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**_env(), "CORTEX_API_KEYS": "key-upup-1=acme"},
    )
    assert proc.stdout is not None
    try:
        seen: list[str] = []
        base = None
        while base is None and (line := proc.stdout.readline()):
            seen.append(line)
            if m := re.search(r"Cortex is up .* on (http://127\.0\.0\.1:\d+)", line):
                base = m.group(1)
        assert base is not None, "".join(seen)
        assert "AUTH IS OFF" not in "".join(seen)
        with httpx.Client(base_url=base, timeout=5) as http:
            assert http.post("/v1/jobs", json={"prompt": "x"}).status_code == 401
            r = http.post("/v1/jobs", json={"prompt": "x"}, headers={"X-API-Key": "key-upup-1"})
            assert r.status_code == 202, r.text
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
