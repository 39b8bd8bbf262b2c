"""POST /v0/usage: pricing, the split, idempotency, limits and validation."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check
from apps.merchants.services import merchant_update
from apps.subscriptions.services import subscription_create
from apps.usage.models import UsageEvent, UsageLine
from tests.factories import make_plan
from tests.usage.world import Billing

D = Decimal


@pytest.fixture
def billing(api):
    return Billing(api.merchant)


def test_an_instant_charge_debits_the_wallet_and_splits_revenue(api, billing):
    metric = billing.metric(properties={"unitPrice": "0.25"})
    billing.fund("10")
    response = api.post("/v0/usage", billing.event("evt-1", metric, quantity=3))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["object"] == "usageEvent"
    assert body["livemode"] is True
    assert body["subscriptionId"] == str(billing.subscription.id)
    assert body["consumerId"] == str(billing.customer.id)
    assert body["billing"]["price"] == body["billing"]["totalAmount"] == "0.750000"
    assert body["billing"]["currency"] == "USDC"
    assert body["billing"]["lines"] == [
        {
            "billableMetricId": str(metric.id),
            "priceId": str(billing.plan.prices.get().id),
            "quantity": "3",
            "unitPrice": "0.250000",
            "amount": "0.750000",
            "paymentTerm": "instant",
        }
    ]
    assert body["billing"]["billingEventId"]
    assert body["billing"]["invoiceId"] is None
    assert body["settlement"] == {
        "priceAmount": "0.750000",
        "commissionAmount": "0.037500",
        "ownerRevenueAmount": "0.712500",
        "balanceAfter": "9.250000",
    }
    assert billing.available() == D("9.25")
    assert billing.revenue() == D("0.7125")
    assert billing.commission() == D("0.0375")
    assert ledger_check() == []


def test_split_is_exact_for_awkward_prices(api, billing):
    merchant_update(merchant=api.merchant, commission_rate=D("0.07"))
    api.merchant.refresh_from_db()
    tiny = billing.metric(properties={"unitPrice": "0.0000015"})
    huge = billing.metric(aggregation="SUM", properties={"unitPrice": "123456789012.123456789012"})
    billing.fund("1000000000000")
    first = api.post("/v0/usage", billing.event("tiny", tiny, quantity=7)).json()
    # 7 x 0.0000015 = 0.0000105; 7% = 0.000000735
    assert first["settlement"]["priceAmount"] == "0.0000105"
    assert first["settlement"]["commissionAmount"] == "0.000000735"
    assert first["settlement"]["ownerRevenueAmount"] == "0.000009765"
    second = api.post("/v0/usage", billing.event("huge", huge, quantity="3")).json()
    price = D("370370367036.370370367036")
    commission = (price * D("0.07")).quantize(D("1e-12"))
    assert D(second["settlement"]["priceAmount"]) == price
    assert D(second["settlement"]["commissionAmount"]) == commission
    assert D(second["settlement"]["ownerRevenueAmount"]) == price - commission
    for event in UsageEvent.objects.all():
        assert event.commission_amount + event.owner_revenue_amount == event.amount
    assert billing.revenue() + billing.commission() == D("0.0000105") + price
    assert ledger_check() == []


def test_replay_returns_the_first_response_and_moves_nothing(api, billing):
    metric = billing.metric()
    billing.fund("1")
    first = api.post("/v0/usage", billing.event("same-key", metric))
    second = api.post("/v0/usage", billing.event("same-key", metric))
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert billing.available() == D("0.999")
    assert LedgerTransaction.objects.filter(kind="usage").count() == 1


def test_same_key_with_another_body_is_409(api, billing):
    metric = billing.metric()
    billing.fund("1")
    api.post("/v0/usage", billing.event("k", metric, quantity=1))
    response = api.post("/v0/usage", billing.event("k", metric, quantity=2))
    assert response.status_code == 409
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_insufficient_balance_is_402_writes_nothing_and_can_be_retried(api, billing):
    metric = billing.metric(properties={"unitPrice": "1"})
    billing.fund("1.5")
    refused = api.post("/v0/usage", billing.event("big", metric, quantity=2))
    assert refused.status_code == 402
    body = refused.json()
    assert body["code"] == "INSUFFICIENT_BALANCE"
    assert body["details"]["available"] == "1.500000"
    assert not UsageEvent.objects.exists()
    assert billing.available() == D("1.5")
    billing.fund("1")
    retried = api.post("/v0/usage", billing.event("big", metric, quantity=2))
    assert retried.status_code == 201
    assert billing.available() == D("0.5")


def test_minimum_account_balance_holds_and_may_give_credit(api):
    credit = Billing(api.merchant, minimum=D("-5"))
    metric = credit.metric(properties={"unitPrice": "1"})
    assert api.post("/v0/usage", credit.event("c1", metric, quantity=5)).status_code == 201
    assert credit.available() == D("-5")
    assert api.post("/v0/usage", credit.event("c2", metric, quantity=1)).status_code == 402


def test_the_highest_minimum_of_subscriptions_sharing_a_wallet_holds(api, billing):
    metric = billing.metric(properties={"unitPrice": "1"})
    other_plan = make_plan(api.merchant, code="other")
    subscription_create(
        merchant=api.merchant, customer=billing.customer, plan=other_plan, minimum_account_balance=D("3")
    )
    billing.fund("5")
    assert api.post("/v0/usage", billing.event("a", metric, quantity=2)).status_code == 201
    assert api.post("/v0/usage", billing.event("b", metric, quantity=1)).status_code == 402


def test_several_properties_are_one_ledger_transaction_with_a_line_each(api, billing):
    calls = billing.metric(properties={"unitPrice": "0.01"})
    tokens = billing.metric(aggregation="SUM", properties={"unitPrice": "0.0001"})
    billing.fund("10")
    body = api.post(
        "/v0/usage",
        {
            "idempotencyKey": "multi",
            "customerId": str(billing.customer.id),
            "properties": [
                {"billableMetricId": str(calls.id), "quantity": 1},
                {"billableMetricId": str(tokens.id), "quantity": 1500},
            ],
        },
    ).json()
    assert [line["amount"] for line in body["billing"]["lines"]] == ["0.010000", "0.150000"]
    assert body["billing"]["price"] == "0.160000"
    txn = LedgerTransaction.objects.get(kind="usage")
    assert txn.entries.count() == 3


def test_in_arrears_usage_is_stored_and_moves_no_money(api, billing):
    metric = billing.metric(aggregation="MAX", term="in_arrears")
    body = api.post("/v0/usage", billing.event("arrears", metric, quantity=4)).json()
    assert body["billing"]["price"] == "0.000000"
    assert body["billing"]["billingEventId"] is None
    assert body["billing"]["lines"][0]["amount"] is None
    assert body["billing"]["lines"][0]["paymentTerm"] == "in_arrears"
    assert not LedgerTransaction.objects.filter(kind="usage").exists()
    assert UsageEvent.objects.count() == 1


def test_instant_graduated_price_uses_the_periods_running_total(api, billing):
    metric = billing.metric(
        model="graduated",
        properties={"tiers": [{"upTo": "10", "unitPrice": "1"}, {"upTo": None, "unitPrice": "0.5"}]},
    )
    billing.fund("100")
    amounts = [
        api.post("/v0/usage", billing.event(f"g{i}", metric, quantity=q)).json()["billing"]["price"]
        for i, q in enumerate([6, 6, 2])
    ]
    # 6 at 1; then 4 at 1 + 2 at 0.5; then 2 at 0.5
    assert amounts == ["6.000000", "5.000000", "1.000000"]


def test_instant_package_price_counts_packages_over_the_periods_running_total(api, billing):
    metric = billing.metric(model="package", properties={"packageSize": 100, "packagePrice": "1"})
    billing.fund("10")
    batch = api.post("/v0/usage/batch", {"events": [billing.event(f"p{i}", metric) for i in range(100)]})
    assert batch.status_code == 201, batch.json()
    # 100 one-unit events on "100 units for 1.00" cost 1.00 in all: the first starts the package
    amounts = [Decimal(event["billing"]["price"]) for event in batch.json()["successful"]]
    assert sum(amounts, Decimal(0)) == Decimal("1")
    assert billing.available() == Decimal("9")
    next_package = api.post("/v0/usage", billing.event("p100", metric)).json()
    assert next_package["billing"]["price"] == "1.000000"
    assert api.post("/v0/usage", billing.event("p101", metric, quantity=99)).json()["billing"]["price"] == "0.000000"
    assert billing.available() == Decimal("8")
    assert ledger_check() == []


def test_a_refund_takes_a_package_events_units_out_of_the_running_total(api, billing):
    metric = billing.metric(model="package", properties={"packageSize": 10, "packagePrice": "1"})
    billing.fund("10")
    assert api.post("/v0/usage", billing.event("a", metric, quantity=10)).json()["billing"]["price"] == "1.000000"
    second = api.post("/v0/usage", billing.event("b", metric, quantity=2)).json()
    assert second["billing"]["price"] == "1.000000"
    assert api.patch(f"/v0/usage/{second['id']}", {"refund": True}).status_code == 200
    # as if "b" had not happened: 10 units counted, so the next unit starts the second package again
    assert api.post("/v0/usage", billing.event("c", metric, quantity=1)).json()["billing"]["price"] == "1.000000"
    assert api.post("/v0/usage", billing.event("d", metric, quantity=9)).json()["billing"]["price"] == "0.000000"
    assert billing.available() == Decimal("8")
    assert ledger_check() == []


def test_free_units_are_per_period(api, billing):
    metric = billing.metric(properties={"unitPrice": "1"}, free_units="3")
    billing.fund("100")
    amounts = [
        api.post("/v0/usage", billing.event(f"f{i}", metric, quantity=2)).json()["billing"]["price"] for i in range(3)
    ]
    assert amounts == ["0.000000", "1.000000", "2.000000"]


def test_price_override_only_where_the_price_allows_it(api, billing):
    fixed = billing.metric(properties={"unitPrice": "1"})
    flexible = billing.metric(properties={"unitPrice": "1"}, override=True)
    billing.fund("100")
    refused = api.post(
        "/v0/usage",
        {
            **billing.event("o1", fixed),
            "properties": [{"billableMetricId": str(fixed.id), "quantity": 2, "price": "0.3"}],
        },
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "PRICE_OVERRIDE_NOT_ALLOWED"
    allowed = api.post(
        "/v0/usage",
        {
            **billing.event("o2", flexible),
            "properties": [{"billableMetricId": str(flexible.id), "quantity": 2, "price": "0.3"}],
        },
    )
    assert allowed.json()["billing"]["price"] == "0.600000"


@pytest.mark.parametrize(
    "change, field, code",
    [
        ({"properties": [{"quantity": 1}]}, "properties[0].billableMetricId", "REQUIRED"),
        ({"quantity": -1}, "properties[0].quantity", "NEGATIVE_QUANTITY"),
        ({"quantity": "lots"}, "properties[0].quantity", "INVALID_QUANTITY"),
        ({"quantity": True}, "properties[0].quantity", "INVALID_QUANTITY"),
        ({"idempotencyKey": ""}, "idempotencyKey", "REQUIRED"),
        ({"customerId": "nope"}, "customerId", "INVALID_ID"),
        ({"timestamp": "yesterday"}, "timestamp", "INVALID_TIMESTAMP"),
        ({"properties": []}, "properties", "REQUIRED"),
        ({"surprise": 1}, "surprise", "UNKNOWN_FIELD"),
    ],
)
def test_malformed_events_are_400_naming_the_field(api, billing, change, field, code):
    metric = billing.metric()
    body = billing.event("bad", metric)
    if "quantity" in change:
        body["properties"][0]["quantity"] = change["quantity"]
    else:
        body.update(change)
    response = api.post("/v0/usage", body)
    assert response.status_code == 400, response.json()
    error = response.json()["errors"][0]
    assert (error["field"], error["code"]) == (field, code)


def test_timestamp_more_than_5_minutes_ahead_is_400(api, billing):
    metric = billing.metric()
    ahead = (timezone.now() + timedelta(minutes=6)).isoformat()
    response = api.post("/v0/usage", billing.event("future", metric, timestamp=ahead))
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "TIMESTAMP_IN_FUTURE"


def test_timestamp_outside_the_open_period_is_422_naming_the_window(api, billing):
    metric = billing.metric()
    billing.fund("1")
    old = (billing.subscription.started_at - timedelta(days=1)).isoformat()
    response = api.post("/v0/usage", billing.event("old", metric, timestamp=old))
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "USAGE_OUTSIDE_OPEN_PERIOD"
    assert body["details"]["windowStart"] in body["message"]


def test_late_usage_for_the_previous_period_within_the_grace_window(api, time_machine):
    time_machine.move_to(datetime(2026, 1, 1, tzinfo=UTC), tick=False)
    billing = Billing(api.merchant)
    metric = billing.metric()
    billing.fund("1")
    time_machine.move_to(datetime(2026, 2, 1, 0, 30, tzinfo=UTC), tick=False)
    late = api.post("/v0/usage", billing.event("late", metric, timestamp="2026-01-31T23:59:00Z"))
    assert late.status_code == 201
    time_machine.move_to(datetime(2026, 2, 1, 1, 30, tzinfo=UTC), tick=False)
    too_late = api.post("/v0/usage", billing.event("too-late", metric, timestamp="2026-01-31T23:59:30Z"))
    assert too_late.status_code == 422


def test_unknown_customer_or_metric_is_404_naming_it(api, billing, other_api):
    metric = billing.metric()
    unknown = api.post(
        "/v0/usage", {**billing.event("u1", metric), "customerId": "00000000-0000-0000-0000-000000000001"}
    )
    assert unknown.status_code == 404
    assert "00000000-0000-0000-0000-000000000001" in unknown.json()["message"]
    foreign_metric = Billing(other_api.merchant).metric()
    response = api.post("/v0/usage", billing.event("u2", foreign_metric))
    assert response.status_code == 404
    assert str(foreign_metric.id) in response.json()["message"]


def test_no_active_subscription_is_409(api, billing):
    metric = billing.metric()
    billing.subscription.status = "terminated"
    billing.subscription.save()
    response = api.post("/v0/usage", billing.event("none", metric))
    assert response.status_code == 409
    assert response.json()["code"] == "NO_ACTIVE_SUBSCRIPTION"


def test_several_subscriptions_pricing_the_metric_is_409_unless_one_is_named(api, billing):
    metric = billing.metric()
    billing.fund("1")
    second_plan = make_plan(api.merchant, code="second")
    second_plan.prices.set(billing.plan.prices.all())
    second = subscription_create(merchant=api.merchant, customer=billing.customer, plan=second_plan)
    response = api.post("/v0/usage", billing.event("amb", metric))
    assert response.status_code == 409
    assert response.json()["code"] == "AMBIGUOUS_SUBSCRIPTION"
    named = api.post("/v0/usage", billing.event("named", metric, subscriptionId=str(second.id)))
    assert named.status_code == 201
    assert named.json()["subscriptionId"] == str(second.id)


def test_a_metric_the_plan_does_not_price_is_422(api, billing):
    billing.metric()
    unpriced = Billing(api.merchant, email="other@example.com").metric()
    response = api.post("/v0/usage", billing.event("unpriced", unpriced))
    assert response.status_code == 422
    assert response.json()["code"] == "METRIC_NOT_PRICED"


def test_merchant_id_mismatch_is_403(api, billing, other_api):
    metric = billing.metric()
    response = api.post("/v0/usage", billing.event("m", metric, merchantId=str(other_api.merchant.id)))
    assert response.status_code == 403


def test_sandbox_and_live_are_apart(api, test_api, billing):
    metric = billing.metric()
    response = test_api.post("/v0/usage", billing.event("mode", metric))
    assert response.status_code == 404


def test_list_get_and_filters(api, billing, other_api):
    metric = billing.metric()
    billing.fund("1")
    created = api.post("/v0/usage", billing.event("l1", metric)).json()
    api.post("/v0/usage", billing.event("l2", metric))
    listed = api.get("/v0/usage", {"customerId": str(billing.customer.id), "billableMetricId": str(metric.id)}).json()
    assert listed["pagination"]["total"] == 2
    assert api.get("/v0/usage", {"from": "2999-01-01T00:00:00Z"}).json()["data"] == []
    assert api.get("/v0/usage", {"from": "nonsense"}).status_code == 400
    one = api.get(f"/v0/usage/{created['id']}").json()
    assert one["billing"] == created["billing"]
    assert one["refunded"] is False
    assert other_api.get(f"/v0/usage/{created['id']}").status_code == 404


def test_the_hot_path_keeps_the_api_rules(api, billing, client, time_machine):
    from apps.core.process_cache import clear_process_caches
    from apps.merchants.models import ApiKey

    metric = billing.metric()
    billing.fund("1")
    missing = client.post("/v0/usage", data="{}", content_type="application/json")
    assert missing.status_code == 401
    assert missing.json()["code"] == "MISSING_API_KEY"
    malformed = api.client.post("/v0/usage", data="{nope", content_type="application/json")
    assert malformed.status_code == 400
    assert malformed.json()["code"] == "MALFORMED_JSON"
    ApiKey.objects.filter(merchant=api.merchant).update(rate_limit=1)
    clear_process_caches()
    second_start = (timezone.now() + timedelta(seconds=2)).replace(microsecond=100_000)
    time_machine.move_to(second_start, tick=False)
    assert api.post("/v0/usage", billing.event("rl-1", metric)).status_code == 201
    limited = api.post("/v0/usage", billing.event("rl-2", metric))
    assert limited.status_code == 429
    assert limited["Retry-After"] == "1"
    assert limited.json()["code"] == "RATE_LIMITED"


def test_a_price_change_applies_to_the_next_event_at_once(api, billing):
    metric = billing.metric(properties={"unitPrice": "1"})
    billing.fund("100")
    assert api.post("/v0/usage", billing.event("before", metric)).json()["billing"]["price"] == "1.000000"
    price = billing.plan.prices.get()
    # a price that has priced usage keeps its terms; what stays editable applies at once
    assert api.patch(f"/v0/prices/{price.id}", {"properties": {"unitPrice": "2"}}).status_code == 409
    assert api.patch(f"/v0/prices/{price.id}", {"allowPriceOverride": True}).status_code == 200
    overridden = billing.event(
        "override", metric, properties=[{"billableMetricId": str(metric.id), "quantity": 1, "price": "3"}]
    )
    assert api.post("/v0/usage", overridden).json()["billing"]["price"] == "3.000000"
    # a new price, and the plan switched to it
    new = api.post(
        "/v0/prices",
        {
            "billableMetricId": str(metric.id),
            "paymentTerm": "instant",
            "currency": "USDC",
            "properties": {"unitPrice": "2"},
        },
    ).json()
    assert api.patch(f"/v0/plans/{billing.plan.id}", {"prices": [new["id"]]}).status_code == 200
    assert api.post("/v0/usage", billing.event("after", metric)).json()["billing"]["price"] == "2.000000"
    api.delete(f"/v0/prices/{new['id']}")
    # an archived price still bills the plans that hold it
    assert api.post("/v0/usage", billing.event("archived", metric)).json()["billing"]["price"] == "2.000000"


@pytest.mark.parametrize(
    "raw",
    [
        '{"idempotencyKey": "x", "customerId": "00000000-0000-0000-0000-000000000001", "properties": [], "metadata": {"a": NaN}}',
        '{"idempotencyKey": "x", "customerId": "00000000-0000-0000-0000-000000000001", "properties": [], "metadata": {"a": 1e999}}',
        '{"idempotencyKey": "x\\u0000y", "customerId": "00000000-0000-0000-0000-000000000001", "properties": []}',
        '{"idempotencyKey": "\\ud800", "customerId": "00000000-0000-0000-0000-000000000001", "properties": []}',
    ],
)
def test_json_postgres_cannot_store_is_400(api, raw):
    response = api.client.post("/v0/usage", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "MALFORMED_JSON"


def test_impossible_timestamp_and_huge_price_are_400(api, billing):
    metric = billing.metric(override=True)
    bad_date = api.post("/v0/usage", billing.event("d", metric, timestamp="2026-13-01T00:00:00Z"))
    assert bad_date.status_code == 400
    body = billing.event("p", metric)
    body["properties"][0]["price"] = "1E+30"
    assert api.post("/v0/usage", body).status_code == 400
    assert api.get("/v0/usage", {"from": "2026-13-01T00:00:00Z"}).status_code == 400


def test_an_override_on_an_in_arrears_price_is_422(api, billing):
    metric = billing.metric(aggregation="MAX", term="in_arrears", override=True)
    body = billing.event("arrears-override", metric)
    body["properties"][0]["price"] = "0.5"
    response = api.post("/v0/usage", body)
    assert response.status_code == 422
    assert response.json()["code"] == "PRICE_OVERRIDE_NOT_INSTANT"


def test_a_free_event_passes_even_below_the_minimum(api):
    strict = Billing(api.merchant, minimum="5")
    metric = strict.metric(properties={"unitPrice": "1"}, free_units="10")
    assert api.post("/v0/usage", strict.event("free", metric, quantity=3)).status_code == 201


def test_a_replay_equals_the_first_response_for_a_percentage_price(api, billing):
    metric = billing.metric(aggregation="SUM", model="percentage", properties={"percentage": "0.123456789012"})
    billing.fund("100")
    first = api.post("/v0/usage", billing.event("pct", metric, quantity="7.5")).json()
    assert api.post("/v0/usage", billing.event("pct", metric, quantity="7.5")).json() == first


def test_an_event_whose_metadata_json_cannot_render_fast_is_answered_and_replayed(api):
    """Integers beyond 64 bits are valid JSON; the answer to a committed charge renders them."""
    billing = Billing(api.merchant)
    metric = billing.metric()
    billing.fund("10")
    body = billing.event("huge-int", metric, metadata={"n": 2**70})
    first = api.post("/v0/usage", body)
    assert first.status_code == 201, first.content
    assert first.json()["metadata"] == {"n": 2**70}
    again = api.post("/v0/usage", body)
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]


def test_a_quantity_sent_as_a_json_number_keeps_every_digit(api, billing):
    """A float cannot hold 1234567890.123456789; the quantity is read from the digits as
    written, and the body's other numbers (metadata) still answer as numbers."""
    metric = billing.metric(properties={"unitPrice": "0.000001"})
    billing.fund("10000")
    body = billing.event("exact", metric, quantity=0, metadata={"ratio": 0.25})
    raw = json.dumps(body).replace('"quantity": 0', '"quantity": 1234567890.123456789')
    response = api.client.post("/v0/usage", data=raw, content_type="application/json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["billing"]["lines"][0]["quantity"] == "1234567890.123456789"
    assert data["billing"]["price"] == "1234.567890123457"  # (a charge keeps 12 places, half-even)
    assert data["metadata"] == {"ratio": 0.25}
    assert UsageLine.objects.get().quantity == Decimal("1234567890.123456789")
