"""POST /v0/usage/batch: one ledger transaction per customer, failures by index."""

from decimal import Decimal

import pytest

from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check
from apps.usage.models import UsageEvent, UsageLine
from apps.usage.selectors import usage_check
from tests.usage.world import Billing

D = Decimal


@pytest.fixture
def two(api):
    first = Billing(api.merchant, email="first@example.com")
    metric = first.metric(properties={"unitPrice": "0.5"})
    second = Billing(api.merchant, email="second@example.com")
    second.plan.prices.set(first.plan.prices.all())
    first.fund("10")
    second.fund("1")
    return first, second, metric


def test_all_good_is_201_with_one_ledger_transaction_for_the_batch(api, two):
    first, second, metric = two
    events = [first.event(f"a{i}", metric) for i in range(4)] + [second.event("b0", metric)]
    response = api.post("/v0/usage/batch", {"events": events})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert len(body["successful"]) == 5 and body["failed"] == []
    assert body["summary"] == {"total": 5, "succeeded": 5, "failed": 0, "charged": {"USDC": "2.500000"}}
    txn = LedgerTransaction.objects.get(kind="usage")
    # a debit per wallet, one credit to revenue, one to commission
    assert sorted(e.amount for e in txn.entries.all()) == [D("-2"), D("-0.5"), D("0.125"), D("2.375")]
    assert [e["settlement"]["balanceAfter"] for e in body["successful"][:4]] == [
        "9.500000",
        "9.000000",
        "8.500000",
        "8.000000",
    ]
    for event in UsageEvent.objects.all():
        assert event.commission_amount + event.owner_revenue_amount == event.amount
    assert first.revenue() + first.commission() == D("2.5")
    assert ledger_check() == []
    assert usage_check() == []


def test_bad_events_fail_by_index_and_good_ones_are_charged(api, two):
    first, second, metric = two
    events = [
        first.event("ok-1", metric),
        {"idempotencyKey": "broken", "customerId": "not-a-uuid", "properties": []},
        second.event("poor-1", metric),
        second.event("poor-2", metric),
        second.event("poor-3", metric),  # the wallet covers two
        first.event("ok-2", metric, customerId="00000000-0000-0000-0000-000000000009"),
    ]
    response = api.post("/v0/usage/batch", {"events": events})
    assert response.status_code == 207
    body = response.json()
    failed = {f["index"]: f for f in body["failed"]}
    assert set(failed) == {1, 4, 5}
    assert failed[1]["idempotencyKey"] == "broken"
    assert failed[1]["error"]["status"] == 400
    assert failed[4]["error"]["code"] == "INSUFFICIENT_BALANCE"
    assert failed[5]["error"]["status"] == 404
    assert [e["idempotencyKey"] for e in body["successful"]] == ["ok-1", "poor-1", "poor-2"]
    assert second.available() == D("0")
    assert ledger_check() == []


def test_a_batch_replayed_charges_nothing_more(api, two):
    first, _, metric = two
    events = [first.event(f"r{i}", metric) for i in range(3)]
    one = api.post("/v0/usage/batch", {"events": events}).json()
    two_ = api.post("/v0/usage/batch", {"events": events}).json()
    assert one["successful"] == two_["successful"]
    assert first.available() == D("8.5")


def test_a_key_repeated_inside_a_batch_is_charged_once(api, two):
    first, _, metric = two
    body = api.post("/v0/usage/batch", {"events": [first.event("dup", metric), first.event("dup", metric)]}).json()
    assert len(body["successful"]) == 2
    assert body["successful"][0] == body["successful"][1]
    assert first.available() == D("9.5")
    conflict = api.post(
        "/v0/usage/batch", {"events": [first.event("dup2", metric), first.event("dup2", metric, quantity=2)]}
    ).json()
    assert conflict["failed"][0]["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_more_than_1000_events_is_400(api, two):
    first, _, metric = two
    response = api.post("/v0/usage/batch", {"events": [first.event(f"x{i}", metric) for i in range(1001)]})
    assert response.status_code == 400
    assert "at most 1000" in response.json()["message"]
    assert not UsageEvent.objects.exists()


def test_empty_or_malformed_batch_is_400(api):
    assert api.post("/v0/usage/batch", {"events": []}).status_code == 400
    assert api.post("/v0/usage/batch", {}).status_code == 400
    assert api.post("/v0/usage/batch", {"events": "nope"}).status_code == 400


def test_a_failure_echoing_a_key_json_cannot_render_fast_keeps_the_207(api):
    billing = Billing(api.merchant)
    metric = billing.metric()
    billing.fund("10")
    events = [billing.event("good", metric), {"idempotencyKey": 2**70, "customerId": str(billing.customer.id)}]
    response = api.post("/v0/usage/batch", {"events": events})
    assert response.status_code == 207, response.content
    assert [e["idempotencyKey"] for e in response.json()["successful"]] == ["good"]
    assert response.json()["failed"][0]["index"] == 1


def test_usage_check_reports_rows_whose_unchecked_keys_point_at_nothing(api, two):
    """Events and lines keep no database keys to their parents (hot-path inserts): the check
    finds a line without its event and an event whose lines do not sum to its amount."""
    import uuid

    from django.db import connection

    first, _, metric = two
    assert api.post("/v0/usage/batch", {"events": [first.event("a", metric)]}).status_code == 201
    assert usage_check() == []
    line = UsageLine.objects.get()
    ghost = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE usage_usageline SET event_id = %s WHERE id = %s", [ghost, line.id])
    problems = usage_check()
    event = UsageEvent.objects.get()
    assert f"usage.UsageLine {line.id}: event {ghost} does not exist" in problems
    assert f"usage event {event.id}: amount 0.500000000000, but its lines sum to 0" in problems
    # limited to recent rows, and as a command that fails
    from datetime import timedelta

    from django.core.management import CommandError, call_command
    from django.utils import timezone

    assert usage_check(since=timezone.now() + timedelta(seconds=1)) == []
    assert len(usage_check(since=timezone.now() - timedelta(days=1))) == 2
    with pytest.raises(CommandError, match="usage_check: 2 problem"):
        call_command("usage_check", "--days", "1")
