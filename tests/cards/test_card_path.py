"""The card path against localstripe (started by the test run on 127.0.0.1): a Stripe customer
per customer, a SetupIntent confirmed as Stripe.js does it in the browser, the card saved from
the SetupIntent retrieved, then what is due charged with a PaymentIntent whose id is committed
on the payment attempt before it is confirmed, and decided from the PaymentIntent retrieved."""

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from apps.cards.models import SavedCard, StripeCustomer
from apps.cards.services.charges import (
    card_attempt_resolve,
    card_charge,
    card_save,
    card_setup_start,
    stripe_customer_ensure,
)
from apps.cards.stripe_client import stripe_client
from apps.cards.tasks import resolve_card_attempts
from apps.core.errors import ApiError
from apps.ledger.selectors import account_balance, ledger_check, wallet_balances
from apps.ledger.services import clearing_account
from apps.payments.models import Payment, PaymentAttempt, PaymentSource
from apps.payments.services import payment_attempt_start, topup_session_create
from apps.webhooks.models import Event
from tests.factories import make_customer

D = Decimal
GOOD = "4242424242424242"
DECLINED_AT_SETUP = "4000000000000002"
FAILS_WHEN_CHARGED = "4000000000000341"


def confirm_card_setup(setup, number):
    """What Stripe.js's confirmCardSetup sends from the browser (localstripe's stand-in does the same)."""
    return httpx.post(
        f"{setup.api_base}/v1/setup_intents/{setup.setup_intent_id}/confirm",
        json={
            "key": setup.publishable_key,
            "use_stripe_sdk": True,
            "client_secret": setup.client_secret,
            "payment_method_data": {
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
                "billing_details": {},
            },
        },
        timeout=10,
    )


@pytest.fixture
def topup(sandbox, stripe_sandbox):
    customer = make_customer(sandbox, email="card@example.com")
    return topup_session_create(merchant=sandbox, customer=customer, amount=D("12.345"), currency="USD")


def saved_card(session, number):
    setup = card_setup_start(session_id=session.id)
    assert confirm_card_setup(setup, number).status_code == 200
    return card_save(customer=session.customer, setup_intent_id=setup.setup_intent_id)


@pytest.mark.django_db
def test_a_card_saved_then_charged_pays_a_top_up(topup):
    card = saved_card(topup, GOOD)
    assert (card.brand, card.last4, card.exp_month, card.exp_year, card.is_default) == ("visa", "4242", 12, 2034, True)

    attempt = card_charge(session_id=topup.id, card=card)

    assert attempt.status == "succeeded"
    assert attempt.external_reference.startswith("pi_")
    intent = stripe_client(livemode=False).v1.payment_intents.retrieve(attempt.external_reference)
    # asked for what was due rounded up to the cent; what was captured is credited, gross
    assert (intent.amount, intent.status, intent.metadata["paymentAttemptId"]) == (1235, "succeeded", str(attempt.id))
    topup.refresh_from_db()
    assert (topup.status, topup.amount_paid) == ("paid", D("12.345"))
    payment = Payment.objects.get()
    assert (payment.source, payment.external_reference, payment.amount) == ("card", intent.id, D("12.35"))
    assert wallet_balances(wallet=topup.wallet).available == D("12.35")
    assert account_balance(account=clearing_account(source="stripe", currency="USD", livemode=False)) == D("-12.35")
    assert Event.objects.filter(type="payment.succeeded").count() == 1
    assert ledger_check() == []
    # reported again (its webhook, beat): nothing more
    assert "already" in card_attempt_resolve(attempt_id=attempt.id)
    assert Payment.objects.count() == 1


@pytest.mark.django_db
def test_one_stripe_customer_per_customer(topup):
    first = stripe_customer_ensure(customer=topup.customer)
    assert stripe_customer_ensure(customer=topup.customer) == first
    assert StripeCustomer.objects.get().stripe_id == first
    assert stripe_client(livemode=False).v1.customers.retrieve(first).email == "card@example.com"


@pytest.mark.django_db
def test_a_card_declined_at_setup_is_not_saved(topup):
    setup = card_setup_start(session_id=topup.id)
    answer = confirm_card_setup(setup, DECLINED_AT_SETUP)
    assert answer.status_code == 402
    with pytest.raises(ApiError) as refused:
        card_save(customer=topup.customer, setup_intent_id=setup.setup_intent_id)
    assert (refused.value.status_code, refused.value.code) == (402, "CARD_NOT_SAVED")
    assert "declined" in refused.value.message
    assert not SavedCard.objects.exists()
    assert not PaymentAttempt.objects.exists()


@pytest.mark.django_db
def test_a_setup_intent_of_another_customer_saves_nothing(topup, sandbox):
    setup = card_setup_start(session_id=topup.id)
    confirm_card_setup(setup, GOOD)
    other = make_customer(sandbox, email="other@example.com")
    with pytest.raises(ApiError) as refused:
        card_save(customer=other, setup_intent_id=setup.setup_intent_id)
    assert refused.value.code == "SETUP_INTENT_MISMATCH"
    assert not SavedCard.objects.exists()


@pytest.mark.django_db
def test_a_card_that_fails_when_charged_leaves_the_session_unpaid_and_the_attempt_failed(topup):
    card = saved_card(topup, FAILS_WHEN_CHARGED)

    attempt = card_charge(session_id=topup.id, card=card)

    assert attempt.status == "failed"
    assert attempt.failure_reason == "Your card was declined."
    topup.refresh_from_db()
    assert (topup.status, topup.amount_paid) == ("pending", D("0"))
    assert not Payment.objects.exists()
    assert not Event.objects.filter(type="payment.succeeded").exists()
    # the session can be paid another way now (no attempt in flight)
    good = saved_card(topup, GOOD)
    assert card_charge(session_id=topup.id, card=good).status == "succeeded"
    assert ledger_check() == []


@pytest.mark.django_db
def test_without_sandbox_keys_the_card_path_is_unavailable_and_nothing_crashes(sandbox, settings):
    settings.STRIPE_TEST_SECRET_KEY = ""
    session = topup_session_create(merchant=sandbox, customer=make_customer(sandbox), amount=D("5"), currency="USD")
    with pytest.raises(ApiError) as refused:
        card_setup_start(session_id=session.id)
    assert (refused.value.status_code, refused.value.code) == (503, "CARD_UNAVAILABLE")
    assert refused.value.message.startswith("Card unavailable: Stripe is not configured for the sandbox")


@pytest.mark.django_db
def test_a_usdc_session_is_not_paid_by_card(sandbox, stripe_sandbox):
    session = topup_session_create(merchant=sandbox, customer=make_customer(sandbox), amount=D("5"), currency="USDC")
    with pytest.raises(ApiError) as refused:
        card_setup_start(session_id=session.id)
    assert refused.value.code == "CARD_CURRENCY_UNSUPPORTED"


def _stale(attempt):
    PaymentAttempt.objects.filter(pk=attempt.pk).update(created_at=timezone.now() - timedelta(minutes=5))


@pytest.mark.django_db
def test_beat_settles_attempts_a_crash_left_in_flight(topup, sandbox):
    card = saved_card(topup, GOOD)
    client = stripe_client(livemode=False)
    stripe_customer = StripeCustomer.objects.get().stripe_id

    # 1. a crash after the PaymentIntent was confirmed, before the answer was read: credited
    attempt = payment_attempt_start(session_id=topup.id, source=PaymentSource.CARD)
    intent = client.v1.payment_intents.create(
        params={
            "amount": 1235,
            "currency": "usd",
            "customer": stripe_customer,
            "payment_method": card.stripe_payment_method_id,
        }
    )
    PaymentAttempt.objects.filter(pk=attempt.pk).update(external_reference=intent.id)
    client.v1.payment_intents.confirm(intent.id)
    _stale(attempt)
    assert resolve_card_attempts() == 1
    attempt.refresh_from_db()
    topup.refresh_from_db()
    assert (attempt.status, topup.status, Payment.objects.count()) == ("succeeded", "paid", 1)

    # 2. a crash before the PaymentIntent's id was committed: nothing was confirmed; failed
    second = topup_session_create(merchant=sandbox, customer=topup.customer, amount=D("3"), currency="USD")
    lost = payment_attempt_start(session_id=second.id, source=PaymentSource.CARD)
    _stale(lost)
    # 3. a crash between the commit of its id and the confirmation: canceled at Stripe, failed
    third = topup_session_create(merchant=sandbox, customer=topup.customer, amount=D("4"), currency="USD")
    unconfirmed = payment_attempt_start(session_id=third.id, source=PaymentSource.CARD)
    intent = client.v1.payment_intents.create(
        params={
            "amount": 400,
            "currency": "usd",
            "customer": stripe_customer,
            "payment_method": card.stripe_payment_method_id,
        }
    )
    PaymentAttempt.objects.filter(pk=unconfirmed.pk).update(external_reference=intent.id)
    _stale(unconfirmed)

    assert resolve_card_attempts() == 2

    lost.refresh_from_db()
    unconfirmed.refresh_from_db()
    assert (lost.status, lost.failure_reason) == ("failed", "Interrupted before the card was charged.")
    assert unconfirmed.status == "failed"
    assert client.v1.payment_intents.retrieve(intent.id).status == "canceled"
    assert Payment.objects.count() == 1
    assert resolve_card_attempts() == 0
    assert ledger_check() == []


@pytest.mark.django_db
def test_setup_intent_succeeded_saves_the_card_once(topup, stripe_sandbox, client, django_capture_on_commit_callbacks):
    import json
    import time

    import stripe

    setup = card_setup_start(session_id=topup.id)
    confirm_card_setup(setup, GOOD)
    intent = stripe_client(livemode=False).v1.setup_intents.retrieve(setup.setup_intent_id).to_dict()
    event = {
        "id": "evt_setup_1",
        "object": "event",
        "type": "setup_intent.succeeded",
        "livemode": False,
        "created": int(time.time()),
        "data": {"object": intent},
    }
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, stripe_sandbox["STRIPE_TEST_WEBHOOK_SECRET"])
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/webhooks/stripe", data=payload, content_type="application/json", headers={"Stripe-Signature": header}
            )
        assert response.status_code == 200
    card = SavedCard.objects.get()
    assert (card.customer_id, card.last4, card.brand, card.is_default) == (topup.customer_id, "4242", "visa", True)
    assert card.stripe_payment_method_id == intent["payment_method"]
    from apps.cards.models import StripeEvent

    assert StripeEvent.objects.get().status == "processed"
    # the checkout saving the same card afterwards finds it
    assert card_save(customer=topup.customer, setup_intent_id=setup.setup_intent_id) == card


@pytest.mark.django_db
def test_a_charge_waiting_for_authentication_stays_in_flight_then_beat_cancels_it(topup):
    from apps.cards.services.saved_cards import saved_card_record

    client = stripe_client(livemode=False)
    stripe_customer_ensure(customer=topup.customer)
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4000002500003155", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    card = saved_card_record(customer=topup.customer, method_id=method.id, card=method.card.to_dict())

    attempt = card_charge(session_id=topup.id, card=card)

    assert attempt.status == "in_flight"  # Stripe asks the customer to authenticate
    assert client.v1.payment_intents.retrieve(attempt.external_reference).status == "requires_action"
    PaymentAttempt.objects.filter(pk=attempt.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    assert resolve_card_attempts() == 1
    attempt.refresh_from_db()
    assert attempt.status == "in_flight"  # the customer may still be authenticating
    PaymentAttempt.objects.filter(pk=attempt.pk).update(created_at=timezone.now() - timedelta(minutes=31))
    assert resolve_card_attempts() == 1
    attempt.refresh_from_db()
    assert attempt.status == "failed"
    assert client.v1.payment_intents.retrieve(attempt.external_reference).status == "canceled"
    topup.refresh_from_db()
    assert topup.status == "pending"
    assert not Payment.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_localstripes_own_webhook_deliveries_reach_the_inbox(live_server, localstripe, stripe_sandbox):
    """localstripe signs and sends payment_intent.succeeded itself (a second after the charge):
    the inbox verifies it, stores it, and finds the PaymentIntent already credited by the server."""
    import time

    from apps.cards.models import StripeEvent
    from tests.factories import MerchantFactory, sandbox_of

    localstripe.register_webhook(
        name="inbox-test", url=f"{live_server.url}/webhooks/stripe", secret=stripe_sandbox["STRIPE_TEST_WEBHOOK_SECRET"]
    )
    try:
        sandbox = sandbox_of(MerchantFactory())
        session = topup_session_create(merchant=sandbox, customer=make_customer(sandbox), amount=D("3"), currency="USD")
        attempt = card_charge(session_id=session.id, card=saved_card(session, GOOD))
        assert attempt.status == "succeeded"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            delivered = StripeEvent.objects.filter(
                type="payment_intent.succeeded", payload__data__object__id=attempt.external_reference
            ).first()
            if delivered is not None and delivered.status != "received":
                break
            time.sleep(0.2)
        assert delivered is not None, "localstripe's event never reached the inbox"
        assert (delivered.livemode, delivered.status) == (False, "processed")
        assert "already credited" in delivered.note
        assert Payment.objects.filter(session=session).count() == 1
        assert ledger_check() == []
    finally:
        # later tests' events go nowhere (their secrets differ)
        localstripe.register_webhook(name="inbox-test", url="http://127.0.0.1:9/", secret="whsec_off")
