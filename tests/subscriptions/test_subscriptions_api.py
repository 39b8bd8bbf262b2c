"""Subscriptions and their activation sessions, through /v0."""

from datetime import UTC, datetime

import pytest

from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check
from apps.subscriptions.models import Subscription
from tests.factories import make_customer, make_plan


@pytest.fixture
def plan(test_api):
    return make_plan(test_api.merchant)


@pytest.fixture
def customer(test_api):
    return make_customer(test_api.merchant)


def create(api, **body):
    return api.post("/v0/subscriptions", body)


def test_prefunded_subscription_waits_for_payment(test_api, plan, customer):
    response = create(test_api, customerId=str(customer.id), planId=str(plan.id), prefundAmount="25.50")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["object"] == "subscription"
    assert body["livemode"] is False
    assert body["status"] == "pending_payment"
    assert body["prefundAmount"] == "25.500000"
    assert body["balance"] == "0.000000"
    assert body["customerId"] == str(customer.id)
    assert body["walletId"]
    payment = body["payment"]
    assert payment["status"] == "pending"
    assert payment["amount"] == "25.500000"
    assert payment["invoiceId"] is None
    assert payment["checkoutUrl"].endswith(f"/checkout/{payment['paymentSessionId']}")


def test_paying_with_the_test_helper_activates_and_credits(test_api, plan, customer):
    body = create(test_api, customerId=str(customer.id), planId=str(plan.id), prefundAmount="10").json()
    session_id = body["payment"]["paymentSessionId"]
    paid = test_api.post(f"/v0/testHelpers/paymentSessions/{session_id}/pay")
    assert paid.status_code == 200
    session = paid.json()
    assert session["object"] == "paymentSession"
    assert session["status"] == "paid"
    assert session["purpose"] == "activation"
    assert session["subscriptionId"] == body["id"]
    assert session["url"] == session["checkoutUrl"]
    after = test_api.get(f"/v0/subscriptions/{body['id']}").json()
    assert after["status"] == "active"
    assert after["balance"] == "10.000000"
    assert after["payment"]["status"] == "paid"
    again = test_api.post(f"/v0/testHelpers/paymentSessions/{session_id}/pay")
    assert again.status_code == 200
    assert test_api.get(f"/v0/subscriptions/{body['id']}").json()["balance"] == "10.000000"
    assert LedgerTransaction.objects.filter(kind="payment").count() == 1
    assert ledger_check() == []


def test_test_helper_is_404_for_live_keys(api):
    plan = make_plan(api.merchant)
    customer = make_customer(api.merchant)
    body = create(api, customerId=str(customer.id), planId=str(plan.id), prefundAmount="10").json()
    response = api.post(f"/v0/testHelpers/paymentSessions/{body['payment']['paymentSessionId']}/pay")
    assert response.status_code == 404
    assert Subscription.objects.get(pk=body["id"]).status == "pending_payment"


def test_subscription_without_prefund_is_active_at_once(test_api, plan, customer):
    body = create(test_api, customerId=str(customer.id), planId=str(plan.id)).json()
    assert body["status"] == "active"
    assert body["payment"] is None
    assert body["minimumAccountBalance"] == "0.000000"


def test_inline_customer_is_created_or_found_by_email(test_api, plan):
    inline = {"consumer": {"name": "Ada", "email": "Ada@Example.com"}}
    first = create(test_api, customer=inline, planId=str(plan.id)).json()
    second = create(test_api, customer={"consumer": {"email": "ada@example.com"}}, planId=str(plan.id)).json()
    assert first["customerId"] == second["customerId"]
    assert first["walletId"] == second["walletId"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "planId"),
        ({"planId": "not-an-id"}, "planId"),
        ({"prefundAmount": 10.5}, "prefundAmount"),
        ({"prefundAmount": "-1"}, "prefundAmount"),
        ({"prefundAmount": "0.0000000000001"}, "prefundAmount"),
        ({"minimumAccountBalance": "abc"}, "minimumAccountBalance"),
        ({"startedAt": "2999-01-01T00:00:00Z"}, "startedAt"),
        ({"redirectUrls": {"onSuccess": "not a url"}}, "redirectUrls.onSuccess"),
    ],
)
def test_bad_input_is_400_naming_the_field(test_api, plan, customer, body, field):
    payload = {"customerId": str(customer.id), "planId": str(plan.id), **body}
    if body == {}:
        payload.pop("planId")
    response = create(test_api, **payload)
    assert response.status_code == 400, response.json()
    assert field in [e["field"] for e in response.json()["errors"]]
    assert not Subscription.objects.exists()


def test_customer_id_and_inline_customer_are_exclusive(test_api, plan, customer):
    both = create(
        test_api, customerId=str(customer.id), customer={"consumer": {"email": "x@y.com"}}, planId=str(plan.id)
    )
    neither = create(test_api, planId=str(plan.id))
    assert both.status_code == neither.status_code == 400


def test_unknown_or_foreign_plan_and_customer_are_404(test_api, api, customer, plan):
    live_plan = make_plan(api.merchant)
    response = create(test_api, customerId=str(customer.id), planId=str(live_plan.id))
    assert response.status_code == 404
    live_customer = make_customer(api.merchant)
    response = create(test_api, customerId=str(live_customer.id), planId=str(plan.id))
    assert response.status_code == 404
    assert not Subscription.objects.exists()


def test_periods_are_anchored_at_started_at(test_api, plan, customer, time_machine):
    time_machine.move_to(datetime(2026, 2, 15, 9, 0, tzinfo=UTC), tick=False)
    body = create(test_api, customerId=str(customer.id), planId=str(plan.id), startedAt="2026-01-31T12:00:00Z").json()
    assert body["currentPeriodStart"] == "2026-01-31T12:00:00Z"
    assert body["currentPeriodEnd"] == "2026-02-28T12:00:00Z"


def test_list_get_and_cross_tenant_404(test_api, api, other_api, plan, customer):
    body = create(test_api, customerId=str(customer.id), planId=str(plan.id)).json()
    listed = test_api.get("/v0/subscriptions", {"customerId": str(customer.id), "status": "active"}).json()
    assert [s["id"] for s in listed["data"]] == [body["id"]]
    assert listed["pagination"]["total"] == 1
    assert test_api.get("/v0/subscriptions", {"status": "bogus"}).status_code == 400
    assert api.get(f"/v0/subscriptions/{body['id']}").status_code == 404
    assert other_api.get(f"/v0/subscriptions/{body['id']}").status_code == 404
    assert api.get("/v0/subscriptions").json()["data"] == []


def test_termination_ends_now_and_once(test_api, plan, customer):
    body = create(test_api, customerId=str(customer.id), planId=str(plan.id), prefundAmount="5").json()
    response = test_api.post(f"/v0/subscriptions/{body['id']}/termination", {"reason": "customer left"})
    assert response.status_code == 200
    ended = response.json()
    assert ended["status"] == "terminated"
    assert ended["terminationReason"] == "customer left"
    assert ended["terminatedAt"]
    assert ended["payment"]["status"] == "expired"
    again = test_api.post(f"/v0/subscriptions/{body['id']}/termination", {})
    assert again.status_code == 409
    assert again.json()["code"] == "SUBSCRIPTION_ALREADY_TERMINATED"
    pay = test_api.post(f"/v0/testHelpers/paymentSessions/{body['payment']['paymentSessionId']}/pay")
    assert pay.status_code == 409
    assert pay.json()["code"] == "PAYMENT_SESSION_EXPIRED"


def test_deleting_a_customer_with_a_live_subscription_is_409(test_api, plan, customer):
    body = create(test_api, customerId=str(customer.id), planId=str(plan.id)).json()
    refused = test_api.delete(f"/v0/customers/{customer.id}")
    assert refused.status_code == 409
    assert refused.json()["code"] == "CUSTOMER_HAS_ACTIVE_SUBSCRIPTION"
    test_api.post(f"/v0/subscriptions/{body['id']}/termination", {})
    assert test_api.delete(f"/v0/customers/{customer.id}").status_code == 200


def test_customer_shows_its_wallets_with_balances(test_api, plan, customer):
    body = create(test_api, customerId=str(customer.id), planId=str(plan.id), prefundAmount="3").json()
    test_api.post(f"/v0/testHelpers/paymentSessions/{body['payment']['paymentSessionId']}/pay")
    wallets = test_api.get(f"/v0/customers/{customer.id}").json()["wallets"]
    assert wallets == [
        {
            "id": body["walletId"],
            "object": "wallet",
            "livemode": False,
            "currency": "USDC",
            "balance": "3.000000",
            "held": "0.000000",
        }
    ]
