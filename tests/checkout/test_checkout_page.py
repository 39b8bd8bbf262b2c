"""The hosted checkout page for pending, paid and expired sessions."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.payments.models import PaymentSession
from apps.payments.services import payment_session_pay_test, topup_session_create
from apps.subscriptions.services import subscription_create
from tests.factories import make_customer, make_plan, pay_session


@pytest.fixture
def session(sandbox):
    plan = make_plan(sandbox)
    customer = make_customer(sandbox)
    subscription = subscription_create(
        merchant=sandbox,
        customer=customer,
        plan=plan,
        prefund_amount=Decimal("20"),
        success_url="https://shop.example/ok",
    )
    return PaymentSession.objects.get(subscription=subscription)


def test_pending_session_shows_what_is_due_and_each_way_of_paying(client, session):
    response = client.get(f"/checkout/{session.id}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Activate your subscription" in html
    assert "20.000000" in html and "USDC" in html
    assert "Due now" in html
    assert "USDC unavailable: no chain is configured for the sandbox (USDC_TEST_CHAINS is not set)." in html
    assert "test-payment" in html  # the sandbox offers its test payment
    assert "Sandbox" in html


def test_paid_session_says_so(client, session):
    payment_session_pay_test(merchant=session.merchant, session_id=session.id)
    html = client.get(f"/checkout/{session.id}").content.decode()
    assert "Paid on" in html
    assert "test-payment" not in html


def test_expired_session_says_so(client, session):
    PaymentSession.objects.filter(pk=session.id).update(expires_at=timezone.now() - timedelta(minutes=1))
    html = client.get(f"/checkout/{session.id}").content.decode()
    assert "expired" in html
    assert "test-payment" not in html


def test_the_test_payment_button_pays_and_redirects(client, session):
    response = client.post(f"/checkout/{session.id}/test-payment")
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example/ok"
    session.refresh_from_db()
    assert session.status == "paid"
    assert session.subscription.status == "active"


def test_live_sessions_have_no_test_payment(client, merchant):
    customer = make_customer(merchant)
    live = topup_session_create(merchant=merchant, customer=customer, amount=Decimal("5"), currency="USD")
    html = client.get(f"/checkout/{live.id}").content.decode()
    assert "test-payment" not in html
    assert "Card unavailable: Stripe is not configured for live (STRIPE_SECRET_KEY, " in html
    assert client.post(f"/checkout/{live.id}/test-payment").status_code == 404


def test_unknown_session_is_404(client, db):
    assert client.get("/checkout/00000000-0000-0000-0000-000000000000").status_code == 404


def test_a_partly_paid_session_shows_what_is_still_due(client, session):
    pay_session(session, amount=Decimal("7.5"), reference="0xabc:0")
    html = client.get(f"/checkout/{session.id}").content.decode()
    assert "7.500000 USDC received so far; 12.500000 USDC still due" in html
    assert "Pay 12.500000 USDC (test)" in html
    client.post(f"/checkout/{session.id}/test-payment")
    session.refresh_from_db()
    assert (session.status, session.amount_paid) == ("paid", Decimal("20"))


def test_an_invoice_link_works_for_as_long_as_the_invoice_is_open(client, sandbox):
    from apps.invoices.models import Invoice
    from apps.invoices.services.invoices import invoice_create_one_off

    customer = make_customer(sandbox)
    invoice = invoice_create_one_off(
        merchant=sandbox, customer=customer, currency="USDC", lines=[("Work", Decimal("7"))], auto_collect=False
    )
    first = invoice.payment_session
    PaymentSession.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(f"/checkout/{first.id}")
    assert response.status_code == 302
    replacement = Invoice.objects.get(pk=invoice.pk).payment_session
    assert replacement.id != first.id and response["Location"] == f"/checkout/{replacement.id}"
    assert replacement.amount == Decimal("7") and replacement.invoice_id == invoice.id
    live = client.get(f"/checkout/{replacement.id}")  # the live one is shown, with what it pays
    assert live.status_code == 200
    html = live.content.decode()
    assert "Pay your invoice" in html and invoice.number in html and "Work" in html and "7.000000" in html
    assert "This link works for as long as the invoice is open" in html
    pay_session(replacement)
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
    # paid: the old link shows what it is, without a new session
    assert client.get(f"/checkout/{first.id}").status_code == 200
    assert PaymentSession.objects.filter(invoice_id=invoice.id).count() == 2
