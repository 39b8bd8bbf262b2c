"""Holds charge what they reserved: an entitlement keeps how it priced its units, usage
consumes them in order, and a refund while the hold is active gives them back to it."""

from decimal import Decimal

import pytest
from django.utils import timezone

from apps.catalog.models import PaymentTerm, Price
from apps.entitlements.models import EntitlementItem
from apps.ledger.selectors import ledger_check
from apps.subscriptions.models import UsageCounter
from apps.subscriptions.periods import period_at
from apps.usage.aggregation import aggregate
from apps.usage.models import UsageLine
from tests.usage.world import Billing

D = Decimal

# 0.01 a unit up to 100 units a period, then 0.001
TWO_TIERS = {"tiers": [{"upTo": "100", "unitPrice": "0.01"}, {"upTo": None, "unitPrice": "0.001"}]}


@pytest.fixture
def billing(api):
    world = Billing(api.merchant)
    world.tokens = world.metric(aggregation="SUM", model="graduated", properties=TWO_TIERS)
    world.fund("10")
    return world


def reserve(api, billing, metric, quantity, price=None, **extra):
    item = {"billableMetricId": str(metric.id), "quantity": quantity}
    if price is not None:
        item["price"] = price
    body = {"customerId": str(billing.customer.id), "entitlementData": [item], **extra}
    response = api.post("/v0/entitlements", body)
    assert response.status_code == 201, response.json()
    return response.json()


def use(api, billing, key, quantity, entitlement=None, metric=None):
    extra = {"entitlementId": entitlement["id"]} if entitlement else {}
    response = api.post("/v0/usage", billing.event(key, metric or billing.tokens, quantity=quantity, **extra))
    assert response.status_code == 201, response.json()
    return response.json()


def charged(body) -> Decimal:
    return D(body["billing"]["price"])


def counter(billing) -> Decimal:
    row = UsageCounter.objects.filter(subscription=billing.subscription, price__billable_metric=billing.tokens).first()
    return row.units if row else D(0)


def entitlement_of(api, entitlement):
    return api.get(f"/v0/entitlements/{entitlement['id']}").json()


def test_a_graduated_hold_reserved_across_two_tiers_charges_exactly_what_it_reserved(api, billing):
    assert charged(use(api, billing, "before", 90)) == D("0.9")
    # 10 units left in the first tier at 0.01, then 10 at 0.001
    hold = reserve(api, billing, billing.tokens, 20)
    assert hold["reservedAmount"] == "0.110000"
    assert (billing.available(), billing.held()) == (D("8.99"), D("0.11"))

    charges = [charged(use(api, billing, f"h{i}", q, hold)) for i, q in enumerate([5, 10, 5])]

    assert charges == [D("0.05"), D("0.055"), D("0.005")]
    assert sum(charges, D(0)) == D("0.11")
    after = entitlement_of(api, hold)
    assert (after["status"], after["remainingBalance"], after["remainingQuantity"]) == ("exhausted", "0.000000", "0")
    assert (billing.available(), billing.held()) == (D("8.99"), D(0))
    assert billing.revenue() + billing.commission() == D("1.01")
    # the hold's units moved the period's running total, as usage without a hold does
    assert counter(billing) == D(110)
    assert charged(use(api, billing, "after", 1)) == D("0.001")
    assert ledger_check() == []


def test_a_hold_charges_what_it_reserved_after_other_usage_moved_the_running_total(api, billing):
    assert charged(use(api, billing, "before", 90)) == D("0.9")
    hold = reserve(api, billing, billing.tokens, 20)
    assert hold["reservedAmount"] == "0.110000"
    # other usage crosses into the second tier meanwhile
    assert charged(use(api, billing, "other", 50)) == D("0.14")
    assert counter(billing) == D(140)

    first = use(api, billing, "h1", 10, hold)
    second = use(api, billing, "h2", 10, hold)

    # the hold's first 10 units were reserved in the first tier: 0.01 each, not 0.001
    assert (charged(first), charged(second)) == (D("0.1"), D("0.01"))
    assert first["billing"]["lines"][0]["unitPrice"] == "0.010000"
    assert counter(billing) == D(160)
    assert billing.held() == D(0)
    assert ledger_check() == []


def test_a_hold_keeps_its_reserved_price_when_the_price_changes(api, billing):
    hold = reserve(api, billing, billing.tokens, 20)
    assert hold["reservedAmount"] == "0.200000"
    # the price has no usage yet, so it can still change
    price = Price.objects.get(billable_metric=billing.tokens)
    assert (
        api.patch(f"/v0/prices/{price.id}", {"properties": {"unitPrice": "1"}, "model": "standard"}).status_code == 200
    )

    assert charged(use(api, billing, "h1", 20, hold)) == D("0.2")
    assert charged(use(api, billing, "plain", 1)) == D("1")


def test_the_reservation_is_kept_on_the_item(api, billing):
    use(api, billing, "before", 30)
    hold = reserve(api, billing, billing.tokens, 20)

    item = EntitlementItem.objects.get(entitlement_id=hold["id"])

    assert (item.pricing_model, item.pricing_properties) == (
        "graduated",
        {
            "tiers": [
                {"upTo": "100", "unitPrice": "0.01", "flatFee": "0"},
                {"upTo": None, "unitPrice": "0.001", "flatFee": "0"},
            ]
        },
    )
    assert (item.free_units, item.units_before, item.reserved_amount) == (D(0), D(30), D("0.2"))


def test_a_hold_at_a_per_unit_price_keeps_a_standard_price_after_the_free_units_left(api):
    billing = Billing(api.merchant)
    calls = billing.metric(properties={"unitPrice": "0.05"}, override=True, free_units="10")
    billing.fund("10")
    assert charged(use(api, billing, "free", 4, metric=calls)) == D(0)
    # 6 free units left: 14 of the 20 reserved units at 0.02
    hold = reserve(api, billing, calls, 20, price="0.02")
    assert hold["reservedAmount"] == "0.280000"
    item = EntitlementItem.objects.get(entitlement_id=hold["id"])
    assert (item.pricing_model, item.pricing_properties) == ("standard", {"unitPrice": "0.02"})
    assert (item.free_units, item.units_before) == (D(10), D(4))

    charges = [charged(use(api, billing, f"c{i}", q, hold, metric=calls)) for i, q in enumerate([6, 4, 10])]

    assert charges == [D(0), D("0.08"), D("0.2")]


def test_a_package_hold_charges_the_packages_its_reservation_started(api):
    billing = Billing(api.merchant)
    calls = billing.metric(model="package", properties={"packageSize": 100, "packagePrice": "1"})
    billing.fund("10")
    assert charged(use(api, billing, "before", 50, metric=calls)) == D(1)
    # 100 units after 50: the second package only
    hold = reserve(api, billing, calls, 100)
    assert hold["reservedAmount"] == "1.000000"

    charges = [charged(use(api, billing, f"p{i}", q, hold, metric=calls)) for i, q in enumerate([50, 1, 49])]

    assert charges == [D(0), D(1), D(0)]
    assert billing.available() == D(8)


def test_a_per_event_price_on_usage_from_a_hold_is_422(api):
    billing = Billing(api.merchant)
    calls = billing.metric(properties={"unitPrice": "0.05"}, override=True)
    billing.fund("10")
    hold = reserve(api, billing, calls, 10)
    body = billing.event(
        "priced",
        calls,
        entitlementId=hold["id"],
        properties=[{"billableMetricId": str(calls.id), "quantity": 1, "price": "0.01"}],
    )

    refused = api.post("/v0/usage", body)

    assert refused.status_code == 422
    assert refused.json()["code"] == "PRICE_OVERRIDE_WITH_ENTITLEMENT"
    assert entitlement_of(api, hold)["remainingQuantity"] == "10"


def test_usage_from_a_hold_may_repeat_the_price_the_hold_reserved_at(api):
    """A merchant that sends the price on both the entitlement and its usage is not refused."""
    billing = Billing(api.merchant)
    calls = billing.metric(properties={"unitPrice": "0.05"}, override=True)
    billing.fund("10")
    hold = reserve(api, billing, calls, 10, price="0.01")
    body = billing.event(
        "priced",
        calls,
        entitlementId=hold["id"],
        properties=[{"billableMetricId": str(calls.id), "quantity": 2, "price": "0.010"}],
    )

    response = api.post("/v0/usage", body)

    assert response.status_code == 201, response.json()
    assert response.json()["billing"]["totalAmount"] == "0.020000"
    assert entitlement_of(api, hold)["remainingQuantity"] == "8"
    other = api.post(
        "/v0/usage",
        {
            **body,
            "idempotencyKey": "other-price",
            "properties": [{"billableMetricId": str(calls.id), "quantity": 1, "price": "0.02"}],
        },
    )
    assert other.status_code == 422
    assert other.json()["code"] == "PRICE_OVERRIDE_WITH_ENTITLEMENT"
    assert "at 0.01 a unit" in other.json()["message"]


def test_usage_from_a_hold_after_a_plan_switch_is_an_instant_line_of_the_reserved_price(api, billing):
    hold = reserve(api, billing, billing.tokens, 20)
    reserved_price = Price.objects.get(billable_metric=billing.tokens)
    arrears = api.post(
        "/v0/prices",
        {
            "billableMetricId": str(billing.tokens.id),
            "paymentTerm": "in_arrears",
            "currency": "USDC",
            "properties": {"unitPrice": "1"},
        },
    ).json()
    assert api.patch(f"/v0/plans/{billing.plan.id}", {"prices": [arrears["id"]]}).status_code == 200

    from_hold = use(api, billing, "held", 5, hold)
    later = use(api, billing, "billed-later", 7)

    assert from_hold["billing"]["lines"][0]["paymentTerm"] == "instant"
    assert charged(from_hold) == D("0.05")
    assert later["billing"]["lines"][0]["paymentTerm"] == "in_arrears"
    line = UsageLine.objects.get(event_id=from_hold["id"])
    assert (line.price_id, line.payment_term) == (reserved_price.id, PaymentTerm.INSTANT)
    start, end = period_at(billing.subscription.started_at, billing.plan.billing_interval, timezone.now())
    # what the in_arrears price invoices leaves out what the hold charged
    arrears_total = aggregate(
        merchant=api.merchant,
        metric=billing.tokens,
        start=start,
        end=end,
        subscription_id=billing.subscription.id,
        price_id=arrears["id"],
        payment_term=PaymentTerm.IN_ARREARS,
    ).total
    assert arrears_total == D(7)


# --- refunds ----------------------------------------------------------------------------------


def test_a_refund_of_usage_from_a_live_hold_goes_back_to_the_hold(api, billing):
    assert charged(use(api, billing, "before", 90)) == D("0.9")
    hold = reserve(api, billing, billing.tokens, 20, expiresIn=600)
    first = use(api, billing, "h1", 5, hold)
    second = use(api, billing, "h2", 10, hold)
    assert (charged(first), charged(second)) == (D("0.05"), D("0.055"))
    assert (billing.available(), billing.held()) == (D("8.99"), D("0.005"))
    assert counter(billing) == D(105)

    refunded = api.patch(f"/v0/usage/{second['id']}", {"refund": True, "reason": "failed call"})

    assert refunded.status_code == 200, refunded.json()
    # back to the hold, not to available
    assert (billing.available(), billing.held()) == (D("8.99"), D("0.06"))
    after = entitlement_of(api, hold)
    assert (after["status"], after["remainingBalance"], after["remainingQuantity"], after["usedCount"]) == (
        "active",
        "0.060000",
        "15",
        1,
    )
    item = after["entitlementData"][0]
    assert (item["remainingQuantity"], item["remainingBalance"]) == ("15", "0.060000")
    assert counter(billing) == D(95)
    assert billing.revenue() + billing.commission() == D("0.95")
    # and used again: the same units, the same charge; the hold used up charged what it reserved
    again = use(api, billing, "h3", 10, hold)
    last = use(api, billing, "h4", 5, hold)
    assert (charged(again), charged(last)) == (D("0.055"), D("0.005"))
    assert charged(first) + charged(again) + charged(last) == D("0.11")
    after = entitlement_of(api, hold)
    assert (after["status"], after["usedCount"]) == ("exhausted", 3)
    assert (billing.available(), billing.held()) == (D("8.99"), D(0))
    assert ledger_check() == []


def test_a_refund_into_a_live_hold_restores_a_use_counted_against_max_uses(api, billing):
    hold = reserve(api, billing, billing.tokens, 20, maxUses=2)
    first = use(api, billing, "u1", 5, hold)
    assert api.patch(f"/v0/usage/{first['id']}", {"refund": True}).status_code == 200
    assert entitlement_of(api, hold)["usedCount"] == 0

    use(api, billing, "u2", 5, hold)
    after = entitlement_of(api, hold)

    assert (after["status"], after["usedCount"], after["remainingQuantity"]) == ("active", 1, "15")


def test_a_refund_of_usage_from_a_released_hold_goes_to_available(api, billing):
    hold = reserve(api, billing, billing.tokens, 20)
    event = use(api, billing, "h1", 5, hold)
    assert api.delete(f"/v0/entitlements/{hold['id']}").json()["status"] == "released"
    assert (billing.available(), billing.held()) == (D("9.95"), D(0))

    assert api.patch(f"/v0/usage/{event['id']}", {"refund": True}).status_code == 200

    assert (billing.available(), billing.held()) == (D(10), D(0))
    after = entitlement_of(api, hold)
    assert (after["status"], after["remainingBalance"], after["usedCount"]) == ("released", "0.000000", 1)
    assert ledger_check() == []


def test_a_refund_of_usage_that_exhausted_its_hold_goes_to_available(api, billing):
    hold = reserve(api, billing, billing.tokens, 20)
    event = use(api, billing, "all", 20, hold)
    assert entitlement_of(api, hold)["status"] == "exhausted"

    assert api.patch(f"/v0/usage/{event['id']}", {"refund": True}).status_code == 200

    assert (billing.available(), billing.held()) == (D(10), D(0))
    assert entitlement_of(api, hold)["remainingQuantity"] == "0"
    assert ledger_check() == []


def test_accepting_a_dispute_of_usage_from_a_live_hold_refunds_it_to_the_hold(api, billing):
    hold = reserve(api, billing, billing.tokens, 20)
    event = use(api, billing, "h1", 5, hold)
    dispute = api.post("/v0/disputes", {"usageEventId": event["id"], "message": "never called"}).json()

    assert api.post(f"/v0/disputes/{dispute['id']}/accept").status_code == 200

    assert (billing.available(), billing.held()) == (D("9.8"), D("0.2"))
    after = entitlement_of(api, hold)
    assert (after["remainingBalance"], after["remainingQuantity"], after["usedCount"]) == ("0.200000", "20", 0)
    assert ledger_check() == []
