"""The contract's limits: bodies up to 8 MiB (413 REQUEST_TOO_LARGE beyond), and Stripe's
metadata rule on every metadata field (400 INVALID_METADATA, never a 500 nor a stored breach)."""

import json

import pytest

from apps.catalog.models import Product
from apps.customers.models import Customer
from apps.usage.models import UsageEvent
from tests.usage.world import Billing

MIB = 1024 * 1024


def post_raw(api, path, raw: str):
    return api.client.post(path, data=raw, content_type="application/json")


def batch_with_metadata(billing, metric, count=1000):
    """`count` events, each with 6 metadata values of 500 characters (about 3.3 KB an event)."""
    return {
        "events": [
            billing.event(f"big-{i}", metric, metadata={f"k{j}": f"{i:04d}" + "x" * 496 for j in range(6)})
            for i in range(count)
        ]
    }


def test_a_full_batch_of_3_3_mb_with_metadata_is_accepted(api):
    billing = Billing(api.merchant)
    metric = billing.metric(properties={"unitPrice": "0.000001"})
    billing.fund("1")
    raw = json.dumps(batch_with_metadata(billing, metric))
    assert 3.2e6 < len(raw) < 3.4e6
    response = post_raw(api, "/v0/usage/batch", raw)
    assert response.status_code == 201, response.json()
    assert response.json()["summary"]["succeeded"] == 1000
    assert UsageEvent.objects.count() == 1000
    assert UsageEvent.objects.get(idempotency_key="big-7").metadata["k5"] == "0007" + "x" * 496


@pytest.mark.parametrize("path", ["/v0/usage/batch", "/v0/usage", "/v0/products", "/v0/customers"])
def test_a_9_mib_body_is_413_request_too_large_and_nothing_is_written(api, path):
    raw = json.dumps({"name": "x", "padding": "y" * (9 * MIB)})
    response = post_raw(api, path, raw)
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "REQUEST_TOO_LARGE"
    assert body["details"] == {"limit": 8 * MIB, "size": len(raw)}
    assert "8 MiB" in body["message"]
    assert not Product.objects.exists() and not Customer.objects.exists() and not UsageEvent.objects.exists()


def test_a_body_of_exactly_8_mib_is_read(api):
    raw = json.dumps({"name": "Big", "description": "d" * (8 * MIB - 40)})
    assert len(raw) <= 8 * MIB
    response = post_raw(api, "/v0/products", raw)
    assert response.status_code != 413  # read and judged: description is too long or accepted
    assert response.status_code in (201, 400)


def test_an_oversized_form_to_the_admin_is_413_not_a_crash(client, db):
    response = client.post(
        "/admin/login/", data="a=" + "b" * (9 * MIB), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413


GOOD = {
    "fifty keys": {f"key{i}": "v" for i in range(50)},
    "a key of 40": {"k" * 40: "v"},
    "a value of 500": {"k": "v" * 500},
    "numbers and booleans": {"n": 3, "f": 1.5, "b": True, "s": "text"},
    "empty": {},
}
BAD = {
    "51 keys": ({f"key{i}": "v" for i in range(51)}, "metadata"),
    "a key of 41": ({"k" * 41: "v"}, "metadata." + "k" * 41),
    "an empty key": ({"": "v"}, "metadata"),
    "a value of 501": ({"k": "v" * 501}, "metadata.k"),
    "a nested object": ({"k": {"a": "b"}}, "metadata.k"),
    "a list": ({"k": ["a"]}, "metadata.k"),
    "a null value": ({"k": None}, "metadata.k"),
    "not an object": (["a"], "metadata"),
    "a string": ("text", "metadata"),
}


def nested(depth):
    value = "bottom"
    for _ in range(depth):
        value = {"k": value}
    return value


class Resource:
    """Each resource that carries metadata, created through the API."""

    def __init__(self, api, kind):
        self.api, self.kind = api, kind
        if kind == "usage":
            self.billing = Billing(api.merchant)
            self.metric = self.billing.metric(properties={"unitPrice": "0.000001"})
            self.billing.fund("1")

    def create(self, metadata, key="e1"):
        if self.kind == "product":
            return self.api.post("/v0/products", {"name": "Search", "metadata": metadata})
        if self.kind == "customer":
            return self.api.post("/v0/customers", {"consumer": {"email": "ada@example.com"}, "metadata": metadata})
        if self.kind == "usage":
            return self.api.post("/v0/usage", self.billing.event(key, self.metric, metadata=metadata))
        if self.kind == "usage batch":
            return self.api.post(
                "/v0/usage/batch", {"events": [self.billing.event(key, self.metric, metadata=metadata)]}
            )
        raise AssertionError(self.kind)

    def stored(self):
        model = {"product": Product, "customer": Customer}.get(self.kind, UsageEvent)
        return model.objects.count()


KINDS = ["product", "customer", "usage", "usage batch"]


@pytest.fixture(params=KINDS)
def resource(request, api):
    if request.param == "usage batch":
        resource = Resource(api, "usage")
        resource.kind = "usage batch"
        return resource
    return Resource(api, request.param)


@pytest.mark.parametrize("name", list(GOOD))
def test_metadata_within_the_rule_is_stored(resource, name):
    response = resource.create(GOOD[name])
    assert response.status_code in (200, 201), response.json()
    assert resource.stored() == 1


@pytest.mark.parametrize("name", list(BAD))
def test_metadata_breaking_the_rule_is_400_naming_it_and_nothing_is_stored(resource, name):
    metadata, field = BAD[name]
    response = resource.create(metadata)
    body = response.json()
    if resource.kind == "usage batch":
        assert response.status_code == 207, body
        assert body["failed"][0]["error"]["status"] == 400
        error = body["failed"][0]["error"]["errors"][0]
        assert error["code"] == "INVALID_METADATA", body
        assert error["field"] == f"events[0].{field}", body
    else:
        assert response.status_code == 400, body
        assert body["errors"][0]["field"] == field, body
        assert body["errors"][0]["code"] == "INVALID_METADATA"
    assert resource.stored() == 0


def test_product_metadata_nested_deep_is_400_by_the_metadata_rule(api):
    response = api.post("/v0/products", {"name": "Deep", "metadata": nested(200)})
    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "field": "metadata.k",
        "message": "values must be strings, numbers or booleans, not nested objects or lists",
        "code": "INVALID_METADATA",
    }


@pytest.mark.parametrize("depth", [940, 5000, 100_000])
def test_any_body_nested_too_deep_is_400_not_500(api, depth):
    """(Nested beyond what the parser follows: 400 MALFORMED_JSON; within it, each field's rule.)"""
    raw = '{"name": "Deep", "description": ' + '{"k": ' * depth + '"x"' + "}" * depth + "}"
    for path in ("/v0/products", "/v0/usage", "/v0/usage/batch"):
        response = post_raw(api, path, raw)
        assert response.status_code == 400, (path, depth, response.content[:300])
    assert not Product.objects.exists()


def test_patching_product_metadata_follows_the_rule(api):
    product = api.post("/v0/products", {"name": "Search"}).json()
    response = api.patch(f"/v0/products/{product['id']}", {"metadata": {f"key{i}": "v" for i in range(20000)}})
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "INVALID_METADATA"
    assert Product.objects.get().metadata == {}
