"""A merchant can, with the API alone, create a product, a metric, a graduated price, a plan."""

from decimal import Decimal

from apps.catalog.pricing import price_quantity, pricing_strategy


def test_a_merchant_builds_a_catalog_with_the_api_alone(api):
    merchant_id = str(api.merchant.public_id)
    product = api.post("/v0/products", {"merchantId": merchant_id, "name": "Inference API"})
    assert product.status_code == 201
    metric = api.post(
        "/v0/billableMetrics",
        {
            "merchantId": merchant_id,
            "productId": product.json()["id"],
            "name": "Tokens",
            "unit": "token",
            "aggregation": "SUM",
            "valueProperty": "tokens",
            "groupBy": ["model"],
        },
    )
    assert metric.status_code == 201
    price = api.post(
        "/v0/prices",
        {
            "merchantId": merchant_id,
            "billableMetricId": metric.json()["id"],
            "model": "graduated",
            "paymentTerm": "instant",
            "invoiceDisplayName": "Tokens",
            "currency": "USDC",
            "properties": {
                "tiers": [
                    {"upTo": "1000", "unitPrice": "0.002", "flatFee": "0.5"},
                    {"upTo": None, "unitPrice": "0.001"},
                ]
            },
            "freeUnits": "100",
        },
    )
    assert price.status_code == 201
    plan = api.post(
        "/v0/plans",
        {
            "merchantId": merchant_id,
            "name": "Developer",
            "code": "developer",
            "productId": product.json()["id"],
            "currency": "USDC",
            "billingInterval": "monthly",
            "prices": [price.json()["id"]],
            "features": {"rateLimit": 50, "monthlyQueryLimit": None, "webhooks": 1},
        },
    )
    assert plan.status_code == 201, plan.json()

    fetched = api.get(f"/v0/plans/{plan.json()['id']}").json()
    assert fetched["prices"] == [price.json()["id"]]
    stored = api.get(f"/v0/prices/{fetched['prices'][0]}").json()
    assert stored["billableMetricId"] == metric.json()["id"]
    # The stored price is one the engine can charge: 1,100 tokens, the first 100 free,
    # 1,000 in tier 0 (0.002 each + a 0.5 flat fee).
    result = price_quantity(
        pricing_strategy(stored["model"], stored["properties"]), Decimal(1100), free_units=Decimal(stored["freeUnits"])
    )
    assert result.amount == Decimal("2.5")
