"""The one payment service: what arrived is credited once, through its source's clearing
account, and applied to the session's target at once."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict
from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import account_balance, ledger_check, wallet_balances
from apps.ledger.services import clearing_account, wallet_get_or_create
from apps.payments import registry
from apps.payments.models import Payment, PaymentAttempt, PaymentSession, PaymentSource
from apps.payments.services import (
    Arrival,
    payment_attempt_fail,
    payment_attempt_start,
    payment_receive,
    payment_session_pay_test,
    topup_session_create,
)
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_create, subscription_terminate
from tests.concurrency import run_at_once
from tests.factories import MerchantFactory, make_customer, make_plan, sandbox_of

D = Decimal


@pytest.fixture
def activation(sandbox):
    """A sandbox subscription waiting on its 10 USDC prefund."""
    subscription = subscription_create(
        merchant=sandbox, customer=make_customer(sandbox), plan=make_plan(sandbox), prefund_amount=D("10")
    )
    return PaymentSession.objects.get(subscription=subscription)


def arrive(session, amount, reference, *, source=PaymentSource.USDC, currency=None, attempt=None):
    return payment_receive(
        session_id=session.id,
        arrival=Arrival(source, D(amount), currency or session.currency, reference, "chain:base-sepolia"),
        attempt_id=attempt.id if attempt else None,
    )


def available(session, currency=None):
    wallet = wallet_get_or_create(
        merchant=session.merchant, customer=session.customer, currency=currency or session.currency
    )
    return wallet_balances(wallet=wallet).available


def state(session):
    session.refresh_from_db()
    return session.status, session.amount_paid, Subscription.objects.get(pk=session.subscription_id).status


def test_underpayment_leaves_the_session_pending_with_amount_paid(activation):
    received = arrive(activation, "4", "0xa:0")
    assert received.created
    assert received.payment.applied_amount == D("4")
    assert state(activation) == ("pending", D("4"), "pending_payment")
    assert available(activation) == D("4")
    # the rest arrives later: paid, and the subscription activated
    arrive(activation, "6", "0xb:0")
    assert state(activation) == ("paid", D("10"), "active")
    assert available(activation) == D("10")
    assert ledger_check() == []


def test_exact_payment_pays_the_session_and_activates(activation):
    received = arrive(activation, "10", "0xa:0")
    assert received.payment.applied_amount == D("10")
    assert state(activation) == ("paid", D("10"), "active")
    assert activation.paid_at is not None
    payment = received.payment
    assert (payment.source, payment.amount, payment.status) == ("usdc", D("10"), "succeeded")
    txn = payment.ledger_transaction
    assert txn.kind == LedgerTransaction.Kind.PAYMENT
    assert {(e.account_id, e.amount) for e in txn.entries.all()} == {
        (clearing_account(source="chain:base-sepolia", currency="USDC", livemode=False).id, D("-10")),
        (activation.wallet.available_account_id, D("10")),
    }


def test_overpayment_applies_what_is_due_and_leaves_the_excess_on_the_wallet(activation):
    received = arrive(activation, "15.5", "0xa:0")
    assert received.payment.amount == D("15.5")
    assert received.payment.applied_amount == D("10")
    assert state(activation) == ("paid", D("10"), "active")
    assert available(activation) == D("15.5")


def test_money_for_a_paid_session_stays_on_the_wallet_whole(activation):
    arrive(activation, "10", "0xa:0")
    late = arrive(activation, "3", "0xb:0")
    assert late.created
    assert late.payment.applied_amount == D("0")
    assert state(activation) == ("paid", D("10"), "active")
    assert available(activation) == D("13")


def test_money_for_an_expired_session_is_credited_and_applied_to_nothing(activation):
    PaymentSession.objects.filter(pk=activation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    received = arrive(activation, "10", "0xa:0")
    assert received.payment.applied_amount == D("0")
    assert state(activation) == ("pending", D("0"), "pending_payment")
    assert available(activation) == D("10")


def test_money_for_a_terminated_subscription_stays_on_the_wallet(activation):
    subscription = Subscription.objects.get(pk=activation.subscription_id)
    subscription_terminate(merchant=activation.merchant, subscription=subscription)
    received = arrive(activation, "10", "0xa:0")
    assert received.payment.applied_amount == D("0")
    assert state(activation) == ("expired", D("0"), "terminated")
    assert available(activation) == D("10")


def test_money_in_another_currency_goes_to_that_wallet_and_pays_nothing(activation):
    received = arrive(activation, "10", "pi_1", source=PaymentSource.CARD, currency="USD")
    assert received.payment.applied_amount == D("0")
    assert state(activation) == ("pending", D("0"), "pending_payment")
    assert available(activation, "USD") == D("10")
    assert available(activation) == D("0")


def test_the_same_external_reference_is_credited_once(activation):
    first = arrive(activation, "4", "0xa:0")
    again = arrive(activation, "4", "0xa:0")
    assert not again.created
    assert again.payment.pk == first.payment.pk
    assert available(activation) == D("4")
    assert Payment.objects.count() == 1
    assert LedgerTransaction.objects.filter(kind="payment").count() == 1


def test_the_same_money_cannot_pay_another_session(activation):
    arrive(activation, "4", "0xa:0")
    other = topup_session_create(
        merchant=activation.merchant, customer=activation.customer, amount=D("4"), currency="USDC"
    )
    with pytest.raises(Conflict) as refused:
        arrive(other, "4", "0xa:0")
    assert refused.value.code == "PAYMENT_ALREADY_RECEIVED"
    assert available(activation) == D("4")
    other.refresh_from_db()
    assert other.amount_paid == D("0")


def test_a_top_up_session_is_paid_by_what_arrived(sandbox):
    session = topup_session_create(merchant=sandbox, customer=make_customer(sandbox), amount=D("5"), currency="USDC")
    arrive(session, "5", "0xa:0")
    session.refresh_from_db()
    assert (session.status, session.amount_paid) == ("paid", D("5"))
    assert available(session) == D("5")


def test_the_test_payment_pays_what_is_still_due_once(activation, test_api):
    arrive(activation, "4", "0xa:0")
    response = test_api.post(f"/v0/testHelpers/paymentSessions/{activation.id}/pay")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["amount"], body["amountPaid"]) == ("paid", "10.000000", "10.000000")
    again = test_api.post(f"/v0/testHelpers/paymentSessions/{activation.id}/pay")
    assert again.status_code == 200
    assert available(activation) == D("10")
    test_payment = Payment.objects.get(source="test")
    assert (test_payment.external_reference, test_payment.amount) == (f"test:{activation.id}", D("6"))
    assert ledger_check() == []


def test_an_attempt_in_flight_refuses_a_second_way_of_paying(activation):
    card = payment_attempt_start(session_id=activation.id, source=PaymentSource.CARD)
    assert card.status == "in_flight" and card.amount == D("10")
    with pytest.raises(Conflict) as refused:
        payment_attempt_start(session_id=activation.id, source=PaymentSource.USDC)
    assert refused.value.code == "PAYMENT_IN_FLIGHT"
    with pytest.raises(Conflict) as refused:
        payment_session_pay_test(merchant=activation.merchant, session_id=activation.id)
    assert refused.value.code == "PAYMENT_IN_FLIGHT"
    # once it failed, another way may be tried; money for it completes that attempt
    payment_attempt_fail(attempt_id=card.id, reason="card declined")
    usdc = payment_attempt_start(session_id=activation.id, source=PaymentSource.USDC)
    received = arrive(activation, "10", "0xa:0", attempt=usdc)
    usdc.refresh_from_db()
    assert (usdc.status, usdc.external_reference) == ("succeeded", "0xa:0")
    assert received.payment.attempt_id == usdc.id
    assert state(activation)[0] == "paid"


def test_money_that_arrived_without_an_attempt_is_recorded_as_one(activation):
    received = arrive(activation, "10", "0xa:0")
    attempt = PaymentAttempt.objects.get(session=activation)
    assert (attempt.status, attempt.source, attempt.amount) == ("succeeded", "usdc", D("10"))
    assert received.payment.attempt_id == attempt.id


@pytest.mark.parametrize("code,prepare", [("PAYMENT_SESSION_EXPIRED", "expire"), ("PAYMENT_SESSION_PAID", "pay")])
def test_no_attempt_starts_on_a_session_that_takes_no_money(activation, code, prepare):
    if prepare == "expire":
        PaymentSession.objects.filter(pk=activation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        arrive(activation, "10", "0xa:0")
    with pytest.raises(Conflict) as refused:
        payment_attempt_start(session_id=activation.id, source=PaymentSource.CARD)
    assert refused.value.code == code


def test_every_credit_is_announced_in_its_transaction(activation):
    heard = []

    def listener(credit):
        heard.append((credit.wallet.id, credit.amount, credit.cause, credit.payment.external_reference))

    registry.on_wallet_credited(listener)
    try:
        arrive(activation, "4", "0xa:0")
        with pytest.raises(RuntimeError), transaction.atomic():
            arrive(activation, "1", "0xb:0")
            raise RuntimeError("the caller fails after the credit")
    finally:
        registry._wallet_credited.remove(listener)
    assert heard[0] == (activation.wallet_id, D("4"), "payment", "0xa:0")
    assert available(activation) == D("4")  # the second credit rolled back with its caller


def test_a_session_of_a_purpose_nobody_handles_is_a_bug(sandbox):
    session = topup_session_create(merchant=sandbox, customer=make_customer(sandbox), amount=D("5"), currency="USDC")
    # (as if the app owning card setups had not registered its handler)
    PaymentSession.objects.filter(pk=session.pk).update(purpose=PaymentSession.Purpose.SETUP)
    setup_handler = registry._handlers.pop(PaymentSession.Purpose.SETUP)
    try:
        with pytest.raises(LookupError, match="no handler is registered"):
            arrive(session, "5", "0xa:0")
    finally:
        registry._handlers[PaymentSession.Purpose.SETUP] = setup_handler
    assert not Payment.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_sources_at_once_get_one_attempt():
    sandbox = sandbox_of(MerchantFactory())
    session = topup_session_create(merchant=sandbox, customer=make_customer(sandbox), amount=D("5"), currency="USDC")
    sources = [PaymentSource.CARD, PaymentSource.USDC] * 4
    outcomes = run_at_once(len(sources), lambda i: payment_attempt_start(session_id=session.id, source=sources[i]))
    started = [o for o in outcomes if isinstance(o, PaymentAttempt)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(started) == 1
    assert len(refused) == len(sources) - 1
    assert {o.code for o in refused} == {"PAYMENT_IN_FLIGHT"}
    assert PaymentAttempt.objects.filter(session=session, status="in_flight").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_reports_credit_each_payment_once_and_never_apply_more_than_due():
    sandbox = sandbox_of(MerchantFactory())
    session = topup_session_create(merchant=sandbox, customer=make_customer(sandbox), amount=D("5"), currency="USDC")
    # 12 reports of 4 transfers of 2 USDC: each transfer credited once, 5 of the 8 applied
    outcomes = run_at_once(12, lambda i: arrive(session, "2", f"0x{i % 4}:0").created)
    assert sorted(outcomes) == [False] * 8 + [True] * 4
    session.refresh_from_db()
    assert (session.status, session.amount_paid) == ("paid", D("5"))
    assert sum(p.applied_amount for p in Payment.objects.all()) == D("5")
    assert available(session) == D("8")
    assert account_balance(account=clearing_account(source="chain:base-sepolia", currency="USDC", livemode=False)) == (
        D("-8")
    )
    assert ledger_check() == []
