"""Payment sessions through /v0: top-ups, the sandbox's test payment, expiry, concurrency."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check, wallet_balances
from apps.ledger.services import wallet_get_or_create
from apps.payments.models import PaymentSession
from apps.payments.services import payment_session_expire_due, payment_session_pay_test
from apps.subscriptions.services import subscription_create
from tests.concurrency import run_at_once
from tests.factories import MerchantFactory, make_customer, make_plan, sandbox_of


@pytest.fixture
def customer(test_api):
    return make_customer(test_api.merchant)


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
    subscription = subscription_create(merchant=sandbox, customer=customer, plan=plan, prefund_amount=Decimal("7"))
    session = PaymentSession.objects.get(subscription=subscription)

    outcomes = run_at_once(20, lambda _: payment_session_pay_test(merchant=sandbox, session_id=session.id)[1])
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
