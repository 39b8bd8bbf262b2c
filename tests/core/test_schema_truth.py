"""The OpenAPI document tells the truth: real answers of every /v0 operation, successes and
errors, are documented for their operation and status, and their bodies match the schema
(nullable fields, every field documented, the error envelopes)."""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import Api
from tests.core.schema_check import CheckedApi, SchemaCheck, load_document
from tests.factories import issue_key

# A body each operation takes, where it must be valid for the answer to reach what is tested
# (a refund reason before a 404 for its event, say); others take {}.
VALID_BODIES = {
    "usage_refund": {"refund": True},
    "disputes_decline": {"reason": "not ours"},
    "customers_topups_create": {"amount": "1", "currency": "USDC"},
    "customers_adjustments_create": {"amount": "1", "currency": "USDC", "reason": "goodwill"},
    "customers_wallet_addresses_create": {"address": "0x" + "1" * 40, "signature": "0x" + "ab" * 65},
}


@pytest.fixture
def schema(client, db):
    return SchemaCheck(load_document(client))


def concrete(template: str) -> str:
    """The template with each path parameter an id that exists nowhere."""
    parts = re.split(r"(\{[^/]+?\})", template)
    return "".join(str(uuid.uuid4()) if part.startswith("{") else part for part in parts)


# Operations a customer calls with its own key (X-API-Key), not the merchant's.
CUSTOMER_KEY_OPERATIONS = {"billing_usage", "billing_checkout"}


def customer_key(merchant) -> str:
    """A key of one of the merchant's customers (its demo tiers seeded)."""
    from apps.apikeys.services import api_key_create
    from apps.catalog.demo import seed_catalog

    seed_catalog(merchant=merchant)
    return api_key_create(merchant=merchant, organization_name="Probe", contact_email="probe@example.com").secret


def send(api, method: str, path: str, operation_id: str, **extra):
    if method in ("get", "delete"):
        return getattr(api, method)(path, **extra)
    return getattr(api, method)(path, VALID_BODIES.get(operation_id, {}), **extra)


def test_every_operation_documents_its_error_statuses_with_the_envelopes(schema):
    schemas = schema.document["components"]["schemas"]
    assert set(schemas["Error"]["required"]) == {"error", "message", "code", "details"}
    assert set(schemas["ValidationError"]["required"]) == {"error", "message", "errors"}
    for method, template, operation in schema.operations():
        statuses = {int(status) for status in operation["responses"]}
        name = operation["operationId"]
        assert {400, 401} <= statuses, name
        # (a customer's own calls are not counted against the merchant's key, but an address
        # sending keys that do not authenticate is limited on every operation)
        assert {414, 429, 431} <= statuses, name
        if "{" in template:
            assert 404 in statuses, name
        if method in ("post", "patch"):
            assert {403, 413} <= statuses, name
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["description"], (name, status)
                body = response["content"]["application/json"]["schema"]
                refs = [body["$ref"]] if "$ref" in body else [option["$ref"] for option in body["oneOf"]]
                expected = ["#/components/schemas/Error"]
                if status == "400":
                    expected = ["#/components/schemas/ValidationError"] + (
                        expected if method in ("post", "patch") else []
                    )
                assert refs == expected, (name, status, refs)
        if "429" in operation["responses"]:
            assert "Retry-After" in operation["responses"]["429"]["headers"], name
    deletes = [operation for method, _, operation in schema.operations() if method == "delete"]
    assert deletes and all(set(o["responses"]) & {"200", "204"} == {"200"} for o in deletes)


def test_every_operation_answers_401_without_a_valid_key(schema):
    unknown_key = CheckedApi(Api("sk_test_" + "x" * 40, None), schema)
    no_header = CheckedApi(Api("", None), schema)
    no_header.api.client.credentials()  # no Authorization header at all
    for method, template, operation in schema.operations():
        for api in (unknown_key, no_header):
            response = send(api, method, concrete(template), operation["operationId"])
            assert response.status_code == 401, (operation["operationId"], response.content)


def test_every_operation_answers_429_past_the_rate_limit(schema, merchant, time_machine):
    time_machine.move_to(datetime(2026, 11, 22, 12, 0, 0, 250_000, tzinfo=UTC), tick=False)
    api = CheckedApi(Api(issue_key(merchant, rate_limit=1), merchant), schema)
    for method, template, operation in schema.operations():
        if operation["operationId"] in CUSTOMER_KEY_OPERATIONS:
            continue
        # the one request of this (frozen) second: again before each operation, since the
        # counter's expiry in Redis runs on the real clock (2 s) and the loop takes longer
        api.api.get("/v0/merchants/me")
        response = send(api, method, concrete(template), operation["operationId"])
        assert response.status_code == 429, (operation["operationId"], response.content)
        assert response["Retry-After"] == "1"


def test_every_operation_answers_400_for_malformed_input(schema, test_api):
    api = CheckedApi(test_api, schema)
    customer = {"HTTP_X_API_KEY": customer_key(test_api.merchant)}
    for method, template, operation in schema.operations():
        path, name = concrete(template), operation["operationId"]
        extra = customer if name in CUSTOMER_KEY_OPERATIONS else {}
        if method == "post" and name in ("usage_create", "usage_batch_create", "api_keys_verify"):
            response = api.post(path, ["not", "an", "object"])  # served without DRF: the body is what is read
        else:
            response = send(api, method, f"{path}?limit=%00", name, **extra)
        assert response.status_code == 400, (operation["operationId"], response.content)
    for operation_id, path in (("products_create", "/v0/products"), ("usage_create", "/v0/usage")):
        response = test_api.client.post(path, b"{not json", content_type="application/json")
        assert response.status_code == 400, operation_id
        schema.check("post", path, response)


def test_every_operation_with_an_id_in_its_path_answers_404_for_an_unknown_id(schema, test_api):
    api = CheckedApi(test_api, schema)
    for method, template, operation in schema.operations():
        if "{" in template:
            response = send(api, method, concrete(template), operation["operationId"])
            assert response.status_code == 404, (operation["operationId"], response.content)


def test_every_operation_with_a_body_answers_403_413_and_415_as_documented(schema, test_api, settings):
    api = CheckedApi(test_api, schema)
    customer = {"HTTP_X_API_KEY": customer_key(test_api.merchant)}
    for method, template, operation in schema.operations():
        if method not in ("post", "patch"):
            continue
        path, name = concrete(template), operation["operationId"]
        extra = customer if name in CUSTOMER_KEY_OPERATIONS else {}
        response = getattr(api, method)(path, {"merchantId": str(uuid.uuid4())}, **extra)
        assert response.status_code == 403, (name, response.content)
        assert response.json()["code"] == "MERCHANT_MISMATCH"
        if "415" in operation["responses"]:
            response = schema.check(
                method,
                path,
                getattr(test_api.client, method)(path, "amount=1", content_type="text/plain", **extra),
            )
            assert response.status_code == 415, (name, response.content)
    settings.MAX_REQUEST_BODY_BYTES = 1024
    for method, template, operation in schema.operations():
        if method in ("post", "patch"):
            response = getattr(api, method)(concrete(template), {"padding": "x" * 2048})
            assert response.status_code == 413, (operation["operationId"], response.content)
            assert response.json()["code"] == "REQUEST_TOO_LARGE"


def test_a_sandbox_scenario_through_every_operation_answers_as_documented(
    schema, test_api, api, stripe_sandbox, anvil_chain
):
    """Every /v0 operation, driven through a sandbox merchant's catalog, customers,
    subscriptions, holds, usage and disputes, successes and the errors of its rules."""
    s = CheckedApi(test_api, schema)  # the sandbox key
    live = CheckedApi(api, schema)

    def ok(response, status=200):
        assert response.status_code == status, response.content
        return response.json()

    def refused(response, status, code=None):
        assert response.status_code == status, response.content
        if code is not None:
            assert response.json()["code"] == code, response.content
        return response.json()

    ok(s.get("/v0/merchants/me"))

    # --- catalog ------------------------------------------------------------------------------
    product = ok(s.post("/v0/products", {"name": "Search API", "metadata": {"tier": "gold", "seats": 5}}), 201)
    refused(s.post("/v0/products", {"name": 123}), 400)
    ok(s.post("/v0/products", {"name": "Key"}, HTTP_IDEMPOTENCY_KEY="product-1"), 201)
    refused(s.post("/v0/products", {"name": "Other"}, HTTP_IDEMPOTENCY_KEY="product-1"), 409, "IDEMPOTENCY_KEY_REUSED")
    ok(s.get("/v0/products"))
    ok(s.get(f"/v0/products/{product['id']}"))
    ok(s.patch(f"/v0/products/{product['id']}", {"description": "Full-text search"}))
    refused(s.get("/v0/products", {"limit": "0"}), 400)

    calls = ok(
        s.post("/v0/billableMetrics", {"productId": product["id"], "name": "Calls", "aggregation": "COUNT"}), 201
    )
    peak = ok(s.post("/v0/billableMetrics", {"productId": product["id"], "name": "Peak", "aggregation": "MAX"}), 201)
    refused(s.post("/v0/billableMetrics", {"productId": str(uuid.uuid4()), "name": "X", "aggregation": "SUM"}), 404)
    ok(s.get("/v0/billableMetrics", {"productId": product["id"]}))
    ok(s.get(f"/v0/billableMetrics/{calls['id']}"))
    ok(s.patch(f"/v0/billableMetrics/{calls['id']}", {"unit": "call"}))
    refused(s.patch(f"/v0/billableMetrics/{calls['id']}", {"aggregation": "BAD"}), 400)

    def price(metric, **fields):
        body = {"billableMetricId": metric["id"], "paymentTerm": "instant", "currency": "USDC"}
        body.update(fields)
        return s.post("/v0/prices", body)

    call_price = ok(price(calls, properties={"unitPrice": "0.10"}, allowPriceOverride=True), 201)
    peak_price = ok(price(peak, paymentTerm="in_arrears", properties={"unitPrice": "1.00"}), 201)
    refused(price(peak, properties={"unitPrice": "1"}), 422, "INSTANT_PRICE_NEEDS_SUM_OR_COUNT")
    refused(price({"id": str(uuid.uuid4())}, properties={"unitPrice": "1"}), 404)
    fee = ok(s.post("/v0/prices", {"paymentTerm": "in_arrears", "currency": "USDC", "amount": "5.00"}), 201)
    assert fee["billableMetricId"] is None
    spare = ok(price(calls, properties={"unitPrice": "0.20"}), 201)
    ok(s.get("/v0/prices", {"currency": "USDC"}))
    ok(s.get(f"/v0/prices/{call_price['id']}"))
    ok(s.patch(f"/v0/prices/{call_price['id']}", {"invoiceDisplayName": "API calls"}))
    archived = ok(s.delete(f"/v0/prices/{spare['id']}"))
    assert archived["archivedAt"] is not None
    refused(s.patch(f"/v0/prices/{spare['id']}", {"invoiceDisplayName": "x"}), 422, "PRICE_ARCHIVED")

    plan_body = {"name": "Pro", "code": "pro", "productId": product["id"], "currency": "USDC"}
    plan = ok(s.post("/v0/plans", {**plan_body, "prices": [call_price["id"], peak_price["id"], fee["id"]]}), 201)
    refused(s.post("/v0/plans", plan_body), 409, "PLAN_CODE_TAKEN")
    refused(s.post("/v0/plans", {**plan_body, "code": "old", "prices": [spare["id"]]}), 422, "PRICE_ARCHIVED")
    refused(s.post("/v0/plans", {**plan_body, "code": "lost", "prices": [str(uuid.uuid4())]}), 404)
    ok(s.get("/v0/plans", {"code": "pro"}))
    ok(s.get(f"/v0/plans/{plan['id']}"))
    ok(s.patch(f"/v0/plans/{plan['id']}", {"features": {"rateLimit": 10, "monthlyQueryLimit": None}}))

    # --- customers, money in ------------------------------------------------------------------
    low_balance = {"lowBalanceThreshold": "5", "autoRecharge": {"enabled": False, "threshold": "2", "amount": "20"}}
    # (auto-recharge charges a card, so it is enabled for a USD wallet only)
    recharge = {"lowBalanceThreshold": "5", "autoRecharge": {"enabled": True, "threshold": "2", "amount": "20"}}
    refused(
        s.post("/v0/customers", {"consumer": {"email": "x@example.com"}, "billingSettings": {"USDC": recharge}}), 400
    )
    ada = ok(
        s.post(
            "/v0/customers",
            {
                "consumer": {"email": "ada@example.com", "name": "Ada"},
                "billingSettings": {"USDC": low_balance, "USD": recharge},
            },
        ),
        201,
    )
    assert ada["consumer"]["phone"] is None and ada["externalId"] is None
    assert ada["billingSettings"]["USD"]["autoRecharge"]["enabled"] is True
    assert ada["billingSettings"]["USDC"]["lowBalanceThreshold"]
    ok(s.post("/v0/customers", {"consumer": {"email": "ADA@example.com"}}), 200)
    bob = ok(s.post("/v0/customers", {"consumer": {"email": "bob@example.com"}}), 201)
    refused(s.post("/v0/customers", {"consumer": {"name": "No email"}}), 400)
    ok(s.get("/v0/customers", {"email": "ada@example.com"}))
    ok(s.get(f"/v0/customers/{ada['id']}"))
    ok(s.patch(f"/v0/customers/{ada['id']}", {"externalId": "ada-1", "consumer": {"address": {"country": "FR"}}}))
    ok(s.patch(f"/v0/customers/{ada['id']}", {"billingSettings": {"USD": {"lowBalanceThreshold": "1"}}}))
    refused(s.patch(f"/v0/customers/{ada['id']}", {"billingSettings": {"EUR": {"lowBalanceThreshold": "1"}}}), 400)
    refused(s.patch(f"/v0/customers/{bob['id']}", {"consumer": {"email": "ada@example.com"}}), 409)

    topup = ok(s.post(f"/v0/customers/{ada['id']}/topups", {"amount": "100", "currency": "USDC"}), 201)
    assert topup["paidAt"] is None
    refused(s.post(f"/v0/customers/{ada['id']}/topups", {"amount": "-1", "currency": "USDC"}), 400)
    refused(live.post(f"/v0/testHelpers/paymentSessions/{topup['id']}/pay"), 404)
    assert ok(s.post(f"/v0/testHelpers/paymentSessions/{topup['id']}/pay"))["paidAt"] is not None
    ok(s.post(f"/v0/testHelpers/paymentSessions/{topup['id']}/pay"))  # paid already: the session as it is

    refused(
        s.post(f"/v0/customers/{ada['id']}/adjustments", {"amount": "-1000", "currency": "USDC", "reason": "x"}),
        402,
        "INSUFFICIENT_BALANCE",
    )
    zero = refused(
        s.post(f"/v0/customers/{ada['id']}/adjustments", {"amount": "0", "currency": "USDC", "reason": "x"}), 400
    )
    assert zero["errors"][0]["field"] == "amount" and zero["errors"][0]["code"] == "ZERO_ADJUSTMENT"
    ok(s.post(f"/v0/customers/{ada['id']}/adjustments", {"amount": "2.5", "currency": "USDC", "reason": "gift"}), 201)
    ok(s.get(f"/v0/customers/{ada['id']}/adjustments"))

    # --- subscriptions ------------------------------------------------------------------------
    subscription = ok(s.post("/v0/subscriptions", {"customerId": ada["id"], "planId": plan["id"]}), 201)
    assert subscription["payment"] is None and subscription["terminatedAt"] is None
    assert subscription["redirectUrls"] == {"onSuccess": None, "onFailure": None}
    pending = ok(
        s.post(
            "/v0/subscriptions",
            {
                "customerId": bob["id"],
                "planId": plan["id"],
                "prefundAmount": "10",
                "redirectUrls": {"onSuccess": "https://merchant.example/ok"},
            },
        ),
        201,
    )
    assert pending["activatedAt"] is None and pending["payment"]["status"] == "pending"
    inline = ok(
        s.post("/v0/subscriptions", {"customer": {"consumer": {"email": "cy@example.com"}}, "planId": plan["id"]}),
        201,
    )
    refused(s.post("/v0/subscriptions", {"customerId": ada["id"], "planId": str(uuid.uuid4())}), 404)
    refused(s.post("/v0/subscriptions", {"planId": plan["id"]}), 400)
    ok(s.get("/v0/subscriptions", {"customerId": ada["id"], "status": "active"}))
    ok(s.get(f"/v0/subscriptions/{subscription['id']}"))
    portal = ok(s.post(f"/v0/subscriptions/{subscription['id']}/portal", {"expiresIn": "PT1H"}), 201)
    assert portal["object"] == "subscriptionPortal" and "/portal/open/" in portal["url"]
    refused(s.post(f"/v0/subscriptions/{subscription['id']}/portal", {"expiresIn": "PT25H"}), 400)
    refused(s.patch(f"/v0/plans/{plan['id']}", {"currency": "USD"}), 409, "PLAN_HAS_SUBSCRIPTIONS")
    lite = ok(s.post("/v0/plans", {**plan_body, "code": "lite", "prices": [call_price["id"]]}), 201)
    change = f"/v0/subscriptions/{subscription['id']}"
    assert ok(s.patch(change, {"planId": lite["id"], "effective": "period_end"}))["scheduledPlanId"] == lite["id"]
    assert ok(s.patch(change, {"planId": plan["id"], "effective": "period_end"}))["scheduledPlanId"] is None
    refused(s.patch(change, {"planId": plan["id"]}), 422, "PLAN_UNCHANGED")
    refused(s.patch(change, {"planId": lite["id"], "effective": "someday"}), 400)
    refused(s.patch(f"/v0/subscriptions/{pending['id']}", {"planId": lite["id"]}), 409, "SUBSCRIPTION_NOT_ACTIVE")
    refused(s.delete(f"/v0/customers/{bob['id']}"), 409, "CUSTOMER_HAS_ACTIVE_SUBSCRIPTION")
    ended = ok(s.post(f"/v0/subscriptions/{pending['id']}/termination", {"reason": "changed plans"}))
    assert ended["terminatedAt"] is not None and ended["activatedAt"] is None
    refused(s.post(f"/v0/subscriptions/{pending['id']}/termination"), 409, "SUBSCRIPTION_ALREADY_TERMINATED")
    ok(s.post(f"/v0/subscriptions/{inline['id']}/termination"))
    assert ok(s.delete(f"/v0/customers/{bob['id']}"))["archivedAt"] is not None
    refused(s.post(f"/v0/customers/{bob['id']}/topups", {"amount": "1", "currency": "USDC"}), 422)

    # --- holds --------------------------------------------------------------------------------
    def hold(quantity, metric=calls):
        body = {"customerId": ada["id"], "entitlementData": [{"billableMetricId": metric["id"], "quantity": quantity}]}
        return s.post("/v0/entitlements", body)

    entitlement = ok(hold("10"), 201)
    assert entitlement["releasedAt"] is None and entitlement["maxUses"] is None
    refused(hold("100000"), 402, "INSUFFICIENT_BALANCE")
    refused(hold("1", metric=peak), 422, "PRICE_NOT_INSTANT")
    refused(hold("1", metric={"id": str(uuid.uuid4())}), 404)
    ok(s.get(f"/v0/entitlements/{entitlement['id']}"))
    ok(s.get("/v0/entitlements/activeEntitlements", {"customerId": ada["id"]}))
    refused(s.get("/v0/entitlements/activeEntitlements"), 400)

    # --- usage --------------------------------------------------------------------------------
    def event(key, metric=calls, quantity=1, **fields):
        body = {
            "idempotencyKey": key,
            "customerId": ada["id"],
            "properties": [{"billableMetricId": metric["id"], "quantity": quantity}],
        }
        body.update(fields)
        return body

    first = ok(s.post("/v0/usage", event("evt-1", quantity=3, metadata={"region": "eu", "cached": False})), 201)
    ok(s.post("/v0/usage", event("evt-1", quantity=3, metadata={"region": "eu", "cached": False})), 201)
    refused(s.post("/v0/usage", event("evt-1", quantity=4)), 409, "IDEMPOTENCY_KEY_REUSED")
    arrears = ok(s.post("/v0/usage", event("peak-1", metric=peak, quantity=7)), 201)
    assert arrears["billing"]["lines"][0]["amount"] is None and arrears["billing"]["billingEventId"] is None
    held = ok(s.post("/v0/usage", event("held-1", quantity=2, entitlementId=entitlement["id"])), 201)
    assert held["entitlementId"] == entitlement["id"]
    refused(s.post("/v0/usage", event("held-2", quantity=50, entitlementId=entitlement["id"])), 402)
    refused(s.post("/v0/usage", event("big", quantity=10_000)), 402, "INSUFFICIENT_BALANCE")
    long_ago = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    refused(s.post("/v0/usage", event("old", timestamp=long_ago)), 422, "USAGE_OUTSIDE_OPEN_PERIOD")
    refused(s.post("/v0/usage", event("nobody", customerId=str(uuid.uuid4()))), 404)
    refused(s.post("/v0/usage", event("bad", quantity="many")), 400)
    refused(s.post("/v0/usage", event("other", merchantId=str(uuid.uuid4()))), 403)
    ok(s.delete(f"/v0/entitlements/{entitlement['id']}"))
    refused(s.patch(f"/v0/prices/{call_price['id']}", {"properties": {"unitPrice": "1"}}), 409, "PRICE_IN_USE")

    ok(s.post("/v0/usage/batch", {"events": [event("b-1"), event("b-2", quantity=2)]}), 201)
    batch = ok(
        s.post("/v0/usage/batch", {"events": [event("b-3"), {"customerId": ada["id"]}, event("b-4", quantity=10_000)]}),
        207,
    )
    assert [failure["index"] for failure in batch["failed"]] == [1, 2]
    assert batch["failed"][0]["idempotencyKey"] is None
    refused(s.post("/v0/usage/batch", {"events": "none"}), 400)

    ok(s.get("/v0/usage", {"customerId": ada["id"]}))
    ok(s.get(f"/v0/usage/{first['id']}"))
    refunded = ok(s.patch(f"/v0/usage/{first['id']}", {"refund": True, "reason": "test traffic"}))
    assert refunded["refundedAt"] is not None
    refused(s.patch(f"/v0/usage/{first['id']}", {"refund": True}), 409, "USAGE_ALREADY_REFUNDED")
    ok(s.get(f"/v0/billableMetrics/{calls['id']}/meter", {"windowSize": "DAY", "customerId": ada["id"]}))
    ok(s.get(f"/v0/billableMetrics/{peak['id']}/meter"))
    refused(s.get(f"/v0/billableMetrics/{calls['id']}/meter", {"windowSize": "WEEK"}), 400)

    # --- disputes -----------------------------------------------------------------------------
    dispute = ok(s.post("/v0/disputes", {"usageEventId": held["id"], "message": "never called"}), 201)
    assert dispute["resolvedAt"] is None
    refused(s.post("/v0/disputes", {"usageEventId": held["id"], "message": "again"}), 409, "DISPUTE_ALREADY_OPEN")
    refused(s.post("/v0/disputes", {"usageEventId": first["id"], "message": "x"}), 409, "USAGE_ALREADY_REFUNDED")
    refused(s.post("/v0/disputes", {"usageEventId": str(uuid.uuid4()), "message": "x"}), 404)
    ok(s.get("/v0/disputes", {"status": "open"}))
    ok(s.get(f"/v0/disputes/{dispute['id']}"))
    assert ok(s.post(f"/v0/disputes/{dispute['id']}/accept"))["resolvedAt"] is not None
    refused(s.post(f"/v0/disputes/{dispute['id']}/decline", {"reason": "late"}), 409, "DISPUTE_NOT_OPEN")
    other = ok(s.post("/v0/disputes", {"usageEventId": arrears["id"], "message": "too high"}), 201)
    ok(s.post(f"/v0/disputes/{other['id']}/decline", {"reason": "as measured"}))
    refused(s.post(f"/v0/disputes/{other['id']}/accept"), 409, "DISPUTE_NOT_OPEN")

    # --- invoices ------------------------------------------------------------------------------
    def one_off(**fields):
        return s.post("/v0/invoices", {"customerId": ada["id"], "currency": "USDC", "autoCollect": False, **fields})

    invoice = ok(one_off(lines=[{"description": "Consulting", "amount": "12.5"}]), 201)
    assert invoice["status"] == "open" and invoice["number"] and invoice["paymentUrl"]
    large = ok(one_off(amount="100000", description="Annual licence"), 201)
    refused(one_off(amount="1", description="x", subscriptionId=subscription["id"]), 400)
    refused(one_off(amount="1.0000001", description="x"), 400)
    refused(one_off(amount="1", description="x", customerId=str(uuid.uuid4())), 404)
    refused(
        s.post(
            "/v0/invoices", {"subscriptionId": subscription["id"], "currency": "USD", "amount": "1", "description": "x"}
        ),
        422,
        "CURRENCY_MISMATCH",
    )
    ok(s.get("/v0/invoices", {"customerId": ada["id"], "status": "open"}))
    ok(s.get(f"/v0/invoices/{invoice['id']}"))
    pdf = s.get(f"/v0/invoices/{invoice['id']}/pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf", pdf.content[:300]
    refused(s.post(f"/v0/invoices/{large['id']}/pay"), 402, "INSUFFICIENT_BALANCE")
    assert ok(s.post(f"/v0/invoices/{invoice['id']}/pay"))["status"] == "paid"
    refused(s.post(f"/v0/invoices/{invoice['id']}/pay"), 409, "INVOICE_NOT_OPEN")
    assert ok(s.post(f"/v0/invoices/{invoice['id']}/void"))["status"] == "void"
    refused(s.post(f"/v0/invoices/{invoice['id']}/void"), 409, "INVOICE_VOID")
    assert s.get(f"/v0/invoices/{invoice['id']}/pdf").status_code == 200  # stamped VOID

    # --- webhook endpoints --------------------------------------------------------------------
    hook = ok(s.post("/v0/webhookEndpoints", {"url": "https://hooks.example.com/in", "events": ["*"]}), 201)
    refused(s.post("/v0/webhookEndpoints", {"url": "https://hooks.example.com/in", "events": ["nope"]}), 400)
    ok(s.get("/v0/webhookEndpoints"))
    ok(s.get(f"/v0/webhookEndpoints/{hook['id']}"))
    ok(s.patch(f"/v0/webhookEndpoints/{hook['id']}", {"enabled": False}))
    ok(s.post(f"/v0/webhookEndpoints/{hook['id']}/test"), 201)
    ok(s.get(f"/v0/webhookEndpoints/{hook['id']}/deliveries"))
    ok(s.delete(f"/v0/webhookEndpoints/{hook['id']}"))

    # --- customers' API keys ------------------------------------------------------------------
    from apps.catalog.demo import seed_catalog

    seed_catalog(merchant=test_api.merchant)
    key = ok(s.post("/v0/billing/apiKeys", {"organizationName": "Acme DeFi", "contactEmail": "dev@acme.example"}), 201)
    refused(s.post("/v0/billing/apiKeys", {"organizationName": "A", "contactEmail": "dev@acme.example"}), 400)
    refused(
        s.post("/v0/billing/apiKeys", {"organizationName": "Acme", "contactEmail": "x@acme.example", "tier": "gold"}),
        422,
        "UNKNOWN_TIER",
    )
    assert ok(s.post("/v0/apiKeys/verify", {"apiKey": key["apiKey"], "cost": 1}))["code"] == "VALID"
    refused(s.post("/v0/apiKeys/verify", {"apiKey": key["apiKey"], "cost": -1}), 400)
    ok(s.get("/v0/billing/apiKeys", {"customerId": key["customerId"]}))
    mine = {"HTTP_X_API_KEY": key["apiKey"]}
    assert ok(s.get("/v0/billing/usage", **mine))["queriesThisMonth"] == 1
    checkout = ok(s.post("/v0/billing/checkout", {"planId": "starter"}, **mine))
    assert checkout["url"].endswith(checkout["sessionId"])
    refused(s.post("/v0/billing/checkout", {"planId": "free"}, **mine), 422, "ALREADY_ON_TIER")
    refused(s.post("/v0/billing/checkout", {"planId": "gold"}, **mine), 422, "UNKNOWN_TIER")
    assert ok(s.delete(f"/v0/billing/apiKeys/{key['id']}"))["revokedAt"] is not None
    refused(s.delete(f"/v0/billing/apiKeys/{uuid.uuid4()}"), 404)
    assert ok(s.post("/v0/apiKeys/verify", {"apiKey": key["apiKey"]}))["code"] == "REVOKED"
    refused(s.get("/v0/billing/usage", **mine), 401)

    # --- saved cards (localstripe) -----------------------------------------------------------
    from apps.cards.services.charges import card_save, card_setup_start
    from apps.customers.models import Customer
    from apps.payments.models import PaymentSession
    from tests.cards.test_card_path import GOOD, confirm_card_setup

    setup = ok(s.post(f"/v0/customers/{ada['id']}/paymentMethods", {}), 201)
    intent = card_setup_start(session_id=PaymentSession.objects.get(pk=setup["id"]).id)
    assert confirm_card_setup(intent, GOOD).status_code == 200
    card = card_save(customer=Customer.objects.get(pk=ada["id"]), setup_intent_id=intent.setup_intent_id)
    assert ok(s.get(f"/v0/customers/{ada['id']}/paymentMethods"))["data"][0]["default"] is True
    refused(s.post(f"/v0/customers/{ada['id']}/paymentMethods", {"successUrl": "ftp://x"}), 400)
    ok(s.delete(f"/v0/customers/{ada['id']}/paymentMethods/{card.stripe_payment_method_id}"))
    refused(s.delete(f"/v0/customers/{ada['id']}/paymentMethods/{card.stripe_payment_method_id}"), 404)

    # --- USDC on chain (anvil, the test USDC) ---------------------------------------------------
    from apps.settlements.services import settlement_check
    from tests.settlements.world import chain_settings, new_payer, send_token

    with chain_settings(anvil_chain, required=1):
        assert ok(s.get("/v0/chains"))["data"][0]["name"] == anvil_chain.name
        due = ok(one_off(lines=[{"description": "On chain", "amount": "2"}]), 201)
        payer, stranger = new_payer(anvil_chain), new_payer(anvil_chain)
        message = f"Pay {test_api.merchant.name} from {payer.address} as customer {ada['id']}"
        addresses = f"/v0/customers/{ada['id']}/walletAddresses"
        wrong = {"address": payer.address, "signature": stranger.sign(message)}
        refused(s.post(addresses, wrong), 422, "SIGNATURE_MISMATCH")
        ok(s.post(addresses, {"address": payer.address, "signature": payer.sign(message)}), 201)
        ok(s.get(addresses))
        tx_hash = send_token(anvil_chain, payer, to=anvil_chain.recipient, value=int(due["usdc"]["amount"]))
        claim = {
            "invoiceId": due["id"],
            "chain": due["usdc"]["chain"],
            "transactionHash": tx_hash,
            "referenceHash": due["usdc"]["referenceHash"],
            "payerAddress": payer.address,
            "merchantAddress": due["usdc"]["recipient"],
        }
        refused(s.post("/v0/settlements", {**claim, "referenceHash": "0x" + "ab" * 32}), 422, "REFERENCE_MISMATCH")
        settlement = ok(s.post("/v0/settlements", claim), 201)
        settlement_check(settlement_id=settlement["id"])
        assert ok(s.get(f"/v0/settlements/{settlement['id']}"))["status"] == "confirmed"
        assert ok(s.get("/v0/settlements", {"invoiceId": due["id"]}))["data"][0]["id"] == settlement["id"]
        assert ok(s.get(f"/v0/invoices/{due['id']}"))["status"] == "paid"
        refused(s.post("/v0/settlements", {**claim, "invoiceId": invoice["id"]}), 409)
        ok(s.delete(f"{addresses}/{payer.address}"))

    # every operation of the document answered here with success, and the rules' errors all came up
    succeeded = {name for name, statuses in schema.answered.items() if any(status < 300 for status in statuses)}
    assert succeeded == {operation["operationId"] for _, _, operation in schema.operations()}
    assert {201, 207, 400, 402, 403, 404, 409, 422} <= set().union(*schema.answered.values())


def test_output_fields_of_nullable_columns_are_documented_nullable():
    """A field read from a column that may be NULL says so in the schema (allow_null), also for
    states that the scenario above does not reach."""
    from apps.catalog.models import BillableMetric, Plan, Price, Product
    from apps.catalog.serializers import BillableMetricSerializer, PlanSerializer, PriceSerializer, ProductSerializer
    from apps.customers.models import Customer
    from apps.customers.serializers import CustomerSerializer
    from apps.merchants.models import Merchant
    from apps.merchants.serializers import MerchantSerializer
    from apps.payments.models import Adjustment, PaymentSession
    from apps.payments.serializers import AdjustmentSerializer, PaymentSessionSerializer
    from apps.subscriptions.models import Subscription
    from apps.subscriptions.serializers import SubscriptionSerializer
    from apps.usage.models import Dispute
    from apps.usage.serializers import DisputeSerializer

    pairs = [
        (ProductSerializer, Product),
        (BillableMetricSerializer, BillableMetric),
        (PriceSerializer, Price),
        (PlanSerializer, Plan),
        (CustomerSerializer, Customer),
        (MerchantSerializer, Merchant),
        (PaymentSessionSerializer, PaymentSession),
        (AdjustmentSerializer, Adjustment),
        (SubscriptionSerializer, Subscription),
        (DisputeSerializer, Dispute),
    ]
    checked = []
    for serializer_class, model in pairs:
        columns = {field.attname: field for field in model._meta.concrete_fields}
        for name, field in serializer_class().fields.items():
            column = columns.get(field.source) or columns.get(f"{field.source}_id")
            if column is not None and column.null:
                assert field.allow_null, (
                    f"{serializer_class.__name__}.{name} reads nullable {model.__name__}.{column.name}"
                )
                checked.append(name)
    assert {"paidAt", "activatedAt", "terminatedAt", "resolvedAt", "archivedAt", "billableMetricId"} <= set(checked)


def test_every_operation_with_a_body_takes_the_keys_own_merchant_id(schema, test_api):
    """The contract: where a body names `merchantId`, it must be the key's merchant. A body that
    names the right one is never refused for it (an integration may send it with every body)."""
    api = CheckedApi(test_api, schema)
    customer = {"HTTP_X_API_KEY": customer_key(test_api.merchant)}
    own = str(test_api.merchant.public_id)
    for method, template, operation in schema.operations():
        if method not in ("post", "patch"):
            continue
        path, name = concrete(template), operation["operationId"]
        extra = customer if name in CUSTOMER_KEY_OPERATIONS else {}
        response = getattr(api, method)(path, {"merchantId": own}, **extra)
        assert response.status_code != 403, (name, response.content)
        if response.status_code == 400:
            assert "merchantId" not in response.content.decode(), (name, response.content)
