"""The crash window of an Idempotency-Key, for real: the database backend running the
service's transaction is terminated after the claim committed (as when the serving process
dies, or its connection drops). The retry runs the service once, a concurrent duplicate
during the retry gets 409 IDEMPOTENCY_KEY_IN_USE, and once the retry committed every
request gets its one answer."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction

from apps.core.models import IdempotencyRecord
from apps.ledger.lock_objects import lock_wallet_balances
from apps.ledger.selectors import ledger_check, wallet_balances
from apps.ledger.services import wallet_get_or_create
from tests.conftest import Api
from tests.factories import issue_key, make_customer

pytestmark = pytest.mark.django_db(transaction=True)


class Request(threading.Thread):
    """One request sent from its own thread (its own database connection)."""

    def __init__(self, send):
        super().__init__(daemon=True)
        self.send = send
        self.response = None
        self.start()

    def run(self):
        try:
            self.response = self.send()
        finally:
            connection.close()

    def result(self):
        self.join(timeout=30)
        assert not self.is_alive(), "the request did not finish"
        return self.response


def backend_waiting_on_a_lock(timeout=10.0) -> int:
    """The pid of the one other backend of this database that waits on a row lock."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # (pg_stat_activity is read once per transaction unless its snapshot is dropped)
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            rows = cursor.fetchall()
            if rows:
                assert len(rows) == 1, rows
                return rows[0][0]
            time.sleep(0.02)
    raise AssertionError("no request came to wait on the wallet's lock")


@pytest.fixture
def world(merchant):
    customer = make_customer(merchant)
    wallet = wallet_get_or_create(merchant=merchant, customer=customer, currency="USDC")
    secret = issue_key(merchant)
    body = {"amount": "5", "currency": "USDC", "reason": "goodwill"}
    url = f"/v0/customers/{customer.id}/adjustments"

    def send():
        return Api(secret, merchant).post(url, body, HTTP_IDEMPOTENCY_KEY="crash-1")

    return wallet, send


def test_retry_after_the_backend_died_runs_the_service_once(world):
    wallet, send = world

    # 1. The service's transaction is killed while it waits for the wallet (held here).
    with transaction.atomic():
        lock_wallet_balances([wallet])
        first = Request(send)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend_waiting_on_a_lock()])
    response = first.result()
    # (the database failed the request: 503 with Retry-After, and nothing of it was written)
    assert (response.status_code, response.json()["code"]) == (503, "DATABASE_UNAVAILABLE")
    claim = IdempotencyRecord.objects.get()
    assert claim.status == IdempotencyRecord.Status.IN_PROGRESS  # no answer: nothing committed
    assert wallet_balances(wallet=wallet).available == Decimal("0")

    # 2. The retry takes the claim over at once; a duplicate while it runs is refused.
    with transaction.atomic():
        lock_wallet_balances([wallet])
        retry = Request(send)
        backend_waiting_on_a_lock()
        duplicate = send()
        assert duplicate.status_code == 409
        assert duplicate.json()["code"] == "IDEMPOTENCY_KEY_IN_USE"
    answered = retry.result()
    assert answered.status_code == 201, answered.content

    # 3. Once committed, the one answer, whoever asks.
    for _ in range(2):
        again = send()
        assert again.status_code == 201
        assert again.json() == answered.json()
        assert again["Idempotent-Replayed"] == "true"
    assert wallet_balances(wallet=wallet).available == Decimal("5")
    assert wallet.adjustments.count() == 1
    assert ledger_check() == []


def test_a_request_that_lost_the_race_to_a_takeover_returns_its_answer(world):
    """Two requests of one key both find the claim unlocked: the one that locks it second
    waits, re-reads it, and returns the first one's answer without running the service."""
    wallet, send = world
    with transaction.atomic():
        lock_wallet_balances([wallet])
        requests = [Request(send) for _ in range(4)]
        time.sleep(0.3)  # let every request reach the claim or the lock
    responses = [r.result() for r in requests]
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}
    assert len({r.content for r in responses if r.status_code == 201}) == 1
    assert wallet_balances(wallet=wallet).available == Decimal("5")
    assert wallet.adjustments.count() == 1
