"""What each type of Stripe event does, inside the transaction that marks it processed.

A handler reads only the signed event (no call to Stripe: no network inside the transaction)
and reaches the ledger only through the payments service, which credits a PaymentIntent once
whatever reports it (this webhook, or the server retrieving the PaymentIntent)."""

from collections.abc import Callable
from dataclasses import dataclass

from apps.cards.models import StripeCustomer, StripeEvent
from apps.cards.services.saved_cards import saved_card_record
from apps.cards.stripe_client import from_minor_units
from apps.payments.models import PaymentAttempt, PaymentSource
from apps.payments.services import Arrival, payment_attempt_fail, payment_receive

# The clearing account card money arrives through (one per mode and currency, in the ledger).
STRIPE_CLEARING = "stripe"


@dataclass(frozen=True)
class Outcome:
    done: bool  # False: nothing of this platform's was concerned (the event is left ignored)
    note: str


def _card_attempt(event: StripeEvent, intent: dict) -> PaymentAttempt | None:
    """The card attempt that created this PaymentIntent (its id committed on the attempt before
    the PaymentIntent was confirmed), in the event's mode."""
    return (
        PaymentAttempt.objects.select_related("merchant")
        .filter(
            source=PaymentSource.CARD,
            external_reference=intent.get("id") or "",
            merchant__livemode=event.livemode,
        )
        .first()
    )


def intent_credit(attempt: PaymentAttempt, intent: dict) -> Outcome:
    """A succeeded PaymentIntent of `attempt`: what Stripe captured, gross (its fees stay
    outside the ledger), credited through the payments service, once per PaymentIntent."""
    # localstripe reports only amount; Stripe reports amount_received as well
    captured = intent["amount_received"] if "amount_received" in intent else intent["amount"]
    currency = str(intent["currency"]).upper()
    received = payment_receive(
        session_id=attempt.session_id,
        arrival=Arrival(
            PaymentSource.CARD, from_minor_units(captured, currency), currency, intent["id"], STRIPE_CLEARING
        ),
        attempt_id=attempt.id,
        merchant=attempt.merchant,
    )
    if not received.created:
        return Outcome(True, f"{intent['id']} was already credited (payment {received.payment.id}).")
    return Outcome(True, f"{intent['id']} credited: payment {received.payment.id}.")


def intent_fail(attempt: PaymentAttempt, intent: dict) -> Outcome:
    """A PaymentIntent of `attempt` that failed: the attempt in flight fails (the session can be
    paid again); a late or repeated failure changes nothing (a success is never undone by it)."""
    if attempt.status != PaymentAttempt.Status.IN_FLIGHT:
        return Outcome(True, f"Attempt {attempt.id} had already ended ({attempt.status}).")
    error = intent.get("last_payment_error") or {}
    reason = error.get("message") or error.get("code") or "The card payment failed."
    payment_attempt_fail(attempt_id=attempt.id, reason=reason)
    return Outcome(True, f"Attempt {attempt.id} failed: {reason}")


def payment_intent_succeeded(event: StripeEvent) -> Outcome:
    intent = event.payload["data"].get("object") or {}
    attempt = _card_attempt(event, intent)
    if attempt is None:
        return Outcome(False, f"No card payment attempt of this platform is {intent.get('id')!r}.")
    return intent_credit(attempt, intent)


def payment_intent_payment_failed(event: StripeEvent) -> Outcome:
    intent = event.payload["data"].get("object") or {}
    attempt = _card_attempt(event, intent)
    if attempt is None:
        return Outcome(False, f"No card payment attempt of this platform is {intent.get('id')!r}.")
    return intent_fail(attempt, intent)


def setup_intent_prepare(event: StripeEvent):
    """Outside the transaction: the card of a SetupIntent's PaymentMethod (the event names it
    only by id), retrieved from the event's mode's Stripe; None when the event is about no
    customer of this platform."""
    from apps.cards.stripe_client import stripe_client

    intent = event.payload["data"].get("object") or {}
    if not intent.get("payment_method") or not _stripe_customer(event, intent) or intent.get("status") != "succeeded":
        return None
    method_id = intent["payment_method"]
    if isinstance(method_id, dict):  # expanded
        return method_id
    return stripe_client(livemode=event.livemode).v1.payment_methods.retrieve(method_id).to_dict()


def _stripe_customer(event: StripeEvent, intent: dict):
    return (
        StripeCustomer.objects.select_related("customer__merchant")
        .filter(stripe_id=intent.get("customer") or "", merchant__livemode=event.livemode)
        .first()
    )


def setup_intent_succeeded(event: StripeEvent, method: dict | None) -> Outcome:
    intent = event.payload["data"].get("object") or {}
    stripe_customer = _stripe_customer(event, intent)
    if stripe_customer is None or method is None:
        return Outcome(False, f"SetupIntent {intent.get('id')!r} saved no card of a customer of this platform.")
    card = saved_card_record(customer=stripe_customer.customer, method_id=method["id"], card=method.get("card") or {})
    session_id = (intent.get("metadata") or {}).get("paymentSessionId")
    if session_id:
        from apps.cards.services.payment_methods import setup_session_complete

        setup_session_complete(customer=stripe_customer.customer, session_id=session_id)
    return Outcome(True, f"Card {card.id} saved ({card.brand} ...{card.last4}).")


# What each type does: handler(event, prepared), prepared being what PREPARE[type] (if any)
# fetched from Stripe outside the transaction.
HANDLERS: dict[str, Callable] = {
    "payment_intent.succeeded": lambda event, _: payment_intent_succeeded(event),
    "payment_intent.payment_failed": lambda event, _: payment_intent_payment_failed(event),
    "setup_intent.succeeded": setup_intent_succeeded,
}
PREPARE: dict[str, Callable] = {"setup_intent.succeeded": setup_intent_prepare}
