"""POST/GET /v0/prices, GET/PATCH/DELETE /v0/prices/{id}."""

import pytest

from apps.catalog.models import Price
from tests.catalog.conftest import (
    GRADUATED,
    assert_error,
    assert_field_error,
    make_fee,
    make_metric,
    make_plan,
    make_price,
    make_product,
)

PRICE_KEYS = {
    "id",
    "object",
    "livemode",
    "merchantId",
    "billableMetricId",
    "model",
    "paymentTerm",
    "invoiceDisplayName",
    "currency",
    "properties",
    "freeUnits",
    "allowPriceOverride",
    "amount",
    "archivedAt",
    "createdAt",
    "updatedAt",
}


def post(api, body):
    return api.post("/v0/prices", body)


def metered(metric_id, **overrides):
    return {
        "billableMetricId": metric_id,
        "model": "standard",
        "paymentTerm": "instant",
        "currency": "USDC",
        "properties": {"unitPrice": "0.001"},
        **overrides,
    }


def test_create_standard_price_returns_the_contract_shape(api, metric):
    response = post(api, metered(metric["id"], freeUnits="100", invoiceDisplayName="Searches", allowPriceOverride=True))
    assert response.status_code == 201
    body = response.json()
    assert set(body) == PRICE_KEYS
    assert body["object"] == "price"
    assert body["billableMetricId"] == metric["id"]
    assert body["properties"] == {"unitPrice": "0.001"}
    assert (body["freeUnits"], body["amount"], body["allowPriceOverride"]) == ("100", None, True)
    assert body["archivedAt"] is None


def test_graduated_tiers_are_stored_normalized(api, metric):
    body = make_price(api, metric["id"], model="graduated", paymentTerm="in_arrears", properties=GRADUATED)
    assert body["properties"] == {
        "tiers": [
            {"upTo": "1000", "unitPrice": "0.002", "flatFee": "0"},
            {"upTo": "10000", "unitPrice": "0.0015", "flatFee": "0"},
            {"upTo": None, "unitPrice": "0.001", "flatFee": "0"},
        ]
    }
    from decimal import Decimal

    assert Price.objects.get(pk=body["id"]).properties["tiers"][1]["unitPrice"] == "0.0015"
    assert Decimal(body["properties"]["tiers"][1]["unitPrice"]) == Decimal("0.0015")


@pytest.mark.parametrize(
    ("model", "properties", "term"),
    [
        ("volume", GRADUATED, "in_arrears"),
        ("package", {"packageSize": "100", "packagePrice": "1.5"}, "instant"),
        ("percentage", {"percentage": "0.02", "minCharge": "0.01", "maxCharge": None}, "instant"),
    ],
)
def test_other_models_are_accepted(api, product, model, properties, term):
    metric = make_metric(api, product["id"], aggregation="SUM")
    created = make_price(api, metric["id"], model=model, properties=properties, paymentTerm=term)
    assert (created["model"], created["paymentTerm"]) == (model, term)


def test_an_instant_volume_price_is_400_on_create_and_on_patch(api, metric):
    refused = assert_field_error(
        post(api, metered(metric["id"], model="volume", properties=GRADUATED)),
        "paymentTerm",
        "VOLUME_PRICE_NOT_INSTANT",
    )
    message = refused["errors"][0]["message"]
    assert "period's total" in message and "in_arrears" in message and "graduated" in message
    assert not Price.objects.exists()

    volume = make_price(api, metric["id"], model="volume", properties=GRADUATED, paymentTerm="in_arrears")
    assert_field_error(
        api.patch(f"/v0/prices/{volume['id']}", {"paymentTerm": "instant"}), "paymentTerm", "VOLUME_PRICE_NOT_INSTANT"
    )
    standard = make_price(api, metric["id"])
    assert_field_error(
        api.patch(f"/v0/prices/{standard['id']}", {"model": "volume", "properties": GRADUATED}),
        "paymentTerm",
        "VOLUME_PRICE_NOT_INSTANT",
    )
    assert api.get(f"/v0/prices/{volume['id']}").json()["paymentTerm"] == "in_arrears"
    assert api.get(f"/v0/prices/{standard['id']}").json()["model"] == "standard"


def test_overlapping_tiers_are_400_naming_the_tier(api, metric):
    tiers = {
        "tiers": [
            {"upTo": "1000", "unitPrice": "0.002"},
            {"upTo": "500", "unitPrice": "0.001"},
            {"upTo": None, "unitPrice": "0"},
        ]
    }
    body = assert_field_error(
        post(api, metered(metric["id"], model="graduated", properties=tiers)),
        "properties.tiers[1].upTo",
        "TIERS_OVERLAP",
    )
    assert "overlaps tiers[0]" in body["errors"][0]["message"]
    assert not Price.objects.exists()


def test_tiers_with_a_gap_are_400_naming_the_tier(api, metric):
    open_middle = {"tiers": [{"upTo": None, "unitPrice": "0.002"}, {"upTo": "500", "unitPrice": "0.001"}]}
    assert_field_error(
        post(api, metered(metric["id"], model="volume", properties=open_middle)),
        "properties.tiers[0].upTo",
        "TIERS_GAP",
    )
    closed_end = {"tiers": [{"upTo": "100", "unitPrice": "0.002"}]}
    assert_field_error(
        post(api, metered(metric["id"], model="graduated", properties=closed_end)),
        "properties.tiers[0].upTo",
        "TIERS_GAP",
    )


def test_float_amounts_are_400_asking_for_a_string(api, metric):
    body = assert_field_error(
        post(api, metered(metric["id"], properties={"unitPrice": 0.001})), "properties.unitPrice", "FLOAT_NOT_ALLOWED"
    )
    assert "string" in body["errors"][0]["message"]
    assert_field_error(post(api, metered(metric["id"], freeUnits=10.5)), "freeUnits", "FLOAT_NOT_ALLOWED")
    fee = {"paymentTerm": "in_advance", "currency": "USD", "amount": 49.0}
    assert_field_error(post(api, fee), "amount", "FLOAT_NOT_ALLOWED")


def test_unknown_property_key_is_400(api, metric):
    assert_field_error(
        post(api, metered(metric["id"], properties={"unit_price": "1"})), "properties.unit_price", "UNKNOWN_FIELD"
    )


def test_metered_price_needs_properties(api, metric):
    body = metered(metric["id"])
    del body["properties"]
    assert_field_error(post(api, body), "properties", "PROPERTIES_REQUIRED")


def test_unknown_enums_are_400(api, metric):
    assert_field_error(post(api, metered(metric["id"], model="tiered")), "model", "INVALID_CHOICE")
    assert_field_error(post(api, metered(metric["id"], paymentTerm="later")), "paymentTerm", "INVALID_CHOICE")
    assert_field_error(post(api, metered(metric["id"], currency="EUR")), "currency", "INVALID_CHOICE")
    assert_field_error(post(api, metered(metric["id"], allowPriceOverride="yes")), "allowPriceOverride")


def test_metered_price_cannot_be_billed_in_advance(api, metric):
    assert_field_error(
        post(api, metered(metric["id"], paymentTerm="in_advance")), "paymentTerm", "METERED_PRICE_IN_ADVANCE"
    )


def test_metered_price_has_no_amount(api, metric):
    assert_field_error(post(api, metered(metric["id"], amount="1")), "amount", "AMOUNT_ONLY_FOR_FEES")


@pytest.mark.parametrize("aggregation", ["AVG", "MIN", "MAX", "LATEST", "UNIQUE_COUNT"])
def test_instant_price_on_a_non_additive_metric_is_422(api, product, aggregation):
    metric = make_metric(api, product["id"], aggregation=aggregation)
    body = assert_error(post(api, metered(metric["id"])), 422, "INSTANT_PRICE_NEEDS_SUM_OR_COUNT")
    assert body["details"]["aggregation"] == aggregation
    assert make_price(api, metric["id"], paymentTerm="in_arrears")["paymentTerm"] == "in_arrears"


def test_metric_of_another_merchant_is_404_naming_billable_metric_id(api, other_api):
    foreign_metric = make_metric(other_api, make_product(other_api)["id"])
    body = assert_error(post(api, metered(foreign_metric["id"])), 404, "NOT_FOUND")
    assert body["details"]["field"] == "billableMetricId"


def test_fee_needs_amount_and_the_standard_model(api):
    body = make_fee(api, amount="49", invoiceDisplayName="Starter plan")
    assert (body["billableMetricId"], body["amount"], body["properties"], body["freeUnits"]) == (None, "49.00", {}, "0")
    assert_field_error(post(api, {"paymentTerm": "in_advance", "currency": "USD"}), "amount", "FEE_AMOUNT_REQUIRED")
    assert_field_error(
        post(api, {"model": "graduated", "paymentTerm": "in_advance", "currency": "USD", "amount": "1"}),
        "model",
        "FEE_MODEL_MUST_BE_STANDARD",
    )
    assert_field_error(
        post(api, {"paymentTerm": "instant", "currency": "USD", "amount": "1"}), "paymentTerm", "FEE_PAYMENT_TERM"
    )
    assert_field_error(
        post(api, {"paymentTerm": "in_arrears", "currency": "USD", "amount": "1", "properties": {"unitPrice": "1"}}),
        "properties",
        "FEE_HAS_NO_PROPERTIES",
    )
    assert_field_error(post(api, {"paymentTerm": "in_arrears", "currency": "USD", "amount": "-1"}), "amount")


def test_usdc_amount_renders_with_six_places(api):
    assert make_fee(api, currency="USDC", amount="0.5")["amount"] == "0.500000"


def test_list_hides_archived_and_filters(api, metric, product):
    other_metric = make_metric(api, product["id"], name="Other")
    usdc = make_price(api, metric["id"])
    usd = make_price(api, metric["id"], currency="USD")
    make_price(api, other_metric["id"])
    archived = make_price(api, metric["id"])
    assert api.delete(f"/v0/prices/{archived['id']}").status_code == 200
    page = api.get("/v0/prices", {"billableMetricId": metric["id"]}).json()
    assert [p["id"] for p in page["data"]] == [usd["id"], usdc["id"]]  # newest first
    page = api.get("/v0/prices", {"billableMetricId": metric["id"], "currency": "USD"}).json()
    assert [p["id"] for p in page["data"]] == [usd["id"]]
    assert api.get("/v0/prices").json()["pagination"]["total"] == 3
    assert_field_error(api.get("/v0/prices", {"currency": "EUR"}), "currency")


def test_delete_archives_and_the_price_stays_readable(api, metric):
    price = make_price(api, metric["id"])
    response = api.delete(f"/v0/prices/{price['id']}")
    assert response.status_code == 200
    assert response.json()["archivedAt"] is not None
    assert api.get(f"/v0/prices/{price['id']}").json()["archivedAt"] == response.json()["archivedAt"]
    assert api.delete(f"/v0/prices/{price['id']}").json()["archivedAt"] == response.json()["archivedAt"]
    assert_error(api.patch(f"/v0/prices/{price['id']}", {"invoiceDisplayName": "x"}), 422, "PRICE_ARCHIVED")
    assert Price.objects.filter(pk=price["id"]).exists()


def test_patch_validates_the_merged_price(api, metric):
    price = make_price(api, metric["id"])
    assert_field_error(
        api.patch(f"/v0/prices/{price['id']}", {"model": "graduated"}), "properties.unitPrice", "UNKNOWN_FIELD"
    )
    response = api.patch(
        f"/v0/prices/{price['id']}", {"model": "graduated", "properties": GRADUATED, "paymentTerm": "in_arrears"}
    )
    assert response.status_code == 200
    assert response.json()["model"] == "graduated"
    assert len(response.json()["properties"]["tiers"]) == 3
    bad = {
        "tiers": [{"upTo": "10", "unitPrice": "1"}, {"upTo": "10", "unitPrice": "1"}, {"upTo": None, "unitPrice": "1"}]
    }
    assert_field_error(
        api.patch(f"/v0/prices/{price['id']}", {"properties": bad}), "properties.tiers[1].upTo", "TIERS_OVERLAP"
    )
    assert api.get(f"/v0/prices/{price['id']}").json()["model"] == "graduated"


def test_patch_to_instant_on_an_average_metric_is_422(api, product):
    metric = make_metric(api, product["id"], aggregation="AVG")
    price = make_price(api, metric["id"], paymentTerm="in_arrears")
    assert_error(
        api.patch(f"/v0/prices/{price['id']}", {"paymentTerm": "instant"}), 422, "INSTANT_PRICE_NEEDS_SUM_OR_COUNT"
    )


def test_patch_currency_of_a_price_on_a_plan_is_422(api, product, metric):
    price = make_price(api, metric["id"])
    make_plan(api, product["id"], prices=[price["id"]])
    body = assert_error(api.patch(f"/v0/prices/{price['id']}", {"currency": "USD"}), 422, "PRICE_CURRENCY_MISMATCH")
    assert body["details"]["planCurrency"] == "USDC"
    assert api.get(f"/v0/prices/{price['id']}").json()["currency"] == "USDC"
    assert api.patch(f"/v0/prices/{price['id']}", {"invoiceDisplayName": "Searches"}).status_code == 200


def test_patch_can_turn_a_metered_price_into_a_fee(api, metric):
    price = make_price(api, metric["id"], paymentTerm="in_arrears")
    response = api.patch(f"/v0/prices/{price['id']}", {"billableMetricId": None, "amount": "10"})
    assert response.status_code == 200
    assert (response.json()["billableMetricId"], response.json()["amount"], response.json()["properties"]) == (
        None,
        "10.000000",
        {},
    )


def test_another_merchant_and_other_mode_get_404(api, test_api, other_api, metric):
    price = make_price(api, metric["id"])
    for client in (test_api, other_api):
        assert_error(client.get(f"/v0/prices/{price['id']}"), 404, "NOT_FOUND")
        assert_error(client.delete(f"/v0/prices/{price['id']}"), 404, "NOT_FOUND")
        assert_error(client.patch(f"/v0/prices/{price['id']}", {"invoiceDisplayName": "x"}), 404, "NOT_FOUND")
    assert Price.objects.get(pk=price["id"]).archived_at is None


def test_idempotency_key_replays_the_created_price(api, metric):
    body = metered(metric["id"])
    first = api.post("/v0/prices", body, HTTP_IDEMPOTENCY_KEY="price-1")
    second = api.post("/v0/prices", body, HTTP_IDEMPOTENCY_KEY="price-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert Price.objects.count() == 1


def test_list_filters_refuse_what_they_cannot_read_with_the_api_wide_codes(api):
    """Catalog list filters use the same query-parameter rules as every other list."""
    bad_id = api.get("/v0/prices", {"billableMetricId": "nope"})
    assert bad_id.status_code == 400 and bad_id.json()["errors"][0] == {
        "field": "billableMetricId",
        "message": "must be an id (UUID), got 'nope'",
        "code": "INVALID_ID",
    }
    bad_currency = api.get("/v0/prices", {"currency": "XXX"})
    assert bad_currency.status_code == 400 and bad_currency.json()["errors"][0]["code"] == "INVALID_CHOICE"
    assert api.get("/v0/plans", {"productId": "nope"}).json()["errors"][0]["code"] == "INVALID_ID"
