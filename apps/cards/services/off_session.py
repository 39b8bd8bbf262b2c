"""Off-session charges: a saved card charged while the customer is not there (an open invoice
the wallet cannot cover, an auto-recharge). The charge is the card path's one attempt
(`card_charge`: attempt row committed, PaymentIntent created unconfirmed with the attempt's id
as idempotency key, its id committed, then confirmed) with `off_session=true` on the
confirmation: a card that needs the customer's authentication fails (Stripe answers
authentication_required) instead of waiting. Should a PaymentIntent still ask for an action,
it is canceled at once and the attempt fails: nobody is there to authenticate, and the target
(an invoice) stays open with its payment link, where the customer can."""

from dataclasses import dataclass

import stripe

from apps.cards.models import SavedCard
from apps.cards.services.charges import _client, card_attempt_resolve, card_charge
from apps.cards.services.saved_cards import saved_card_default
from apps.core.errors import ApiError
from apps.payments.models import PaymentAttempt
from apps.payments.services import payment_attempt_fail

NEEDS_AUTHENTICATION = (
    "The card needs the customer's authentication (3-D Secure), which an off-session charge cannot ask for; "
    "the customer can pay through the payment link."
)


@dataclass(frozen=True)
class OffSessionCharge:
    """What an off-session charge came to: `attempt` None when none was made (`reason` says why)."""

    attempt: PaymentAttempt | None
    card: SavedCard | None
    reason: str = ""
    code: str = ""

    @property
    def succeeded(self) -> bool:
        return self.attempt is not None and self.attempt.status == PaymentAttempt.Status.SUCCEEDED


def card_charge_off_session(*, session_id, customer) -> OffSessionCharge:
    """Charge what the session still asks for to the customer's default card, off-session.
    Must run outside any database transaction (it calls Stripe). Refusals before a charge
    (no default card, a session that takes no payment, an attempt already in flight, Stripe
    not configured) come back as the reason, not raised."""
    card = saved_card_default(customer=customer)
    if card is None:
        return OffSessionCharge(None, None, "The customer has no saved card.", "NO_SAVED_CARD")
    try:
        attempt = card_charge(session_id=session_id, card=card, off_session=True)
    except ApiError as exc:
        return OffSessionCharge(None, card, exc.message, exc.code)
    if attempt.status == PaymentAttempt.Status.IN_FLIGHT and attempt.external_reference:
        attempt = _cancel_if_waiting_for_the_customer(attempt)
    if attempt.status == PaymentAttempt.Status.FAILED:
        return OffSessionCharge(attempt, card, attempt.failure_reason, _failure_code(attempt))
    return OffSessionCharge(attempt, card)


def _cancel_if_waiting_for_the_customer(attempt: PaymentAttempt) -> PaymentAttempt:
    client = _client(attempt.merchant.livemode)
    try:
        intent = client.v1.payment_intents.retrieve(attempt.external_reference)
        if intent.status == "requires_action":
            client.v1.payment_intents.cancel(intent.id)
            payment_attempt_fail(attempt_id=attempt.id, reason=NEEDS_AUTHENTICATION)
    except stripe.StripeError:
        return attempt  # left in flight: beat's resolver settles it from the PaymentIntent
    card_attempt_resolve(attempt_id=attempt.id)
    attempt.refresh_from_db()
    return attempt


def _failure_code(attempt: PaymentAttempt) -> str:
    reason = attempt.failure_reason.lower()
    if "authenticat" in reason:
        return "CARD_AUTHENTICATION_REQUIRED"
    return "CARD_DECLINED"
