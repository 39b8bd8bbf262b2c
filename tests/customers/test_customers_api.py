"""/v0/customers: shapes, idempotency by email, validation, lists, tenancy, archive, PATCH."""

import uuid

import pytest
from django.utils.dateparse import parse_datetime

from apps.customers.models import Customer

URL = "/v0/customers"


def body(email="ada@example.com", **extra):
    return {"consumer": {"email": email, **extra.pop("consumer", {})}, **extra}


def create(api, email="ada@example.com", **extra):
    response = api.post(URL, body(email, **extra))
    assert response.status_code in (200, 201), response.json()
    return response.json()


def assert_validation_error(response, field, code=None):
    assert response.status_code == 400, response.json()
    payload = response.json()
    assert payload["error"] == "validation_error"
    fields = [e["field"] for e in payload["errors"]]
    assert field in fields, payload
    if code:
        assert code in [e["code"] for e in payload["errors"] if e["field"] == field]


# --- create and its shape -------------------------------------------------------------------


def test_create_returns_201_with_the_contract_shape(api):
    response = api.post(
        URL,
        {
            "merchantId": str(api.merchant.public_id),
            "consumer": {
                "name": "Ada Lovelace",
                "email": "ada@example.com",
                "phone": "+44 20 7946 0000",
                "address": {
                    "line1": "12 St James's Square",
                    "line2": "Flat 2",
                    "city": "London",
                    "state": "",
                    "country": "gb",
                    "zipCode": "SW1Y 4LB",
                },
            },
            "externalId": "crm-42",
            "metadata": {"plan": "early"},
        },
    )
    assert response.status_code == 201
    data = response.json()
    customer = Customer.objects.get()
    assert data == {
        "id": str(customer.pk),
        "customerId": str(customer.pk),
        "object": "customer",
        "livemode": True,
        "merchantId": str(api.merchant.public_id),
        "consumer": {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "phone": "+44 20 7946 0000",
            "address": {
                "line1": "12 St James's Square",
                "line2": "Flat 2",
                "city": "London",
                "state": None,
                "country": "GB",
                "zipCode": "SW1Y 4LB",
            },
        },
        "externalId": "crm-42",
        "metadata": {"plan": "early"},
        "wallets": [],
        "billingSettings": {"USDC": None, "USD": None},
        "archivedAt": None,
        "createdAt": data["createdAt"],
        "updatedAt": data["updatedAt"],
    }
    assert data["createdAt"].endswith("Z")
    assert parse_datetime(data["createdAt"]) == customer.created_at
    assert customer.merchant == api.merchant
    assert customer.address == {
        "line1": "12 St James's Square",
        "line2": "Flat 2",
        "city": "London",
        "country": "GB",
        "zipCode": "SW1Y 4LB",
    }


def test_minimal_create_renders_unset_fields_as_null(api):
    data = create(api, "min@example.com")
    assert data["consumer"] == {
        "name": None,
        "email": "min@example.com",
        "phone": None,
        "address": {"line1": None, "line2": None, "city": None, "state": None, "country": None, "zipCode": None},
    }
    assert data["externalId"] is None
    assert data["metadata"] == {}


def test_same_email_in_another_case_returns_200_with_the_same_customer_unchanged(api):
    first = api.post(URL, body("Ada@Example.com", consumer={"name": "Ada"}, externalId="a-1"))
    assert first.status_code == 201
    again = api.post(URL, body("  ada@EXAMPLE.COM ", consumer={"name": "Someone else"}, externalId="other"))
    assert again.status_code == 200
    assert again.json()["customerId"] == first.json()["customerId"]
    assert again.json()["consumer"]["name"] == "Ada"
    assert again.json()["externalId"] == "a-1"
    assert again.json()["updatedAt"] == first.json()["updatedAt"]
    assert Customer.objects.count() == 1


def test_email_is_stored_trimmed_with_its_domain_lower_cased(api):
    data = create(api, "  Grace.Hopper@NAVY.Mil ")
    assert data["consumer"]["email"] == "Grace.Hopper@navy.mil"


def test_another_merchant_with_the_same_email_gets_its_own_customer(api, other_api):
    mine = create(api, "shared@example.com")
    response = other_api.post(URL, body("shared@example.com"))
    assert response.status_code == 201
    assert response.json()["id"] != mine["id"]


def test_live_and_sandbox_keep_separate_customers_for_one_email(api, test_api, sandbox):
    live = api.post(URL, body("both@example.com"))
    test = test_api.post(URL, body("both@example.com"))
    assert live.status_code == test.status_code == 201
    assert live.json()["id"] != test.json()["id"]
    assert live.json()["livemode"] is True and test.json()["livemode"] is False
    assert live.json()["merchantId"] == test.json()["merchantId"] == str(api.merchant.pk)
    assert Customer.objects.get(pk=test.json()["id"]).merchant == sandbox
    assert test_api.get(f"{URL}/{live.json()['id']}").status_code == 404
    assert api.get(f"{URL}/{test.json()['id']}").status_code == 404
    assert [c["id"] for c in test_api.get(URL).json()["data"]] == [test.json()["id"]]


def test_merchant_id_of_another_merchant_is_403(api, other_api):
    response = api.post(URL, {**body(), "merchantId": str(other_api.merchant.public_id)})
    assert response.status_code == 403
    assert response.json()["code"] == "MERCHANT_MISMATCH"
    assert not Customer.objects.exists()


def test_idempotency_key_replays_the_first_response(api):
    first = api.post(URL, body("key@example.com"), HTTP_IDEMPOTENCY_KEY="cust-1")
    replay = api.post(URL, body("key@example.com"), HTTP_IDEMPOTENCY_KEY="cust-1")
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert replay["Idempotent-Replayed"] == "true"


# --- validation --------------------------------------------------------------------------------


def test_missing_email_is_400_naming_consumer_email(api):
    response = api.post(URL, {"consumer": {"name": "No Mail"}})
    assert_validation_error(response, "consumer.email", "REQUIRED")
    assert not Customer.objects.exists()


def test_missing_consumer_is_400(api):
    assert_validation_error(api.post(URL, {"externalId": "x"}), "consumer", "REQUIRED")


@pytest.mark.parametrize(
    "email",
    ["not-an-email", "a@", "@example.com", "two@@example.com", "", "   ", None, 1.5, 42, True, ["a@example.com"]],
)
def test_bad_email_is_400(api, email):
    assert_validation_error(api.post(URL, {"consumer": {"email": email}}), "consumer.email")
    assert not Customer.objects.exists()


def test_email_longer_than_320_characters_is_400(api):
    email = "a" * 64 + "@" + ".".join(["b" * 63] * 4) + ".com"
    assert len(email) > 320
    assert_validation_error(api.post(URL, body(email)), "consumer.email")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(consumer={"name": 3.14}), "consumer.name"),
        (body(consumer={"phone": 4420794600.0}), "consumer.phone"),
        (body(consumer={"name": "x" * 201}), "consumer.name"),
        (body(externalId=12.5), "externalId"),
        (body(externalId="x" * 256), "externalId"),
        (body(metadata=["a"]), "metadata"),
        (body(metadata={"score": {"nested": "no"}}), "metadata.score"),
        (body(metadata={"k" * 41: "v"}), "metadata." + "k" * 41),
        (body(metadata={f"k{i}": "v" for i in range(51)}), "metadata"),
        (body(consumer={"address": "London"}), "consumer.address"),
        (body(consumer={"address": {"city": 7.0}}), "consumer.address.city"),
        (body(consumer={"address": {"country": "GBR"}}), "consumer.address.country"),
        (body(consumer={"address": {"country": "XX"}}), "consumer.address.country"),
        (body(consumer={"address": {"country": "1A"}}), "consumer.address.country"),
        (body(consumer={"address": {"postcode": "SW1"}}), "consumer.address.postcode"),
    ],
)
def test_bad_fields_are_400_naming_the_field(api, payload, field):
    assert_validation_error(api.post(URL, payload), field)
    assert not Customer.objects.exists()


def test_body_that_is_not_json_is_400(api):
    response = api.client.post(URL, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "MALFORMED_JSON"


# --- list and filters ----------------------------------------------------------------------------


def test_list_is_paginated_newest_first(api):
    ids = [create(api, f"c{i}@example.com")["id"] for i in range(5)]
    page = api.get(URL, {"limit": 2, "offset": 1}).json()
    assert page["object"] == "list"
    assert page["pagination"] == {"limit": 2, "offset": 1, "total": 5}
    assert [c["id"] for c in page["data"]] == [ids[3], ids[2]]
    assert all(c["object"] == "customer" for c in page["data"])
    everything = api.get(URL, {"limit": 100}).json()["data"]
    assert [c["id"] for c in everything] == list(reversed(ids))


def test_list_filters_by_email_without_case_and_by_external_id(api):
    ada = create(api, "ada@example.com", externalId="crm-1")
    create(api, "grace@example.com", externalId="crm-2")
    by_email = api.get(URL, {"email": "ADA@example.COM"}).json()
    assert [c["id"] for c in by_email["data"]] == [ada["id"]]
    assert by_email["pagination"]["total"] == 1
    assert [c["id"] for c in api.get(URL, {"externalId": "crm-1"}).json()["data"]] == [ada["id"]]
    assert api.get(URL, {"externalId": "crm-9"}).json()["data"] == []


def test_list_never_shows_another_merchants_customers(api, other_api):
    create(api, "mine@example.com")
    assert other_api.get(URL).json() == {
        "object": "list",
        "data": [],
        "pagination": {"limit": 20, "offset": 0, "total": 0},
    }


def test_bad_limit_is_400(api):
    assert_validation_error(api.get(URL, {"limit": "ten"}), "limit")


# --- retrieve and tenancy ---------------------------------------------------------------------


def test_get_by_id_returns_the_customer(api):
    created = create(api, "ada@example.com")
    response = api.get(f"{URL}/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


def test_another_merchants_id_is_404_naming_the_id(api, other_api):
    created = create(api, "ada@example.com")
    url = f"{URL}/{created['id']}"
    for response in (other_api.get(url), other_api.patch(url, {"externalId": "x"}), other_api.delete(url)):
        assert response.status_code == 404
        assert response.json()["code"] == "NOT_FOUND"
        assert created["id"] in response.json()["message"]
    customer = Customer.objects.get(pk=created["id"])
    assert customer.archived_at is None and customer.external_id == ""


@pytest.mark.parametrize("customer_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_unknown_or_malformed_id_is_404(api, customer_id):
    response = api.get(f"{URL}/{customer_id}")
    assert response.status_code == 404
    assert customer_id in response.json()["message"]


# --- archive ----------------------------------------------------------------------------------------


def test_delete_archives_and_is_idempotent(api):
    created = create(api, "ada@example.com")
    url = f"{URL}/{created['id']}"
    first = api.delete(url)
    assert first.status_code == 200
    assert first.json()["id"] == created["id"]
    assert first.json()["archivedAt"] is not None
    again = api.delete(url)
    assert again.status_code == 200
    assert again.json()["archivedAt"] == first.json()["archivedAt"]
    assert Customer.objects.filter(pk=created["id"]).exists()


def test_archived_customer_leaves_lists_but_is_readable_by_id(api):
    created = create(api, "ada@example.com")
    keep = create(api, "grace@example.com")
    api.delete(f"{URL}/{created['id']}")
    assert [c["id"] for c in api.get(URL).json()["data"]] == [keep["id"]]
    assert api.get(URL, {"email": "ada@example.com"}).json()["data"] == []
    shown = api.get(f"{URL}/{created['id']}")
    assert shown.status_code == 200
    assert shown.json()["archivedAt"] is not None


def test_after_archive_the_same_email_creates_a_new_customer(api):
    old = create(api, "ada@example.com")
    api.delete(f"{URL}/{old['id']}")
    response = api.post(URL, body("ADA@example.com"))
    assert response.status_code == 201
    assert response.json()["id"] != old["id"]
    again = api.post(URL, body("ada@example.com"))
    assert again.status_code == 200
    assert again.json()["id"] == response.json()["id"]


def test_archived_customer_cannot_be_patched(api):
    created = create(api, "ada@example.com")
    api.delete(f"{URL}/{created['id']}")
    response = api.patch(f"{URL}/{created['id']}", {"externalId": "late"})
    assert response.status_code == 409
    assert response.json()["code"] == "CUSTOMER_ARCHIVED"


# --- PATCH --------------------------------------------------------------------------------------------


def test_patch_changes_only_the_given_fields(api):
    created = create(
        api,
        "ada@example.com",
        consumer={"name": "Ada", "phone": "123", "address": {"line1": "1 Road", "city": "London", "country": "GB"}},
        externalId="crm-1",
        metadata={"a": "1"},
    )
    response = api.patch(
        f"{URL}/{created['id']}",
        {"consumer": {"name": "Ada King", "address": {"city": "Paris", "country": "fr", "line1": None}}},
    )
    assert response.status_code == 200
    data = response.json()
    assert data["consumer"]["name"] == "Ada King"
    assert data["consumer"]["email"] == "ada@example.com"
    assert data["consumer"]["phone"] == "123"
    assert data["consumer"]["address"] == {
        "line1": None,
        "line2": None,
        "city": "Paris",
        "state": None,
        "country": "FR",
        "zipCode": None,
    }
    assert data["externalId"] == "crm-1"
    assert data["metadata"] == {"a": "1"}
    assert Customer.objects.get(pk=created["id"]).address == {"city": "Paris", "country": "FR"}


def test_patch_replaces_metadata_and_clears_with_null(api):
    created = create(api, "ada@example.com", metadata={"a": "1", "b": "2"}, externalId="x")
    url = f"{URL}/{created['id']}"
    assert api.patch(url, {"metadata": {"c": "3"}}).json()["metadata"] == {"c": "3"}
    cleared = api.patch(url, {"metadata": None, "externalId": None, "consumer": {"address": None}}).json()
    assert cleared["metadata"] == {}
    assert cleared["externalId"] is None


def test_patch_email_to_another_active_customers_is_409(api):
    create(api, "ada@example.com")
    grace = create(api, "grace@example.com")
    response = api.patch(f"{URL}/{grace['id']}", {"consumer": {"email": "ADA@example.com"}})
    assert response.status_code == 409
    assert response.json()["code"] == "CUSTOMER_EMAIL_TAKEN"
    assert Customer.objects.get(pk=grace["id"]).email == "grace@example.com"


def test_patch_email_to_an_archived_customers_or_its_own_in_another_case_is_allowed(api):
    old = create(api, "ada@example.com")
    api.delete(f"{URL}/{old['id']}")
    grace = create(api, "grace@example.com")
    url = f"{URL}/{grace['id']}"
    assert api.patch(url, {"consumer": {"email": "ada@example.com"}}).json()["consumer"]["email"] == "ada@example.com"
    assert api.patch(url, {"consumer": {"email": "Ada@example.com"}}).json()["consumer"]["email"] == "Ada@example.com"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"consumer": {"email": None}}, "consumer.email"),
        ({"consumer": {"email": "nope"}}, "consumer.email"),
        ({"consumer": {"name": 1.0}}, "consumer.name"),
        ({"consumer": {"address": {"country": "ZZ"}}}, "consumer.address.country"),
        ({"consumer": {"address": {"street": "x"}}}, "consumer.address.street"),
        ({"metadata": {"n": [1]}}, "metadata.n"),
    ],
)
def test_patch_validation_names_the_field(api, payload, field):
    created = create(api, "ada@example.com")
    assert_validation_error(api.patch(f"{URL}/{created['id']}", payload), field)
    assert Customer.objects.get(pk=created["id"]).email == "ada@example.com"


def test_patch_with_no_changes_keeps_updated_at(api):
    created = create(api, "ada@example.com", externalId="a")
    response = api.patch(f"{URL}/{created['id']}", {"externalId": "a"})
    assert response.status_code == 200
    assert response.json()["updatedAt"] == created["updatedAt"]


def test_schema_documents_the_customer_endpoints(client, db):
    import yaml

    document = yaml.safe_load(client.get("/v0/schema").content)
    assert {"post", "get"} <= set(document["paths"]["/v0/customers"])
    assert {"get", "patch", "delete"} <= set(document["paths"]["/v0/customers/{customer_id}"])


def test_a_misspelt_address_field_is_refused_by_name(api):
    consumer = {"email": "typo@example.com", "address": {"line1": "1 Main St", "zipcode": "10001"}}
    response = api.post("/v0/customers", {"consumer": consumer})
    assert response.status_code == 400
    assert [e["code"] for e in response.json()["errors"]] == ["UNKNOWN_FIELD"]
    assert "zipcode" in response.json()["errors"][0]["field"]
    assert not api.get("/v0/customers", {"email": "typo@example.com"}).json()["data"]
