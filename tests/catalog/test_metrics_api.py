"""POST/GET /v0/billableMetrics, GET/PATCH /v0/billableMetrics/{id}."""

import pytest

from tests.catalog.conftest import assert_error, assert_field_error, make_metric, make_price, make_product


def test_create_metric_returns_the_contract_shape(api, product):
    response = api.post(
        "/v0/billableMetrics",
        {
            "productId": product["id"],
            "name": "Tokens",
            "description": "Model tokens",
            "unit": "token",
            "aggregation": "SUM",
            "valueProperty": "tokens",
            "groupBy": ["model", "region"],
            "merchantId": str(api.merchant.public_id),
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "object",
        "livemode",
        "merchantId",
        "productId",
        "name",
        "description",
        "unit",
        "aggregation",
        "valueProperty",
        "groupBy",
        "createdAt",
        "updatedAt",
    }
    assert body["object"] == "billableMetric"
    assert body["productId"] == product["id"]
    assert (body["aggregation"], body["valueProperty"], body["groupBy"]) == ("SUM", "tokens", ["model", "region"])


def test_defaults_value_property_blank_and_group_by_empty(api, product):
    body = make_metric(api, product["id"])
    assert (body["valueProperty"], body["groupBy"], body["unit"]) == ("", [], "search")


@pytest.mark.parametrize("aggregation", ["SUM", "COUNT", "AVG", "MIN", "MAX", "UNIQUE_COUNT", "LATEST"])
def test_every_aggregation_is_accepted(api, product, aggregation):
    assert make_metric(api, product["id"], aggregation=aggregation)["aggregation"] == aggregation


def test_unknown_aggregation_is_400_listing_the_choices(api, product):
    response = api.post("/v0/billableMetrics", {"productId": product["id"], "name": "x", "aggregation": "MEDIAN"})
    body = assert_field_error(response, "aggregation", "INVALID_CHOICE")
    assert "UNIQUE_COUNT" in body["errors"][0]["message"]


def test_group_by_must_be_a_list_of_distinct_keys(api, product):
    base = {"productId": product["id"], "name": "x", "aggregation": "SUM"}
    assert_field_error(api.post("/v0/billableMetrics", {**base, "groupBy": "region"}), "groupBy", "INVALID_GROUP_BY")
    assert_field_error(
        api.post("/v0/billableMetrics", {**base, "groupBy": ["a", "a"]}), "groupBy[1]", "DUPLICATE_GROUP_BY"
    )
    assert_field_error(api.post("/v0/billableMetrics", {**base, "groupBy": ["a", 3]}), "groupBy[1]")


def test_product_of_another_merchant_is_404_naming_product_id(api, other_api):
    foreign = make_product(other_api)
    response = api.post("/v0/billableMetrics", {"productId": foreign["id"], "name": "x", "aggregation": "SUM"})
    body = assert_error(response, 404, "NOT_FOUND")
    assert body["details"]["field"] == "productId"
    assert body["message"].startswith("productId")


def test_product_of_the_other_mode_is_404(api, test_api):
    sandbox_product = make_product(test_api)
    response = api.post("/v0/billableMetrics", {"productId": sandbox_product["id"], "name": "x", "aggregation": "SUM"})
    assert_error(response, 404, "NOT_FOUND")


def test_malformed_product_id_is_400(api):
    response = api.post("/v0/billableMetrics", {"productId": "abc", "name": "x", "aggregation": "SUM"})
    assert_field_error(response, "productId")


def test_list_filters_by_product(api):
    first, second = make_product(api, name="a"), make_product(api, name="b")
    mine = make_metric(api, first["id"])
    make_metric(api, second["id"])
    page = api.get("/v0/billableMetrics", {"productId": first["id"]}).json()
    assert [m["id"] for m in page["data"]] == [mine["id"]]
    assert page["pagination"]["total"] == 1
    assert api.get("/v0/billableMetrics").json()["pagination"]["total"] == 2
    assert_field_error(api.get("/v0/billableMetrics", {"productId": "nope"}), "productId")


def test_patch_updates_and_validates(api, metric):
    response = api.patch(f"/v0/billableMetrics/{metric['id']}", {"unit": "query", "groupBy": ["region"]})
    assert response.status_code == 200
    assert (response.json()["unit"], response.json()["groupBy"]) == ("query", ["region"])
    assert_field_error(api.patch(f"/v0/billableMetrics/{metric['id']}", {"aggregation": "sum"}), "aggregation")


def test_changing_aggregation_under_an_instant_price_is_422(api, metric):
    make_price(api, metric["id"], paymentTerm="instant")
    response = api.patch(f"/v0/billableMetrics/{metric['id']}", {"aggregation": "MAX"})
    body = assert_error(response, 422, "INSTANT_PRICE_NEEDS_SUM_OR_COUNT")
    assert body["details"]["field"] == "aggregation"
    assert api.get(f"/v0/billableMetrics/{metric['id']}").json()["aggregation"] == "COUNT"
    assert api.patch(f"/v0/billableMetrics/{metric['id']}", {"aggregation": "SUM"}).status_code == 200


def test_another_merchant_and_other_mode_get_404(api, test_api, other_api, metric):
    assert_error(other_api.get(f"/v0/billableMetrics/{metric['id']}"), 404, "NOT_FOUND")
    assert_error(test_api.patch(f"/v0/billableMetrics/{metric['id']}", {"name": "x"}), 404, "NOT_FOUND")
    assert test_api.get("/v0/billableMetrics").json()["data"] == []


def test_unique_count_needs_a_value_property(api, product):
    response = api.post(
        "/v0/billableMetrics", {"productId": product["id"], "name": "Users", "aggregation": "UNIQUE_COUNT"}
    )
    assert_field_error(response, "valueProperty", "VALUE_PROPERTY_REQUIRED")


def test_a_metric_with_usage_keeps_its_measure(api):
    from tests.usage.world import Billing

    billing = Billing(api.merchant)
    metric = billing.metric()
    billing.fund("1")
    assert api.post("/v0/usage", billing.event("one", metric)).status_code == 201
    response = api.patch(f"/v0/billableMetrics/{metric.id}", {"aggregation": "SUM"})
    assert response.status_code == 409
    assert response.json()["code"] == "METRIC_HAS_USAGE"
    assert api.patch(f"/v0/billableMetrics/{metric.id}", {"name": "Renamed"}).status_code == 200
