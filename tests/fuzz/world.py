"""The seeded world that schemathesis runs in: a sandbox merchant with the demo catalog (make run's
seeders), then, through the API of the server under test, a funded customer with a subscription,
usage, a dispute, a hold, a one-off invoice, a top-up session, a webhook endpoint and a customer
API key. `ids` maps each kind of id to the ones that exist, for tests/fuzz/hooks.py."""

import json
import uuid

import requests


def seed_merchant():
    """A merchant (live and sandbox) with make run's demo data, and a sandbox secret key."""
    from apps.core.demo import demo_seeders
    from apps.merchants.selectors import merchant_twins
    from apps.merchants.services import api_key_create, merchant_create

    merchant = merchant_create(name="Fuzz Co", contact_email="billing@fuzz.example")
    live, sandbox = merchant_twins(merchant=merchant)
    for seeder in demo_seeders():
        seeder(live=live, sandbox=sandbox)
    _, secret = api_key_create(merchant=sandbox, name="schemathesis")
    return sandbox, secret


class Seeder:
    def __init__(self, base_url: str, secret: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {secret}"

    def call(self, method: str, path: str, body=None, expected=(200, 201)) -> dict:
        response = self.session.request(method, self.base_url + path, json=body, timeout=60)
        assert response.status_code in expected, (method, path, response.status_code, response.text)
        return response.json()


def seed_through_the_api(base_url: str, secret: str, merchant) -> dict:
    """Resources of every kind, made through the API; returns {"customer": [ids], ...}."""
    api = Seeder(base_url, secret)
    ids: dict[str, list[str]] = {}

    def keep(kind: str, value: str) -> str:
        ids.setdefault(kind, []).append(value)
        return value

    def listed(path: str, kind: str) -> list[dict]:
        rows = api.call("GET", f"{path}?limit=100")["data"]
        for row in rows:
            keep(kind, row["id"])
        return rows

    keep("merchant", api.call("GET", "/v0/merchants/me")["id"])
    listed("/v0/products", "product")
    metrics = listed("/v0/billableMetrics", "billableMetric")
    listed("/v0/prices", "price")
    plans = listed("/v0/plans", "plan")
    listed("/v0/subscriptions", "subscription")
    listed("/v0/customers", "customer")
    payg = next(plan for plan in plans if plan["code"] == "payg")
    calls = next(metric for metric in metrics if metric["name"] == "API calls")

    customer = api.call("POST", "/v0/customers", {"consumer": {"email": "grace@fuzz.example", "name": "Grace"}})
    keep("customer", customer["id"])
    subscription = api.call(
        "POST", "/v0/subscriptions", {"customerId": customer["id"], "planId": payg["id"], "prefundAmount": "50"}
    )
    keep("subscription", subscription["id"])
    keep("paymentSession", subscription["payment"]["paymentSessionId"])
    api.call("POST", f"/v0/testHelpers/paymentSessions/{subscription['payment']['paymentSessionId']}/pay")
    topup = api.call("POST", f"/v0/customers/{customer['id']}/topups", {"amount": "1000", "currency": "USDC"})
    keep("paymentSession", topup["id"])
    api.call("POST", f"/v0/testHelpers/paymentSessions/{topup['id']}/pay")
    pending = api.call("POST", f"/v0/customers/{customer['id']}/topups", {"amount": "5", "currency": "USDC"})
    keep("paymentSession", pending["id"])

    usage = [
        api.call(
            "POST",
            "/v0/usage",
            {
                "idempotencyKey": f"seed-{i}",
                "customerId": customer["id"],
                "properties": [{"billableMetricId": calls["id"], "quantity": 1}],
            },
        )
        for i in range(3)
    ]
    for event in usage:
        keep("usageEvent", event["id"])
    keep("dispute", api.call("POST", "/v0/disputes", {"usageEventId": usage[0]["id"], "message": "not ours"})["id"])
    keep("dispute", api.call("POST", "/v0/disputes", {"usageEventId": usage[1]["id"], "message": "twice"})["id"])
    hold = api.call(
        "POST",
        "/v0/entitlements",
        {"customerId": customer["id"], "entitlementData": [{"billableMetricId": calls["id"], "quantity": 10}]},
    )
    keep("entitlement", hold["id"])
    invoice = api.call(
        "POST",
        "/v0/invoices",
        {
            "customerId": customer["id"],
            "currency": "USDC",
            "amount": "1.50",
            "description": "Setup",
            "autoCollect": False,
        },
    )
    keep("invoice", invoice["id"])
    endpoint = api.call("POST", "/v0/webhookEndpoints", {"url": "http://127.0.0.1:9/hooks", "events": ["invoice.paid"]})
    keep("webhookEndpoint", endpoint["id"])
    key = api.call("POST", "/v0/billing/apiKeys", {"customerId": customer["id"], "tier": "free"})
    keep("customerApiKey", key["id"])
    customer_secret = key["apiKey"]
    ids["customerApiKeySecret"] = [customer_secret]
    return ids


def write_ids(path, ids: dict) -> None:
    path.write_text(json.dumps(ids, indent=1))


def unknown_id() -> str:
    return str(uuid.uuid4())
