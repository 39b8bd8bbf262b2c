"""Refunds and disputes of card payments, against localstripe: a card payment made through the
card path, a refund created in localstripe with the stripe SDK (as a merchant does it in
Stripe's dashboard or API), and the charge.refunded event built from localstripe's own charge
object and signed by the test (localstripe sends no charge.* events), delivered to
POST /webhooks/stripe. A refund reverses the payment it undoes: money that funded the wallet
is debited from it (its balance may go below zero: the customer owes it), an invoice payment
is reversed with revenue and commission in the proportion it booked them and the invoice is
open again. Each Stripe refund id is recorded once, whatever the deliveries."""

import json
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import stripe
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone

from apps.cards.models import StripeCustomer, StripeEvent
from apps.cards.services.charges import card_charge
from apps.cards.stripe_client import stripe_client
from apps.cards.tasks import retry_stuck_stripe_events
from apps.invoices.models import Invoice
from apps.invoices.services.invoices import invoice_create_one_off
from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import account_balance, ledger_check
from apps.ledger.services import clearing_account
from apps.payments.models import Payment, PaymentAttempt, PaymentDispute, PaymentRefund, PaymentSource
from apps.payments.services import payment_attempt_start, topup_session_create
from apps.portal.services import portal_link_create
from apps.webhooks.models import Event
from tests.concurrency import run_at_once
from tests.conftest import Api
from tests.factories import MerchantFactory, issue_key, sandbox_of
from tests.invoices.test_card_collection import save_card
from tests.usage.world import Billing

D = Decimal
GOOD = "4242424242424242"


@pytest.fixture
def stripe_sdk(localstripe, stripe_sandbox, monkeypatch):
    """The stripe SDK's module-level API (stripe.Refund.create, ...) pointed at localstripe, as
    a merchant's own code or Stripe's dashboard would reach Stripe."""
    monkeypatch.setattr(stripe, "api_base", localstripe.url)
    monkeypatch.setattr(stripe, "api_key", stripe_sandbox["STRIPE_TEST_SECRET_KEY"])
    return stripe


@pytest.fixture
def usd(sandbox, stripe_sdk):
    return Billing(sandbox, currency="USD", email=f"refund-{uuid.uuid4().hex[:8]}@example.com")


def top_up_by_card(billing, amount):
    """A top-up of the wallet paid by card through the card path (a PaymentIntent created, its
    id committed on the attempt, confirmed, decided from the PaymentIntent retrieved)."""
    session = topup_session_create(
        merchant=billing.merchant, customer=billing.customer, amount=D(amount), currency="USD"
    )
    card = save_card(billing.customer, GOOD)
    attempt = card_charge(session_id=session.id, card=card)
    assert attempt.status == "succeeded"
    return Payment.objects.get(external_reference=attempt.external_reference)


def charge_of(payment):
    """localstripe's charge of a card payment (its PaymentIntent's latest charge), as a dict."""
    return intent_charge(payment.external_reference)


def intent_charge(intent_id):
    intent = stripe.PaymentIntent.retrieve(intent_id)
    latest = intent.latest_charge
    charge_id = latest if isinstance(latest, str) else latest.id
    return stripe.Charge.retrieve(charge_id).to_dict()


def refund_in_stripe(payment, cents=None):
    """A refund created in Stripe (localstripe) with the SDK; returns the charge as it is now
    (with its cumulative amount_refunded and its refunds)."""
    return refund_intent_in_stripe(payment.external_reference, cents)


def refund_intent_in_stripe(intent_id, cents=None):
    charge = intent_charge(intent_id)
    params = {"charge": charge["id"]}
    if cents is not None:
        params["amount"] = cents
    refund = stripe.Refund.create(**params)
    assert refund.status == "succeeded"
    return intent_charge(intent_id), refund


def signed_event(obj, type_="charge.refunded", event_id=None):
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": type_,
        "livemode": False,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def deliver(client, event, secret):
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    return client.post(
        "/webhooks/stripe", data=payload, content_type="application/json", headers={"Stripe-Signature": header}
    )


@pytest.fixture
def send(client, stripe_sandbox, django_capture_on_commit_callbacks):
    """Deliver an event to the inbox and process it (its task runs after the commit)."""

    def send(event):
        with django_capture_on_commit_callbacks(execute=True):
            response = deliver(client, event, stripe_sandbox["STRIPE_TEST_WEBHOOK_SECRET"])
        assert response.status_code == 200, response.content
        return StripeEvent.objects.get(stripe_id=event["id"])

    return send


def card_clearing():
    return account_balance(account=clearing_account(source="stripe", currency="USD", livemode=False))


def events(type_):
    return [event.data for event in Event.objects.filter(type=type_).order_by("created_at", "id")]


# --- money that funded the wallet -------------------------------------------------------------


@pytest.mark.django_db
def test_a_refund_of_a_card_top_up_debits_the_wallet_by_exactly_the_refund(usd, send):
    payment = top_up_by_card(usd, "20")
    assert usd.available() == D("20.00")
    charge, refund = refund_in_stripe(payment, cents=750)
    assert (charge["amount_refunded"], charge["refunded"]) == (750, False)

    row = send(signed_event(charge))

    assert row.status == "processed", row.note
    assert usd.available() == D("12.50")
    assert card_clearing() == D("-12.50")  # -20 in, 7.50 back out to the card
    recorded = PaymentRefund.objects.get()
    assert (recorded.external_reference, recorded.amount, recorded.reversed_amount, recorded.payment_id) == (
        refund.id,
        D("7.50"),
        D("0"),
        payment.id,
    )
    payment.refresh_from_db()
    assert (payment.amount_refunded, payment.status) == (D("7.50"), "succeeded")
    (published,) = events("payment.refunded")
    assert (published["id"], published["amountRefunded"], published["amount"], published["status"]) == (
        str(payment.id),
        "7.50",
        "20.00",
        "succeeded",
    )
    assert set(published) == set(events("payment.succeeded")[0])  # the payment's one shape
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_refund_larger_than_the_balance_leaves_it_negative_usage_is_refused_and_api_and_portal_show_it(
    usd, send, sandbox
):
    metric = usd.metric(properties={"unitPrice": "1"})
    api = Api(issue_key(sandbox), sandbox)
    payment = top_up_by_card(usd, "10")
    assert api.post("/v0/usage", usd.event("spend", metric, 6)).status_code == 201
    assert usd.available() == D("4.00")

    charge, _ = refund_in_stripe(payment)  # the whole 10.00
    assert send(signed_event(charge)).status == "processed"

    assert usd.available() == D("-6.00")
    payment.refresh_from_db()
    assert (payment.amount_refunded, payment.status) == (D("10.00"), "refunded")
    assert events("payment.refunded")[0]["status"] == "refunded"
    # usage is refused below the minimum balance (0): the contract's insufficient-balance answer
    transactions = LedgerTransaction.objects.count()
    refused = api.post("/v0/usage", usd.event("more", metric, 1))
    assert refused.status_code == 402, refused.content
    assert refused.json()["code"] == "INSUFFICIENT_BALANCE"
    assert LedgerTransaction.objects.count() == transactions
    # the API shows the negative balance
    customer = api.get(f"/v0/customers/{usd.customer.id}").json()
    assert [(w["currency"], w["balance"]) for w in customer["wallets"]] == [("USD", "-6.00")]
    assert api.get(f"/v0/subscriptions/{usd.subscription.id}").json()["balance"] == "-6.00"
    # the portal shows what the customer owes
    browser = Client()
    link = portal_link_create(merchant=sandbox, subscription=usd.subscription, expires_in=timedelta(minutes=5))
    assert browser.get(link.url).status_code == 302
    page = browser.get("/portal/").content.decode()
    assert "-6.00" in page
    assert 'data-testid="owed-USD"' in page
    assert "You owe 6.00 USD" in page
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_partial_refund_then_the_rest_each_reversed_once(usd, send):
    payment = top_up_by_card(usd, "10")
    first_charge, first = refund_in_stripe(payment, cents=300)
    first_event = signed_event(first_charge)
    send(first_event)
    assert usd.available() == D("7.00")

    # what is left (localstripe refunds the charge's whole amount when none is given, not the rest)
    rest_charge, rest = refund_in_stripe(payment, cents=700)
    assert rest.amount == 700
    assert rest_charge["amount_refunded"] == 1000  # cumulative: both refunds
    rest_event = signed_event(rest_charge)
    assert send(rest_event).status == "processed"

    assert usd.available() == D("0.00")
    # either event again, or another event listing the same refunds: nothing more
    send(signed_event(rest_charge))
    for event in (first_event, rest_event):
        send(event)
    assert usd.available() == D("0.00")
    refunds = PaymentRefund.objects.order_by("created_at")
    assert [(r.external_reference, r.amount) for r in refunds] == [(first.id, D("3.00")), (rest.id, D("7.00"))]
    payment.refresh_from_db()
    assert (payment.amount_refunded, payment.status) == (D("10.00"), "refunded")
    assert [e["amountRefunded"] for e in events("payment.refunded")] == ["3.00", "10.00"]
    assert card_clearing() == D("0.00")
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_charge_without_its_refunds_list_has_them_listed_from_stripe(usd, send):
    # Stripe's current API versions leave `refunds` out of the charge: they are listed from Stripe
    payment = top_up_by_card(usd, "10")
    refund_in_stripe(payment, cents=125)
    charge, second = refund_in_stripe(payment, cents=375)
    del charge["refunds"]
    assert charge["amount_refunded"] == 500

    row = send(signed_event(charge))

    assert row.status == "processed", row.note
    assert PaymentRefund.objects.count() == 2
    assert PaymentRefund.objects.get(external_reference=second.id).amount == D("3.75")
    assert usd.available() == D("5.00")
    assert ledger_check() == []


@pytest.mark.django_db
def test_refund_events_out_of_order_change_nothing_twice(usd, send):
    payment = top_up_by_card(usd, "10")
    first_charge, first = refund_in_stripe(payment, cents=250)
    rest_charge, rest = refund_in_stripe(payment, cents=400)
    # the later event (listing both refunds) arrives first
    assert "re_" in send(signed_event(rest_charge)).note
    assert usd.available() == D("3.50")
    older = send(signed_event(first_charge))
    assert (older.status, older.note) == (
        "processed",
        f"No new refund of {payment.external_reference} (each was recorded before).",
    )
    assert usd.available() == D("3.50")
    assert PaymentRefund.objects.count() == 2
    assert {r.external_reference for r in PaymentRefund.objects.all()} == {first.id, rest.id}
    assert len(events("payment.refunded")) == 2
    assert ledger_check() == []


# --- an invoice paid by card ------------------------------------------------------------------


@pytest.mark.django_db
def test_an_invoice_paid_by_card_then_refunded_reverses_its_payment_in_proportion_and_opens_it_again(
    usd, send, sandbox, django_capture_on_commit_callbacks
):
    sandbox.commission_rate = D("0.0333")
    sandbox.save(update_fields=["commission_rate"])
    api = Api(issue_key(sandbox), sandbox)
    save_card(usd.customer, GOOD)
    with django_capture_on_commit_callbacks(execute=True):  # collected off-session after the commit
        invoice = invoice_create_one_off(
            merchant=sandbox, customer=usd.customer, currency="USD", lines=[("Consulting", D("12.50"))]
        )
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", D("12.50"))
    payment = Payment.objects.get(source="card")
    # the invoice payment booked 0.41625 commission (3.33 %) and 12.08375 revenue
    assert (usd.commission(), usd.revenue(), usd.available()) == (D("0.41625"), D("12.08375"), D("0"))

    charge, _ = refund_in_stripe(payment, cents=500)
    assert send(signed_event(charge)).status == "processed"

    # 5.00 of 12.50 back: commission 5 x 0.41625 / 12.50 = 0.1665, revenue 4.8335
    assert usd.commission() == D("0.41625") - D("0.1665")
    assert usd.revenue() == D("12.08375") - D("4.8335")
    assert usd.available() == D("0")  # back from the invoice, then out to the card
    assert card_clearing() == D("-7.50")
    assert PaymentRefund.objects.get().reversed_amount == D("5.00")
    shown = api.get(f"/v0/invoices/{invoice.id}").json()
    assert (shown["status"], shown["amountPaid"], shown["amountDue"]) == ("open", "7.50", "5.00")
    assert shown["paymentUrl"]
    assert ledger_check() == []

    charge, _ = refund_in_stripe(payment, cents=750)
    assert send(signed_event(charge)).status == "processed"

    # the last of it takes back exactly what is left: nothing stays behind by rounding
    assert (usd.commission(), usd.revenue(), usd.available(), card_clearing()) == (D("0"), D("0"), D("0"), D("0"))
    shown = api.get(f"/v0/invoices/{invoice.id}").json()
    assert (shown["status"], shown["amountPaid"], shown["amountDue"]) == ("open", "0.00", "12.50")
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("refunded", D("12.50"))
    assert Invoice.objects.get(pk=invoice.pk).paid_at is None
    assert ledger_check() == []


# --- deliveries: duplicates, concurrency, order ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_one_charge_refunded_delivered_three_times_and_concurrently_is_reversed_once(localstripe, stripe_sdk):
    sandbox = sandbox_of(MerchantFactory())
    billing = Billing(sandbox, currency="USD")
    payment = top_up_by_card(billing, "10")
    charge, refund = refund_in_stripe(payment, cents=400)
    event = signed_event(charge)
    secret = settings.STRIPE_TEST_WEBHOOK_SECRET

    # three deliveries one after another, then eight at once, each through the view with its
    # own connection; then the same refunds reported by four other event ids at once
    answers = [deliver(Client(), event, secret) for _ in range(3)]
    answers += run_at_once(8, lambda i: deliver(Client(), event, secret))
    answers += run_at_once(4, lambda i: deliver(Client(), signed_event(charge), secret))

    assert [a.status_code for a in answers] == [200] * 15
    assert [a.json()["duplicate"] for a in answers].count(False) == 5
    assert StripeEvent.objects.count() == 5
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert [(r.external_reference, r.amount) for r in PaymentRefund.objects.all()] == [(refund.id, D("4.00"))]
    assert billing.available() == D("6.00")
    assert len(events("payment.refunded")) == 1
    assert card_clearing() == D("-6.00")
    assert ledger_check() == []


def attempt_charged_in_stripe_only(billing, cents, **intent_params):
    """A card attempt whose PaymentIntent was confirmed in Stripe (localstripe) but whose
    success the platform has not heard of yet (the server crashed before it read the answer,
    and the payment's own event has not arrived)."""
    session = topup_session_create(
        merchant=billing.merchant, customer=billing.customer, amount=D(cents) / 100, currency="USD"
    )
    return attempt_confirmed_in_stripe_only(session, GOOD, **intent_params)


def attempt_confirmed_in_stripe_only(session, number, **intent_params):
    """A card attempt of the session, on a card with this number saved for its customer, whose
    PaymentIntent for what the session asks was confirmed in localstripe and not heard of by the
    platform yet. Returns (the attempt, the PaymentIntent's id)."""
    card = save_card(session.customer, number)
    attempt = payment_attempt_start(session_id=session.id, source=PaymentSource.CARD)
    client = stripe_client(livemode=False)
    intent = client.v1.payment_intents.create(
        params={
            "amount": int(session.amount * 100),
            "currency": "usd",
            "customer": StripeCustomer.objects.get(customer=session.customer).stripe_id,
            "payment_method": card.stripe_payment_method_id,
            "metadata": {"paymentAttemptId": str(attempt.id)},
            **intent_params,
        }
    )
    PaymentAttempt.objects.filter(pk=attempt.pk).update(external_reference=intent.id)
    client.v1.payment_intents.confirm(intent.id)
    return attempt, intent.id


def make_stale(row):
    StripeEvent.objects.filter(pk=row.pk).update(updated_at=timezone.now() - timedelta(minutes=5))


@pytest.mark.django_db
def test_a_refund_event_before_the_payment_is_known_is_kept_retried_by_beat_and_applied_once(usd, send):
    attempt, intent_id = attempt_charged_in_stripe_only(usd, 1000)
    charge, refund = refund_intent_in_stripe(intent_id, cents=400)
    event = signed_event(charge)

    # processed while Stripe cannot be reached: what it needs is not fetched; kept for beat
    with override_settings(STRIPE_TEST_API_BASE="http://127.0.0.1:9"):
        row = send(event)
    assert (row.status, row.attempts) == ("received", 1)
    assert "APIConnectionError" in row.last_error
    assert not Payment.objects.exists()
    assert not PaymentRefund.objects.exists()
    assert retry_stuck_stripe_events() == 0  # not stuck yet

    make_stale(row)
    assert retry_stuck_stripe_events() == 1
    row.refresh_from_db()
    assert row.status == "processed", row.note
    # the payment credited from its PaymentIntent, then the refund applied to it
    payment = Payment.objects.get()
    assert (payment.external_reference, payment.amount, payment.amount_refunded) == (intent_id, D("10.00"), D("4.00"))
    assert PaymentAttempt.objects.get(pk=attempt.pk).status == "succeeded"
    assert usd.available() == D("6.00")

    # the payment's own event, late, and the refund event again: nothing more
    intent = stripe_client(livemode=False).v1.payment_intents.retrieve(intent_id).to_dict()
    late = send(signed_event(intent, "payment_intent.succeeded"))
    assert "already credited" in late.note
    send(event)
    send(signed_event(charge))
    assert (Payment.objects.count(), PaymentRefund.objects.count()) == (1, 1)
    assert PaymentRefund.objects.get().external_reference == refund.id
    assert usd.available() == D("6.00")
    assert (len(events("payment.succeeded")), len(events("payment.refunded"))) == (1, 1)
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_refund_event_while_stripe_has_not_captured_the_payment_waits_until_it_has(usd, send):
    # a PaymentIntent authorized but not captured yet, its charge refunded: the payment is not
    # succeeded in Stripe, so the platform cannot credit it yet
    _, intent_id = attempt_charged_in_stripe_only(usd, 1000, capture_method="manual")
    charge, _ = refund_intent_in_stripe(intent_id, cents=250)
    row = send(signed_event(charge))
    assert (row.status, row.attempts) == ("received", 0)  # waiting is no error
    assert "is not credited yet" in row.note
    assert not Payment.objects.exists()
    make_stale(row)
    assert retry_stuck_stripe_events() == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("received", 0)  # beat tried again: still waiting

    stripe_client(livemode=False).v1.payment_intents.capture(intent_id)
    make_stale(row)
    assert retry_stuck_stripe_events() == 1
    row.refresh_from_db()
    assert row.status == "processed", row.note
    payment = Payment.objects.get()
    assert (payment.amount, payment.amount_refunded) == (D("10.00"), D("2.50"))
    assert usd.available() == D("7.50")
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_refund_event_that_waited_past_stripes_delivery_window_fails_and_an_operator_can_process_it_again(
    usd, send, client, django_capture_on_commit_callbacks
):
    from apps.merchants.models import User

    _, intent_id = attempt_charged_in_stripe_only(usd, 1000, capture_method="manual")
    charge, refund = refund_intent_in_stripe(intent_id, cents=300)
    row = send(signed_event(charge))
    StripeEvent.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(days=3, minutes=1))
    make_stale(row)
    assert retry_stuck_stripe_events() == 1
    row.refresh_from_db()
    assert row.status == "failed"
    assert row.note.startswith("Its payment was still not credited 3 days later")
    assert retry_stuck_stripe_events() == 0  # beat leaves it

    # the cause fixed (captured), the operator processes it again from the admin
    stripe_client(livemode=False).v1.payment_intents.capture(intent_id)
    client.force_login(User.objects.create_superuser(username="op", email="op@p.example", password="pw-123456789"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/cards/stripeevent/", {"action": "process_again", "_selected_action": [str(row.pk)]}
        )
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.status == "processed", row.note
    assert PaymentRefund.objects.get().external_reference == refund.id
    assert usd.available() == D("7.00")
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_charge_of_no_payment_of_the_platform_is_ignored(usd, send):
    # a charge made in the same Stripe account by something else than the platform
    customer = stripe.Customer.create(email="elsewhere@example.com")
    method = stripe.PaymentMethod.create(
        type="card", card={"number": GOOD, "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    )
    stripe.PaymentMethod.attach(method.id, customer=customer.id)
    intent = stripe.PaymentIntent.create(amount=500, currency="usd", customer=customer.id, payment_method=method.id)
    stripe.PaymentIntent.confirm(intent.id)
    charge, _ = refund_intent_in_stripe(intent.id)
    row = send(signed_event(charge))
    assert (row.status, row.note) == ("ignored", "The refunded charge is no card payment of this platform.")
    assert not PaymentRefund.objects.exists()
    assert not Event.objects.filter(type="payment.refunded").exists()
    assert ledger_check() == []


# --- disputes --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_dispute_is_recorded_once_published_as_payment_disputed_and_moves_no_money(usd, send):
    payment = top_up_by_card(usd, "10")
    charge = charge_of(payment)
    # Stripe's dispute names its charge (the PaymentIntent is looked up from it)
    dispute = {
        "id": f"dp_{uuid.uuid4().hex[:14]}",
        "object": "dispute",
        "amount": 1000,
        "currency": "usd",
        "charge": charge["id"],
        "reason": "fraudulent",
        "status": "needs_response",
        "livemode": False,
    }
    transactions = LedgerTransaction.objects.count()
    event = signed_event(dispute, "charge.dispute.created")

    row = send(event)
    send(event)
    again = send(signed_event(dispute, "charge.dispute.created"))  # another event id, the same dispute

    assert row.status == "processed", row.note
    assert again.note == f"Dispute {dispute['id']} was recorded before (needs_response)."
    recorded = PaymentDispute.objects.get()
    assert (recorded.payment_id, recorded.amount, recorded.reason, recorded.processor_status) == (
        payment.id,
        D("10.00"),
        "fraudulent",
        "needs_response",
    )
    payment.refresh_from_db()
    assert payment.status == "disputed"
    assert payment.disputed_at is not None
    (published,) = events("payment.disputed")
    assert set(published) == set(events("payment.succeeded")[0])  # the payment's one shape
    assert (published["id"], published["status"], published["amount"], published["amountRefunded"]) == (
        str(payment.id),
        "disputed",
        "10.00",
        "0.00",
    )
    # no money moved
    assert LedgerTransaction.objects.count() == transactions
    assert usd.available() == D("10.00")
    assert card_clearing() == D("-10.00")
    assert ledger_check() == []


# --- refunds that fail or are canceled afterwards ---------------------------------------------


def refund_gone_wrong(refund, status="failed"):
    """Stripe's refund object once the refund failed (the card closed) or was canceled:
    localstripe's refund with its later status (localstripe never fails a refund)."""
    obj = refund.to_dict() if hasattr(refund, "to_dict") else dict(refund)
    obj["status"] = status
    if status == "failed":
        obj["failure_reason"] = "expired_or_canceled_card"
    return obj


def undo_of(recorded):
    return LedgerTransaction.objects.get(pk=recorded.undo_transaction_id)


@pytest.mark.django_db
def test_a_failed_refund_of_a_card_top_up_is_credited_back_once_whatever_reports_it(usd, send):
    payment = top_up_by_card(usd, "20")
    charge, refund = refund_in_stripe(payment, cents=750)
    send(signed_event(charge))
    assert usd.available() == D("12.50")
    transactions = LedgerTransaction.objects.count()

    failed = signed_event(refund_gone_wrong(refund), "charge.refund.updated")
    row = send(failed)

    assert (row.status, row.note) == ("processed", f"Refund {refund.id} failed: 7.50 credited back to the wallet.")
    assert usd.available() == D("20.00")
    assert card_clearing() == D("-20.00")  # nothing left to the card
    recorded = PaymentRefund.objects.get()
    assert (recorded.status, recorded.amount, recorded.restored_amount) == ("failed", D("7.50"), D("0"))
    assert recorded.failed_at is not None
    undo = undo_of(recorded)
    assert (undo.kind, undo.reverses_id) == ("reversal", recorded.ledger_transaction_id)
    payment.refresh_from_db()
    assert (payment.amount_refunded, payment.status) == (D("0.00"), "succeeded")
    assert LedgerTransaction.objects.count() == transactions + 1

    # the same event again, Stripe's newer types for it, charge.refunded listing it failed: nothing more
    send(failed)
    again = send(signed_event(refund_gone_wrong(refund), "refund.failed"))
    assert again.note == f"Refund {refund.id} was undone before (failed)."
    send(signed_event(refund_gone_wrong(refund), "refund.updated"))
    listed = dict(charge, refunds={"object": "list", "has_more": False, "data": [refund_gone_wrong(refund)]})
    send(signed_event(listed))
    send(signed_event(charge))  # the original report (pending / succeeded) once more
    assert usd.available() == D("20.00")
    assert LedgerTransaction.objects.count() == transactions + 1
    # the contract has no "refund failed" event: nothing new is published
    assert len(events("payment.refunded")) == 1
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_canceled_full_refund_takes_the_payment_back_from_refunded(usd, send):
    payment = top_up_by_card(usd, "10")
    charge, refund = refund_in_stripe(payment)
    send(signed_event(charge))
    payment.refresh_from_db()
    assert (payment.status, usd.available()) == ("refunded", D("0.00"))

    row = send(signed_event(refund_gone_wrong(refund, "canceled"), "refund.updated"))

    assert row.status == "processed", row.note
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("succeeded", D("0.00"))
    assert PaymentRefund.objects.get().status == "canceled"
    assert usd.available() == D("10.00")
    assert card_clearing() == D("-10.00")
    # a refund that did not fail changes nothing here
    pending = send(signed_event(refund_gone_wrong(refund, "succeeded"), "refund.updated"))
    assert (pending.status, pending.note) == ("ignored", f"Refund '{refund.id}' is 'succeeded': nothing to undo.")
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_failed_refund_of_a_disputed_payment_leaves_it_disputed(usd, send):
    payment = top_up_by_card(usd, "10")
    charge, refund = refund_in_stripe(payment)
    dispute = {"id": "dp_refundfail1", "object": "dispute", "amount": 1000, "currency": "usd"}
    send(signed_event(dict(dispute, charge=charge["id"]), "charge.dispute.created"))
    send(signed_event(charge))
    payment.refresh_from_db()
    assert payment.status == "refunded"

    send(signed_event(refund_gone_wrong(refund), "charge.refund.updated"))

    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("disputed", D("0.00"))
    assert usd.available() == D("10.00")
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_failed_refund_of_an_invoice_payment_pays_the_invoice_again_with_its_revenue_and_commission(
    usd, send, sandbox, django_capture_on_commit_callbacks
):
    sandbox.commission_rate = D("0.0333")
    sandbox.save(update_fields=["commission_rate"])
    api = Api(issue_key(sandbox), sandbox)
    save_card(usd.customer, GOOD)
    with django_capture_on_commit_callbacks(execute=True):
        invoice = invoice_create_one_off(
            merchant=sandbox, customer=usd.customer, currency="USD", lines=[("Consulting", D("12.50"))]
        )
    payment = Payment.objects.get(source="card")
    first_charge, first = refund_in_stripe(payment, cents=500)
    send(signed_event(first_charge))
    second_charge, second = refund_in_stripe(payment, cents=300)
    send(signed_event(second_charge))
    shown = api.get(f"/v0/invoices/{invoice.id}").json()
    assert (shown["status"], shown["amountPaid"]) == ("open", "4.50")
    assert (usd.commission(), usd.revenue()) == (D("0.149850"), D("4.350150"))

    # the 3.00 refund fails: its 3.00 pays the invoice again, as its reversal took it back
    row = send(signed_event(refund_gone_wrong(second), "charge.refund.updated"))

    assert row.status == "processed", row.note
    recorded = PaymentRefund.objects.get(external_reference=second.id)
    assert (recorded.status, recorded.reversed_amount, recorded.restored_amount) == ("failed", D("3.00"), D("3.00"))
    # 3 x 0.41625 / 12.50 = 0.0999 commission back, 2.9001 revenue
    assert usd.commission() == D("0.149850") + D("0.0999")
    assert usd.revenue() == D("4.350150") + D("2.9001")
    assert usd.available() == D("0")
    assert card_clearing() == D("-7.50")
    shown = api.get(f"/v0/invoices/{invoice.id}").json()
    assert (shown["status"], shown["amountPaid"], shown["amountDue"]) == ("open", "7.50", "5.00")
    payment.refresh_from_db()
    assert payment.amount_refunded == D("5.00")
    assert ledger_check() == []

    # the 5.00 refund is canceled too: the invoice is covered, paid again (invoice.paid), and
    # revenue and commission are exactly what the card payment first booked
    paid_before = len(events("invoice.paid"))
    send(signed_event(refund_gone_wrong(first, "canceled"), "refund.updated"))

    assert (usd.commission(), usd.revenue(), usd.available(), card_clearing()) == (
        D("0.41625"),
        D("12.08375"),
        D("0"),
        D("-12.50"),
    )
    shown = api.get(f"/v0/invoices/{invoice.id}").json()
    assert (shown["status"], shown["amountPaid"], shown["amountDue"]) == ("paid", "12.50", "0.00")
    assert shown["paidAt"]
    assert len(events("invoice.paid")) == paid_before + 1
    assert events("invoice.paid")[-1]["id"] == str(invoice.id)
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("succeeded", D("0.00"))
    # a refund of it now reverses what the invoice payment holds again, and a void gives back the rest
    third_charge, _ = refund_in_stripe(payment, cents=1250)
    send(signed_event(third_charge))
    assert (usd.commission(), usd.revenue(), usd.available(), card_clearing()) == (D("0"), D("0"), D("0"), D("0"))
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_failed_refund_of_an_invoice_paid_meanwhile_by_other_money_stays_on_the_wallet(
    usd, send, sandbox, django_capture_on_commit_callbacks
):
    save_card(usd.customer, GOOD)
    with django_capture_on_commit_callbacks(execute=True):
        invoice = invoice_create_one_off(
            merchant=sandbox, customer=usd.customer, currency="USD", lines=[("Consulting", D("10"))]
        )
    payment = Payment.objects.get(source="card")
    charge, refund = refund_in_stripe(payment, cents=400)
    send(signed_event(charge))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("open", D("6.00"))
    revenue, commission = usd.revenue(), usd.commission()
    # the customer tops up 4.00: the wallet's credit pays the open invoice
    top_up_by_card(usd, "4")
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert usd.available() == D("0.00")

    send(signed_event(refund_gone_wrong(refund), "charge.refund.updated"))

    # nothing is due on the invoice: the 4.00 stays on the wallet, revenue untouched
    assert PaymentRefund.objects.get().restored_amount == D("0")
    assert usd.available() == D("4.00")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", D("10.00"))
    assert usd.revenue() + usd.commission() == revenue + commission + D("4.00")
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_refund_after_a_failed_one_left_money_on_the_wallet_takes_that_money_before_the_invoice(
    usd, send, sandbox, django_capture_on_commit_callbacks
):
    """The failed refund's 4.00 stayed on the wallet (the invoice was paid meanwhile): it is the
    card payment's money not on the invoice, so a later refund of the same payment takes it first
    and leaves the invoice paid, as a refund of a payment's excess does."""
    save_card(usd.customer, GOOD)
    with django_capture_on_commit_callbacks(execute=True):
        invoice = invoice_create_one_off(
            merchant=sandbox, customer=usd.customer, currency="USD", lines=[("Consulting", D("10"))]
        )
    payment = Payment.objects.get(source="card", session__invoice_id=invoice.id)
    charge, refund = refund_in_stripe(payment, cents=400)
    send(signed_event(charge))
    top_up_by_card(usd, "4")  # (pays the invoice again)
    send(signed_event(refund_gone_wrong(refund), "charge.refund.updated"))
    invoice.refresh_from_db()
    assert (invoice.status, usd.available()) == ("paid", D("4.00"))
    revenue, commission = usd.revenue(), usd.commission()

    charge, _ = refund_in_stripe(payment, cents=400)
    send(signed_event(charge))

    recorded = PaymentRefund.objects.get(status="refunded")
    assert (recorded.amount, recorded.reversed_amount) == (D("4.00"), D("0"))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", D("10.00"))
    assert (usd.revenue(), usd.commission(), usd.available()) == (revenue, commission, D("0.00"))
    # the 6.00 left of the payment is on the invoice: refunding it reverses the invoice payment
    charge, _ = refund_in_stripe(payment, cents=600)
    send(signed_event(charge))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("open", D("4.00"))
    assert usd.available() == D("0.00")
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_refund_failure_heard_before_the_refund_itself_is_recorded_failed_and_its_late_report_moves_nothing(
    usd, send
):
    payment = top_up_by_card(usd, "10")
    charge, refund = refund_in_stripe(payment, cents=600)
    transactions = LedgerTransaction.objects.count()

    row = send(signed_event(refund_gone_wrong(refund), "charge.refund.updated"))

    assert (row.status, row.note) == ("processed", f"Refund {refund.id} recorded failed; it had moved nothing.")
    recorded = PaymentRefund.objects.get()
    assert (recorded.status, recorded.amount, recorded.ledger_transaction_id, recorded.undo_transaction_id) == (
        "failed",
        D("6.00"),
        None,
        None,
    )
    # charge.refunded arrives late, listing the refund as it was then (succeeded)
    late = send(signed_event(charge))
    assert late.note == f"No new refund of {payment.external_reference} (each was recorded before)."
    assert usd.available() == D("10.00")
    assert LedgerTransaction.objects.count() == transactions
    payment.refresh_from_db()
    assert (payment.amount_refunded, payment.status) == (D("0.00"), "succeeded")
    assert not events("payment.refunded")
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_refund_failure_before_its_payment_is_credited_waits_for_the_payment(usd, send):
    _, intent_id = attempt_charged_in_stripe_only(usd, 1000, capture_method="manual")
    charge, refund = refund_intent_in_stripe(intent_id, cents=250)
    failure = send(signed_event(refund_gone_wrong(refund), "refund.failed"))
    assert (failure.status, failure.attempts) == ("received", 0)
    assert "is not credited yet" in failure.note
    assert not PaymentRefund.objects.exists()

    stripe_client(livemode=False).v1.payment_intents.capture(intent_id)
    make_stale(failure)
    assert retry_stuck_stripe_events() == 1
    failure.refresh_from_db()
    assert failure.status == "processed", failure.note
    assert PaymentRefund.objects.get().status == "failed"
    # the refund's own report, later: nothing taken
    send(signed_event(charge))
    payment = Payment.objects.get()
    assert (payment.amount, payment.amount_refunded) == (D("10.00"), D("0.00"))
    assert usd.available() == D("10.00")
    assert ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_a_refund_failure_delivered_many_times_concurrently_is_credited_back_once(localstripe, stripe_sdk):
    sandbox = sandbox_of(MerchantFactory())
    billing = Billing(sandbox, currency="USD")
    payment = top_up_by_card(billing, "10")
    charge, refund = refund_in_stripe(payment, cents=400)
    secret = settings.STRIPE_TEST_WEBHOOK_SECRET
    assert deliver(Client(), signed_event(charge), secret).status_code == 200
    assert billing.available() == D("6.00")
    failure = signed_event(refund_gone_wrong(refund), "charge.refund.updated")

    # one event id delivered eight times at once, and six other event ids about the same failure
    answers = run_at_once(8, lambda i: deliver(Client(), failure, secret))
    answers += run_at_once(
        6,
        lambda i: deliver(
            Client(), signed_event(refund_gone_wrong(refund), ("refund.failed", "refund.updated")[i % 2]), secret
        ),
    )

    assert [a.status_code for a in answers] == [200] * 14
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
    recorded = PaymentRefund.objects.get()
    assert recorded.status == "failed"
    assert LedgerTransaction.objects.filter(reference=f"refund_failed:{recorded.id}").count() == 1
    assert billing.available() == D("10.00")
    assert card_clearing() == D("-10.00")
    payment.refresh_from_db()
    assert payment.amount_refunded == D("0.00")
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_charge_refunded_that_lists_a_recorded_refund_as_failed_undoes_it(usd, send):
    # Stripe's charge.refunded of a later refund, its refunds listed from Stripe now: the first
    # one shows failed there, whether or not its own failure event arrives
    payment = top_up_by_card(usd, "10")
    first_charge, first = refund_in_stripe(payment, cents=300)
    send(signed_event(first_charge))
    second_charge, second = refund_in_stripe(payment, cents=200)
    listed = dict(
        second_charge,
        refunds={"object": "list", "has_more": False, "data": [refund_gone_wrong(first), second.to_dict()]},
    )

    row = send(signed_event(listed))

    assert row.status == "processed", row.note
    assert f"{first.id} failed, credited back" in row.note
    assert {r.external_reference: r.status for r in PaymentRefund.objects.all()} == {
        first.id: "failed",
        second.id: "refunded",
    }
    assert usd.available() == D("8.00")
    payment.refresh_from_db()
    assert payment.amount_refunded == D("2.00")
    send(signed_event(refund_gone_wrong(first), "charge.refund.updated"))  # its own event, later
    assert usd.available() == D("8.00")
    assert ledger_check() == []


@pytest.mark.django_db
def test_the_merchants_staff_see_a_payments_refunds_with_their_status_and_its_disputes_in_the_admin(usd, send, sandbox):
    from django.urls import reverse

    from tests.invoices.test_invoice_admin import staff_client

    payment = top_up_by_card(usd, "10")
    charge, kept = refund_in_stripe(payment, cents=300)
    send(signed_event(charge))
    charge, failed = refund_in_stripe(payment, cents=200)
    send(signed_event(charge))
    send(signed_event(refund_gone_wrong(failed), "charge.refund.updated"))
    dispute_id = f"dp_{uuid.uuid4().hex[:14]}"
    dispute = {
        "id": dispute_id,
        "object": "dispute",
        "amount": 700,
        "currency": "usd",
        "charge": charge_of(payment)["id"],
        "reason": "product_not_received",
        "status": "needs_response",
        "livemode": False,
    }
    send(signed_event(dispute, "charge.dispute.created"))

    client = staff_client(sandbox.live_merchant)
    client.post(reverse("admin-switch-mode"), {"mode": "sandbox", "next": "/admin/"})
    listing = client.get(reverse("admin:payments_payment_changelist"))
    assert listing.status_code == 200
    assert [(row.pk, row.amount_refunded) for row in listing.context["cl"].result_list] == [(payment.pk, D("3.00"))]
    page = client.get(reverse("admin:payments_payment_change", args=[payment.pk]))
    assert page.status_code == 200
    refunds = page.context["inline_admin_formsets"][0].formset.queryset
    assert [(row.external_reference, row.amount, row.status) for row in refunds] == [
        (kept.id, D("3.00"), "refunded"),
        (failed.id, D("2.00"), "failed"),
    ]
    html = page.content.decode()
    assert kept.id in html and failed.id in html and dispute_id in html and "product_not_received" in html


@pytest.mark.django_db
def test_a_disputes_later_reports_update_its_status_never_back_and_record_one_whose_creation_was_lost(usd, send):
    payment = top_up_by_card(usd, "10")
    charge_id = charge_of(payment)["id"]

    def dispute(dispute_id, status):
        return {
            "id": dispute_id,
            "object": "dispute",
            "amount": 1000,
            "currency": "usd",
            "charge": charge_id,
            "reason": "fraudulent",
            "status": status,
            "livemode": False,
        }

    first = f"dp_{uuid.uuid4().hex[:14]}"
    send(signed_event(dispute(first, "needs_response"), "charge.dispute.created"))
    transactions = LedgerTransaction.objects.count()
    row = send(signed_event(dispute(first, "under_review"), "charge.dispute.updated"))
    assert (row.status, row.note) == ("processed", f"Dispute {first} is under_review.")
    assert PaymentDispute.objects.get(external_reference=first).processor_status == "under_review"
    send(signed_event(dispute(first, "lost"), "charge.dispute.closed"))
    # a late report of an earlier status changes nothing
    late = send(signed_event(dispute(first, "needs_response"), "charge.dispute.updated"))
    assert late.note == f"Dispute {first} was recorded before (lost)."
    assert PaymentDispute.objects.get(external_reference=first).processor_status == "lost"

    # an inquiry that becomes a chargeback on the same dispute: each step recorded, never back
    inquiry = f"dp_{uuid.uuid4().hex[:14]}"
    for status in ("warning_needs_response", "warning_under_review", "needs_response", "under_review"):
        send(signed_event(dispute(inquiry, status), "charge.dispute.updated"))
        assert PaymentDispute.objects.get(external_reference=inquiry).processor_status == status
    send(signed_event(dispute(inquiry, "warning_under_review"), "charge.dispute.updated"))  # late
    assert PaymentDispute.objects.get(external_reference=inquiry).processor_status == "under_review"

    # a dispute whose creation was never heard: recorded from its closing report, published once
    second = f"dp_{uuid.uuid4().hex[:14]}"
    published = len(events("payment.disputed"))
    send(signed_event(dispute(second, "won"), "charge.dispute.closed"))
    send(signed_event(dispute(second, "needs_response"), "charge.dispute.created"))
    assert PaymentDispute.objects.get(external_reference=second).processor_status == "won"
    assert len(events("payment.disputed")) == published + 1
    payment.refresh_from_db()
    assert payment.status == "disputed"
    # no money moved, whatever the outcome
    assert LedgerTransaction.objects.count() == transactions
    assert usd.available() == D("10.00")
    assert ledger_check() == []
