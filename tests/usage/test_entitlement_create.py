"""entitlement_create: what it reserves, the wallet minimum it keeps, the queries it takes."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.core.errors import PaymentRequired
from apps.entitlements.models import Entitlement
from apps.entitlements.services import EntitlementRequest, entitlement_create
from apps.subscriptions.services import subscription_create
from tests.factories import make_plan
from tests.usage.world import Billing

D = Decimal

GRADUATED = {"tiers": [{"upTo": "100", "unitPrice": "0.01"}, {"upTo": None, "unitPrice": "0.001"}]}


def reserve(billing, *requests):
    """Create the entitlement; return it and the number of queries it took."""
    with CaptureQueriesContext(connection) as queries:
        entitlement = entitlement_create(
            merchant=billing.merchant,
            customer=billing.customer,
            requests=[EntitlementRequest(metric.id, D(quantity), price) for metric, quantity, price in requests],
        )
    return entitlement, len(queries)


def test_an_entitlement_for_three_metrics_takes_no_more_queries_than_for_one(api):
    billing = Billing(api.merchant)
    calls = billing.metric(properties={"unitPrice": "0.1"})
    tokens = billing.metric(aggregation="SUM", model="graduated", properties=GRADUATED)
    images = billing.metric(properties={"unitPrice": "0.5"}, override=True)
    billing.fund("100")
    # 90 tokens already charged this period: a reservation continues the graduated tiers from them
    assert api.post("/v0/usage", billing.event("t1", tokens, quantity=90)).status_code == 201

    reserve(billing, (calls, 1, None))  # the plan's prices are in the process cache from here on
    one, one_count = reserve(billing, (calls, 10, None))
    three, three_count = reserve(billing, (calls, 10, None), (tokens, 20, None), (images, 2, D("0.25")))

    assert one.reserved_amount == D("1")
    # tokens: 10 at 0.01 up to 100, then 10 at 0.001; images at the reserved 0.25 each
    assert three.reserved_amount == D("1") + D("0.11") + D("0.5")
    assert three_count <= one_count


def test_a_reservation_keeps_the_highest_minimum_of_the_subscriptions_sharing_the_wallet(api):
    billing = Billing(api.merchant, minimum="1")
    calls = billing.metric(properties={"unitPrice": "1"})
    billing.fund("10")
    # a second active subscription of the customer, in the same currency, so on the same wallet
    subscription_create(
        merchant=billing.merchant,
        customer=billing.customer,
        plan=make_plan(billing.merchant, currency=billing.currency),
        minimum_account_balance=D("4"),
    )

    with pytest.raises(PaymentRequired) as refused:
        reserve(billing, (calls, 7, None))

    assert refused.value.code == "INSUFFICIENT_BALANCE"
    assert not Entitlement.objects.exists()
    entitlement, _ = reserve(billing, (calls, 6, None))
    assert entitlement.reserved_amount == D("6")
    assert billing.available() == D("4")
