"""Every credit to a wallet's available balance is announced through the payments registry's
"wallet credited" hook: payments (tests/payments/test_payment_service.py), adjustments,
refunds and released holds. A debit, or a refund that goes back to a live hold, is not one."""

from decimal import Decimal

import pytest

from apps.payments import registry
from tests.usage.world import Billing

D = Decimal


@pytest.fixture
def heard():
    credits = []
    registry.on_wallet_credited(credits.append)
    yield credits
    registry._wallet_credited.remove(credits.append)


@pytest.fixture
def billing(api):
    world = Billing(api.merchant)
    world.calls = world.metric(properties={"unitPrice": "0.1"})
    world.fund("10")
    return world


def causes(heard):
    return [(credit.cause, credit.amount) for credit in heard]


def test_adjustments_announce_credits_not_debits(api, billing, heard):
    url = f"/v0/customers/{billing.customer.id}/adjustments"
    api.post(url, {"amount": "2", "currency": "USDC", "reason": "goodwill"})
    api.post(url, {"amount": "-1", "currency": "USDC", "reason": "correction"})
    assert causes(heard) == [("adjustment", D("2"))]
    assert heard[0].wallet.id == billing.wallet.id


def test_a_refund_to_available_is_announced(api, billing, heard):
    event = api.post("/v0/usage", billing.event("e1", billing.calls, quantity=3)).json()
    api.patch(f"/v0/usage/{event['id']}", {"refund": True})
    assert causes(heard) == [("refund", D("0.3"))]


def test_a_released_hold_is_announced_and_a_refund_into_a_live_hold_is_not(api, billing, heard):
    body = {
        "customerId": str(billing.customer.id),
        "entitlementData": [{"billableMetricId": str(billing.calls.id), "quantity": 10}],
    }
    hold = api.post("/v0/entitlements", body).json()
    event = api.post("/v0/usage", billing.event("h1", billing.calls, quantity=4, entitlementId=hold["id"])).json()
    api.patch(f"/v0/usage/{event['id']}", {"refund": True})
    assert causes(heard) == []  # back to the hold, not to available
    api.delete(f"/v0/entitlements/{hold['id']}")
    assert causes(heard) == [("hold_release", D("1"))]
