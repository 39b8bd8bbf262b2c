"""gunicorn as the Procfile runs it (billing_platform/gunicorn.conf.py, billing_platform/buffering.py)
against clients that send headers and part of a body, then stall.

Every decision here is an event (an answer arrived, the server closed a connection), waited
for with a generous deadline; how fast is bench/slow_clients.py's business.
"""

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from billing_platform.devservers import free_port
from tests.factories import MerchantFactory, issue_key
from tests.integration.test_celery_worker import database_url

REPO_ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60  # seconds: far past any bound configured here

# gunicorn reads this run's test database: the key must be committed for it to see.
pytestmark = pytest.mark.django_db(transaction=True)


class Gunicorn:
    def __init__(self, tmp_path: Path, secret: str, *, extra_args: tuple = (), **env_overrides: str):
        self.port = free_port()
        self.secret = secret
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "billing_platform.settings",
            "DATABASE_URL": database_url(settings.DATABASES["default"]),
            "DATABASE_CONN_MAX_AGE": "0",  # (no connection outlives a request: the test database is dropped)
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "PORT": str(self.port),
            "WEB_BIND": "127.0.0.1",
            "WEB_CONCURRENCY": "1",
            **env_overrides,
        }
        self.log_path = tmp_path / "gunicorn.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "gunicorn"),
                    "--config",
                    "billing_platform/gunicorn.conf.py",
                    *extra_args,
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # (master and workers in one process group: kill() ends them all)
            )
        deadline = time.monotonic() + DEADLINE
        while True:
            assert self.process.poll() is None, self.log_path.read_text()
            with contextlib.suppress(OSError):
                if self.get("/healthz", timeout=2) == 200:
                    return
            assert time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.1)

    def get(self, path: str, timeout: float = DEADLINE, *, key: bool = False) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.secret}"} if key else {})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def request(self, method: str, path: str, body=None, timeout: float = DEADLINE) -> tuple[int, dict]:
        """One request with the merchant's key on a connection of its own: (status, JSON answer)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"}
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def kill(self):
        """SIGKILL to the master and its workers at once (their process group): no worker finishes
        what it was doing."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stall(self, *, content_length: int = 1000, sent: bytes = b'{"events": [') -> socket.socket:
        """A client with a valid key that sends the headers of a POST and the start of its body,
        then nothing (before issue 11, the view reading that body held the thread running it)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
        head = (
            f"POST /v0/usage HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
        )
        sock.sendall(head.encode() + sent)
        return sock

    def stop(self):
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def read_answer(sock: socket.socket) -> bytes:
    """One whole HTTP answer from `sock` (status line and body), however it is split in packets."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return f"HTTP/1.1 {response.status} {response.reason}\r\n".encode() + response.read()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout: DEADLINE)."""
    received = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return received
        received += data


def still_open(sock: socket.socket) -> bool:
    """The server has neither answered nor closed the connection."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
    return False


@pytest.fixture
def gunicorn(tmp_path):
    secret = issue_key(MerchantFactory())
    servers = []

    def start(**env_overrides):
        server = Gunicorn(tmp_path, secret, **env_overrides)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_a_stalled_client_gets_408_and_its_connection_closed(gunicorn):
    server = gunicorn(WEB_BODY_TIMEOUT="1")
    sock = server.stall()

    answer = read_until_closed(sock)  # returns only once the server closed the connection

    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"code": "REQUEST_BODY_TIMEOUT"' in answer, answer
    sock.close()


def test_clients_stalled_mid_body_hold_no_thread_that_runs_requests(gunicorn):
    """More stalled clients than threads that run Django (and a bound far away): other
    requests, with and without a database, are answered while every stalled one still waits."""
    server = gunicorn(WEB_BODY_TIMEOUT="600", WEB_THREADS="2", WEB_CLIENT_THREADS="16")
    stalled = [server.stall() for _ in range(6)]
    try:
        assert server.get("/healthz") == 200
        assert server.get("/readyz") == 200  # (reads the database)
        assert server.get("/v0/merchants/me", key=True) == 200
        assert all(still_open(sock) for sock in stalled)
    finally:
        for sock in stalled:
            sock.close()


def test_a_body_that_arrives_in_pieces_within_the_bound_is_served(gunicorn):
    server = gunicorn(WEB_BODY_TIMEOUT="30")
    body = b'{"idempotencyKey": "k1", "customerId": "not-a-customer", "properties": []}'
    sock = server.stall(content_length=len(body), sent=body[:10])
    time.sleep(0.2)  # (not a decision: the body simply comes in two pieces)
    sock.sendall(body[10:])
    sock.settimeout(DEADLINE)
    answer = read_answer(sock)

    assert answer.startswith(b"HTTP/1.1 400 "), answer  # Django read the whole body and judged it
    assert b'"field": "properties"' in answer, answer
    sock.close()


def test_a_client_that_closes_mid_body_gets_no_request_run(gunicorn):
    server = gunicorn(WEB_BODY_TIMEOUT="30")
    sock = server.stall()
    sock.shutdown(socket.SHUT_WR)  # the body ends before its Content-Length

    answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"REQUEST_BODY_INCOMPLETE" in answer, answer
    assert server.get("/healthz") == 200
    sock.close()


def test_a_chunked_body_reaches_the_application_whole(gunicorn):
    server = gunicorn(WEB_BODY_TIMEOUT="30")
    body = b'{"idempotencyKey": "k1", "customerId": "not-a-customer", "properties": []}'
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    head = (
        f"POST /v0/usage HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.secret}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:20], body[20:])) + b"0\r\n\r\n"
    sock.sendall(head.encode() + chunks)
    answer = read_answer(sock)

    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b'"field": "properties"' in answer, answer
    sock.close()
