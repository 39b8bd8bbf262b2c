"""POST/GET /v0/plans, GET/PATCH /v0/plans/{id}."""

import pytest

from apps.catalog.models import Plan
from tests.catalog.conftest import (
    assert_error,
    assert_field_error,
    make_fee,
    make_plan,
    make_price,
    make_product,
)
from tests.concurrency import run_at_once
from tests.conftest import Api
from tests.factories import MerchantFactory, issue_key

PLAN_KEYS = {
    "id",
    "object",
    "livemode",
    "merchantId",
    "name",
    "code",
    "productId",
    "currency",
    "billingInterval",
    "invoicing",
    "prices",
    "features",
    "createdAt",
    "updatedAt",
}


def test_create_plan_returns_the_contract_shape(api, product, metric):
    price = make_price(api, metric["id"])
    fee = make_fee(api, currency="USDC", amount="10")
    response = api.post(
        "/v0/plans",
        {
            "name": "Starter",
            "code": "starter",
            "productId": product["id"],
            "merchantId": str(api.merchant.public_id),
            "currency": "USDC",
            "billingInterval": "monthly",
            "prices": [price["id"], fee["id"]],
            "features": {"rateLimit": 100, "monthlyQueryLimit": 10000, "webhooks": 3, "sso": False, "support": "email"},
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == PLAN_KEYS
    assert body["object"] == "plan"
    assert (body["code"], body["productId"], body["currency"], body["billingInterval"]) == (
        "starter",
        product["id"],
        "USDC",
        "monthly",
    )
    assert body["prices"] == [price["id"], fee["id"]]
    assert body["features"] == {
        "rateLimit": 100,
        "monthlyQueryLimit": 10000,
        "webhooks": 3,
        "sso": False,
        "support": "email",
    }
    assert api.get(f"/v0/plans/{body['id']}").json() == body


def test_features_default_to_unlimited_and_no_webhooks(api, product):
    body = make_plan(api, product["id"])
    assert body["features"] == {"rateLimit": None, "monthlyQueryLimit": None, "webhooks": 0}
    assert body["prices"] == []


@pytest.mark.parametrize(
    ("features", "field"),
    [
        ({"rateLimit": -1}, "features.rateLimit"),
        ({"rateLimit": 1.5}, "features.rateLimit"),
        ({"rateLimit": "10"}, "features.rateLimit"),
        ({"monthlyQueryLimit": True}, "features.monthlyQueryLimit"),
        ({"webhooks": None}, "features.webhooks"),
        ({"webhooks": -3}, "features.webhooks"),
        ({"sso": {"nested": True}}, "features.sso"),
        ([1, 2], "features"),
    ],
)
def test_invalid_features_are_400_naming_the_feature(api, product, features, field):
    response = api.post(
        "/v0/plans", {"name": "x", "code": "x", "productId": product["id"], "currency": "USD", "features": features}
    )
    assert_field_error(response, field)
    assert not Plan.objects.exists()


def test_bad_code_interval_and_currency_are_400(api, product):
    base = {"name": "x", "code": "ok", "productId": product["id"], "currency": "USD"}
    assert_field_error(api.post("/v0/plans", {**base, "code": "not a slug"}), "code", "INVALID_SLUG")
    assert_field_error(api.post("/v0/plans", {**base, "code": 7}), "code")
    assert_field_error(
        api.post("/v0/plans", {**base, "billingInterval": "hourly"}), "billingInterval", "INVALID_CHOICE"
    )
    assert_field_error(api.post("/v0/plans", {**base, "currency": "usd"}), "currency", "INVALID_CHOICE")
    assert_field_error(api.post("/v0/plans", {**base, "prices": "abc"}), "prices")


def test_price_in_another_currency_is_422(api, product, metric):
    usd_price = make_price(api, metric["id"], currency="USD")
    response = api.post(
        "/v0/plans",
        {"name": "x", "code": "x", "productId": product["id"], "currency": "USDC", "prices": [usd_price["id"]]},
    )
    body = assert_error(response, 422, "PRICE_CURRENCY_MISMATCH")
    assert body["details"] == {
        "field": "prices[0]",
        "priceId": usd_price["id"],
        "priceCurrency": "USD",
        "planCurrency": "USDC",
    }
    assert not Plan.objects.exists()


def test_archived_price_cannot_be_added(api, product, metric):
    price = make_price(api, metric["id"])
    api.delete(f"/v0/prices/{price['id']}")
    response = api.post(
        "/v0/plans", {"name": "x", "code": "x", "productId": product["id"], "currency": "USDC", "prices": [price["id"]]}
    )
    assert_error(response, 422, "PRICE_ARCHIVED")


def test_archived_price_stays_on_its_plan(api, product, metric):
    price = make_price(api, metric["id"])
    plan = make_plan(api, product["id"], prices=[price["id"]])
    api.delete(f"/v0/prices/{price['id']}")
    assert api.get(f"/v0/plans/{plan['id']}").json()["prices"] == [price["id"]]
    response = api.patch(f"/v0/plans/{plan['id']}", {"prices": [price["id"]], "name": "Renamed"})
    assert response.status_code == 200
    assert response.json()["prices"] == [price["id"]]
    assert api.patch(f"/v0/plans/{plan['id']}", {"prices": []}).json()["prices"] == []
    assert_error(api.patch(f"/v0/plans/{plan['id']}", {"prices": [price["id"]]}), 422, "PRICE_ARCHIVED")


def test_a_metric_priced_twice_in_one_plan_is_422(api, product, metric):
    first, second = make_price(api, metric["id"]), make_price(api, metric["id"], paymentTerm="in_arrears")
    response = api.post(
        "/v0/plans",
        {
            "name": "x",
            "code": "x",
            "productId": product["id"],
            "currency": "USDC",
            "prices": [first["id"], second["id"]],
        },
    )
    assert_error(response, 422, "PLAN_METRIC_PRICED_TWICE")


def test_the_same_price_twice_is_400(api, product, metric):
    price = make_price(api, metric["id"])
    response = api.post(
        "/v0/plans",
        {
            "name": "x",
            "code": "x",
            "productId": product["id"],
            "currency": "USDC",
            "prices": [price["id"], price["id"]],
        },
    )
    assert_field_error(response, "prices[1]", "DUPLICATE_PRICE")


def test_references_of_another_merchant_are_404_naming_them(api, other_api, product):
    foreign_product = make_product(other_api)
    foreign_price = make_fee(other_api, currency="USDC")
    body = assert_error(
        api.post("/v0/plans", {"name": "x", "code": "x", "productId": foreign_product["id"], "currency": "USDC"}),
        404,
        "NOT_FOUND",
    )
    assert body["details"]["field"] == "productId"
    body = assert_error(
        api.post(
            "/v0/plans",
            {"name": "x", "code": "x", "productId": product["id"], "currency": "USDC", "prices": [foreign_price["id"]]},
        ),
        404,
        "NOT_FOUND",
    )
    assert body["details"]["field"] == "prices[0]"


def test_plan_code_used_twice_is_409(api, product):
    first = make_plan(api, product["id"], code="growth")
    body = assert_error(
        api.post("/v0/plans", {"name": "Other", "code": "growth", "productId": product["id"], "currency": "USD"}),
        409,
        "PLAN_CODE_TAKEN",
    )
    assert body["details"]["planId"] == first["id"]
    second = make_plan(api, product["id"], code="pro")
    assert_error(api.patch(f"/v0/plans/{second['id']}", {"code": "growth"}), 409, "PLAN_CODE_TAKEN")


def test_plan_codes_are_per_merchant_and_mode(api, test_api, other_api, product):
    make_plan(api, product["id"], code="free")
    make_plan(test_api, make_product(test_api)["id"], code="free")
    make_plan(other_api, make_product(other_api)["id"], code="free")
    assert Plan.objects.filter(code="free").count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_one_code_give_one_201_and_409s():
    merchant = MerchantFactory()
    secret = issue_key(merchant)
    product = make_product(Api(secret, merchant))

    def create(_):
        response = Api(secret, merchant).post(
            "/v0/plans", {"name": "Race", "code": "race", "productId": product["id"], "currency": "USD"}
        )
        body = response.json()
        return (response.status_code, body["object"] if response.status_code == 201 else body["code"])

    statuses = run_at_once(6, create)
    assert sorted(statuses, key=lambda s: s[0]) == [(201, "plan")] + [(409, "PLAN_CODE_TAKEN")] * 5
    assert Plan.objects.filter(merchant=merchant, code="race").count() == 1


def test_patch_merges_features_and_replaces_prices(api, product, metric):
    price = make_price(api, metric["id"])
    plan = make_plan(api, product["id"], features={"rateLimit": 10, "monthlyQueryLimit": 100, "sso": True})
    response = api.patch(f"/v0/plans/{plan['id']}", {"features": {"webhooks": 2, "sso": None}, "prices": [price["id"]]})
    assert response.status_code == 200
    body = response.json()
    assert body["features"] == {"rateLimit": 10, "monthlyQueryLimit": 100, "webhooks": 2}
    assert body["prices"] == [price["id"]]
    assert api.get(f"/v0/plans/{plan['id']}").json() == body


def test_patch_currency_against_its_prices_is_422(api, product, metric):
    price = make_price(api, metric["id"])
    plan = make_plan(api, product["id"], prices=[price["id"]])
    assert_error(api.patch(f"/v0/plans/{plan['id']}", {"currency": "USD"}), 422, "PRICE_CURRENCY_MISMATCH")
    assert api.get(f"/v0/plans/{plan['id']}").json()["currency"] == "USDC"
    usd_fee = make_fee(api)
    response = api.patch(f"/v0/plans/{plan['id']}", {"currency": "USD", "prices": [usd_fee["id"]]})
    assert response.status_code == 200
    assert (response.json()["currency"], response.json()["prices"]) == ("USD", [usd_fee["id"]])


def test_list_filters_by_code_and_paginates(api, product):
    for code in ("free", "starter", "growth"):
        make_plan(api, product["id"], code=code, name=code.title())
    page = api.get("/v0/plans", {"code": "starter"}).json()
    assert [p["name"] for p in page["data"]] == ["Starter"]
    page = api.get("/v0/plans", {"limit": 1, "offset": 2}).json()
    assert page["pagination"] == {"limit": 1, "offset": 2, "total": 3}
    assert [p["code"] for p in page["data"]] == ["free"]  # newest first


def test_another_merchant_and_other_mode_get_404(api, test_api, other_api, product):
    plan = make_plan(api, product["id"])
    for client in (test_api, other_api):
        assert_error(client.get(f"/v0/plans/{plan['id']}"), 404, "NOT_FOUND")
        assert_error(client.patch(f"/v0/plans/{plan['id']}", {"name": "x"}), 404, "NOT_FOUND")
        assert client.get("/v0/plans").json()["data"] == []
    assert make_plan(test_api, make_product(test_api)["id"])["livemode"] is False


def test_unknown_plan_field_is_400(api, product):
    response = api.post(
        "/v0/plans", {"name": "x", "code": "x", "productId": product["id"], "currency": "USD", "interval": "monthly"}
    )
    assert_field_error(response, "interval", "UNKNOWN_FIELD")


def test_a_code_taken_between_the_check_and_the_insert_is_409(api, product, monkeypatch):
    """The database constraint decides a race that the service's check cannot see."""
    from apps.catalog import services
    from apps.catalog.models import Product

    real_clean = services.plan_clean

    def clean_then_lose_the_race(**kwargs):
        result = real_clean(**kwargs)
        Plan.objects.create(
            merchant=kwargs["merchant"],
            name="Winner",
            code=kwargs["code"],
            product=Product.objects.get(pk=product["id"]),
            currency="USD",
        )
        return result

    monkeypatch.setattr(services, "plan_clean", clean_then_lose_the_race)
    response = api.post("/v0/plans", {"name": "Loser", "code": "race", "productId": product["id"], "currency": "USD"})
    body = assert_error(response, 409, "PLAN_CODE_TAKEN")
    assert body["details"]["planId"] == str(Plan.objects.get(code="race").pk)
    assert list(Plan.objects.values_list("name", flat=True)) == ["Winner"]
