"""Faults under load (issue 19): the web processes killed mid-request, the database connections
dropped mid-load, Redis restarted mid-verify. After recovery nothing acknowledged is lost, nothing
is charged twice, no counted verify is forgotten, and the ledger check is clean.

(A Celery worker killed mid-task is tests/integration/test_webhook_worker_killed.py for a webhook
delivery and tests/integration/test_period_close_worker.py for the period close; Stripe and the
chain's RPC node answering 500, hanging or losing answers is
tests/integration/test_stripe_and_chain_faults.py.)

Every wait is for an event with a generous deadline, never a timing.
"""

import contextlib
import json
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from http.client import HTTPConnection, HTTPException
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from apps.catalog.models import PaymentTerm
from apps.catalog.services import billable_metric_create, plan_create, price_create, product_create
from apps.customers.services import customer_create
from apps.ledger.models import Wallet
from apps.ledger.selectors import ledger_check, wallet_balances
from apps.payments.services import adjustment_create
from apps.subscriptions.services import subscription_create
from apps.usage.models import UsageEvent
from apps.usage.selectors import usage_check
from billing_platform.devservers import free_port
from tests.factories import MerchantFactory, issue_key
from tests.integration.test_stalled_clients import DEADLINE, Gunicorn

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
PRICE = D("0.001")
FUNDING = D("100")


def usage_world(customers: int = 4) -> dict:
    merchant = MerchantFactory()
    secret = issue_key(merchant)
    product = product_create(merchant=merchant, name="Faults API")
    metric = billable_metric_create(merchant=merchant, product=product, name="calls", aggregation="COUNT", unit="call")
    price = price_create(
        merchant=merchant,
        billable_metric=metric,
        model="standard",
        payment_term=PaymentTerm.INSTANT,
        currency="USDC",
        properties={"unitPrice": str(PRICE)},
    )
    plan = plan_create(
        merchant=merchant, name="Calls", code="calls", product=product, currency="USDC", billing_interval="monthly",
        prices=[price],
    )  # fmt: skip
    ids = []
    for i in range(customers):
        customer, _ = customer_create(merchant=merchant, email=f"fault-{i}@example.com", name=f"F{i}")
        subscription_create(merchant=merchant, customer=customer, plan=plan)
        adjustment_create(merchant=merchant, customer=customer, amount=FUNDING, currency="USDC", reason="funding")
        ids.append(str(customer.id))
    return {"merchant": merchant, "secret": secret, "metric": str(metric.id), "customers": ids}


class Target:
    """Where the clients send: the port of the server that runs now (a restart changes it)."""

    def __init__(self, server):
        self.server = server

    @property
    def port(self) -> int:
        return self.server.port


class UsageLoad:
    """Threads that each report their own keys one after another, retrying a key whose request
    got no answer, or a 5xx, with the same body until it is answered 201: as a client that
    follows the contract does."""

    def __init__(self, target: Target, world: dict, *, threads: int = 8, per_thread: int = 150):
        self.target = target
        self.world = world
        self.lock = threading.Lock()
        self.statuses = Counter()
        self.unanswered = 0  # requests sent whose answer never came (retried)
        self.acknowledged: dict[str, str] = {}  # key -> event id
        self.answered = threading.Condition(self.lock)
        self.bodies = [
            [
                {
                    "idempotencyKey": f"fault-{t}-{i}-{uuid.uuid4().hex[:6]}",
                    "customerId": world["customers"][(t + i) % len(world["customers"])],
                    "properties": [{"billableMetricId": world["metric"], "quantity": "1"}],
                }
                for i in range(per_thread)
            ]
            for t in range(threads)
        ]
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.run, args=(bodies,)) for bodies in self.bodies]

    @property
    def keys(self) -> set[str]:
        return {body["idempotencyKey"] for bodies in self.bodies for body in bodies}

    def start(self):
        for thread in self.threads:
            thread.start()

    def join(self):
        for thread in self.threads:
            thread.join(DEADLINE * 3)
        assert not any(thread.is_alive() for thread in self.threads), "a client never got its answers"

    def wait_for(self, count: int) -> None:
        with self.answered:
            assert self.answered.wait_for(lambda: len(self.acknowledged) >= count, DEADLINE), self.statuses

    def run(self, bodies):
        headers = {"Authorization": f"Bearer {self.world['secret']}", "Content-Type": "application/json"}
        deadline = time.monotonic() + DEADLINE * 3
        conn = None
        for body in bodies:
            payload = json.dumps(body)
            while True:
                if time.monotonic() > deadline:
                    with self.lock:
                        self.errors.append(f"{body['idempotencyKey']} never answered 201")
                    return
                try:
                    if conn is None:
                        conn = HTTPConnection("127.0.0.1", self.target.port, timeout=DEADLINE)
                    conn.request("POST", "/v0/usage", body=payload, headers=headers)
                except OSError:
                    conn = None  # (not sent: the server is down; try again)
                    time.sleep(0.05)
                    continue
                try:
                    response = conn.getresponse()
                    answer = response.read()
                except (OSError, HTTPException):
                    conn.close()
                    conn = None
                    with self.lock:
                        self.unanswered += 1
                    continue
                with self.lock:
                    self.statuses[response.status] += 1
                if response.status == 201:
                    event_id = json.loads(answer)["id"]
                    with self.answered:
                        first = self.acknowledged.setdefault(body["idempotencyKey"], event_id)
                        if first != event_id:
                            self.errors.append(f"{body['idempotencyKey']} answered {first}, then {event_id}")
                        self.answered.notify_all()
                    break
                if response.status < 500:
                    with self.lock:
                        self.errors.append(f"{body['idempotencyKey']}: {response.status} {answer[:300]!r}")
                    break
                time.sleep(0.05)  # a 5xx: the same body again
        if conn is not None:
            conn.close()


def assert_charged_once(world: dict, load: UsageLoad) -> None:
    """Every key stored once, under the id it was acknowledged with; each wallet charged exactly
    for the events stored; the ledger and usage checks clean."""
    assert not load.errors, load.errors[:10]
    assert set(load.acknowledged) == load.keys
    stored = dict(
        UsageEvent.objects.filter(merchant=world["merchant"]).values_list("idempotency_key", "id")
    )  # fmt: skip
    assert {key: str(event_id) for key, event_id in stored.items()} == load.acknowledged
    per_customer = Counter(body["customerId"] for bodies in load.bodies for body in bodies)
    for customer_id, count in per_customer.items():
        wallet = Wallet.objects.get(merchant=world["merchant"], customer_id=customer_id, currency="USDC")
        assert wallet_balances(wallet=wallet).available == FUNDING - PRICE * count, customer_id
    assert ledger_check() == []
    assert usage_check() == []


# ---------------------------------------------------------------------------- web processes killed


def test_web_processes_killed_mid_usage_lose_nothing_acknowledged_and_charge_nothing_twice(tmp_path):
    world = usage_world()
    server = Gunicorn(tmp_path, world["secret"], WEB_CONCURRENCY="2")
    target = Target(server)
    load = UsageLoad(target, world)
    second = None
    try:
        load.start()
        load.wait_for(300)
        server.kill()  # SIGKILL to master and workers at once, with requests in flight
        (tmp_path / "again").mkdir()
        second = Gunicorn(tmp_path / "again", world["secret"], WEB_CONCURRENCY="2")
        target.server = second
        load.join()
    finally:
        server.stop()
        if second is not None:
            second.stop()
    # requests were in flight at the kill: their clients got no answer and sent them again
    assert load.unanswered >= 1, (load.statuses, load.unanswered)
    assert_charged_once(world, load)


# ---------------------------------------------------------------------------- database connections dropped


def terminate_app_backends(database: dict) -> int:
    """pg_terminate_backend on every connection to the test database but this one (the web
    processes' and this test's own Django connection, which is idle)."""
    # (OPTIONS first: an embedded server's socket directory is its `host` option, HOST empty)
    params = {key: value for key, value in (database.get("OPTIONS") or {}).items() if isinstance(value, str | int)}
    params.update(
        {
            key: value
            for key, value in (
                ("host", database["HOST"]),
                ("port", database["PORT"]),
                ("user", database["USER"]),
                ("dbname", database["NAME"]),
            )
            if value
        }
    )
    if database.get("PASSWORD"):
        params["password"] = database["PASSWORD"]
    with psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            [database["NAME"]],
        ).fetchall()
    return len(rows)


def test_database_connections_dropped_mid_load_fail_cleanly_and_retries_charge_once(tmp_path):
    world = usage_world()
    server = Gunicorn(
        tmp_path,
        world["secret"],
        WEB_CONCURRENCY="2",
        DATABASE_CONN_MAX_AGE="60",  # (connections kept between requests: the ones dropped are reused)
    )
    load = UsageLoad(Target(server), world)
    terminated = 0
    connection.close()
    try:
        load.start()
        for round_ in range(6):
            load.wait_for(100 * (round_ + 1))
            terminated += terminate_app_backends(settings.DATABASES["default"])
        load.join()
    finally:
        server.stop()
    assert terminated >= 6
    # a request whose connection was dropped is answered 503 (retried) or served by a new one; never a 500
    assert set(load.statuses) <= {201, 503}, load.statuses
    assert_charged_once(world, load)


# ---------------------------------------------------------------------------- Redis restarted mid-verify


class OwnRedis:
    """A redis-server of this test alone (append-only, in its own directory, on a free port): the
    shared one is never touched."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        self.start()

    def start(self):
        import redis

        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "yes", "--appendfsync", "everysec",
                "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + DEADLINE
        while True:
            assert self.process.poll() is None, (self.directory / "redis.log").read_text()
            with contextlib.suppress(redis.RedisError):
                if redis.Redis.from_url(self.url, socket_timeout=1).ping():
                    return
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.05)

    def restart(self):
        """A clean restart: SHUTDOWN (the append-only file synced), then the same server again."""
        import redis

        with contextlib.suppress(redis.ConnectionError):  # (the server closes the connection as it exits)
            redis.Redis.from_url(self.url, socket_timeout=5).shutdown()
        self.process.wait(DEADLINE)
        self.start()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(DEADLINE)


REDIS_SERVER = next(
    (path for path in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if os.path.exists(path)), None
)


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_redis_restarted_mid_verify_forgets_no_counted_call(tmp_path, settings):
    from apps.apikeys.services import api_key_create
    from apps.apikeys.tasks import drain_once
    from apps.catalog.demo import seed_catalog
    from apps.catalog.models import Plan
    from apps.core.redis import get_redis

    own = OwnRedis(tmp_path)
    settings.REDIS_URL = own.url
    get_redis.cache_clear()
    server = None
    try:
        merchant = MerchantFactory()
        secret = issue_key(merchant)
        seed_catalog(merchant=merchant)
        Plan.objects.filter(merchant=merchant, code="enterprise").update(
            features={"rateLimit": 100_000, "monthlyQueryLimit": None, "webhooks": 50}
        )
        created = api_key_create(
            merchant=merchant, organization_name="Acme", contact_email="dev@acme.example", tier_code="enterprise"
        )
        server = Gunicorn(tmp_path, secret, WEB_CONCURRENCY="2", REDIS_URL=own.url, CELERY_BROKER_URL=own.url)
        lock = threading.Lock()
        answers = Counter()
        stop = threading.Event()

        def caller():
            headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
            body = json.dumps({"apiKey": created.secret, "cost": 1})
            while not stop.is_set():
                conn = HTTPConnection("127.0.0.1", server.port, timeout=DEADLINE)
                try:
                    conn.request("POST", "/v0/apiKeys/verify", body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, HTTPException):
                    with lock:
                        answers["unanswered"] += 1
                    continue
                finally:
                    conn.close()
                code = json.loads(data).get("code") if response.status == 200 else f"http {response.status}"
                with lock:
                    answers[code] += 1

        def valid() -> int:
            with lock:
                return answers["VALID"]

        threads = [threading.Thread(target=caller) for _ in range(6)]
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + DEADLINE
            while valid() < 300:
                assert time.monotonic() < deadline, answers
                time.sleep(0.05)
            own.restart()  # mid-load: calls in flight meet a closed connection, then a fresh server
            before = valid()
            while valid() < before + 300:
                assert time.monotonic() < deadline + DEADLINE, answers
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in threads:
                thread.join(DEADLINE)
        get_redis.cache_clear()  # (the test process's client reconnects to the restarted server)
        while drain_once():
            pass
        counted = UsageEvent.objects.filter(
            subscription_id=created.key.subscription_id, idempotency_key__startswith="verify:"
        ).count()
        # every VALID answer given, before and after the restart, was counted once (a call whose
        # answer was lost as Redis closed its connections may be counted too, never more)
        assert answers["VALID"] <= counted <= answers["VALID"] + answers["http 503"] + answers["unanswered"], (
            counted,
            answers,
        )
        # while Redis restarted, verify refused cleanly (503), never a 500
        assert set(answers) <= {"VALID", "http 503"}, answers
        assert ledger_check() == []
        assert usage_check() == []
    finally:
        if server is not None:
            server.stop()
        own.stop()
        get_redis.cache_clear()
