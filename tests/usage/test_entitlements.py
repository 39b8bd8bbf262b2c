"""Entitlements: reserve, partial use, release, expiry, maxUses, exhaustion."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.entitlements.models import Entitlement
from apps.entitlements.services import entitlement_release_expired
from apps.ledger.selectors import ledger_check
from tests.usage.world import Billing

D = Decimal


@pytest.fixture
def billing(api):
    world = Billing(api.merchant)
    world.calls = world.metric(properties={"unitPrice": "0.1"})
    world.fund("10")
    return world


def reserve(api, billing, quantity=10, **extra):
    body = {
        "customerId": str(billing.customer.id),
        "entitlementData": [{"billableMetricId": str(billing.calls.id), "quantity": quantity}],
        **extra,
    }
    return api.post("/v0/entitlements", body)


def use(api, billing, entitlement_id, key, quantity=1):
    return api.post("/v0/usage", billing.event(key, billing.calls, quantity=quantity, entitlementId=entitlement_id))


def test_reserve_moves_the_priced_amount_to_held(api, billing):
    response = reserve(api, billing, quantity=10, maxUses=5, expiresIn=600)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["object"] == "entitlement"
    assert body["status"] == "active"
    assert body["reservedAmount"] == "1.000000"
    assert body["remainingBalance"] == "1.000000"
    assert body["remainingQuantity"] == "10"
    assert body["usedCount"] == 0
    assert body["maxUses"] == 5
    assert billing.available() == D("9")
    assert billing.held() == D("1")
    assert ledger_check() == []


def test_usage_naming_the_entitlement_is_charged_from_the_hold(api, billing):
    entitlement = reserve(api, billing, quantity=10).json()
    response = use(api, billing, entitlement["id"], "e1", quantity=3)
    assert response.status_code == 201, response.json()
    assert response.json()["entitlementId"] == entitlement["id"]
    assert response.json()["settlement"]["balanceAfter"] == "9.000000"  # available untouched
    assert billing.held() == D("0.7")
    after = api.get(f"/v0/entitlements/{entitlement['id']}").json()
    assert after["remainingBalance"] == "0.700000"
    assert after["remainingQuantity"] == "7"
    assert after["usedCount"] == 1
    assert billing.revenue() + billing.commission() == D("0.3")
    assert ledger_check() == []


def test_beyond_the_reserved_quantity_is_402_exhausted(api, billing):
    entitlement = reserve(api, billing, quantity=2).json()
    refused = use(api, billing, entitlement["id"], "too-many", quantity=3)
    assert refused.status_code == 402
    assert refused.json()["code"] == "ENTITLEMENT_EXHAUSTED"
    assert billing.held() == D("0.2")


def test_max_uses_exhausts_it_and_releases_what_is_left(api, billing):
    entitlement = reserve(api, billing, quantity=10, maxUses=2).json()
    assert use(api, billing, entitlement["id"], "u1").status_code == 201
    assert use(api, billing, entitlement["id"], "u2").status_code == 201
    after = api.get(f"/v0/entitlements/{entitlement['id']}").json()
    assert after["status"] == "exhausted"
    assert after["remainingBalance"] == "0.000000"
    assert billing.held() == D("0")
    assert billing.available() == D("9.8")
    third = use(api, billing, entitlement["id"], "u3")
    assert third.status_code == 402
    assert third.json()["code"] == "ENTITLEMENT_EXHAUSTED"
    assert ledger_check() == []


def test_using_every_unit_exhausts_it(api, billing):
    entitlement = reserve(api, billing, quantity=2).json()
    use(api, billing, entitlement["id"], "all", quantity=2)
    assert api.get(f"/v0/entitlements/{entitlement['id']}").json()["status"] == "exhausted"


def test_delete_releases_what_is_left_once(api, billing):
    entitlement = reserve(api, billing, quantity=10).json()
    use(api, billing, entitlement["id"], "part", quantity=4)
    released = api.delete(f"/v0/entitlements/{entitlement['id']}")
    assert released.status_code == 200
    assert released.json()["status"] == "released"
    assert billing.held() == D("0")
    assert billing.available() == D("9.6")
    again = api.delete(f"/v0/entitlements/{entitlement['id']}")
    assert again.status_code == 200
    assert billing.available() == D("9.6")
    assert use(api, billing, entitlement["id"], "after-release").status_code == 402
    assert ledger_check() == []


def test_expired_holds_are_released_by_the_task(api, billing):
    entitlement = reserve(api, billing, quantity=10).json()
    Entitlement.objects.filter(pk=entitlement["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert use(api, billing, entitlement["id"], "expired").status_code == 402
    assert entitlement_release_expired() == 1
    assert entitlement_release_expired() == 0
    assert api.get(f"/v0/entitlements/{entitlement['id']}").json()["status"] == "expired"
    assert billing.available() == D("10")
    assert ledger_check() == []


def test_reserving_more_than_the_balance_is_402_and_writes_nothing(api, billing):
    response = reserve(api, billing, quantity=101)
    assert response.status_code == 402
    assert response.json()["code"] == "INSUFFICIENT_BALANCE"
    assert not Entitlement.objects.exists()
    assert billing.available() == D("10")


def test_active_entitlements_lists_only_active_ones(api, billing, other_api):
    first = reserve(api, billing, quantity=1).json()
    second = reserve(api, billing, quantity=1).json()
    api.delete(f"/v0/entitlements/{first['id']}")
    listed = api.get("/v0/entitlements/activeEntitlements", {"customerId": str(billing.customer.id)}).json()
    assert [e["id"] for e in listed["data"]] == [second["id"]]
    assert api.get("/v0/entitlements/activeEntitlements").status_code == 400
    assert other_api.get(f"/v0/entitlements/{second['id']}").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({"entitlementData": []}, "entitlementData"),
        ({"entitlementData": [{"billableMetricId": "x", "quantity": 1}]}, "entitlementData[0].billableMetricId"),
        ({"maxUses": 0}, "maxUses"),
        ({"expiresIn": 0}, "expiresIn"),
    ],
)
def test_bad_entitlement_requests_are_400(api, billing, body, field):
    payload = {
        "customerId": str(billing.customer.id),
        "entitlementData": [{"billableMetricId": str(billing.calls.id), "quantity": 1}],
        **body,
    }
    response = api.post("/v0/entitlements", payload)
    assert response.status_code == 400
    assert field in [e["field"] for e in response.json()["errors"]]


def test_an_in_arrears_metric_cannot_be_reserved(api, billing):
    arrears = billing.metric(aggregation="MAX", term="in_arrears")
    response = api.post(
        "/v0/entitlements",
        {
            "customerId": str(billing.customer.id),
            "entitlementData": [{"billableMetricId": str(arrears.id), "quantity": 1}],
        },
    )
    assert response.status_code == 422
    assert response.json()["code"] == "PRICE_NOT_INSTANT"


def test_usage_from_a_hold_is_charged_at_the_reserved_price(api):
    billing = Billing(api.merchant)
    metric = billing.metric(properties={"unitPrice": "0.05"}, override=True)
    billing.fund("10")
    body = {
        "customerId": str(billing.customer.id),
        "entitlementData": [{"billableMetricId": str(metric.id), "quantity": 100, "price": "0.01"}],
    }
    entitlement = api.post("/v0/entitlements", body).json()
    assert entitlement["reservedAmount"] == "1.000000"
    for i in range(10):
        response = api.post("/v0/usage", billing.event(f"r{i}", metric, quantity=10, entitlementId=entitlement["id"]))
        assert response.status_code == 201, response.json()
        assert response.json()["billing"]["price"] == "0.100000"
    assert api.get(f"/v0/entitlements/{entitlement['id']}").json()["status"] == "exhausted"
    assert ledger_check() == []


def test_balance_after_counts_the_hold_released_on_exhaustion(api, billing):
    entitlement = reserve(api, billing, quantity=10, maxUses=1).json()
    response = use(api, billing, entitlement["id"], "only", quantity=3)
    assert response.json()["settlement"]["balanceAfter"] == "9.700000"
    assert billing.available() == D("9.7")


def test_max_uses_beyond_the_database_range_is_400(api, billing):
    assert reserve(api, billing, quantity=1, maxUses=2**31).status_code == 400


def test_one_metric_cannot_use_funds_reserved_for_another(api):
    billing = Billing(api.merchant)
    calls = billing.metric(properties={"unitPrice": "0.1"})
    tokens = billing.metric(aggregation="SUM", properties={"unitPrice": "0.01"})
    billing.fund("10")
    body = {
        "customerId": str(billing.customer.id),
        "entitlementData": [
            {"billableMetricId": str(calls.id), "quantity": 10},
            {"billableMetricId": str(tokens.id), "quantity": 100},
        ],
    }
    entitlement = api.post("/v0/entitlements", body).json()
    assert entitlement["reservedAmount"] == "2.000000"
    # the price rises after the reservation (straight in the table: it has no usage yet): the hold
    # still charges what it reserved, and calls draw only the 1.00 reserved for them
    from apps.catalog.models import Price

    Price.objects.filter(billable_metric=calls).update(properties={"unitPrice": "0.5"})
    billing.plan.save(update_fields=["updated_at"])
    first = api.post("/v0/usage", billing.event("three", calls, quantity=3, entitlementId=entitlement["id"]))
    assert first.status_code == 201, first.json()
    assert first.json()["billing"]["price"] == "0.300000"
    rest = api.post("/v0/usage", billing.event("seven", calls, quantity=7, entitlementId=entitlement["id"]))
    assert rest.json()["billing"]["price"] == "0.700000"
    beyond = api.post("/v0/usage", billing.event("more", calls, quantity=1, entitlementId=entitlement["id"]))
    assert beyond.status_code == 402
    assert beyond.json()["code"] == "ENTITLEMENT_EXHAUSTED"
    after = api.get(f"/v0/entitlements/{entitlement['id']}").json()
    items = {i["billableMetricId"]: i for i in after["entitlementData"]}
    assert items[str(calls.id)]["remainingBalance"] == "0.000000"
    assert items[str(tokens.id)]["remainingBalance"] == "1.000000"
    assert (after["status"], after["remainingBalance"]) == ("active", "1.000000")
    assert billing.held() == D("1")
    assert ledger_check() == []
