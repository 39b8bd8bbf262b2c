"""Subscriptions, payment sessions, top-ups and the sandbox test helper, through /v0."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check, wallet_balances
from apps.ledger.services import wallet_get_or_create
from apps.subscriptions.models import PaymentSession, Subscription
from apps.subscriptions.services import payment_session_expire_due, payment_session_pay
from tests.concurrency import run_at_once
from tests.factories import MerchantFactory, make_customer, make_plan, sandbox_of


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


def test_topup_session_credits_the_wallet_when_paid(test_api, customer):
    response = test_api.post(f"/v0/customers/{customer.id}/topups", {"amount": "12.345", "currency": "USDC"})
    assert response.status_code == 201, response.json()
    session = response.json()
    assert session["purpose"] == "top_up"
    assert session["mode"] == "payment"
    assert session["amount"] == "12.345000"
    assert session["status"] == "pending"
    assert session["subscriptionId"] is None
    test_api.post(f"/v0/testHelpers/paymentSessions/{session['id']}/pay")
    wallet = wallet_get_or_create(merchant=test_api.merchant, customer=customer, currency="USDC")
    assert wallet_balances(wallet=wallet).available == Decimal("12.345")


@pytest.mark.parametrize(
    "body",
    [{"amount": "0", "currency": "USDC"}, {"amount": 5, "currency": "EUR"}, {"amount": 1.5, "currency": "USD"}, {}],
)
def test_bad_topup_is_400(test_api, customer, body):
    assert test_api.post(f"/v0/customers/{customer.id}/topups", body).status_code == 400


def test_topup_for_another_merchants_customer_is_404(other_api, customer):
    response = other_api.post(f"/v0/customers/{customer.id}/topups", {"amount": "1", "currency": "USDC"})
    assert response.status_code == 404


def test_expired_session_says_so_and_refuses_payment(test_api, customer):
    session = test_api.post(f"/v0/customers/{customer.id}/topups", {"amount": "1", "currency": "USDC"}).json()
    PaymentSession.objects.filter(pk=session["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert test_api.post(f"/v0/testHelpers/paymentSessions/{session['id']}/pay").status_code == 409
    assert payment_session_expire_due() == 1
    assert PaymentSession.objects.get(pk=session["id"]).status == "expired"


@pytest.mark.django_db(transaction=True)
def test_paying_one_session_from_20_threads_credits_once_and_activates_once():
    merchant = MerchantFactory()
    sandbox = sandbox_of(merchant)
    plan = make_plan(sandbox)
    customer = make_customer(sandbox)
    from apps.subscriptions.services import subscription_create

    subscription = subscription_create(merchant=sandbox, customer=customer, plan=plan, prefund_amount=Decimal("7"))
    session = PaymentSession.objects.get(subscription=subscription)

    outcomes = run_at_once(20, lambda _: payment_session_pay(session_id=session.id, source="test")[1])
    # a failure of any kind fails the assertions below
    errors = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    results = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
    assert errors == []
    assert results.count(True) == 1 and results.count(False) == 19
    subscription.refresh_from_db()
    assert subscription.status == "active"
    assert wallet_balances(wallet=subscription.wallet).available == Decimal("7")
    assert LedgerTransaction.objects.filter(kind="payment").count() == 1
    assert ledger_check() == []


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
        {"id": body["walletId"], "object": "wallet", "currency": "USDC", "balance": "3.000000", "held": "0.000000"}
    ]
