"""Helpers for catalog tests: create rows through the API, as a merchant would."""

import pytest

GRADUATED = {
    "tiers": [
        {"upTo": "1000", "unitPrice": "0.002", "flatFee": "0"},
        {"upTo": "10000", "unitPrice": "0.0015"},
        {"upTo": None, "unitPrice": "0.001"},
    ]
}


def create(api, path, body, status=201):
    response = api.post(path, body)
    assert response.status_code == status, response.json()
    return response.json()


def make_product(api, **overrides):
    return create(api, "/v0/products", {"name": "Search API", **overrides})


def make_metric(api, product_id, **overrides):
    body = {"productId": product_id, "name": "Searches", "unit": "search", "aggregation": "COUNT", **overrides}
    if body["aggregation"] == "UNIQUE_COUNT":
        body.setdefault("valueProperty", "userId")
    return create(api, "/v0/billableMetrics", body)


def make_price(api, metric_id, **overrides):
    body = {
        "billableMetricId": metric_id,
        "model": "standard",
        "paymentTerm": "instant",
        "currency": "USDC",
        "properties": {"unitPrice": "0.001"},
        **overrides,
    }
    return create(api, "/v0/prices", body)


def make_fee(api, **overrides):
    body = {"model": "standard", "paymentTerm": "in_advance", "currency": "USD", "amount": "49.00", **overrides}
    return create(api, "/v0/prices", body)


def make_plan(api, product_id, prices=(), **overrides):
    body = {
        "name": "Starter",
        "code": "starter",
        "productId": product_id,
        "currency": "USDC",
        "billingInterval": "monthly",
        "prices": list(prices),
        **overrides,
    }
    return create(api, "/v0/plans", body)


@pytest.fixture
def product(api):
    return make_product(api)


@pytest.fixture
def metric(api, product):
    return make_metric(api, product["id"])


def assert_field_error(response, field, code=None, status=400):
    assert response.status_code == status, response.json()
    body = response.json()
    assert body["error"] == "validation_error", body
    fields = [e["field"] for e in body["errors"]]
    assert field in fields, body
    if code:
        assert code in [e["code"] for e in body["errors"] if e["field"] == field], body
    return body


def assert_error(response, status, code):
    assert response.status_code == status, response.json()
    body = response.json()
    assert body["code"] == code, body
    assert set(body) == {"error", "message", "code", "details"}
    return body
