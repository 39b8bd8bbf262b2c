"""A customer's payment methods: the setup session that collects a card through the hosted
checkout (purpose and mode `setup`: the card is saved and nothing is charged), and removing a
saved card (marked removed in the database, then detached from the Stripe customer after the
commit: never a call to Stripe inside a transaction).

A setup session is paid (its status `paid`, amount 0) once the card it collected is saved
(`card_save`, from the SetupIntent the checkout confirmed, whose metadata names the session),
so that the checkout shows it done and leads back to its success URL (the portal's page)."""

import logging
import uuid

import stripe
from django.db import transaction
from django.utils import timezone

from apps.cards.models import SavedCard
from apps.cards.services.saved_cards import saved_card_mark_removed
from apps.cards.stripe_client import CARD_CURRENCY, CardUnavailable, stripe_client
from apps.core.errors import Unprocessable
from apps.core.money import ZERO
from apps.payments.models import PaymentSession
from apps.payments.registry import PurposeHandler, register_purpose
from apps.payments.services import payment_session_create

logger = logging.getLogger(__name__)


class SetupHandler(PurposeHandler):
    """A setup session has no target that takes money: it is never collected (the payments
    service refuses a setup session), and paid when its card is saved."""

    def payable(self, session) -> bool:
        return False


def register_setup_purpose() -> None:
    register_purpose(PaymentSession.Purpose.SETUP, SetupHandler())


def setup_session_create(*, merchant, customer, success_url: str = "", cancel_url: str = "") -> PaymentSession:
    """A payment session (purpose and mode setup, USD: cards are in USD) whose checkout saves a
    card for the customer and charges nothing."""
    if customer.archived_at is not None:
        raise Unprocessable(
            f"Customer {customer.id} is archived; it takes no new payment method.", code="CUSTOMER_ARCHIVED"
        )
    with transaction.atomic():
        return payment_session_create(
            merchant=merchant,
            purpose=PaymentSession.Purpose.SETUP,
            amount=ZERO,
            currency=CARD_CURRENCY,
            customer=customer,
            success_url=success_url,
            cancel_url=cancel_url,
        )


def setup_session_complete(*, customer, session_id) -> bool:
    """The card of the customer's setup session was saved: the session is paid (once; a
    session of another purpose or customer is left alone). Whether it changed now."""
    try:
        session_id = uuid.UUID(str(session_id))
    except ValueError:
        return False
    with transaction.atomic():
        session = (
            PaymentSession.objects.select_for_update()
            .filter(
                pk=session_id,
                customer=customer,
                mode=PaymentSession.Mode.SETUP,
                status=PaymentSession.Status.PENDING,
            )
            .first()
        )
        if session is None:
            return False
        now = timezone.now()
        session.status = PaymentSession.Status.PAID
        session.paid_at = now
        session.save(update_fields=["status", "paid_at", "updated_at"])
    return True


def payment_method_remove(*, customer, card_id) -> SavedCard:
    """Remove a saved card: never charged again from the commit on (the default moves to the
    newest card left, or to none); then detached from the Stripe customer. A detach that
    fails (Stripe unreachable) is logged: the card stays unusable here all the same."""
    card = saved_card_mark_removed(customer=customer, card_id=card_id)
    try:
        stripe_client(livemode=customer.merchant.livemode).v1.payment_methods.detach(card.stripe_payment_method_id)
    except (stripe.StripeError, CardUnavailable) as exc:
        logger.warning(
            "Saved card %s removed; detaching %s in Stripe failed: %s", card.id, card.stripe_payment_method_id, exc
        )
    return card
