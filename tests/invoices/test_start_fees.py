"""Fees at start: a plan's in_advance fee is invoiced when the subscription is created (kind start,
once), asked with the prefund by the activation session, paid first by the money that arrives for
it, paid from the wallet at once when the wallet already covers it, and voided when the activation
expires unpaid."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.catalog.models import PaymentTerm, Price
from apps.invoices.models import Invoice
from apps.ledger.selectors import ledger_check
from apps.payments.models import PaymentSession
from apps.payments.services import payment_session_expire_due
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_create, subscription_terminate
from tests.factories import make_customer, make_plan, pay_session
from tests.usage.world import Billing

D = Decimal


@pytest.fixture
def plan(merchant):
    plan = make_plan(merchant)
    fee = Price.objects.create(
        merchant=merchant,
        payment_term=PaymentTerm.IN_ADVANCE,
        currency="USDC",
        amount=D("5"),
        invoice_display_name="Base",
    )
    plan.prices.add(fee)
    return plan


def subscribe(api, plan, **body):
    customer = make_customer(api.merchant, email=body.pop("email", "ada@example.com"))
    response = api.post("/v0/subscriptions", {"customerId": str(customer.id), "planId": str(plan.id), **body})
    assert response.status_code == 201, response.json()
    return response.json()


def test_the_activation_asks_prefund_and_fee_and_its_money_pays_the_start_invoice_first(api, plan):
    data = subscribe(api, plan, prefundAmount="20")
    invoice = Invoice.objects.get(kind=Invoice.Kind.START)
    assert data["status"] == "pending_payment"
    assert data["payment"]["amount"] == "25.000000" and data["payment"]["invoiceId"] == str(invoice.id)
    shown = api.get(f"/v0/invoices/{invoice.id}").json()
    assert (shown["kind"], shown["status"], shown["number"], shown["total"]) == (
        "start",
        "open",
        "INV-000001",
        "5.000000",
    )
    assert [(line["description"], line["amount"]) for line in shown["lines"]] == [("Base", "5.000000")]
    assert shown["paymentUrl"] == data["payment"]["checkoutUrl"]  # paid through the activation
    session = PaymentSession.objects.get(pk=data["payment"]["paymentSessionId"])

    pay_session(session, amount=D("3"))  # less than the fee: all of it to the fee
    assert api.get(f"/v0/invoices/{invoice.id}").json()["amountPaid"] == "3.000000"
    assert Subscription.objects.get(pk=data["id"]).status == "pending_payment"
    pay_session(session, amount=D("22"), reference="rest")
    assert api.get(f"/v0/invoices/{invoice.id}").json()["status"] == "paid"
    subscription = Subscription.objects.get(pk=data["id"])
    assert subscription.status == "active"
    billing_wallet = api.get(f"/v0/subscriptions/{data['id']}").json()
    assert billing_wallet["status"] == "active"
    from apps.ledger.selectors import wallet_balances

    assert wallet_balances(wallet=subscription.wallet).available == D("20")  # the prefund
    assert ledger_check() == []


def test_without_a_prefund_the_fee_alone_is_asked(api, plan):
    data = subscribe(api, plan)
    assert data["status"] == "pending_payment" and data["payment"]["amount"] == "5.000000"
    pay_session(PaymentSession.objects.get(pk=data["payment"]["paymentSessionId"]))
    assert Subscription.objects.get(pk=data["id"]).status == "active"
    assert Invoice.objects.get(kind="start").status == "paid"


def test_a_wallet_that_covers_the_fee_pays_it_at_once_and_the_subscription_is_active(api, plan):
    first = Billing(api.merchant, email="bob@example.com")  # another plan's subscription funds the wallet
    first.fund("8")
    response = api.post("/v0/subscriptions", {"customerId": str(first.customer.id), "planId": str(plan.id)})
    data = response.json()
    assert data["status"] == "active" and data["payment"] is None
    invoice = Invoice.objects.get(kind="start")
    assert invoice.status == "paid" and invoice.number == "INV-000001"
    assert first.available() == D("3")
    assert ledger_check() == []


def test_a_plan_without_fees_has_no_start_invoice(api, merchant):
    data = subscribe(api, make_plan(merchant))
    assert data["status"] == "active" and not Invoice.objects.exists()


def test_an_activation_that_expires_unpaid_voids_its_start_invoice_and_returns_what_was_paid(api, plan):
    data = subscribe(api, plan, prefundAmount="20")
    session = PaymentSession.objects.get(pk=data["payment"]["paymentSessionId"])
    pay_session(session, amount=D("2"))
    PaymentSession.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert payment_session_expire_due() == 1
    invoice = Invoice.objects.get(kind="start")
    assert invoice.status == "void"
    subscription = Subscription.objects.get(pk=data["id"])
    from apps.ledger.selectors import wallet_balances

    assert wallet_balances(wallet=subscription.wallet).available == D("2")  # back on the wallet
    assert ledger_check() == []


def test_terminating_a_waiting_subscription_voids_its_start_invoice(api, plan):
    data = subscribe(api, plan)
    subscription_terminate(merchant=api.merchant, subscription=Subscription.objects.get(pk=data["id"]))
    assert Invoice.objects.get(kind="start").status == "void"


def test_the_first_close_invoices_the_next_periods_fee_not_the_first_again(api, plan, time_machine):
    from datetime import UTC, datetime

    from apps.subscriptions.services import periods_advance

    time_machine.move_to(datetime(2026, 1, 1, tzinfo=UTC), tick=False)
    customer = make_customer(api.merchant)
    subscription = subscription_create(merchant=api.merchant, customer=customer, plan=plan)
    pay_session(PaymentSession.objects.get(subscription=subscription))
    time_machine.move_to(datetime(2026, 2, 1, 2, tzinfo=UTC), tick=False)
    periods_advance(subscription_id=subscription.id)
    period_invoice = Invoice.objects.get(kind="period")
    assert [(line.description, line.period_start.month) for line in period_invoice.lines.all()] == [("Base", 2)]
    assert Invoice.objects.filter(kind="start").count() == 1
