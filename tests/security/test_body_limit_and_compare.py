"""A body over 8 MiB is refused with 413 before it is read (gunicorn as the Procfile runs it: an
announced length, and a chunked body that runs past it), and secrets are compared only in
constant time (no == on a secret, token, signature or hash outside the allowed list)."""

import ast
import json
import socket
from pathlib import Path

import pytest

from tests.factories import MerchantFactory, issue_key
from tests.integration.test_stalled_clients import DEADLINE, REPO_ROOT, Gunicorn

MIB = 1024 * 1024


def raw_request(port: int, head: bytes, body_parts=()) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as conn:
        conn.sendall(head)
        for part in body_parts:
            try:
                conn.sendall(part)
            except OSError:
                break  # (refused and closed before the whole body was sent)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            data.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0] if b"Content-Length: " in data else 0
        ):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    head_text, body = data.split(b"\r\n\r\n", 1)
    return int(head_text.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.django_db(transaction=True)
def test_bodies_over_the_limit_are_413_before_they_are_read(tmp_path):
    secret = issue_key(MerchantFactory())
    server = Gunicorn(tmp_path, secret)
    try:
        announced = (
            f"POST /v0/usage/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {50 * 1024 * MIB}\r\n\r\n"
        ).encode()
        status, body = raw_request(server.port, announced, [b"{"])  # 50 GiB announced, 1 byte sent
        assert status == 413 and body["code"] == "REQUEST_TOO_LARGE", body
        chunked = (
            f"POST /v0/usage/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        chunk = b"x" * MIB
        parts = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(9)] + [b"0\r\n\r\n"]
        status, body = raw_request(server.port, chunked, parts)
        assert status == 413 and body["code"] == "REQUEST_TOO_LARGE", body
        assert "8 MiB" in body["message"]
    finally:
        server.stop()


SECRET_NAMES = ("secret", "token", "signature", "password", "api_key", "apikey", "digest", "hash", "pad")
# (a fingerprint of a request body, compared to find a replay; the public keccak-256 of an
# invoice's or session's id, which anyone can recompute: not secrets)
ALLOWED = {"request_hash", "reference_hash"}


def identifier(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript | ast.Call):
        return identifier(node.value if isinstance(node, ast.Subscript) else node.func)
    return None


def test_no_secret_is_compared_with_equality_operators():
    found = []
    for root in ("apps", "billing_platform"):
        for path in (REPO_ROOT / root).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                    for operand in (node.left, *node.comparators):
                        name = (identifier(operand) or "").lower()
                        if name not in ALLOWED and name.endswith(SECRET_NAMES):
                            found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name}")
    assert not found, "compare secrets with hmac.compare_digest: " + ", ".join(found)


def test_stored_secrets_are_checked_with_compare_digest():
    source = Path(REPO_ROOT / "apps/core/secrets.py").read_text()
    function = next(
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name == "secret_matches"
    )
    calls = [identifier(node.func) for node in ast.walk(function) if isinstance(node, ast.Call)]
    assert "compare_digest" in calls
