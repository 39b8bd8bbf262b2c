"""Tenant isolation, generated from the URL resolver: every /v0 route, with every method it
answers, called with the ids of another merchant's rows and of the other mode's rows, is a 404
and shows nothing of them. A new route whose path names an id not known here fails this test
until its row is added to `World`."""

import json
import re
from decimal import Decimal

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from eth_account import Account

from apps.cards.models import SavedCard
from apps.entitlements.services import EntitlementRequest, entitlement_create
from apps.invoices.models import Invoice
from apps.invoices.services.invoices import invoice_create_one_off
from apps.payments.services import topup_session_create
from apps.settlements.models import Settlement, WalletAddress
from apps.usage.models import UsageEvent
from apps.usage.services.refunds import dispute_open
from apps.webhooks.services import webhook_endpoint_create
from tests.conftest import Api
from tests.factories import MerchantFactory, issue_key, sandbox_of
from tests.usage.world import Billing

METHODS = ("get", "post", "patch", "delete")


def v0_routes():
    """(path template with <name> params, view class) for every /v0 route."""

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern.callback

    for route, callback in walk(get_resolver().url_patterns, "/"):
        owner = getattr(callback, "view_class", callback).__module__
        # (the suite's own widget app is checked in test_tenancy)
        if route.startswith("/v0/") and "^" not in route and not owner.startswith("tests."):
            yield re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route), callback


def _customer_key(merchant):
    from apps.apikeys.services import api_key_create
    from apps.catalog.demo import seed_catalog

    seed_catalog(merchant=merchant)
    return api_key_create(
        merchant=merchant, organization_name="Probe", contact_email=f"keys-{merchant.pk}@example.com"
    ).key.pk


class World:
    """One of each kind of row that a path can name, all owned by `merchant`."""

    def __init__(self, merchant):
        billing = Billing(merchant, email=f"isolated-{merchant.pk}@example.com")
        metric = billing.metric(properties={"unitPrice": "0.01"})
        billing.fund("10")
        Api(issue_key(merchant), merchant).post("/v0/usage", billing.event("seen-once", metric))
        event = UsageEvent.objects.get(merchant=merchant)
        price = billing.plan.prices.get()
        self.ids = {
            "product_id": billing.product.pk,
            "metric_id": metric.pk,
            "price_id": price.pk,
            "plan_id": billing.plan.pk,
            "customer_id": billing.customer.pk,
            "subscription_id": billing.subscription.pk,
            "session_id": topup_session_create(
                merchant=merchant, customer=billing.customer, amount=Decimal("5"), currency="USDC"
            ).pk,
            "entitlement_id": entitlement_create(
                merchant=merchant,
                customer=billing.customer,
                requests=[EntitlementRequest(billable_metric_id=metric.pk, quantity=Decimal("1"), price=None)],
            ).pk,
            "event_id": event.pk,
            "dispute_id": dispute_open(merchant=merchant, event=event, message="not mine").pk,
            "endpoint_id": webhook_endpoint_create(
                merchant=merchant, url="https://hooks.example.com/in", events=["*"]
            ).pk,
            "key_id": _customer_key(merchant),
            "invoice_id": invoice_create_one_off(
                merchant=merchant,
                customer=billing.customer,
                currency="USDC",
                lines=[("Work", Decimal("100"))],
                auto_collect=False,
            ).pk,
        }
        # rows of the card and chain paths, written as their services leave them (no Stripe or
        # chain is reached: every probe must stop at the 404)
        customer = billing.customer
        self.ids["payment_method_id"] = SavedCard.objects.create(
            merchant=merchant, customer=customer, stripe_payment_method_id=f"pm_world_{merchant.pk.hex}", brand="visa"
        ).stripe_payment_method_id
        self.ids["address"] = WalletAddress.objects.create(
            merchant=merchant, customer=customer, address=Account.create().address, signature="0x" + "ab" * 65
        ).address
        invoice_id = self.ids["invoice_id"]
        self.ids["settlement_id"] = Settlement.objects.create(
            merchant=merchant,
            chain="anvil",
            chain_id=31337,
            transaction_hash="0x" + merchant.pk.hex * 2,
            reference_hash="0x" + "cd" * 32,
            payer_address=self.ids["address"],
            merchant_address=Account.create().address,
            customer=customer,
            invoice_id=invoice_id,
            session=topup_session_create(merchant=merchant, customer=customer, amount=Decimal("1"), currency="USDC"),
            required_confirmations=3,
            next_check_at=merchant.created_at,
        ).pk

    def body(self):
        """A body naming this world's rows wherever a body names one."""
        ids = {name: str(value) for name, value in self.ids.items()}
        return {
            "customerId": ids["customer_id"],
            "subscriptionId": ids["subscription_id"],
            "planId": ids["plan_id"],
            "productId": ids["product_id"],
            "billableMetricId": ids["metric_id"],
            "entitlementId": ids["entitlement_id"],
            "eventId": ids["event_id"],
            "invoiceId": ids["invoice_id"],
            "amount": "1",
            "currency": "USDC",
            "message": "probe",
            "reason": "probe",
        }


# A valid body where an empty one is not (the row is looked up, not the body judged alone).
BODIES = {
    ("post", "/v0/customers/{customer_id}/topups"): {"amount": "5", "currency": "USDC"},
    ("post", "/v0/customers/{customer_id}/adjustments"): {"amount": "5", "currency": "USDC", "reason": "probe"},
    ("patch", "/v0/usage/{event_id}"): {"refund": True},
    ("post", "/v0/disputes/{dispute_id}/decline"): {"reason": "probe"},
    ("post", "/v0/customers/{customer_id}/walletAddresses"): {
        "address": "0x" + "1" * 40,
        "signature": "0x" + "ab" * 65,
    },
}


@pytest.fixture
def worlds(db):
    mine = MerchantFactory()
    other = MerchantFactory()
    return {
        "me": mine,
        "another merchant": World(other),
        "my other mode": World(sandbox_of(mine)),
    }


def _no_trace(world, response):
    text = response.content.decode()
    return [name for name, value in world.ids.items() if str(value) in text]


@pytest.mark.parametrize("whose", ["another merchant", "my other mode"])
def test_every_v0_route_with_foreign_ids_is_404_and_shows_nothing(worlds, whose):
    api = Api(issue_key(worlds["me"]), worlds["me"])
    world = worlds[whose]
    routes = [(template, callback) for template, callback in v0_routes() if "{" in template]
    assert len(routes) >= 15  # (the resolver walk found the API)
    checked = []
    for template, callback in routes:
        names = re.findall(r"{(\w+)}", template)
        unknown = [name for name in names if name not in world.ids]
        assert not unknown, f"{template}: add a row for {unknown} to World"
        path = template.format(**world.ids)
        view = getattr(callback, "view_class", None)
        methods = [m for m in METHODS if view is None or hasattr(view, m)]
        for method in methods:
            if method == "get" or method == "delete":
                response = getattr(api, method)(path)
            else:
                response = getattr(api, method)(path, BODIES.get((method, template), {}))
            where = f"{method.upper()} {template} with {whose}'s ids"
            assert response.status_code == 404, f"{where}: {response.status_code} {response.content[:300]}"
            assert response.json()["code"].endswith("NOT_FOUND"), where
            leaked = [name for name in _no_trace(world, response) if f"{{{name}}}" not in template]
            assert not leaked, f"{where} shows {leaked}"
            checked.append(where)
    assert len(checked) >= 20


LIST_FILTERS = {
    "/v0/billableMetrics": ["productId"],
    "/v0/prices": ["billableMetricId"],
    "/v0/plans": ["productId"],
    "/v0/subscriptions": ["customerId", "planId"],
    "/v0/usage": ["customerId", "subscriptionId", "billableMetricId"],
    "/v0/disputes": ["customerId"],
    "/v0/entitlements/activeEntitlements": ["customerId"],
    "/v0/customers": [],
    "/v0/products": [],
    "/v0/webhookEndpoints": [],
    "/v0/invoices": ["customerId", "subscriptionId"],
    "/v0/billing/apiKeys": ["customerId"],
    "/v0/settlements": ["invoiceId"],
}
# routes without an id that list nothing of a merchant's rows
# (/v0/billing/usage answers the customer's key with its own count)
NOT_LISTS = {"/v0/schema", "/v0/docs", "/v0/merchants/me", "/v0/usage/batch", "/v0/billing/usage", "/v0/chains"}


def test_every_list_route_is_probed_with_its_id_filters():
    lists = {
        template
        for template, callback in v0_routes()
        if "{" not in template and hasattr(getattr(callback, "view_class", None), "get")
    }
    assert lists - NOT_LISTS == set(LIST_FILTERS)


@pytest.mark.parametrize("whose", ["another merchant", "my other mode"])
def test_lists_filtered_by_foreign_ids_show_nothing_of_them(worlds, whose):
    api = Api(issue_key(worlds["me"]), worlds["me"])
    world = worlds[whose]
    body = world.body()
    for path, filters in LIST_FILTERS.items():
        params = {name: body[name] for name in filters}
        response = api.get(path, params)
        assert response.status_code in (200, 404), (path, response.content[:300])
        if response.status_code == 200:
            assert json.loads(response.content)["data"] == [], path
        assert _no_trace(world, response) == [], path


def _creates(body):
    ids = body
    return {
        "/v0/billableMetrics": {"name": "Probe", "productId": ids["productId"], "aggregation": "COUNT"},
        "/v0/prices": {
            "billableMetricId": ids["billableMetricId"],
            "currency": "USDC",
            "model": "standard",
            "paymentTerm": "instant",
            "properties": {"unitPrice": "1"},
        },
        "/v0/subscriptions": {"customerId": ids["customerId"], "planId": ids["planId"]},
        "/v0/entitlements": {
            "customerId": ids["customerId"],
            "entitlementData": [{"billableMetricId": ids["billableMetricId"], "quantity": 1}],
        },
        "/v0/usage": {
            "idempotencyKey": "probe-1",
            "customerId": ids["customerId"],
            "properties": [{"billableMetricId": ids["billableMetricId"], "quantity": 1}],
        },
        "/v0/disputes": {"usageEventId": ids["eventId"], "message": "probe"},
        "/v0/invoices": {"customerId": ids["customerId"], "currency": "USDC", "amount": "1", "description": "probe"},
    }


@pytest.mark.parametrize("whose", ["another merchant", "my other mode"])
def test_creates_naming_foreign_rows_in_the_body_are_404_and_write_nothing(worlds, whose):
    api = Api(issue_key(worlds["me"]), worlds["me"])
    world = worlds[whose]
    for path, body in _creates(world.body()).items():
        response = api.post(path, body)
        assert response.status_code == 404, (path, response.content[:300])
        sent = json.dumps(body)
        assert [name for name in _no_trace(world, response) if str(world.ids[name]) not in sent] == [], path
    assert not UsageEvent.objects.filter(merchant=worlds["me"]).exists()
    assert not Invoice.objects.filter(merchant=worlds["me"]).exists()
