"""GET /v0/billableMetrics/{id}/meter."""

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from apps.catalog.models import Aggregation
from tests.usage.rows import UsageWorld, at

FROM = "2025-03-01T00:00:00Z"
TO = "2025-03-04T00:00:00Z"


def url(metric) -> str:
    return f"/v0/billableMetrics/{metric.id}/meter"


@pytest.fixture
def world(api):
    return UsageWorld(api.merchant)


@pytest.fixture
def requests_metric(world):
    """A SUM of `tokens`, grouped by region and model, with usage on 1 and 3 March."""
    metric = world.metric(Aggregation.SUM, value_property="tokens", group_by=["region", "model"])
    world.report(metric, "2025-03-01T09:00", value="1.5", metadata={"region": "us", "model": "small"})
    world.report(metric, "2025-03-01T10:00", value="2", metadata={"region": "eu", "model": "small"})
    world.report(metric, "2025-03-03T10:00", value="10", metadata={"region": "us", "model": "large"})
    world.report(metric, "2025-03-04T00:00", value="1000", metadata={"region": "us"})  # at `to`: excluded
    return metric


def assert_field_error(response, field, code):
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["error"] == "validation_error", body
    assert {"field": field, "code": code} == {k: body["errors"][0][k] for k in ("field", "code")}, body
    return body


def test_meter_without_windows_or_groups(api, requests_metric):
    response = api.get(url(requests_metric), {"from": FROM, "to": TO})

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "object": "meter",
        "billableMetricId": str(requests_metric.id),
        "aggregation": "SUM",
        "from": FROM,
        "to": TO,
        "windowSize": None,
        "totalValue": "13.5",
        "windowedValues": [],
        "groupedValues": [],
    }


def test_a_merchant_id_in_the_meters_query_must_be_the_keys_merchant(api, requests_metric):
    own = api.get(url(requests_metric), {"from": FROM, "to": TO, "merchantId": str(api.merchant.public_id)})
    assert own.status_code == 200 and own.json()["totalValue"] == "13.5"
    other = api.get(
        url(requests_metric), {"from": FROM, "to": TO, "merchantId": "00000000-0000-0000-0000-000000000000"}
    )
    assert (other.status_code, other.json()["code"]) == (403, "MERCHANT_MISMATCH")


def test_meter_with_day_windows_and_two_group_keys(api, requests_metric):
    response = api.get(url(requests_metric), {"from": FROM, "to": TO, "windowSize": "DAY", "groupBy": "region,model"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["windowSize"] == "DAY"
    assert body["windowedValues"] == [
        {"windowStart": "2025-03-01T00:00:00Z", "windowEnd": "2025-03-02T00:00:00Z", "value": "3.5"},
        {"windowStart": "2025-03-02T00:00:00Z", "windowEnd": "2025-03-03T00:00:00Z", "value": "0"},
        {"windowStart": "2025-03-03T00:00:00Z", "windowEnd": "2025-03-04T00:00:00Z", "value": "10"},
    ]
    assert body["groupedValues"] == [
        {"group": {"region": "eu", "model": "small"}, "value": "2"},
        {"group": {"region": "us", "model": "large"}, "value": "10"},
        {"group": {"region": "us", "model": "small"}, "value": "1.5"},
    ]
    assert body["totalValue"] == "13.5"


def test_meter_of_one_customer_and_of_an_unknown_customer(api, world, requests_metric):
    other_customer, other_subscription = world.another_customer("other@example.com")
    world.report(
        requests_metric, "2025-03-02T00:00", value="100", customer=other_customer, subscription=other_subscription
    )

    def meter(customer_id):
        response = api.get(url(requests_metric), {"from": FROM, "to": TO, "customerId": str(customer_id)})
        assert response.status_code == 200, response.json()
        return response.json()["totalValue"]

    assert meter(world.customer.id) == "13.5"
    assert meter(other_customer.id) == "100"
    assert meter(uuid.uuid4()) == "0"


def test_an_avg_meter_without_usage_has_null_values(api, world):
    metric = world.metric(Aggregation.AVG, value_property="ms")

    response = api.get(
        url(metric), {"from": "2025-03-01T00:00:00Z", "to": "2025-03-01T02:00:00Z", "windowSize": "HOUR"}
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["totalValue"] is None
    assert [w["value"] for w in body["windowedValues"]] == [None, None]


def test_from_defaults_to_30_days_before_to_and_to_to_now(api, world):
    metric = world.metric(Aggregation.COUNT)
    now = timezone.now()
    world.report(metric, now - dt.timedelta(days=29), quantity="2")
    world.report(metric, now - dt.timedelta(days=31), quantity="40")
    world.report(metric, now + dt.timedelta(hours=1), quantity="500")

    response = api.get(url(metric))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["totalValue"] == "2"
    start = dt.datetime.fromisoformat(body["from"])
    end = dt.datetime.fromisoformat(body["to"])
    assert end - start == dt.timedelta(days=30)
    assert now <= end <= timezone.now()

    only_to = api.get(url(metric), {"to": "2025-03-31T00:00:00Z"}).json()
    assert only_to["from"] == "2025-03-01T00:00:00Z"


def test_offsets_in_from_and_to_are_reported_in_utc(api, world):
    metric = world.metric(Aggregation.COUNT)
    world.report(metric, "2025-03-01T23:30")

    response = api.get(url(metric), {"from": "2025-03-02T00:00:00+01:00", "to": "2025-03-02T01:00:00+01:00"})

    assert response.status_code == 200, response.json()
    assert (response.json()["from"], response.json()["to"]) == ("2025-03-01T23:00:00Z", "2025-03-02T00:00:00Z")
    assert response.json()["totalValue"] == "1"


@pytest.mark.parametrize("window_size", ["WEEK", "day", "1h"])
def test_an_unknown_window_size_is_400(api, requests_metric, window_size):
    response = api.get(url(requests_metric), {"from": FROM, "to": TO, "windowSize": window_size})

    assert_field_error(response, "windowSize", "INVALID_CHOICE")


@pytest.mark.parametrize("end", [FROM, "2025-02-28T00:00:00Z"])
def test_from_not_before_to_is_400(api, requests_metric, end):
    response = api.get(url(requests_metric), {"from": FROM, "to": end})

    assert_field_error(response, "from", "INVALID_RANGE")


def test_a_malformed_date_is_400(api, requests_metric):
    response = api.get(url(requests_metric), {"from": "yesterday", "to": TO})

    assert_field_error(response, "from", "INVALID")


def test_hour_windows_over_more_than_366_days_are_400_naming_the_limit(api, requests_metric):
    start = at("2024-01-01T00:00")
    ok = api.get(
        url(requests_metric),
        {"from": start.isoformat(), "to": (start + dt.timedelta(days=366)).isoformat(), "windowSize": "HOUR"},
    )
    too_long = api.get(
        url(requests_metric),
        {"from": start.isoformat(), "to": (start + dt.timedelta(days=367)).isoformat(), "windowSize": "HOUR"},
    )

    assert ok.status_code == 200, ok.json()
    assert len(ok.json()["windowedValues"]) == 366 * 24
    body = assert_field_error(too_long, "windowSize", "RANGE_TOO_LONG")
    assert "366 days" in body["message"]


def test_day_windows_over_too_many_days_are_400(api, requests_metric):
    response = api.get(url(requests_metric), {"from": "2000-01-01T00:00:00Z", "to": TO, "windowSize": "DAY"})

    body = assert_field_error(response, "windowSize", "RANGE_TOO_LONG")
    assert "9000" in body["message"]


def test_a_group_by_key_the_metric_does_not_have_is_400_naming_it(api, requests_metric):
    response = api.get(url(requests_metric), {"from": FROM, "to": TO, "groupBy": "region,customerTier"})

    body = assert_field_error(response, "groupBy", "UNKNOWN_GROUP_BY_KEY")
    assert "customerTier" in body["message"]
    assert "region, model" in body["message"]


def test_a_malformed_customer_id_is_400(api, requests_metric):
    response = api.get(url(requests_metric), {"from": FROM, "to": TO, "customerId": "cus_123"})

    assert_field_error(response, "customerId", "INVALID")


def test_another_merchants_metric_is_404(other_api, requests_metric):
    response = other_api.get(url(requests_metric), {"from": FROM, "to": TO})

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"
    assert str(requests_metric.id) in response.json()["message"]


def test_the_live_metric_is_404_with_the_sandbox_key(test_api, requests_metric):
    response = test_api.get(url(requests_metric), {"from": FROM, "to": TO})

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_an_unknown_metric_is_404(api):
    response = api.get(f"/v0/billableMetrics/{uuid.uuid4()}/meter")

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_the_sandbox_meter_counts_only_sandbox_usage(test_api, sandbox, api, requests_metric):
    sandbox_world = UsageWorld(sandbox)
    metric = sandbox_world.metric(Aggregation.SUM)
    sandbox_world.report(metric, "2025-03-02T00:00", quantity="4")

    response = test_api.get(url(metric), {"from": FROM, "to": TO})

    assert response.status_code == 200, response.json()
    assert response.json()["totalValue"] == "4"
    assert api.get(url(requests_metric), {"from": FROM, "to": TO}).json()["totalValue"] == "13.5"


def test_schema_documents_the_meter(client, db):
    import yaml

    document = yaml.safe_load(client.get("/v0/schema").content)
    operation = document["paths"]["/v0/billableMetrics/{metric_id}/meter"]["get"]
    assert operation["operationId"] == "billable_metrics_meter"
    assert {"customerId", "from", "to", "windowSize", "groupBy"} <= {p["name"] for p in operation["parameters"]}
