"""The money endpoints run through the Idempotency-Key's one transaction: a replay moves
nothing, and a claim left by a request that died is taken over and runs once."""

import json
from decimal import Decimal

import pytest

from apps.core.idempotency import request_fingerprint
from apps.core.models import IdempotencyRecord
from apps.entitlements.models import Entitlement
from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check
from apps.subscriptions.models import Subscription
from tests.usage.world import Billing

D = Decimal


@pytest.fixture
def billing(api):
    world = Billing(api.merchant)
    world.calls = world.metric(properties={"unitPrice": "0.1"})
    world.fund("10")
    return world


def requests(billing):
    customer = str(billing.customer.id)
    return {
        "adjustment": (
            f"/v0/customers/{customer}/adjustments",
            {"amount": "2", "currency": "USDC", "reason": "goodwill"},
        ),
        "entitlement": (
            "/v0/entitlements",
            {
                "customerId": customer,
                "entitlementData": [{"billableMetricId": str(billing.calls.id), "quantity": 10}],
            },
        ),
        "subscription": (
            "/v0/subscriptions",
            {"customerId": customer, "planId": str(billing.plan.id), "prefundAmount": "5"},
        ),
    }


def money_state(billing):
    return (
        LedgerTransaction.objects.count(),
        Entitlement.objects.count(),
        Subscription.objects.count(),
        billing.available(),
        billing.held(),
    )


@pytest.mark.parametrize("name", ["adjustment", "entitlement", "subscription"])
def test_replay_returns_the_first_answer_and_moves_nothing(api, billing, name):
    path, body = requests(billing)[name]
    first = api.post(path, body, HTTP_IDEMPOTENCY_KEY=f"k-{name}")
    assert first.status_code == 201, first.json()
    after_first = money_state(billing)
    again = api.post(path, body, HTTP_IDEMPOTENCY_KEY=f"k-{name}")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert money_state(billing) == after_first
    assert ledger_check() == []


@pytest.mark.parametrize("name", ["adjustment", "entitlement", "subscription"])
def test_a_dead_claim_is_taken_over_and_runs_once(api, billing, name):
    path, body = requests(billing)[name]
    IdempotencyRecord.objects.create(
        merchant=api.merchant,
        key=f"k-{name}",
        request_method="POST",
        request_path=path,
        request_hash=request_fingerprint(method="POST", path=path, body=json.dumps(body).encode()),
    )
    before = money_state(billing)
    first = api.post(path, body, HTTP_IDEMPOTENCY_KEY=f"k-{name}")
    assert first.status_code == 201, first.json()
    changed = money_state(billing)
    assert changed != before
    assert api.post(path, body, HTTP_IDEMPOTENCY_KEY=f"k-{name}").json() == first.json()
    assert money_state(billing) == changed
