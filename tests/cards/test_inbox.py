"""POST /webhooks/stripe: signed events verified with the SDK, stored once per (id, mode),
processed once by a task that reads the stored status first."""

import json
import time
import uuid
from decimal import Decimal

import pytest
import stripe
from django.test import Client, override_settings

from apps.cards.models import StripeEvent
from apps.cards.services.inbox import stripe_event_process
from apps.cards.tasks import retry_stuck_stripe_events
from apps.ledger.selectors import account_balance, ledger_check, wallet_balances
from apps.ledger.services import clearing_account
from apps.payments.models import Payment, PaymentAttempt, PaymentSession, PaymentSource
from apps.payments.services import payment_attempt_start, topup_session_create
from apps.webhooks.models import Event
from tests.concurrency import run_at_once
from tests.factories import MerchantFactory, make_customer, sandbox_of

D = Decimal
LIVE_SECRET = "whsec_live_for_tests"
SANDBOX_SECRET = "whsec_sandbox_for_tests"
SECRETS = {"STRIPE_WEBHOOK_SECRET": LIVE_SECRET, "STRIPE_TEST_WEBHOOK_SECRET": SANDBOX_SECRET}


@pytest.fixture(autouse=True)
def _webhook_secrets():
    with override_settings(**SECRETS):
        yield


def card_attempt(merchant, amount="12.34"):
    """A USD top-up with a card attempt in flight whose PaymentIntent id is committed on it
    (what the card path does before it confirms the PaymentIntent)."""
    session = topup_session_create(
        merchant=merchant, customer=make_customer(merchant), amount=D(amount), currency="USD"
    )
    attempt = payment_attempt_start(session_id=session.id, source=PaymentSource.CARD)
    attempt.external_reference = f"pi_{uuid.uuid4().hex[:14]}"
    attempt.save(update_fields=["external_reference"])
    return session, attempt


def intent_event(attempt, type_="payment_intent.succeeded", *, cents=1234, livemode=False, event_id=None, **fields):
    intent = {
        "id": attempt.external_reference,
        "object": "payment_intent",
        "amount": cents,
        "amount_received": cents if type_ == "payment_intent.succeeded" else 0,
        "currency": "usd",
        "status": "succeeded" if type_ == "payment_intent.succeeded" else "requires_payment_method",
        "livemode": livemode,
        "metadata": {"paymentAttemptId": str(attempt.id)},
        **fields,
    }
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:14]}",
        "object": "event",
        "type": type_,
        "livemode": livemode,
        "created": int(time.time()),
        "data": {"object": intent},
    }


def deliver(client, event, *, secret=SANDBOX_SECRET, timestamp=None, body=None):
    payload = body if body is not None else json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return client.post(
        "/webhooks/stripe", data=payload, content_type="application/json", headers={"Stripe-Signature": header}
    )


def card_clearing(livemode=False):
    return account_balance(account=clearing_account(source="stripe", currency="USD", livemode=livemode))


@pytest.mark.django_db
def test_a_signed_event_is_stored_once_answered_at_once_and_processed(
    client, sandbox, django_capture_on_commit_callbacks
):
    session, attempt = card_attempt(sandbox)
    event = intent_event(attempt)
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, event)
    assert response.status_code == 200
    assert response.json() == {"received": True, "id": event["id"], "duplicate": False}
    row = StripeEvent.objects.get()
    assert (row.stripe_id, row.livemode, row.type, row.payload) == (event["id"], False, event["type"], event)
    assert row.status == "processed"
    session.refresh_from_db()
    attempt.refresh_from_db()
    assert (session.status, session.amount_paid) == ("paid", D("12.34"))
    assert attempt.status == "succeeded"
    payment = Payment.objects.get()
    assert (payment.source, payment.external_reference, payment.amount) == (
        "card",
        attempt.external_reference,
        D("12.34"),
    )
    assert card_clearing() == D("-12.34")
    assert wallet_balances(wallet=session.wallet).available == D("12.34")
    assert ledger_check() == []


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda event: {"body": json.dumps(event).replace("1234", "9999")}, id="tampered body"),
        pytest.param(lambda event: {"secret": "whsec_someone_else"}, id="wrong secret"),
        pytest.param(lambda event: {"timestamp": int(time.time()) - 301}, id="older than the tolerance"),
    ],
)
@pytest.mark.django_db
def test_a_delivery_that_does_not_verify_is_400_and_stores_nothing(client, sandbox, spoil):
    session, attempt = card_attempt(sandbox)
    event = intent_event(attempt)
    kwargs = spoil(event)
    if "body" in kwargs:
        # signed over the original body, sent with another
        header = stripe.WebhookSignature.generate_signature_header(json.dumps(event), SANDBOX_SECRET)
        response = client.post(
            "/webhooks/stripe",
            data=kwargs["body"],
            content_type="application/json",
            headers={"Stripe-Signature": header},
        )
    else:
        response = deliver(client, event, **kwargs)
    assert response.status_code == 400
    assert response.json()["code"] == "STRIPE_SIGNATURE_INVALID"
    assert not StripeEvent.objects.exists()
    assert not Payment.objects.exists()


@pytest.mark.django_db
def test_a_missing_signature_or_a_body_that_is_no_event_is_400(client, sandbox):
    assert client.post("/webhooks/stripe", data="{}", content_type="application/json").status_code == 400
    response = deliver(client, None, body=json.dumps({"id": "nope", "type": "x"}))
    assert (response.status_code, response.json()["code"]) == (400, "STRIPE_EVENT_INVALID")
    response = deliver(client, None, body="not json")
    assert (response.status_code, response.json()["code"]) == (400, "STRIPE_EVENT_INVALID")
    assert client.get("/webhooks/stripe").status_code == 405
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db
def test_the_secret_that_verifies_is_the_mode_and_the_event_must_agree(
    client, sandbox, django_capture_on_commit_callbacks
):
    _, attempt = card_attempt(sandbox)
    # a live event signed with the sandbox's secret
    response = deliver(client, intent_event(attempt, livemode=True), secret=SANDBOX_SECRET)
    assert (response.status_code, response.json()["code"]) == (400, "STRIPE_EVENT_INVALID")
    # the sandbox attempt's PaymentIntent reported by the live account credits nothing
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, intent_event(attempt, livemode=True), secret=LIVE_SECRET)
    assert response.status_code == 200
    row = StripeEvent.objects.get()
    assert (row.livemode, row.status) == (True, "ignored")
    assert not Payment.objects.exists()


@pytest.mark.django_db
def test_a_type_without_a_handler_is_stored_and_ignored(client, sandbox, django_capture_on_commit_callbacks):
    event = {
        "id": "evt_unknown1",
        "object": "event",
        "type": "customer.created",
        "livemode": False,
        "data": {"object": {}},
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(client, event).status_code == 200
    row = StripeEvent.objects.get()
    assert (row.status, row.note) == ("ignored", "customer.created is not handled.")


@pytest.mark.django_db
def test_a_failed_payment_fails_the_attempt_and_a_late_success_still_credits(
    client, sandbox, django_capture_on_commit_callbacks
):
    session, attempt = card_attempt(sandbox)
    failed = intent_event(
        attempt, "payment_intent.payment_failed", last_payment_error={"code": "card_declined", "message": "Declined."}
    )
    succeeded = intent_event(attempt)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, failed)
    attempt.refresh_from_db()
    assert (attempt.status, attempt.failure_reason) == ("failed", "Declined.")
    session.refresh_from_db()
    assert session.status == "pending"
    # out of order: Stripe captured after all; what it captured is credited, once
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, succeeded)
        deliver(client, failed)
    attempt.refresh_from_db()
    session.refresh_from_db()
    assert attempt.status == "succeeded"
    assert (session.status, Payment.objects.count()) == ("paid", 1)
    assert ledger_check() == []


@pytest.mark.django_db
def test_an_event_for_no_attempt_of_the_platform_is_ignored(client, sandbox, django_capture_on_commit_callbacks):
    _, attempt = card_attempt(sandbox)
    attempt.external_reference = "pi_other"
    event = intent_event(attempt)
    event["data"]["object"]["id"] = "pi_unknown"
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, event)
    assert StripeEvent.objects.get().status == "ignored"
    assert not Payment.objects.exists()


@pytest.mark.django_db
def test_an_event_left_received_is_processed_by_beat(client, sandbox):
    session, attempt = card_attempt(sandbox)
    deliver(client, intent_event(attempt))  # its on-commit task never runs (a lost enqueue)
    row = StripeEvent.objects.get()
    assert row.status == "received"
    assert retry_stuck_stripe_events() == 0  # not stuck yet
    StripeEvent.objects.filter(pk=row.pk).update(updated_at=row.updated_at.replace(year=2020))
    assert retry_stuck_stripe_events() == 1  # eager: processed now
    row.refresh_from_db()
    session.refresh_from_db()
    assert (row.status, session.status) == ("processed", "paid")
    assert stripe_event_process(event_id=row.id) == "processed"
    assert Payment.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_one_event_delivered_three_times_and_concurrently_credits_once():
    sandbox = sandbox_of(MerchantFactory())
    session, attempt = card_attempt(sandbox)
    event = intent_event(attempt)
    with override_settings(**SECRETS):
        # three deliveries one after another, then eight at once, of the same event
        answers = [deliver(Client(), event) for _ in range(3)]
        answers += run_at_once(8, lambda i: deliver(Client(), event))
    assert [a.status_code for a in answers] == [200] * 11
    assert [a.json()["duplicate"] for a in answers].count(False) == 1
    # and the same PaymentIntent reported by another event id (Stripe resends, the server's own look)
    other = intent_event(attempt)
    with override_settings(**SECRETS):
        run_at_once(4, lambda i: deliver(Client(), other))
    assert StripeEvent.objects.count() == 2
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert Payment.objects.count() == 1
    session.refresh_from_db()
    assert (session.status, session.amount_paid) == (PaymentSession.Status.PAID, D("12.34"))
    assert PaymentAttempt.objects.get().status == "succeeded"
    assert Event.objects.filter(type="payment.succeeded").count() == 1
    assert card_clearing() == D("-12.34")
    assert ledger_check() == []


@pytest.mark.django_db
def test_operators_see_the_inbox_in_the_admin_and_merchant_staff_do_not(client, sandbox, merchant):
    from apps.merchants.models import User
    from apps.merchants.services import merchant_staff_create

    _, attempt = card_attempt(sandbox)
    event = intent_event(attempt)
    deliver(client, event)
    operator = User.objects.create_superuser(username="op", email="op@platform.example", password="pw-123456789")
    client.force_login(operator)
    page = client.get("/admin/cards/stripeevent/")
    assert page.status_code == 200
    assert event["id"] in page.content.decode()
    staff = merchant_staff_create(merchant=merchant, username="st", email="st@m.example", password="pw-123456789")
    client.force_login(staff)
    assert client.get("/admin/cards/stripeevent/").status_code == 403
