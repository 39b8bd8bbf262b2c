"""A price that has priced usage keeps its terms: PATCH and the admin's change form answer
409 PRICE_IN_USE for a change of its model, properties, payment term, free units, metric or
currency, and still change its display name and allowPriceOverride."""

import ast
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse

from apps.catalog import hooks
from apps.catalog.models import BillableMetric, Price
from apps.merchants.services import merchant_staff_create
from tests.catalog.conftest import assert_error
from tests.usage.world import Billing

D = Decimal
GRADUATED = {"tiers": [{"upTo": "10", "unitPrice": "0.002"}, {"upTo": None, "unitPrice": "0.001"}]}


@pytest.fixture
def used(api):
    """A standard instant price (0.001 a unit) that priced one event."""
    billing = Billing(api.merchant)
    metric = billing.metric(aggregation="SUM", properties={"unitPrice": "0.001"})
    billing.fund("10")
    assert api.post("/v0/usage", billing.event("priced", metric, quantity=3)).status_code == 201
    billing.price = Price.objects.get(billable_metric=metric)
    billing.used_metric = metric
    return billing


def other_metric(billing):
    return BillableMetric.objects.create(
        merchant=billing.merchant, product=billing.product, name="other", aggregation="SUM"
    )


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"model": "graduated", "properties": GRADUATED}, ["model", "properties"]),
        ({"model": "package", "properties": {"packageSize": 10, "packagePrice": "1"}}, ["model", "properties"]),
        ({"properties": {"unitPrice": "0.002"}}, ["properties"]),
        ({"paymentTerm": "in_arrears"}, ["paymentTerm"]),
        ({"freeUnits": "5"}, ["freeUnits"]),
        ({"currency": "USD"}, ["currency"]),
        ({"billableMetricId": "other"}, ["billableMetricId"]),
        ({"billableMetricId": None, "amount": "10", "paymentTerm": "in_arrears"}, ["billableMetricId", "paymentTerm"]),
        # refused even when the new value would not validate: the terms are kept whatever is sent
        ({"properties": {"unitPrice": "-1"}}, ["properties"]),
    ],
)
def test_patching_a_term_of_a_used_price_is_409_price_in_use(api, used, change, fields):
    if change.get("billableMetricId") == "other":
        change = {**change, "billableMetricId": str(other_metric(used).id)}
    response = api.patch(f"/v0/prices/{used.price.id}", change)

    body = assert_error(response, 409, "PRICE_IN_USE")
    assert body["details"] == {"priceId": str(used.price.id), "fields": fields}
    for field in fields:
        assert field in body["message"]
    assert "Create a new price" in body["message"]
    assert "switch the plan to it" in body["message"]
    stored = Price.objects.get(pk=used.price.pk)
    assert (stored.model, stored.properties, stored.payment_term, stored.currency) == (
        "standard",
        {"unitPrice": "0.001"},
        "instant",
        "USDC",
    )
    assert (stored.free_units, stored.billable_metric_id) == (D(0), used.used_metric.id)


def test_a_used_price_keeps_its_display_name_and_override_flag_editable(api, used):
    response = api.patch(f"/v0/prices/{used.price.id}", {"invoiceDisplayName": "Tokens", "allowPriceOverride": True})

    assert response.status_code == 200, response.json()
    assert (response.json()["invoiceDisplayName"], response.json()["allowPriceOverride"]) == ("Tokens", True)


def test_sending_a_used_prices_terms_unchanged_is_not_a_change(api, used):
    same = {
        "billableMetricId": str(used.used_metric.id),
        "model": "standard",
        "paymentTerm": "instant",
        "currency": "USDC",
        # written differently, stored the same
        "properties": {"unitPrice": "0.0010"},
        "freeUnits": "0.000",
        "invoiceDisplayName": "Tokens",
    }
    response = api.patch(f"/v0/prices/{used.price.id}", same)

    assert response.status_code == 200, response.json()
    assert response.json()["invoiceDisplayName"] == "Tokens"


def test_a_price_without_usage_still_changes_its_terms(api, used):
    unused = used.metric(aggregation="SUM", properties={"unitPrice": "0.001"})
    price = Price.objects.get(billable_metric=unused)

    response = api.patch(f"/v0/prices/{price.id}", {"model": "graduated", "properties": GRADUATED, "freeUnits": "2"})

    assert response.status_code == 200, response.json()
    assert response.json()["model"] == "graduated"


def test_a_refunded_event_still_counts_as_usage(api, used):
    event = api.get("/v0/usage").json()["data"][0]
    assert api.patch(f"/v0/usage/{event['id']}", {"refund": True}).status_code == 200

    assert_error(api.patch(f"/v0/prices/{used.price.id}", {"properties": {"unitPrice": "1"}}), 409, "PRICE_IN_USE")


def test_the_usage_app_registers_its_checks_with_the_catalog(used):
    assert hooks.price_has_usage(used.price) is True
    assert hooks.metric_has_usage(used.used_metric) is True
    assert hooks.metric_has_usage(other_metric(used)) is False


# --- the admin's change form -----------------------------------------------------------------


@pytest.fixture
def staff(client, merchant):
    user = merchant_staff_create(merchant=merchant, username="prices", email="p@m.example", password="pw-123456789")
    client.force_login(user)
    return client


def change_form(price, **overrides):
    data = {
        "billable_metric": str(price.billable_metric_id),
        "model": price.model,
        "payment_term": price.payment_term,
        "currency": price.currency,
        "properties": json.dumps(price.properties),
        "free_units": str(price.free_units),
        "amount": "",
        "invoice_display_name": price.invoice_display_name,
    }
    data.update(overrides)
    return data


def test_the_admin_change_form_shows_price_in_use_instead_of_saving(staff, used):
    url = reverse("admin:catalog_price_change", args=[used.price.pk])

    refused = staff.post(url, change_form(used.price, properties=json.dumps({"unitPrice": "0.5"})))

    assert refused.status_code == 200
    errors = [str(e) for e in refused.context["adminform"].form.non_field_errors()]
    assert len(errors) == 1 and "has priced usage, so its properties can no longer change" in errors[0]
    assert Price.objects.get(pk=used.price.pk).properties == {"unitPrice": "0.001"}


def test_the_admin_change_form_saves_a_new_display_name_of_a_used_price(staff, used):
    url = reverse("admin:catalog_price_change", args=[used.price.pk])

    accepted = staff.post(url, change_form(used.price, invoice_display_name="Tokens"))

    assert accepted.status_code == 302
    assert Price.objects.get(pk=used.price.pk).invoice_display_name == "Tokens"


# --- layering ---------------------------------------------------------------------------------


def test_the_catalog_imports_nothing_from_usage_or_entitlements():
    catalog = Path(__file__).resolve().parents[2] / "apps" / "catalog"
    imported = set()
    for path in catalog.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add((path.name, node.module))
            elif isinstance(node, ast.Import):
                imported.update((path.name, alias.name) for alias in node.names)

    upward = {(name, module) for name, module in imported if module.startswith(("apps.usage", "apps.entitlements"))}
    assert upward == set()
