"""Limits and idempotency under real concurrency, against PostgreSQL with real threads."""

import time
from decimal import Decimal

import pytest

from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check
from apps.usage.models import UsageEvent
from apps.usage.selectors import usage_check
from tests.concurrency import run_at_once
from tests.conftest import Api
from tests.factories import MerchantFactory, issue_key
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db(transaction=True)


def test_50_concurrent_reports_against_a_wallet_covering_20_succeed_20_times():
    merchant = MerchantFactory()
    secret = issue_key(merchant)
    billing = Billing(merchant)
    metric = billing.metric(properties={"unitPrice": "0.05"})
    billing.fund("1")  # exactly 20 x 0.05

    def report(index):
        response = Api(secret, merchant).post("/v0/usage", billing.event(f"evt-{index}", metric))
        return response.status_code, response.json()

    results = run_at_once(50, report)
    statuses = [status for status, _ in results]
    assert statuses.count(201) == 20
    assert statuses.count(402) == 30
    assert {body["code"] for status, body in results if status == 402} == {"INSUFFICIENT_BALANCE"}
    assert billing.available() == Decimal("0")
    assert UsageEvent.objects.count() == 20
    assert billing.revenue() + billing.commission() == Decimal("1")
    assert ledger_check() == []


def test_one_key_sent_20_times_at_once_charges_once():
    merchant = MerchantFactory()
    secret = issue_key(merchant)
    billing = Billing(merchant)
    metric = billing.metric(properties={"unitPrice": "0.05"})
    billing.fund("1")

    def report(index):
        response = Api(secret, merchant).post("/v0/usage", billing.event("the-one-key", metric))
        return response.status_code, response.json()

    results = run_at_once(20, report)
    assert {status for status, _ in results} == {201}
    assert len({body["id"] for _, body in results}) == 1
    assert len({body["settlement"]["balanceAfter"] for _, body in results}) == 1
    assert UsageEvent.objects.count() == 1
    assert LedgerTransaction.objects.filter(kind="usage").count() == 1
    assert billing.available() == Decimal("0.95")
    assert ledger_check() == []


def test_a_negative_minimum_is_never_crossed_under_concurrency():
    merchant = MerchantFactory()
    secret = issue_key(merchant)
    billing = Billing(merchant, minimum="-0.5")
    metric = billing.metric(properties={"unitPrice": "0.1"})

    def report(index):
        return Api(secret, merchant).post("/v0/usage", billing.event(f"credit-{index}", metric)).status_code

    results = run_at_once(12, report)
    assert results.count(201) == 5
    assert billing.available() == Decimal("-0.5")
    assert ledger_check() == []


def test_concurrent_batches_sharing_a_wallet_and_keys_charge_each_key_once_in_one_chain():
    """Batches price and build their rows before the wallet lock: six at once over one wallet
    that covers 60 events, their keys overlapping and in different orders, store each key once,
    every stored row is what its answer said, and the balances after form one unbroken chain."""
    merchant = MerchantFactory()
    secret = issue_key(merchant)
    billing = Billing(merchant)
    metric = billing.metric(properties={"unitPrice": "0.05"})
    billing.fund("3")  # exactly 60 x 0.05; the six batches name 120 keys

    def report(index):
        keys = [f"key-{(index * 20 + j) % 120:03d}" for j in range(40)]
        if index % 2:
            keys.reverse()
        response = Api(secret, merchant).post("/v0/usage/batch", {"events": [billing.event(k, metric) for k in keys]})
        return response.status_code, response.json()

    results = run_at_once(6, report)
    stored = {event.idempotency_key: event for event in UsageEvent.objects.all()}
    assert len(stored) == 60
    for status, body in results:
        assert status in (201, 207), body
        assert {f["error"]["code"] for f in body["failed"]} <= {"INSUFFICIENT_BALANCE"}
        for answer in body["successful"]:
            row = stored[answer["idempotencyKey"]]
            assert answer["id"] == str(row.id)
            assert answer["settlement"]["balanceAfter"] == f"{row.balance_after:.6f}"
            assert answer["billing"]["billingEventId"] == str(row.ledger_transaction_id)
    assert sorted(event.balance_after for event in stored.values()) == [Decimal("0.05") * i for i in range(60)]
    assert billing.available() == Decimal("0")
    assert billing.revenue() + billing.commission() == Decimal("3")
    assert ledger_check() == []
    assert usage_check() == []


def test_one_key_sent_twice_while_the_wallet_covers_it_once_answers_the_one_charge_to_both(settings):
    """Both requests read that the key was not stored, then wait for the wallet's lock; the first
    charges it, the second then finds the balance short. Its answer must be the first one's (a
    replay), not a 402 for a key that was charged (found by the money model under load)."""
    from django.db import connection, transaction

    from apps.ledger.lock_objects import lock_wallet_balances
    from tests.core.test_idempotency_crash import Request

    # (as two web processes: in one process, reports arriving together are charged together)
    settings.USAGE_COMBINE_REPORTS = False
    merchant = MerchantFactory()
    secret = issue_key(merchant)
    billing = Billing(merchant)
    metric = billing.metric(properties={"unitPrice": "0.04"})
    billing.fund("0.07")

    def send():
        return Api(secret, merchant).post("/v0/usage", billing.event("the-one-key", metric))

    def waiting_on_a_lock() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone()[0]

    with transaction.atomic():
        lock_wallet_balances([billing.wallet])
        first, second = Request(send), Request(send)
        deadline = time.monotonic() + 10
        while waiting_on_a_lock() < 2:
            assert time.monotonic() < deadline, "the two requests did not both wait for the wallet"
            time.sleep(0.02)
    answers = [first.result(), second.result()]
    assert [a.status_code for a in answers] == [201, 201], [a.content for a in answers]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert (
        answers[0].json()["settlement"]["balanceAfter"] == answers[1].json()["settlement"]["balanceAfter"] == "0.030000"
    )
    assert UsageEvent.objects.count() == 1
    assert billing.available() == Decimal("0.03")
    assert ledger_check() == []
    assert usage_check() == []
