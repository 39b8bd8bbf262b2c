"""Input that used to reach the database or the runtime as it was: each is a clear 4xx now."""

import pytest

from tests.factories import make_customer, make_plan
from tests.usage.world import Billing


def test_deeply_nested_json_is_400(api):
    deep = "[" * 100000 + "]" * 100000
    for path in ("/v0/products", "/v0/usage"):
        response = api.client.post(path, data=deep, content_type="application/json")
        assert response.status_code == 400, path
        assert response.json()["code"] == "MALFORMED_JSON"


def test_a_nul_in_a_query_parameter_is_400(api):
    response = api.get("/v0/customers", {"email": "a\x00b"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "email"


def test_a_nul_in_the_key_is_401(client, db):
    response = client.get(
        "/v0/merchants/me", HTTP_AUTHORIZATION="Bearer sk_live_\x00\x00\x00\x00\x00\x00\x00\x00xxxxxxxx"
    )
    assert response.status_code == 401


@pytest.mark.parametrize("field", ["unitPrice"])
def test_an_astronomical_price_is_400(api, field):
    product = api.post("/v0/products", {"name": "p"}).json()
    metric = api.post("/v0/billableMetrics", {"productId": product["id"], "name": "m", "aggregation": "COUNT"}).json()
    response = api.post(
        "/v0/prices",
        {
            "billableMetricId": metric["id"],
            "model": "standard",
            "paymentTerm": "instant",
            "currency": "USDC",
            "properties": {field: "1E+1000000"},
        },
    )
    assert response.status_code == 400


def test_a_balance_beyond_the_ledger_is_422(api):
    customer = make_customer(api.merchant)
    body = {"amount": "99999999999999999999999999", "currency": "USDC", "reason": "x"}
    assert api.post(f"/v0/customers/{customer.id}/adjustments", body).status_code == 201
    again = api.post(f"/v0/customers/{customer.id}/adjustments", body)
    assert again.status_code == 422
    assert again.json()["code"] == "AMOUNT_TOO_LARGE"


def test_an_inline_customer_of_another_merchant_is_403(api, other_api):
    plan = make_plan(api.merchant)
    response = api.post(
        "/v0/subscriptions",
        {
            "planId": str(plan.id),
            "customer": {"merchantId": str(other_api.merchant.id), "consumer": {"email": "x@y.com"}},
        },
    )
    assert response.status_code == 403
    assert response.json()["code"] == "MERCHANT_MISMATCH"


def test_an_archived_customer_takes_no_top_up(api):
    customer = make_customer(api.merchant)
    api.delete(f"/v0/customers/{customer.id}")
    response = api.post(f"/v0/customers/{customer.id}/topups", {"amount": "5", "currency": "USDC"})
    assert response.status_code == 422
    assert response.json()["code"] == "CUSTOMER_ARCHIVED"


def test_a_subscribed_plan_keeps_its_currency_and_interval(api):
    billing = Billing(api.merchant)
    for change in ({"currency": "USD"}, {"billingInterval": "yearly"}):
        response = api.patch(f"/v0/plans/{billing.plan.id}", change)
        assert response.status_code == 409, change
        assert response.json()["code"] == "PLAN_HAS_SUBSCRIPTIONS"
    assert api.patch(f"/v0/plans/{billing.plan.id}", {"name": "Renamed"}).status_code == 200


def test_unknown_fields_and_numbers_for_text_are_400(api):
    customer = make_customer(api.merchant)
    assert api.patch(f"/v0/customers/{customer.id}", {"foo": 1}).status_code == 400
    adjustment = api.post(f"/v0/customers/{customer.id}/adjustments", {"amount": "1", "currency": "USDC", "reason": 5})
    assert adjustment.status_code == 400
    assert adjustment.json()["errors"][0]["field"] == "reason"
    plan = make_plan(api.merchant)
    response = api.post("/v0/subscriptions", {"customerId": str(customer.id), "planId": str(plan.id), "name": 5})
    assert response.status_code == 400


def test_chain_libraries_do_not_leave_the_recursion_limit_raised():
    """py_ecc (under eth-account and web3) raises the limit to 100,000 at import; at that limit
    the nested-JSON body above overflows the C stack and kills the process instead of a 400."""
    import sys

    import eth_account  # noqa: F401
    import web3  # noqa: F401

    assert sys.getrecursionlimit() <= 1000
