"""Cards in the invoices' collection loop, against localstripe: an open USD invoice the wallet
cannot cover is charged off-session to the default saved card (a task after the finalize's
commit, `POST /v0/invoices/{id}/pay`, dunning's steps); a card that fails or needs the
customer's authentication leaves the invoice open with its payment link, in dunning, with
invoice.payment_failed and payment.failed; a retry with a new good default card pays it."""

import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import stripe
from django.test import Client

from apps.cards.services.charges import card_charge, card_save, card_setup_start, stripe_customer_ensure
from apps.cards.services.saved_cards import saved_card_record, saved_card_set_default
from apps.cards.stripe_client import stripe_client
from apps.cards.tasks import resolve_card_attempts
from apps.catalog.models import PaymentTerm
from apps.invoices.models import Invoice
from apps.invoices.services.dunning import dun_due
from apps.invoices.services.invoices import invoice_create_one_off
from apps.ledger.selectors import ledger_check
from apps.payments.models import Payment, PaymentAttempt, PaymentSource
from apps.payments.services import payment_attempt_start
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import periods_advance
from apps.webhooks.models import Event
from tests.cards.test_card_path import FAILS_WHEN_CHARGED, GOOD, confirm_card_setup
from tests.usage.world import Billing

D = Decimal
NEEDS_AUTHENTICATION = "4000002500003155"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def count(type: str) -> int:
    return Event.objects.filter(type=type).count()


def save_card(customer, number):
    """A card saved for the customer in localstripe (as a confirmed SetupIntent leaves it)."""
    client = stripe_client(livemode=False)
    stripe_customer = stripe_customer_ensure(customer=customer)
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(method.id, params={"customer": stripe_customer})
    return saved_card_record(customer=customer, method_id=method.id, card=method.card.to_dict())


@pytest.fixture
def usd(sandbox, stripe_sandbox):
    return Billing(sandbox, currency="USD")


def one_off(billing, amount, *, auto_collect=True):
    return invoice_create_one_off(
        merchant=billing.merchant,
        customer=billing.customer,
        currency="USD",
        lines=[("Consulting", D(amount))],
        auto_collect=auto_collect,
    )


@pytest.mark.django_db
def test_an_invoice_the_wallet_cannot_cover_is_charged_off_session_to_the_saved_card(
    usd, django_capture_on_commit_callbacks
):
    save_card(usd.customer, GOOD)
    usd.fund("3")
    with django_capture_on_commit_callbacks(execute=True):
        invoice = one_off(usd, "12.50")

    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", D("12.50"))
    payment = Payment.objects.get(source=PaymentSource.CARD)
    assert (payment.amount, payment.applied_amount, payment.session_id) == (
        D("12.50"),
        D("12.50"),
        invoice.payment_session_id,
    )
    intent = stripe_client(livemode=False).v1.payment_intents.retrieve(payment.external_reference)
    assert (intent.status, intent.amount, intent.metadata["paymentAttemptId"]) == (
        "succeeded",
        1250,
        str(payment.attempt_id),
    )
    # the wallet's 3 stays: the card paid the invoice whole
    assert usd.available() == D("3")
    assert (count("invoice.paid"), count("invoice.payment_failed"), count("payment.failed")) == (1, 0, 0)
    assert ledger_check() == []


@pytest.mark.django_db
def test_without_a_saved_card_nothing_is_charged_and_a_usdc_invoice_is_never_charged_to_a_card(
    usd, sandbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invoice = one_off(usd, "5")
    assert Invoice.objects.get(pk=invoice.pk).status == "open"
    assert not PaymentAttempt.objects.filter(source=PaymentSource.CARD).exists()
    usdc = Billing(sandbox, currency="USDC", email="usdc@example.com")
    save_card(usdc.customer, GOOD)
    with django_capture_on_commit_callbacks(execute=True):
        other = invoice_create_one_off(merchant=sandbox, customer=usdc.customer, currency="USDC", lines=[("x", D("5"))])
    assert Invoice.objects.get(pk=other.pk).status == "open"
    assert not PaymentAttempt.objects.filter(source=PaymentSource.CARD).exists()


@pytest.mark.django_db
def test_a_card_that_fails_when_charged_leaves_the_invoice_open_in_dunning_then_a_new_default_card_pays_it(
    test_api, sandbox, stripe_sandbox, time_machine, django_capture_on_commit_callbacks
):
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    billing = Billing(sandbox, currency="USD")
    arrears = billing.metric(term=PaymentTerm.IN_ARREARS, properties={"unitPrice": "1"})
    failing = save_card(billing.customer, FAILS_WHEN_CHARGED)
    billing.fund("5")
    assert test_api.post("/v0/usage", billing.event("a", arrears, 40)).status_code == 201

    time_machine.move_to(at("2026-02-01T02:00"), tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        periods_advance(subscription_id=billing.subscription.id)

    invoice = Invoice.objects.get(kind="period")
    attempt = PaymentAttempt.objects.get(source=PaymentSource.CARD)
    assert (attempt.status, attempt.invoice_id, attempt.failure_reason) == (
        "failed",
        invoice.id,
        "Your card was declined.",
    )
    assert stripe_client(livemode=False).v1.payment_intents.retrieve(attempt.external_reference).status == (
        "requires_payment_method"
    )
    # open, with its link, in dunning now (not at its due date): retried a day after that
    assert (invoice.status, invoice.amount_due) == ("open", D("40"))
    assert invoice.payment_failed_at == at("2026-02-01T02:00")
    assert invoice.next_collection_at == at("2026-02-09T02:00")
    shown = test_api.get(f"/v0/invoices/{invoice.id}").json()
    assert shown["status"] == "open" and shown["paymentUrl"].endswith(f"/checkout/{invoice.payment_session_id}")
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "past_due"
    assert (count("invoice.payment_failed"), count("payment.failed")) == (1, 1)
    failed = Event.objects.get(type="payment.failed").data
    assert (failed["id"], failed["source"], failed["status"], failed["amount"], failed["invoiceId"]) == (
        str(attempt.id),
        "card",
        "failed",
        "40.00",
        str(invoice.id),
    )
    assert failed["externalReference"] == attempt.external_reference
    assert not Payment.objects.filter(source=PaymentSource.CARD).exists()

    # the due date: dunning's first step finds the invoice already failed, does nothing more
    time_machine.move_to(at("2026-02-08T02:00"), tick=False)
    assert dun_due() == 0
    assert count("payment.failed") == 1

    # the customer saves a good card and makes it the default; the retry charges it
    good = save_card(billing.customer, GOOD)
    saved_card_set_default(customer=billing.customer, card_id=good.stripe_payment_method_id)
    assert not type(failing).objects.get(pk=failing.pk).is_default
    time_machine.move_to(at("2026-02-09T02:00"), tick=False)
    assert dun_due() == 1
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", D("40"))
    assert Payment.objects.get(source=PaymentSource.CARD).amount == D("40")
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "active"
    assert (count("invoice.paid"), count("payment.failed"), count("invoice.payment_failed")) == (1, 1, 1)
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_dunning_retry_whose_card_fails_again_counts_the_retry_without_a_second_invoice_payment_failed(
    test_api, sandbox, stripe_sandbox, time_machine
):
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    billing = Billing(sandbox, currency="USD")
    arrears = billing.metric(term=PaymentTerm.IN_ARREARS, properties={"unitPrice": "1"})
    billing.fund("1")
    assert test_api.post("/v0/usage", billing.event("a", arrears, 10)).status_code == 201
    time_machine.move_to(at("2026-02-01T02:00"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)  # (no card yet: nothing charged)
    invoice = Invoice.objects.get(kind="period")
    save_card(billing.customer, FAILS_WHEN_CHARGED)

    time_machine.move_to(at("2026-02-08T02:00"), tick=False)
    assert dun_due() == 1  # the due date: wallet, then the card, fail
    invoice.refresh_from_db()
    assert invoice.payment_failed_at == at("2026-02-08T02:00") and invoice.collection_retries == 0
    time_machine.move_to(at("2026-02-09T02:00"), tick=False)
    assert dun_due() == 1
    invoice.refresh_from_db()
    assert (invoice.status, invoice.collection_retries, invoice.next_collection_at) == (
        "open",
        1,
        at("2026-02-11T02:00"),
    )
    assert (count("invoice.payment_failed"), count("payment.failed")) == (1, 2)
    assert PaymentAttempt.objects.filter(source=PaymentSource.CARD, status="failed").count() == 2


@pytest.mark.django_db
def test_pay_tries_the_wallet_then_the_saved_card_and_answers_402_with_the_reason(usd, test_api):
    path = lambda invoice: f"/v0/invoices/{invoice.id}/pay"  # noqa: E731
    # no card: the wallet's reason
    first = one_off(usd, "7", auto_collect=False)
    refused = test_api.post(path(first))
    assert (refused.status_code, refused.json()["code"]) == (402, "INSUFFICIENT_BALANCE")
    assert "no saved card" in refused.json()["message"]
    assert refused.json()["details"]["card"]["code"] == "NO_SAVED_CARD"

    # a card that is declined: 402 CARD_DECLINED, the invoice open with its link, failed once
    declined = save_card(usd.customer, FAILS_WHEN_CHARGED)
    refused = test_api.post(path(first))
    assert (refused.status_code, refused.json()["code"]) == (402, "CARD_DECLINED")
    assert refused.json()["details"]["card"]["paymentMethodId"] == declined.stripe_payment_method_id
    assert refused.json()["details"]["wallet"]["due"] == "7.00"
    assert test_api.get(f"/v0/invoices/{first.id}").json()["status"] == "open"
    assert (count("invoice.payment_failed"), count("payment.failed")) == (1, 1)

    # the good card as default: paid
    good = save_card(usd.customer, GOOD)
    saved_card_set_default(customer=usd.customer, card_id=good.id)
    paid = test_api.post(path(first))
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    assert Payment.objects.get(source=PaymentSource.CARD).amount == D("7")

    # the wallet first when it covers it: no card charged
    usd.fund("20")
    second = one_off(usd, "4", auto_collect=False)
    assert test_api.post(path(second)).json()["status"] == "paid"
    assert Payment.objects.filter(source=PaymentSource.CARD).count() == 1
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_card_that_needs_authentication_is_not_left_waiting_off_session(usd, test_api):
    card = save_card(usd.customer, NEEDS_AUTHENTICATION)
    invoice = one_off(usd, "9", auto_collect=False)
    refused = test_api.post(f"/v0/invoices/{invoice.id}/pay")
    assert (refused.status_code, refused.json()["code"]) == (402, "CARD_AUTHENTICATION_REQUIRED")
    attempt = PaymentAttempt.objects.get(source=PaymentSource.CARD)
    assert attempt.status == "failed" and "authentication" in attempt.failure_reason
    intent = stripe_client(livemode=False).v1.payment_intents.retrieve(attempt.external_reference)
    # confirmed off-session: Stripe (and localstripe, through the harness) fails it at once
    assert intent.status == "requires_payment_method" and intent.payment_method is None
    invoice.refresh_from_db()
    assert invoice.status == "open" and invoice.payment_failed_at is not None
    assert (count("invoice.payment_failed"), count("payment.failed")) == (1, 1)
    assert card.stripe_payment_method_id in refused.json()["details"]["card"]["paymentMethodId"]
    # nothing in flight: the customer can pay through the link
    assert not PaymentAttempt.objects.filter(status="in_flight").exists()


def interrupted_off_session_charge(invoice, card):
    """What `card_charge(off_session=True)` does up to the PaymentIntent's confirmation, which
    Stripe declines, and no further: the process stopped before it retrieved the
    PaymentIntent, so the attempt stays in flight until Stripe's webhook or beat tells."""
    attempt = payment_attempt_start(
        session_id=invoice.payment_session_id, source=PaymentSource.CARD, merchant=invoice.merchant, off_session=True
    )
    client = stripe_client(livemode=False)
    intent = client.v1.payment_intents.create(
        params={
            "amount": 4000,
            "currency": "usd",
            "customer": stripe_customer_ensure(customer=invoice.customer),
            "payment_method": card.stripe_payment_method_id,
            "metadata": {"paymentAttemptId": str(attempt.id)},
        }
    )
    PaymentAttempt.objects.filter(pk=attempt.pk).update(external_reference=intent.id)
    with pytest.raises(stripe.CardError):
        client.v1.payment_intents.confirm(intent.id, params={"off_session": True})
    attempt.refresh_from_db()
    assert attempt.status == "in_flight"
    return attempt, client.v1.payment_intents.retrieve(intent.id)


@pytest.mark.parametrize("told_by", ["webhook", "beat"])
@pytest.mark.django_db
def test_an_off_session_card_failure_known_only_later_starts_dunning_and_the_retry_tries_the_card_again(
    told_by, test_api, sandbox, stripe_sandbox, time_machine, django_capture_on_commit_callbacks
):
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    billing = Billing(sandbox, currency="USD")
    arrears = billing.metric(term=PaymentTerm.IN_ARREARS, properties={"unitPrice": "1"})
    billing.fund("5")
    assert test_api.post("/v0/usage", billing.event("a", arrears, 40)).status_code == 201
    # the card saved through a SetupIntent (it succeeds at setup, and fails when charged)
    setup_session = test_api.post(f"/v0/customers/{billing.customer.id}/paymentMethods").json()
    setup = card_setup_start(session_id=setup_session["id"])
    assert confirm_card_setup(setup, FAILS_WHEN_CHARGED).status_code == 200
    card = card_save(customer=billing.customer, setup_intent_id=setup.setup_intent_id)

    time_machine.move_to(at("2026-02-01T02:00"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)  # (its card task not run: interrupted below)
    invoice = Invoice.objects.get(kind="period")
    assert (invoice.status, invoice.amount_due, invoice.payment_failed_at) == ("open", D("40"), None)
    attempt, intent = interrupted_off_session_charge(invoice, card)
    assert intent.status == "requires_payment_method"
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "active"

    time_machine.move_to(at("2026-02-01T02:05"), tick=False)
    if told_by == "webhook":
        event = {
            "id": f"evt_{uuid.uuid4().hex[:14]}",
            "object": "event",
            "type": "payment_intent.payment_failed",
            "livemode": False,
            "created": int(time.time()),
            "data": {"object": intent.to_dict()},
        }
        payload = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(
            payload, stripe_sandbox["STRIPE_TEST_WEBHOOK_SECRET"]
        )
        with django_capture_on_commit_callbacks(execute=True):
            answer = Client().post(
                "/webhooks/stripe", data=payload, content_type="application/json", headers={"Stripe-Signature": header}
            )
        assert answer.status_code == 200
    else:
        assert resolve_card_attempts() == 1  # beat: in flight past its grace

    attempt.refresh_from_db()
    assert (attempt.status, attempt.failure_reason) == ("failed", "Your card was declined.")
    invoice.refresh_from_db()
    # open with its link, in dunning from when the failure was known: retried a day after dueAt
    assert (invoice.status, invoice.payment_failed_at) == ("open", at("2026-02-01T02:05"))
    assert invoice.next_collection_at == at("2026-02-09T02:00")
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "past_due"
    assert (count("invoice.payment_failed"), count("payment.failed"), count("subscription.past_due")) == (1, 1, 1)

    # the due date finds it failed already; the first retry tries the card again
    time_machine.move_to(at("2026-02-08T02:00"), tick=False)
    assert dun_due() == 0
    time_machine.move_to(at("2026-02-09T02:00"), tick=False)
    assert dun_due() == 1
    invoice.refresh_from_db()
    assert (invoice.status, invoice.collection_retries, invoice.next_collection_at) == (
        "open",
        1,
        at("2026-02-11T02:00"),
    )
    attempts = PaymentAttempt.objects.filter(source=PaymentSource.CARD).order_by("created_at")
    assert [(a.status, a.off_session, a.invoice_id) for a in attempts] == [("failed", True, invoice.id)] * 2
    assert (count("invoice.payment_failed"), count("payment.failed")) == (1, 2)
    assert not Payment.objects.filter(source=PaymentSource.CARD).exists()
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_card_declined_in_the_checkout_while_the_customer_is_there_does_not_start_dunning(usd, test_api):
    invoice = one_off(usd, "8", auto_collect=False)
    card = save_card(usd.customer, FAILS_WHEN_CHARGED)
    attempt = card_charge(session_id=invoice.payment_session_id, card=card)  # on-session, as the checkout does
    assert (attempt.status, attempt.off_session) == ("failed", False)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_failed_at) == ("open", None)
    assert (count("invoice.payment_failed"), count("payment.failed")) == (0, 1)


@pytest.mark.django_db
def test_the_admins_collect_now_charges_the_default_card_when_the_wallet_cannot_cover_it(usd, sandbox, merchant):
    """The admin's action collects as POST /v0/invoices/{id}/pay does: the wallet, else the
    default card off-session; each invoice reported with what paid it, or why nothing could."""
    from django.contrib.messages import get_messages
    from django.urls import reverse

    from tests.invoices.test_invoice_admin import staff_client

    usd.fund("5")
    by_wallet = one_off(usd, "4", auto_collect=False)
    by_card = one_off(usd, "12.50", auto_collect=False)
    client = staff_client(merchant)
    client.post(reverse("admin-switch-mode"), {"mode": "sandbox", "next": "/admin/"})  # (cards: the sandbox's Stripe)

    def collect(*invoices):
        response = client.post(
            reverse("admin:invoices_invoice_changelist"),
            {"action": "collect_now", "index": 0, "_selected_action": [str(invoice.pk) for invoice in invoices]},
            follow=True,
        )
        assert response.status_code == 200
        return [(message.level_tag, message.message) for message in get_messages(response.wsgi_request)]

    # no saved card: the wallet pays what it covers, the other says why it cannot be collected
    messages = collect(by_wallet, by_card)
    assert messages[0] == ("success", f"Invoice {by_wallet.number}: 4.00 USD paid from the wallet.")
    level, text = messages[1]
    assert level == "error" and "Saved card: " in text and "no saved card" in text
    assert not PaymentAttempt.objects.filter(source=PaymentSource.CARD).exists()

    save_card(usd.customer, GOOD)
    [(level, text)] = collect(by_card)
    payment = Payment.objects.get(source=PaymentSource.CARD)
    assert (level, text) == (
        "success",
        f"Invoice {by_card.number}: 12.50 USD charged to the default card (Stripe payment {payment.external_reference}).",
    )
    by_card.refresh_from_db()
    assert (by_card.status, by_card.amount_paid, payment.amount) == ("paid", D("12.50"), D("12.50"))
    assert usd.available() == D("1")
    assert ledger_check() == []


@pytest.mark.django_db
def test_an_invoice_whose_card_collection_cannot_reach_the_broker_is_created_and_dunning_charges_the_card(
    usd, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    """The invoice is created although its card collection could not be handed to a worker (the
    broker out of reach after the commit); dunning, once it is due, charges the card."""
    from kombu.exceptions import OperationalError

    from apps.invoices.tasks import collect_invoice_by_card

    save_card(usd.customer, GOOD)

    def out_of_reach(*args, **kwargs):
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(collect_invoice_by_card, "delay", out_of_reach)
    with django_capture_on_commit_callbacks(execute=True):
        invoice = one_off(usd, "12.50")
    invoice.refresh_from_db()
    assert invoice.status == "open"
    assert "not enqueued (the broker is out of reach); dun_invoices will do it" in caplog.text
    monkeypatch.undo()

    dun_due(now=invoice.due_at)  # due: dunning's first step tries the wallet, then the card
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", D("12.50"))
    assert Payment.objects.get(source=PaymentSource.CARD).amount == D("12.50")
    assert ledger_check() == []
