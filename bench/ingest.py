"""Usage-ingestion benchmark: gunicorn + PostgreSQL, load from this process on 127.0.0.1.

    .venv/bin/python bench/ingest.py [--single-requests N] [--batches N] [--concurrency C]
        [--batch-concurrency C] [--workers W] [--worker-class sync|gthread] [--threads T]
        [--customers N] [--duration-cap S] [--json]

It uses DATABASE_URL / REDIS_URL when they answer, else embedded servers
(billing_platform.devservers), creates a fresh dedicated database `billing_bench` on
that PostgreSQL server (dropped first), migrates it, seeds one merchant, a COUNT metric
priced 0.001 USDC per event (standard, instant) and N prefunded, subscribed customers
through the services, starts gunicorn on a free 127.0.0.1 port and drives:

0. with --floor-requests, GET /healthz (no database, no key): what the server and the load
   generator cost alone on this machine, the ceiling of any endpoint;
1. single events: POST /v0/usage, one event (quantity 1, a random customer) per request;
2. batches: POST /v0/usage/batch with 1,000 events spread over the customers.

It prints events/s, latency p50/p99, errors by status and events stored against
events acknowledged (they must be equal), plus where the CPU went. It asserts nothing
about timing. Targets (2 cores, load generator on the same machine): single events
>= 1,000/s with p99 < 50 ms; batches >= 50,000 events/s.
"""

import argparse
import contextlib
import http.client
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from billing_platform.devservers import free_port, postgres_conninfo  # noqa: E402 (after the path)

BENCH_DATABASE = "billing_bench"
HOST = "127.0.0.1"
UNIT_PRICE = Decimal("0.001")
BATCH_SIZE = 1000
REQUEST_TIMEOUT = 30.0

TARGET_SINGLE_EPS = 1000
TARGET_SINGLE_P99_MS = 50
TARGET_BATCH_EPS = 50000


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- arguments


def check_limits(parser: argparse.ArgumentParser, args, limits: dict) -> None:
    """Refuse an option outside its (low, high) bounds, naming it (shared by the benches)."""
    for name, (low, high) in limits.items():
        value = getattr(args, name)
        if not low <= value <= high:
            parser.error(f"--{name.replace('_', '-')} must be between {low} and {high}, got {value}")


def parse_args(argv=None):
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single-requests", type=int, default=5000, help="single-event requests (default 5000)")
    parser.add_argument(
        "--floor-requests",
        type=int,
        default=0,
        help="GET /healthz requests first (no database, no key): the server's own floor (default 0)",
    )
    parser.add_argument("--batches", type=int, default=20, help="batches of 1,000 events (default 20)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads for single events (default 16)")
    parser.add_argument(
        "--batch-concurrency",
        type=int,
        default=4,
        help="client threads for batches (default 4: with 2, both keep-alive connections often land in one "
        "gthread process and its GIL)",
    )
    parser.add_argument("--workers", type=int, default=cores, help=f"gunicorn workers (default: one per core, {cores})")
    parser.add_argument(
        "--worker-class",
        choices=["sync", "gthread"],
        default="gthread",
        help="gthread (default, as the Procfile runs it: concurrent single reports are charged together) or sync",
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="threads running Django per gthread worker (WEB_THREADS, default 8)"
    )
    parser.add_argument("--customers", type=int, default=1000, help="prefunded customers (default 1000)")
    parser.add_argument("--seed-threads", type=int, default=4, help="threads seeding customers (default 4)")
    parser.add_argument(
        "--duration-cap", type=float, default=120.0, help="cap on the whole run's wall seconds (default 120)"
    )
    parser.add_argument(
        "--low-balance",
        action="store_true",
        help="give every customer a USDC lowBalanceThreshold a little under its funding (nearly every one "
        "crosses it during the run, publishing wallet.low_balance) and the merchant an endpoint "
        "subscribed to wallet.low_balance",
    )
    parser.add_argument("--keep-database", action="store_true", help="leave billing_bench in place at the end")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    limits = {
        "single_requests": (0, 1_000_000),
        "floor_requests": (0, 1_000_000),
        "batches": (0, 10_000),
        "concurrency": (1, 256),
        "batch_concurrency": (1, 64),
        "workers": (1, 64),
        "threads": (1, 64),
        "customers": (1, 100_000),
        "seed_threads": (1, 16),
    }
    check_limits(parser, args, limits)
    if not 5 <= args.duration_cap <= 3600:
        parser.error("--duration-cap must be between 5 and 3600 seconds")
    return args


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def passed(self) -> bool:
        return self.left() <= 0


# ---------------------------------------------------------------------------- database


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def recreate_database(server_url: str) -> str:
    """Drop and create the bench database on the server of `server_url`; return its URL."""
    import psycopg

    admin_url = with_database(server_url, "postgres")
    with psycopg.connect(postgres_conninfo(admin_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    return with_database(server_url, BENCH_DATABASE)


def drop_database(server_url: str) -> None:
    import psycopg

    try:
        with psycopg.connect(postgres_conninfo(with_database(server_url, "postgres")), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
    except psycopg.Error as exc:
        log(f"could not drop {BENCH_DATABASE}: {exc}")


def app_environment(base_env: dict, database_url: str) -> dict:
    env = dict(base_env)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "billing_platform.settings",
            "DATABASE_URL": database_url,
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + uuid.uuid4().hex + uuid.uuid4().hex,
            "ALLOWED_HOSTS": HOST,
            "SECURE_SSL_REDIRECT": "false",
            "SECURE_COOKIES": "false",
            "SECURE_HSTS_SECONDS": "0",
            "API_DEFAULT_RATE_LIMIT": "0",
            "LOG_LEVEL": "WARNING",
            # the --low-balance endpoint is on 127.0.0.1 (nothing listens: no worker delivers here)
            "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
            "PYTHONPATH": str(BASE_DIR),
        }
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


# ---------------------------------------------------------------------------- seeding


def seed(*, customers: int, events_total: int, threads: int, low_balance: bool = False) -> dict:
    """One merchant with a live key, a priced COUNT metric, `customers` funded subscribers;
    with `low_balance`, their thresholds and an endpoint subscribed to wallet.low_balance."""
    from django.db import connection

    from apps.catalog.models import PaymentTerm
    from apps.catalog.services import billable_metric_create, plan_create, price_create, product_create
    from apps.customers.billing import CurrencyBillingSettings
    from apps.customers.services import customer_create
    from apps.merchants.services import api_key_create, merchant_create
    from apps.payments.services import adjustment_create
    from apps.subscriptions.services import subscription_create
    from apps.webhooks.services import webhook_endpoint_create

    merchant = merchant_create(name="Bench Merchant", contact_email="bench@example.com")
    _, secret = api_key_create(merchant=merchant, name="bench")
    product = product_create(merchant=merchant, name="Bench API")
    metric = billable_metric_create(
        merchant=merchant, product=product, name="requests", aggregation="COUNT", unit="request"
    )
    price = price_create(
        merchant=merchant,
        billable_metric=metric,
        model="standard",
        payment_term=PaymentTerm.INSTANT,
        currency="USDC",
        properties={"unitPrice": str(UNIT_PRICE)},
    )
    plan = plan_create(
        merchant=merchant,
        name="Bench plan",
        code="bench",
        product=product,
        currency="USDC",
        billing_interval="monthly",
        prices=[price],
    )
    # Every customer can pay for every event of the run (and a margin), however they fall.
    funding = max(Decimal("10"), (UNIT_PRICE * events_total * 2).quantize(Decimal("1")))
    # Half of what a customer spends on average under its funding: nearly every one crosses it.
    threshold = funding - UNIT_PRICE * events_total / customers / 2 if low_balance else None
    settings = {"USDC": CurrencyBillingSettings(low_balance_threshold=threshold)} if low_balance else None
    if low_balance:
        webhook_endpoint_create(merchant=merchant, url=f"http://{HOST}:9/low-balance", events=["wallet.low_balance"])

    def make(indexes):
        ids = []
        try:
            for i in indexes:
                customer, _ = customer_create(
                    merchant=merchant, email=f"bench-{i:06d}@example.com", name=f"Bench {i}", billing_settings=settings
                )
                subscription_create(merchant=merchant, customer=customer, plan=plan)
                adjustment_create(
                    merchant=merchant, customer=customer, amount=funding, currency="USDC", reason="bench funding"
                )
                ids.append(str(customer.id))
        finally:
            connection.close()
        return ids

    chunks = [range(start, customers, threads) for start in range(threads)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        customer_ids = [cid for ids in pool.map(make, chunks) for cid in ids]
    return {
        "merchant": merchant,
        "secret": secret,
        "metric_id": str(metric.id),
        "customer_ids": customer_ids,
        "funding": funding,
        "threshold": threshold,
    }


def stored_events(merchant) -> int:
    from apps.usage.models import UsageEvent

    return UsageEvent.objects.filter(merchant=merchant).count()


# ---------------------------------------------------------------------------- server


def start_gunicorn(env: dict, args, port: int, log_path: Path) -> subprocess.Popen:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    if args.worker_class == "gthread":
        # As the Procfile runs it: gunicorn's threads read requests whole, WEB_THREADS run Django.
        command = [gunicorn, "--config", "billing_platform/gunicorn.conf.py"]
        env = {**env, "WEB_THREADS": str(args.threads)}
    else:
        command = [gunicorn, "billing_platform.wsgi", "--worker-class", "sync"]
    command += [
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(args.workers),
        "--timeout",
        "60",
        "--backlog",
        "2048",
        "--error-logfile",
        "-",
    ]
    log_file = open(log_path, "wb")  # noqa: SIM115 -- kept open for the child's lifetime
    process = subprocess.Popen(command, env=env, cwd=BASE_DIR, stdout=log_file, stderr=subprocess.STDOUT)
    log_file.close()
    return process


def wait_healthy(process: subprocess.Popen, port: int, workers: int, timeout: float) -> None:
    deadline = Deadline(timeout)
    while not deadline.passed():
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                # Let every worker boot (sync workers import Django lazily on fork).
                if len(child_pids(process.pid)) >= workers:
                    return
            conn.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer /healthz within {timeout:.0f}s")


def stop_gunicorn(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: graceful shutdown of the master and its workers
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# ---------------------------------------------------------------------------- CPU accounting (/proc)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int):
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # utime + stime + cutime + cstime: reaped children (ended PostgreSQL backends, gunicorn
    # workers) stay counted in their parent, so a group's total never goes backwards.
    return comm, int(fields[1]), sum(int(v) for v in fields[11:15]) / CLOCK_TICKS


def child_pids(parent: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat and stat[1] == parent:
                pids.append(int(entry))
    return pids


def cpu_snapshot(gunicorn_pid: int | None) -> dict:
    """CPU seconds by group: gunicorn (master + workers), postgres, redis, this client; and the machine."""
    groups = Counter()
    if os.path.isdir("/proc"):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            stat = _proc_stat(int(entry))
            if stat is None:
                continue
            comm, ppid, seconds = stat
            if int(entry) == gunicorn_pid or ppid == gunicorn_pid:
                groups["gunicorn"] += seconds
            elif comm.startswith("postgres"):
                groups["postgres"] += seconds
            elif comm.startswith("redis"):
                groups["redis"] += seconds
    groups["client"] = time.process_time()
    # The PostgreSQL backends serving the bench database (the "postgres" group is every
    # PostgreSQL process on the machine, other users' included).
    try:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [BENCH_DATABASE]
            )
            pids = [row[0] for row in cursor.fetchall()]
        groups["pg_bench"] = sum(stat[2] for stat in map(_proc_stat, pids) if stat)
    except Exception:  # noqa: BLE001 -- an accounting aid only
        pass
    try:
        line = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in line]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        groups["machine_busy"] = (sum(values) - idle) / CLOCK_TICKS
        groups["machine_total"] = sum(values) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        pass
    return dict(groups)


def cpu_delta(before: dict, after: dict, wall: float) -> dict:
    """Each group's CPU as a share of one core over the wall time (1.0 = one core busy)."""
    shares = {}
    for key in ("gunicorn", "postgres", "pg_bench", "redis", "client"):
        if key in after and key in before:
            shares[key] = round((after[key] - before.get(key, 0)) / wall, 2) if wall > 0 else None
    if "machine_total" in after and after["machine_total"] > before.get("machine_total", 0):
        busy = after["machine_busy"] - before["machine_busy"]
        total = after["machine_total"] - before["machine_total"]
        shares["machine_busy_pct"] = round(100 * busy / total, 1)
        if wall > 0:
            known = sum(after[k] - before.get(k, 0) for k in ("gunicorn", "postgres", "redis", "client") if k in after)
            shares["other"] = round(max(0.0, busy - known) / wall, 2)
    return shares


# ---------------------------------------------------------------------------- load


class Client:
    """One keep-alive HTTP/1.1 connection (reopened when the server closes it, as sync workers do)."""

    def __init__(self, port: int, secret: str):
        self.port = port
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)

    def post(self, path: str, body: bytes | None) -> tuple[int, bytes]:
        try:
            if body is None:
                self.conn.request("GET", path)
            else:
                self.conn.request("POST", path, body=body, headers=self.headers)
            response = self.conn.getresponse()
            data = response.read()
            if response.will_close:
                self.conn.close()
            return response.status, data
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise

    def close(self):
        self.conn.close()


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = max(0, min(len(sorted_values) - 1, int(round(fraction * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def run_phase(*, name, port, secret, bodies, path, concurrency, deadline, count_acknowledged, events_per_body):
    """Send every body (or until the deadline) from `concurrency` threads; collect figures."""
    cursor = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    samples: list[str] = []
    acknowledged = [0]
    sent_events = [0]

    def worker():
        client = Client(port, secret)
        local_lat, local_status, local_ack, local_sent = [], Counter(), 0, 0
        try:
            while not deadline.passed():
                index = next(cursor)
                if index >= len(bodies):
                    break
                started = time.perf_counter()
                try:
                    status, data = client.post(path, bodies[index])
                except (OSError, http.client.HTTPException) as exc:
                    status, data = f"exc:{exc.__class__.__name__}", b""
                local_lat.append(time.perf_counter() - started)
                local_sent += events_per_body
                local_status[status] += 1
                ack = count_acknowledged(status, data)
                local_ack += ack
                if ack < events_per_body and len(samples) < 5:
                    with lock:
                        samples.append(f"{status}: {data[:300].decode('utf-8', 'replace')}")
        finally:
            client.close()
            with lock:
                latencies.extend(local_lat)
                statuses.update(local_status)
                acknowledged[0] += local_ack
                sent_events[0] += local_sent

    threads = [threading.Thread(target=worker, name=f"{name}-{i}", daemon=True) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline.left()) + REQUEST_TIMEOUT + 5)
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "phase": name,
        "requests": len(latencies),
        "requestsPlanned": len(bodies),
        "eventsSent": sent_events[0],
        "eventsAcknowledged": acknowledged[0],
        "wallSeconds": round(wall, 3),
        "eventsPerSecond": round(acknowledged[0] / wall, 1) if wall > 0 else None,
        "requestsPerSecond": round(len(latencies) / wall, 1) if wall > 0 else None,
        "p50Ms": round(percentile(latencies, 0.50) * 1000, 2) if latencies else None,
        "p99Ms": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
        "maxMs": round(latencies[-1] * 1000, 2) if latencies else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "errorSamples": samples,
        "cutByDeadline": len(latencies) < len(bodies),
    }


def single_bodies(run_id, prefix, count, customer_ids, metric_id, rng) -> list[bytes]:
    return [
        json.dumps(
            {
                "idempotencyKey": f"{run_id}-{prefix}-{i}",
                "customerId": rng.choice(customer_ids),
                "properties": [{"billableMetricId": metric_id, "quantity": 1}],
            }
        ).encode()
        for i in range(count)
    ]


def batch_bodies(run_id, count, customer_ids, metric_id, rng) -> list[bytes]:
    bodies = []
    for b in range(count):
        events = [
            {
                "idempotencyKey": f"{run_id}-b{b}-{j}",
                "customerId": rng.choice(customer_ids),
                "properties": [{"billableMetricId": metric_id, "quantity": 1}],
            }
            for j in range(BATCH_SIZE)
        ]
        bodies.append(json.dumps({"events": events}).encode())
    return bodies


def single_ack_get(status, data) -> int:
    return 1 if status == 200 else 0


def single_ack(status, data) -> int:
    return 1 if status == 201 else 0


def batch_ack(status, data) -> int:
    if status not in (201, 207):
        return 0
    try:
        return len(json.loads(data)["successful"])
    except (ValueError, KeyError, TypeError):
        return 0


# ---------------------------------------------------------------------------- report


def print_table(report: dict) -> None:
    machine = report["machine"]
    server = report["server"]
    print()
    print(
        f"machine: {machine['nproc']} cores, Python {machine['python']} ({machine['platform']}), "
        f"loadavg before/after {machine['loadavgBefore']} / {machine['loadavgAfter']}"
    )
    print(
        f"server:  gunicorn {server['workerClass']} x {server['workers']} workers"
        + (f" x {server['threads']} threads" if server["workerClass"] == "gthread" else "")
        + f" on {server['bind']}; PostgreSQL {report['database']['where']}; Redis {report['redis']}"
    )
    seed = report["seed"]
    print(
        f"seed:    {seed['customers']} customers (subscribed, {seed['fundingPerCustomer']} USDC each) "
        f"in {seed['seconds']} s; migrate {report['database']['migrateSeconds']} s"
    )
    if seed["lowBalanceThreshold"] is not None:
        print(
            f"low balance: threshold {seed['lowBalanceThreshold']} USDC, "
            f"{report['lowBalanceEvents']} wallet.low_balance events published"
        )
    print()
    header = (
        f"{'phase':<8} {'reqs':>6} {'events':>7} {'wall s':>7} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'stored':>7} {'acked':>7} {'equal':>5}  statuses"
    )
    print(header)
    print("-" * len(header))
    for phase in report["phases"]:
        statuses = ", ".join(f"{k}:{v}" for k, v in phase["statuses"].items())
        print(
            f"{phase['phase']:<8} {phase['requests']:>6} {phase['eventsSent']:>7} {phase['wallSeconds']:>7.2f} "
            f"{phase['eventsPerSecond'] or 0:>9.1f} {phase['p50Ms'] or 0:>8.2f} {phase['p99Ms'] or 0:>8.2f} "
            f"{phase['maxMs'] or 0:>8.2f} {phase['eventsStored']:>7} {phase['eventsAcknowledged']:>7} "
            f"{'yes' if phase['storedEqualsAcknowledged'] else 'NO':>5}  {statuses}"
        )
    print()
    for phase in report["phases"]:
        cpu = phase.get("cpu", {})
        shares = ", ".join(f"{k} {v}" for k, v in cpu.items() if k != "machine_busy_pct")
        print(
            f"cpu {phase['phase']:<7} (cores busy over the phase): {shares}; machine busy {cpu.get('machine_busy_pct')}%"
        )
        if phase["cutByDeadline"]:
            print(f"  {phase['phase']}: cut by the duration cap after {phase['requests']}/{phase['requestsPlanned']}")
        for sample in phase["errorSamples"]:
            print(f"  {phase['phase']} error sample: {sample}")
    print()
    print(
        f"totals: stored {report['totals']['eventsStored']} vs acknowledged {report['totals']['eventsAcknowledged']}"
        f" -> {'equal' if report['totals']['storedEqualsAcknowledged'] else 'NOT EQUAL'}; "
        f"ledger_check problems: {report['ledgerCheck']['problems']}; "
        f"usage_check problems: {report['usageCheck']['problems']}"
    )
    for problem in report["ledgerCheck"]["sample"]:
        print(f"  ledger: {problem}")
    for problem in report["usageCheck"]["sample"]:
        print(f"  usage: {problem}")
    for line in report["targets"]:
        print(f"target: {line}")
    print(f"total wall: {report['wallSeconds']} s")


def target_lines(phases: dict) -> list[str]:
    lines = []
    single = phases.get("single")
    if single and single["requests"]:
        ok = (single["eventsPerSecond"] or 0) >= TARGET_SINGLE_EPS and (single["p99Ms"] or 1e9) < TARGET_SINGLE_P99_MS
        lines.append(
            f"single {single['eventsPerSecond']}/s (>= {TARGET_SINGLE_EPS}) p99 {single['p99Ms']} ms "
            f"(< {TARGET_SINGLE_P99_MS}): {'met' if ok else 'missed'}"
        )
    batch = phases.get("batch")
    if batch and batch["requests"]:
        ok = (batch["eventsPerSecond"] or 0) >= TARGET_BATCH_EPS
        lines.append(f"batch {batch['eventsPerSecond']}/s (>= {TARGET_BATCH_EPS}): {'met' if ok else 'missed'}")
    return lines


# ---------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = Deadline(args.duration_cap)
    loadavg_before = os.getloadavg()

    from billing_platform import devservers

    with contextlib.redirect_stdout(sys.stderr):  # devservers logs to stdout; keep it for the figures
        base_env = devservers.prepare_environment()
    server_url = base_env["DATABASE_URL"]
    embedded_db = "host=" in server_url and urlsplit(server_url).hostname is None
    database_url = recreate_database(server_url)
    env = app_environment(base_env, database_url)
    os.environ.update({k: v for k, v in env.items() if k != "PATH"})
    log(f"database {BENCH_DATABASE} created ({'embedded' if embedded_db else 'DATABASE_URL'} server)")

    process = None
    workdir = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    try:
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            env=env,
            cwd=BASE_DIR,
            check=True,
            timeout=max(10.0, deadline.left()),
        )
        migrate_seconds = round(time.monotonic() - t0, 2)
        log(f"migrated in {migrate_seconds} s")

        import django

        django.setup()
        from django.db import connection

        from apps.ledger.selectors import ledger_check
        from apps.usage.selectors import usage_check

        events_total = args.single_requests + args.batches * BATCH_SIZE + 100
        t0 = time.monotonic()
        world = seed(
            customers=args.customers,
            events_total=events_total,
            threads=args.seed_threads,
            low_balance=args.low_balance,
        )
        seed_seconds = round(time.monotonic() - t0, 2)
        log(f"seeded {len(world['customer_ids'])} customers in {seed_seconds} s")
        if deadline.passed():
            raise RuntimeError("the duration cap passed while seeding")

        port = free_port(HOST)
        gunicorn_log = workdir / "gunicorn.log"
        process = start_gunicorn(env, args, port, gunicorn_log)
        wait_healthy(process, port, args.workers, timeout=min(60.0, max(5.0, deadline.left())))
        log(f"gunicorn {process.pid} ({args.worker_class} x {args.workers}) on {HOST}:{port}; log {gunicorn_log}")

        rng = random.Random(1234)
        run_id = uuid.uuid4().hex[:12]
        customer_ids, metric_id, secret = world["customer_ids"], world["metric_id"], world["secret"]
        merchant = world["merchant"]

        plans = [
            (
                "warmup",
                single_bodies(run_id, "w", min(4 * args.workers, 100), customer_ids, metric_id, rng),
                "/v0/usage",
                min(args.concurrency, args.workers),
                single_ack,
                1,
            )
        ]
        if args.floor_requests:
            plans.append(("floor", [None] * args.floor_requests, "/healthz", args.concurrency, single_ack_get, 1))
        if args.single_requests:
            plans.append(
                (
                    "single",
                    single_bodies(run_id, "s", args.single_requests, customer_ids, metric_id, rng),
                    "/v0/usage",
                    args.concurrency,
                    single_ack,
                    1,
                )
            )
        if args.batches:
            plans.append(
                (
                    "batch",
                    batch_bodies(run_id, args.batches, customer_ids, metric_id, rng),
                    "/v0/usage/batch",
                    args.batch_concurrency,
                    batch_ack,
                    BATCH_SIZE,
                )
            )

        phases = {}
        for position, (name, bodies, path, concurrency, ack, per_body) in enumerate(plans):
            if deadline.left() < 2:
                log(f"duration cap reached; {name} skipped")
                break
            # Each phase gets an equal share of what is left of the cap (the warm-up at most 10 s),
            # so a slow phase cannot starve the next one.
            share = deadline.left() / (len(plans) - position) - 1
            phase_deadline = Deadline(min(share, 10.0) if name == "warmup" else share)
            before_count = stored_events(merchant)
            cpu_before = cpu_snapshot(process.pid)
            log(f"{name}: {len(bodies)} requests to {path} at concurrency {concurrency}")
            result = run_phase(
                name=name,
                port=port,
                secret=secret,
                bodies=bodies,
                path=path,
                concurrency=concurrency,
                deadline=phase_deadline,
                count_acknowledged=ack,
                events_per_body=per_body,
            )
            result["cpu"] = cpu_delta(cpu_before, cpu_snapshot(process.pid), result["wallSeconds"])
            result["eventsStored"] = stored_events(merchant) - before_count
            if name == "floor":  # /healthz stores nothing: its "events" are answered requests
                result["eventsStored"] = result["eventsAcknowledged"]
            result["storedEqualsAcknowledged"] = result["eventsStored"] == result["eventsAcknowledged"]
            phases[name] = result
            log(
                f"{name}: {result['eventsPerSecond']} events/s, p50 {result['p50Ms']} ms, p99 {result['p99Ms']} ms, "
                f"stored {result['eventsStored']} / acknowledged {result['eventsAcknowledged']}"
            )

        problems = ledger_check()
        usage_problems = usage_check()
        total_stored = stored_events(merchant)
        total_acked = sum(p["eventsAcknowledged"] for name, p in phases.items() if name != "floor")
        from apps.webhooks.models import Event

        low_balance_events = Event.objects.filter(merchant=merchant, type="wallet.low_balance").count()
        connection.close()
        report = {
            "machine": {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "loadavgBefore": [round(x, 2) for x in loadavg_before],
                "loadavgAfter": [round(x, 2) for x in os.getloadavg()],
            },
            "server": {
                "workerClass": args.worker_class,
                "workers": args.workers,
                "threads": args.threads if args.worker_class == "gthread" else 1,
                "bind": f"{HOST}:{port}",
            },
            "database": {
                "name": BENCH_DATABASE,
                "where": "embedded (socket)" if embedded_db else "at DATABASE_URL",
                "migrateSeconds": migrate_seconds,
            },
            "redis": urlsplit(env["REDIS_URL"]).netloc.rsplit("@", 1)[-1] + urlsplit(env["REDIS_URL"]).path,
            "seed": {
                "customers": len(customer_ids),
                "fundingPerCustomer": str(world["funding"]),
                "seconds": seed_seconds,
                "lowBalanceThreshold": None if world["threshold"] is None else str(world["threshold"]),
            },
            "lowBalanceEvents": low_balance_events,
            "phases": [phases[name] for name in ("floor", "single", "batch", "warmup") if name in phases],
            "totals": {
                "eventsStored": total_stored,
                "eventsAcknowledged": total_acked,
                "storedEqualsAcknowledged": total_stored == total_acked,
            },
            "ledgerCheck": {"problems": len(problems), "sample": problems[:5]},
            "usageCheck": {"problems": len(usage_problems), "sample": usage_problems[:5]},
            "targets": target_lines(phases),
            "wallSeconds": round(time.monotonic() - started, 2),
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_table(report)
        return 0 if report["totals"]["storedEqualsAcknowledged"] and not problems and not usage_problems else 1
    finally:
        if process is not None:
            stop_gunicorn(process)
            if process.returncode not in (0, -15):
                log(f"gunicorn ended with {process.returncode}; see {workdir / 'gunicorn.log'}")
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 -- Django may not be set up yet
            pass
        if not args.keep_database:
            drop_database(server_url)


if __name__ == "__main__":
    sys.exit(main())
