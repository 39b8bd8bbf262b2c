"""Merchant staff build the catalog in the admin, validated by the same services as the API."""

import json

import pytest
from django.contrib.admin.models import LogEntry
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


def test_an_instant_volume_price_is_refused_on_its_payment_term(staff, metric):
    response = staff.post(
        reverse("admin:catalog_price_add"), price_form(metric, model="volume", payment_term="instant")
    )
    assert response.status_code == 200
    assert "a volume price cannot be instant" in form_errors(response)["payment_term"][0]
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
        "invoicing": "automatic",
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


# --- tier rows on the price page -----------------------------------------------------------


def tier_rows(*rows, initial=0):
    """The POST fields of the price page's tier formset: management form plus (upTo, unitPrice, flatFee) rows."""
    data = {"tiers-TOTAL_FORMS": str(len(rows)), "tiers-INITIAL_FORMS": str(initial)}
    for index, (up_to, unit_price, flat_fee) in enumerate(rows):
        data.update({f"tiers-{index}-upTo": up_to, f"tiers-{index}-unitPrice": unit_price})
        data[f"tiers-{index}-flatFee"] = flat_fee
    return data


ROW_TIERS = [
    {"upTo": "1000", "unitPrice": "0.002000", "flatFee": "0"},
    {"upTo": "10000", "unitPrice": "0.000000000001"},
    {"upTo": None, "unitPrice": "0.0005", "flatFee": "12.50"},
]


def test_staff_creates_a_graduated_price_from_tier_rows_stored_as_the_api_would(staff, merchant, metric, api):
    rows = tier_rows(("1000", "0.002000", "0"), ("", "", ""), ("10000", "0.000000000001", ""), ("", "0.0005", "12.50"))
    # The box holds other tiers: the filled rows win.
    response = staff.post(reverse("admin:catalog_price_add"), {**price_form(metric), **rows})
    assert response.status_code == 302
    price = Price.objects.get()
    assert price.merchant == merchant
    via_api = api.post(
        "/v0/prices",
        {
            "billableMetricId": str(metric.pk),
            "model": "graduated",
            "paymentTerm": "in_arrears",
            "currency": "USDC",
            "properties": {"tiers": ROW_TIERS},
        },
    )
    assert via_api.status_code == 201
    assert price.properties == via_api.json()["properties"]
    assert price.properties == {
        "tiers": [
            {"upTo": "1000", "unitPrice": "0.002", "flatFee": "0"},
            {"upTo": "10000", "unitPrice": "0.000000000001", "flatFee": "0"},
            {"upTo": None, "unitPrice": "0.0005", "flatFee": "12.5"},
        ]
    }


def test_overlapping_tier_rows_are_refused_naming_the_tier(staff, metric):
    rows = tier_rows(("1000", "0.002", ""), ("1000", "0.001", ""), ("", "0.0005", ""))
    response = staff.post(reverse("admin:catalog_price_add"), {**price_form(metric, model="volume"), **rows})
    assert response.status_code == 200
    assert not Price.objects.exists()
    top = form_errors(response)["__all__"][0]
    assert top.startswith("Tier rows: properties.tiers[1].upTo: tiers[1] (upTo 1000) overlaps tiers[0]")
    row_errors = response.context["tier_formset"].errors
    assert "overlaps tiers[0]" in row_errors[1]["upTo"][0]
    assert row_errors[0] == {} and row_errors[2] == {}
    page = response.content.decode()
    assert "Please correct the error below." in page
    assert page.count("tiers[1] (upTo 1000) overlaps tiers[0]") == 2  # at the top and on the row
    assert 'name="tiers-1-upTo" value="1000"' in page  # the rows are shown again as typed


def test_a_gap_left_by_an_open_tier_row_is_refused_on_that_row(staff, metric):
    rows = tier_rows(("", "0.002", ""), ("1000", "0.001", ""))
    response = staff.post(reverse("admin:catalog_price_add"), {**price_form(metric), **rows})
    assert response.status_code == 200
    assert "tiers[0] has no upTo but is not the last tier" in form_errors(response)["__all__"][0]
    assert "only the last tier may leave upTo empty" in response.context["tier_formset"].errors[0]["upTo"][0]
    assert not Price.objects.exists()


def test_change_page_of_a_graduated_price_shows_its_tiers_in_the_rows(staff, merchant, metric):
    price = services.price_create(
        merchant=merchant,
        billable_metric=metric,
        model="graduated",
        payment_term="in_arrears",
        currency="USDC",
        properties={"tiers": ROW_TIERS},
    )
    response = staff.get(reverse("admin:catalog_price_change", args=[price.pk]))
    assert response.status_code == 200
    formset = response.context["tier_formset"]
    assert [row.initial for row in formset.initial_forms] == [
        {"upTo": "1000", "unitPrice": "0.002", "flatFee": "0"},
        {"upTo": "10000", "unitPrice": "0.000000000001", "flatFee": "0"},
        {"upTo": "", "unitPrice": "0.0005", "flatFee": "12.5"},
    ]
    page = response.content.decode()
    assert 'name="tiers-1-unitPrice" value="0.000000000001"' in page
    assert 'name="tiers-INITIAL_FORMS" value="3"' in page

    # Saving the page with a row changed updates the tiers through the service.
    rows = tier_rows(("1000", "0.002", "0"), ("20000", "0.000000000001", "0"), ("", "0.0005", "12.5"), initial=3)
    response = staff.post(reverse("admin:catalog_price_change", args=[price.pk]), {**price_form(metric), **rows})
    assert response.status_code == 302
    price.refresh_from_db()
    assert price.properties["tiers"][1] == {"upTo": "20000", "unitPrice": "0.000000000001", "flatFee": "0"}
    assert "Properties" in LogEntry.objects.get(object_id=str(price.pk)).get_change_message()


def test_standard_price_saves_from_the_box_and_ignores_tier_rows(staff, metric):
    rows = tier_rows(("1000", "0.002", ""), ("1000", "0.001", ""))  # would overlap if they were used
    data = price_form(metric, model="standard", properties=json.dumps({"unitPrice": "0.000000000001"}))
    response = staff.post(reverse("admin:catalog_price_add"), {**data, **rows})
    assert response.status_code == 302
    assert Price.objects.get().properties == {"unitPrice": "0.000000000001"}
    page = staff.get(reverse("admin:catalog_price_change", args=[Price.objects.get().pk])).content.decode()
    assert 'name="tiers-INITIAL_FORMS" value="0"' in page


def test_a_graduated_price_with_empty_rows_uses_the_box(staff, metric):
    response = staff.post(reverse("admin:catalog_price_add"), {**price_form(metric), **tier_rows(("", "", ""))})
    assert response.status_code == 302
    assert Price.objects.get().properties == {
        "tiers": [
            {"upTo": "1000", "unitPrice": "0.002", "flatFee": "0"},
            {"upTo": None, "unitPrice": "0.001", "flatFee": "0"},
        ]
    }


def test_price_page_loads_the_add_row_script_after_jquery(staff):
    page = staff.get(reverse("admin:catalog_price_add")).content.decode()
    assert page.index("admin/js/jquery.init.js") < page.index("admin/js/inlines.js")
    assert 'id="tiers-empty"' in page
