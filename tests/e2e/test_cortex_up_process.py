"""The real `cortex up` command: a process on a real socket, driven like the README's curls."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

CORTEX = Path(sys.executable).with_name("cortex")


@pytest.fixture
def cortex_up() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = subprocess.Popen(
        [str(CORTEX), "up", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
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
    banner = "".join(proc.stdout.readline() for _ in range(5))
    assert f"curl -s -X POST {base}/v1/jobs" in banner
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
        denied = http.post("/v1/jobs", json={"prompt": "x", "topic": "sys.destroy"}).json()[
            "job_id"
        ]
        for _ in range(500):
            status = http.get(f"/v1/jobs/{denied}").json()
            if status["status"] != "PENDING":
                break
            time.sleep(0.01)
        assert (status["status"], status["reason"]) == ("DENIED", "topic sys.destroy is forbidden")
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
        [str(CORTEX), "up", "--port", "0", "--routing", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "routing.pools.echo.topics[0]" in proc.stderr
