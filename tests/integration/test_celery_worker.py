"""Celery integration: the beat tasks run by a REAL worker process on Redis against the test database.

Unit tests run tasks eagerly (tests/settings.py); here a `celery worker` subprocess consumes a
queue of its own (so parallel runs on the same Redis never take each other's tasks) and connects
to this run's test database. Rows are committed (transaction=True) so the worker sees them; the
test process polls the database for the effect. There is no result backend: a task's return
value is read from the worker's own "Task ...[id] succeeded in ...s: <value>" log line.
"""

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings
from django.utils import timezone

from apps.entitlements.models import Entitlement
from apps.entitlements.tasks import release_expired_entitlements
from apps.ledger.models import Entry, LedgerTransaction
from apps.ledger.selectors import ledger_check
from apps.payments.models import PaymentSession
from apps.payments.services import topup_session_create
from apps.payments.tasks import expire_payment_sessions
from billing_platform.celery import app as celery_app
from tests.factories import make_customer
from tests.usage.world import Billing

D = Decimal
REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30
TASK_TIMEOUT = 30

pytestmark = pytest.mark.django_db(transaction=True)


def database_url(db: dict) -> str:
    """A DATABASE_URL (django-environ syntax) for the connection settings `db`: TCP or a Unix socket."""
    user = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        user += ":" + quote(db["PASSWORD"], safe="")
    options = {key: value for key, value in (db.get("OPTIONS") or {}).items() if isinstance(value, str | int)}
    host, port = db.get("HOST") or "", db.get("PORT") or ""
    if host.startswith("/"):  # a socket directory given as HOST
        options.setdefault("host", host)
        host = ""
    netloc = f"{user}@" if user else ""
    if host:
        netloc += f"{host}:{port}" if port else host
    query = f"?{urlencode(options)}" if options else ""
    return f"postgres://{netloc}/{quote(db['NAME'], safe='')}{query}"


class Worker:
    """A `celery worker` subprocess; its output is collected (and echoed, so pytest shows it on failure)."""

    SUCCEEDED = re.compile(r"Task (?P<name>\S+)\[(?P<id>[0-9a-f-]+)\] succeeded in [0-9.e-]+s: (?P<value>.*)$")

    def __init__(self, *, queue: str, env: dict):
        self.queue = queue
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "billing_platform",
                "worker",
                "--pool",
                "solo",
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
                "-Q",
                queue,
                "-n",
                f"{queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            line = line.rstrip("\n")
            print(f"[worker] {line}", flush=True)  # captured per test phase; shown when a test fails
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:  # an RLock: also callable while waiting
            return "\n".join(self.lines)

    def _wait_for(self, found, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = found(self.lines)
                if result is not None:
                    return result
                remaining = deadline - time.monotonic()
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(
                        f"the worker exited ({self.process.returncode}) before {what}:\n{self.output()}"
                    )
                if remaining <= 0:
                    raise AssertionError(f"no {what} within {timeout}s; worker output:\n{self.output()}")
                self._changed.wait(min(remaining, 0.5))

    def wait_until_ready(self):
        self._wait_for(
            lambda lines: True if any(" ready." in line for line in lines) else None, STARTUP_TIMEOUT, "ready"
        )

    def wait_for_task(self, task_id: str, timeout: float = TASK_TIMEOUT) -> str:
        """The return value (repr) the worker logged for `task_id`; fails on a task error or timeout."""

        def found(lines):
            for line in lines:
                if f"[{task_id}]" not in line:
                    continue
                match = self.SUCCEEDED.search(line)
                if match:
                    return match["value"]
                if " raised " in line or " failed" in line or "retry" in line.lower():
                    raise AssertionError(f"task {task_id} did not succeed:\n{self.output()}")
            return None

        return self._wait_for(found, timeout, f"result of task {task_id}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()  # warm shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker):
    """One real worker for this module, on the test database and a queue of its own; always stopped."""
    queue = f"integration-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        # Once django_db_setup has run, NAME is this run's test database.
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "DATABASE_CONN_MAX_AGE": "0",  # no idle connection outlives a task (the test DB is dropped at the end)
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        # Note: tests/settings.py currently pins CELERY_TASK_ALWAYS_EAGER = True whatever the
        # environment says; consuming from the queue is unaffected, the setting only matters
        # to tasks the worker would itself enqueue.
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "PYTHONUNBUFFERED": "1",
    }
    process = Worker(queue=queue, env=env)
    try:
        process.wait_until_ready()
        yield process
    except BaseException:
        print(f"worker output:\n{process.output()}", file=sys.stderr)
        raise
    finally:
        process.stop()
        _forget_queue(queue)


def _forget_queue(queue: str):
    """Remove the queue's keys (and its kombu binding) from Redis once the worker is gone."""
    import redis

    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2, socket_timeout=2)
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    except redis.RedisError:
        pass


@pytest.fixture
def send(worker):
    """Send a task to the worker (eager mode off for this test) and return the value it logged."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False

    def send_and_wait(task) -> str:
        assert task.app is celery_app
        result = task.apply_async(queue=worker.queue)
        return worker.wait_for_task(result.id)

    yield send_and_wait
    celery_app.conf.task_always_eager = before


def poll(condition, timeout: float = TASK_TIMEOUT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.1)


@pytest.fixture
def expired_hold(api):
    """A funded wallet with a 1.0 hold whose entitlement expired a second ago."""
    world = Billing(api.merchant)
    world.calls = world.metric(properties={"unitPrice": "0.1"})
    world.fund("10")
    body = {
        "customerId": str(world.customer.id),
        "entitlementData": [{"billableMetricId": str(world.calls.id), "quantity": 10}],
        "expiresIn": 600,
    }
    response = api.post("/v0/entitlements", body)
    assert response.status_code == 201, response.json()
    world.entitlement = Entitlement.objects.get(pk=response.json()["id"])
    Entitlement.objects.filter(pk=world.entitlement.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert (world.available(), world.held()) == (D("9"), D("1"))
    return world


def status_of(entitlement) -> str:
    return Entitlement.objects.values_list("status", flat=True).get(pk=entitlement.pk)


def test_the_worker_releases_an_expired_hold_back_to_available(send, expired_hold):
    assert celery_app.conf.task_always_eager is False
    value = send(release_expired_entitlements)
    poll(lambda: status_of(expired_hold.entitlement) == "expired", what="entitlement expired")
    assert value == "1"
    assert expired_hold.available() == D("10")
    assert expired_hold.held() == D("0")
    released = Entitlement.objects.get(pk=expired_hold.entitlement.pk)
    assert released.remaining_amount == D("0")
    assert released.release_transaction_id is not None
    assert ledger_check() == []


def test_the_worker_marks_only_expired_pending_sessions_expired(send, merchant):
    customer = make_customer(merchant)
    stale = topup_session_create(merchant=merchant, customer=customer, amount=D("5"), currency="USDC")
    fresh = topup_session_create(merchant=merchant, customer=customer, amount=D("5"), currency="USDC")
    PaymentSession.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    value = send(expire_payment_sessions)

    def status(session):
        return PaymentSession.objects.values_list("status", flat=True).get(pk=session.pk)

    poll(lambda: status(stale) == "expired", what="session expired")
    assert value == "1"
    assert status(fresh) == "pending"


def test_releasing_twice_through_the_worker_changes_nothing_the_second_time(send, expired_hold):
    assert send(release_expired_entitlements) == "1"
    poll(lambda: status_of(expired_hold.entitlement) == "expired", what="entitlement expired")

    def snapshot():
        entitlement = Entitlement.objects.get(pk=expired_hold.entitlement.pk)
        return {
            "available": expired_hold.available(),
            "held": expired_hold.held(),
            "transactions": LedgerTransaction.objects.count(),
            "entries": Entry.objects.count(),
            "entitlement": (
                entitlement.status,
                entitlement.remaining_amount,
                entitlement.released_at,
                entitlement.release_transaction_id,
                entitlement.updated_at,
            ),
        }

    first = snapshot()
    assert (first["available"], first["held"]) == (D("10"), D("0"))

    assert send(release_expired_entitlements) == "0"  # the worker ran it and found nothing due

    assert snapshot() == first
    assert ledger_check() == []
