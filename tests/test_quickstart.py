"""The quick-start path of `make run`: embedded PostgreSQL and Redis start, the
database is migrated and seeded, web + worker + beat serve, and a request with the
printed key succeeds; Ctrl-C stops everything that was started."""

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (127.0.0.1 only)
        return response.status, response.read()


@pytest.fixture
def quickstart(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DEBUG"}
    }
    env.update(RUN_DIR=str(tmp_path / "run"), PORT=str(port), CELERY_BEAT_SCHEDULE_FILENAME=str(tmp_path / "beat"))
    process = subprocess.Popen(
        [sys.executable, "-m", "billing_platform.devservers", "run"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def reader():
        for line in process.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=reader, daemon=True).start()
    yield process, port, lines, output, tmp_path / "run"
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)


def wait_for(lines, output, pattern, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"{pattern!r} not seen in {timeout}s; output:\n" + "".join(output[-60:]))


def test_make_run_serves_the_seeded_key_within_a_minute(quickstart):
    process, port, lines, output, run_dir = quickstart
    started = time.monotonic()
    live_key = wait_for(lines, output, r"Live key:\s+(sk_live_\S+)", 90).group(1)
    test_key = wait_for(lines, output, r"Sandbox key:\s+(sk_test_\S+)", 5).group(1)
    base = f"http://127.0.0.1:{port}"
    body = None
    while time.monotonic() - started < 90 and process.poll() is None:
        try:
            status, raw = get(f"{base}/v0/merchants/me", {"Authorization": f"Bearer {test_key}"})
            body = json.loads(raw)
            break
        except OSError:
            time.sleep(0.5)
    assert body is not None, "".join(output[-60:])
    assert status == 200 and body["livemode"] is False
    status, raw = get(f"{base}/v0/merchants/me", {"Authorization": f"Bearer {live_key}"})
    assert json.loads(raw)["id"] == body["id"]
    usage_body = wait_for(lines, output, r"-d '(\{.*\})'", 5).group(1)
    request = urllib.request.Request(
        f"{base}/v0/usage",
        data=usage_body.encode(),
        headers={"Authorization": f"Bearer {test_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (127.0.0.1 only)
        charged = json.loads(response.read())
    assert response.status == 201
    assert charged["billing"]["price"] == "0.001000"
    # the demo customer's API key (sandbox, free tier), checked as the printed curl does
    customer_key = wait_for(lines, output, r"Customer API key:\s+(ak_test_\S+)", 5).group(1)
    verify_body = wait_for(lines, output, r"/v0/apiKeys/verify .* -d '(\{.*\})'", 5).group(1)
    assert json.loads(verify_body) == {"apiKey": customer_key, "cost": 1}
    request = urllib.request.Request(
        f"{base}/v0/apiKeys/verify",
        data=verify_body.encode(),
        headers={"Authorization": f"Bearer {test_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (127.0.0.1 only)
        answer = json.loads(response.read())
    assert (answer["code"], answer["tier"], answer["monthlyQueryLimit"]) == ("VALID", "free", 100)
    assert get(f"{base}/v0/docs")[0] == 200
    status, raw = get(f"{base}/admin/login/")
    assert status == 200 and b"password" in raw
    assert get(f"{base}/readyz")[0] == 200
    wait_for(lines, output, r"celery@\S+ ready", 60)
    wait_for(lines, output, r"beat: Starting", 30) if not any("beat: Starting" in x for x in output) else None

    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(60) is not None
    time.sleep(1)
    assert not (run_dir / "pgdata" / "postmaster.pid").exists(), "embedded PostgreSQL was left running"
