"""POST /v0/billing/checkout (the customer's X-API-Key) paid by card through the hosted
checkout's card path, against localstripe: the tier changes once the card is charged, the card
is saved, and the tier's renewal is collected off-session from it (issue 17 item 5)."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.cards.models import SavedCard
from apps.cards.services.saved_cards import saved_card_set_default
from apps.cards.stripe_client import stripe_client
from apps.catalog.demo import seed_catalog
from apps.invoices.models import Invoice
from apps.ledger.selectors import ledger_check
from apps.payments.models import Payment, PaymentAttempt, PaymentSession, PaymentSource
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import periods_advance
from apps.webhooks.models import Event
from tests.cards.test_card_path import FAILS_WHEN_CHARGED, GOOD
from tests.checkout.test_checkout_card import pay

pytestmark = pytest.mark.django_db

D = Decimal


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def free_key(test_api, stripe_sandbox, time_machine):
    """A sandbox key on the free tier, created 2026-01-10 08:00 (tier plans are in USD)."""
    time_machine.move_to(at("2026-01-10T08:00"), tick=False)
    seed_catalog(merchant=test_api.merchant)
    body = {"organizationName": "Acme DeFi", "contactEmail": "dev@acme.example", "tier": "free"}
    created = test_api.post("/v0/billing/apiKeys", body)
    assert created.status_code == 201, created.json()
    return created.json()


def verify(test_api, key):
    return test_api.post("/v0/apiKeys/verify", {"apiKey": key, "cost": 0}).json()


def upgrade_by_card(test_api, client, key, number):
    response = test_api.client.post(
        "/v0/billing/checkout", {"planId": "starter"}, format="json", HTTP_X_API_KEY=key["apiKey"]
    )
    assert response.status_code == 200, response.json()
    session = PaymentSession.objects.get(pk=response.json()["sessionId"])
    assert response.json()["url"].endswith(f"/checkout/{session.id}")
    assert (session.purpose, session.currency) == ("tier_change", "USD")
    # the hosted checkout's card path, as its Stripe.js form drives it
    return session, pay(client, session, number)


def test_a_tier_upgrade_paid_by_card_changes_the_tier_and_the_renewal_is_charged_to_the_saved_card(
    test_api, client, free_key, time_machine, django_capture_on_commit_callbacks
):
    time_machine.move_to(at("2026-01-20T00:00"), tick=False)
    session, paid = upgrade_by_card(test_api, client, free_key, GOOD)
    assert paid.status_code == 200, paid.content
    assert (paid.json()["status"], paid.json()["paymentSessionStatus"]) == ("succeeded", "paid")
    # Starter's 49.00 for what is left of the period, rounded up to the cent
    payment = Payment.objects.get(source=PaymentSource.CARD)
    assert payment.amount == session.amount == D("33.73")
    assert stripe_client(livemode=False).v1.payment_intents.retrieve(payment.external_reference).amount == 3373
    subscription = Subscription.objects.select_related("plan").get(pk=free_key["subscriptionId"])
    assert subscription.plan.code == "starter"
    assert verify(test_api, free_key["apiKey"])["tier"] == "starter"
    assert Event.objects.filter(type="subscription.updated").count() == 1
    card = SavedCard.objects.get(customer_id=free_key["customerId"])
    assert card.is_default and card.last4 == "4242"  # saved for renewals

    # the renewal: the wallet holds nothing for it, the saved card pays it off-session
    time_machine.move_to(at("2026-02-10T09:02"), tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        periods_advance(subscription_id=subscription.id)
    renewal = Invoice.objects.get(subscription_id=subscription.id, kind="period")
    assert (renewal.status, renewal.total, renewal.amount_paid) == ("paid", D("49"), D("49"))
    renewal_payment = Payment.objects.get(session_id=renewal.payment_session_id)
    assert (renewal_payment.source, renewal_payment.amount) == ("card", D("49"))
    attempt = PaymentAttempt.objects.get(pk=renewal_payment.attempt_id)
    assert attempt.off_session
    assert Subscription.objects.get(pk=subscription.id).status == "active"
    assert verify(test_api, free_key["apiKey"])["tier"] == "starter"
    assert Event.objects.filter(type="invoice.payment_failed").count() == 0
    assert ledger_check() == []


def test_a_renewal_whose_saved_card_fails_off_session_enters_dunning(
    test_api, client, free_key, time_machine, django_capture_on_commit_callbacks
):
    time_machine.move_to(at("2026-01-20T00:00"), tick=False)
    session, paid = upgrade_by_card(test_api, client, free_key, GOOD)
    assert paid.json()["paymentSessionStatus"] == "paid"
    # the customer saves a card that fails when charged and makes it the default
    failing = pay_setup_only(client, test_api, free_key, FAILS_WHEN_CHARGED)
    saved_card_set_default(customer=failing.customer, card_id=failing.id)

    time_machine.move_to(at("2026-02-10T09:02"), tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        periods_advance(subscription_id=free_key["subscriptionId"])
    renewal = Invoice.objects.get(subscription_id=free_key["subscriptionId"], kind="period")
    assert (renewal.status, renewal.payment_failed_at) == ("open", at("2026-02-10T09:02"))
    attempt = PaymentAttempt.objects.get(invoice_id=renewal.id)
    assert (attempt.status, attempt.off_session, attempt.failure_reason) == (
        "failed",
        True,
        "Your card was declined.",
    )
    assert Subscription.objects.get(pk=free_key["subscriptionId"]).status == "past_due"
    assert Event.objects.filter(type="invoice.payment_failed").count() == 1
    assert ledger_check() == []


def pay_setup_only(client, test_api, key, number) -> SavedCard:
    """A card saved through a setup session's checkout (POST /v0/customers/{id}/paymentMethods)."""
    from tests.cards.test_card_path import confirm_card_setup
    from tests.checkout.test_checkout_card import Setup

    answer = test_api.post(f"/v0/customers/{key['customerId']}/paymentMethods")
    assert answer.status_code in (200, 201), answer.json()
    session_id = answer.json()["id"]
    setup = Setup(client.post(f"/checkout/{session_id}/card/setup").json())
    assert confirm_card_setup(setup, number).status_code == 200
    saved = client.post(
        f"/checkout/{session_id}/card/pay", {"setupIntentId": setup.setup_intent_id}, content_type="application/json"
    )
    assert saved.status_code == 200, saved.content
    return SavedCard.objects.get(customer_id=key["customerId"], last4=number[-4:], removed_at__isnull=True)
