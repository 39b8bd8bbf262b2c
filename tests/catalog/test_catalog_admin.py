"""Merchant staff build the catalog in the admin, validated by the same services as the API."""

import json

import pytest
from django.urls import reverse

from apps.catalog import services
from apps.catalog.models import Aggregation, BillableMetric, Plan, Price, Product
from apps.merchants.services import merchant_staff_create
from tests.factories import MerchantFactory

OVERLAPPING = {
    "tiers": [
        {"upTo": "1000", "unitPrice": "0.002"},
        {"upTo": "1000", "unitPrice": "0.001"},
        {"upTo": None, "unitPrice": "0.0005"},
    ]
}
# The management form of the product page's read-only metrics inline.
METRICS_INLINE = {"billable_metrics-TOTAL_FORMS": "0", "billable_metrics-INITIAL_FORMS": "0"}
GRADUATED = {"tiers": [{"upTo": "1000", "unitPrice": "0.002"}, {"upTo": None, "unitPrice": "0.001"}]}


@pytest.fixture
def staff(client, merchant):
    user = merchant_staff_create(merchant=merchant, username="cat", email="cat@m.example", password="pw-123456789")
    client.force_login(user)
    return client


@pytest.fixture
def metric(merchant):
    product = services.product_create(merchant=merchant, name="Search API")
    return services.billable_metric_create(merchant=merchant, product=product, name="Searches", aggregation="COUNT")


def price_form(metric, **overrides):
    data = {
        "billable_metric": str(metric.pk) if metric else "",
        "model": "graduated",
        "payment_term": "in_arrears",
        "currency": "USDC",
        "properties": json.dumps(GRADUATED),
        "free_units": "0",
        "amount": "",
        "invoice_display_name": "Searches",
    }
    data.update(overrides)
    return data


def form_errors(response):
    form = response.context["adminform"].form
    return {name: [str(e) for e in errors] for name, errors in form.errors.items()}


def test_staff_creates_a_product_and_a_metric(staff, merchant):
    response = staff.post(
        reverse("admin:catalog_product_add"),
        {"name": "Maps API", "description": "", "metadata": "{}", **METRICS_INLINE},
    )
    assert response.status_code == 302
    product = Product.objects.get(name="Maps API")
    assert product.merchant == merchant
    response = staff.post(
        reverse("admin:catalog_billablemetric_add"),
        {
            "product": str(product.pk),
            "name": "Tiles",
            "description": "",
            "unit": "tile",
            "aggregation": "SUM",
            "value_property": "",
            "group_by": '["zoom"]',
        },
    )
    assert response.status_code == 302
    assert BillableMetric.objects.get(name="Tiles").group_by == ["zoom"]
    assert staff.get(reverse("admin:catalog_product_change", args=[product.pk])).status_code == 200


def test_staff_creates_a_graduated_price(staff, merchant, metric):
    response = staff.post(reverse("admin:catalog_price_add"), price_form(metric))
    assert response.status_code == 302
    price = Price.objects.get()
    assert price.merchant == merchant
    assert price.properties["tiers"][0] == {"upTo": "1000", "unitPrice": "0.002", "flatFee": "0"}


def test_overlapping_tiers_are_refused_with_the_apis_message(staff, metric, api):
    response = staff.post(reverse("admin:catalog_price_add"), price_form(metric, properties=json.dumps(OVERLAPPING)))
    assert response.status_code == 200
    admin_message = form_errors(response)["properties"][0]
    assert not Price.objects.exists()
    api_body = api.post(
        "/v0/prices",
        {
            "billableMetricId": str(metric.pk),
            "model": "graduated",
            "paymentTerm": "in_arrears",
            "currency": "USDC",
            "properties": OVERLAPPING,
        },
    ).json()
    assert api_body["errors"][0]["field"] == "properties.tiers[1].upTo"
    assert api_body["errors"][0]["message"] in admin_message
    assert "overlaps tiers[0]" in admin_message


def test_instant_price_on_an_average_metric_is_refused(staff, merchant, metric):
    average = services.billable_metric_create(
        merchant=merchant, product=metric.product, name="Latency", aggregation=Aggregation.AVG
    )
    response = staff.post(reverse("admin:catalog_price_add"), price_form(average, payment_term="instant"))
    assert response.status_code == 200
    assert "only SUM and COUNT" not in str(form_errors(response).get("__all__"))
    assert "cannot be priced per event" in form_errors(response)["payment_term"][0]
    assert not Price.objects.exists()


def test_fee_without_amount_is_refused(staff):
    response = staff.post(
        reverse("admin:catalog_price_add"),
        price_form(None, model="standard", properties="{}", payment_term="in_advance"),
    )
    assert response.status_code == 200
    assert "amount" in form_errors(response)


def test_staff_creates_a_plan_with_prices_and_features(staff, merchant, metric):
    price = services.price_create(
        merchant=merchant,
        billable_metric=metric,
        payment_term="instant",
        currency="USDC",
        properties={"unitPrice": "0.001"},
    )
    fee = services.price_create(
        merchant=merchant, billable_metric=None, payment_term="in_advance", currency="USDC", amount="10"
    )
    data = {
        "name": "Starter",
        "code": "starter",
        "product": str(metric.product_id),
        "currency": "USDC",
        "billing_interval": "monthly",
        "prices": [str(price.pk), str(fee.pk)],
        "features": json.dumps({"rateLimit": 100, "monthlyQueryLimit": 10000, "webhooks": 3}),
    }
    response = staff.post(reverse("admin:catalog_plan_add"), data)
    assert response.status_code == 302
    plan = Plan.objects.get(code="starter")
    assert plan.merchant == merchant
    assert set(plan.prices.all()) == {price, fee}
    assert plan.features == {"rateLimit": 100, "monthlyQueryLimit": 10000, "webhooks": 3}

    taken = staff.post(reverse("admin:catalog_plan_add"), {**data, "name": "Again"})
    assert "code" in form_errors(taken)
    bad_features = staff.post(
        reverse("admin:catalog_plan_add"), {**data, "code": "other", "features": '{"rateLimit": -5}'}
    )
    assert "features.rateLimit" in form_errors(bad_features)["features"][0]
    usd_fee = services.price_create(
        merchant=merchant, billable_metric=None, payment_term="in_advance", currency="USD", amount="5"
    )
    mismatch = staff.post(reverse("admin:catalog_plan_add"), {**data, "code": "other", "prices": [str(usd_fee.pk)]})
    assert "USD" in form_errors(mismatch)["prices"][0]
    assert Plan.objects.count() == 1

    change = staff.post(
        reverse("admin:catalog_plan_change", args=[plan.pk]), {**data, "prices": [str(fee.pk)], "name": "Starter 2"}
    )
    assert change.status_code == 302
    plan.refresh_from_db()
    assert (plan.name, list(plan.prices.all())) == ("Starter 2", [fee])


def test_plan_price_choices_are_scoped_to_the_merchant(staff, merchant, metric):
    other = MerchantFactory()
    foreign = services.price_create(
        merchant=other, billable_metric=None, payment_term="in_advance", currency="USD", amount="5"
    )
    mine = services.price_create(
        merchant=merchant, billable_metric=None, payment_term="in_advance", currency="USD", amount="5"
    )
    form = staff.get(reverse("admin:catalog_plan_add")).context["adminform"].form
    assert list(form.fields["prices"].queryset) == [mine]
    assert foreign.merchant != merchant
    assert list(form.fields["product"].queryset) == [metric.product]


def test_archive_action_and_no_delete(staff, merchant, metric):
    price = services.price_create(
        merchant=merchant,
        billable_metric=metric,
        payment_term="instant",
        currency="USDC",
        properties={"unitPrice": "0.001"},
    )
    staff.post(
        reverse("admin:catalog_price_changelist"), {"action": "archive_prices", "_selected_action": [str(price.pk)]}
    )
    price.refresh_from_db()
    assert price.archived_at is not None
    assert staff.get(reverse("admin:catalog_price_delete", args=[price.pk])).status_code == 403


def test_changing_a_price_goes_through_the_same_validation(staff, merchant, metric):
    price = services.price_create(
        merchant=merchant,
        billable_metric=metric,
        model="graduated",
        payment_term="in_arrears",
        currency="USDC",
        properties=GRADUATED,
    )
    url = reverse("admin:catalog_price_change", args=[price.pk])
    refused = staff.post(url, price_form(metric, properties=json.dumps(OVERLAPPING)))
    assert "properties" in form_errors(refused)
    accepted = staff.post(url, price_form(metric, invoice_display_name="Renamed"))
    assert accepted.status_code == 302
    price.refresh_from_db()
    assert price.invoice_display_name == "Renamed"
