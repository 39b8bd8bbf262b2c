"""What each type of Stripe event does, inside the transaction that marks it processed.

A handler reads only the signed event (no call to Stripe: no network inside the transaction)
and reaches the ledger only through the payments service, which credits a PaymentIntent once
whatever reports it (this webhook, or the server retrieving the PaymentIntent)."""

from collections.abc import Callable
from dataclasses import dataclass

from apps.cards.models import StripeCustomer, StripeEvent
from apps.cards.services.saved_cards import saved_card_record
from apps.cards.stripe_client import from_minor_units
from apps.core.money import format_amount
from apps.payments.models import Payment, PaymentAttempt, PaymentSource
from apps.payments.services import (
    Arrival,
    payment_attempt_fail,
    payment_dispute,
    payment_receive,
    payment_refund,
    payment_refund_fail,
)

# The clearing account card money arrives through (one per mode and currency, in the ledger).
STRIPE_CLEARING = "stripe"


class NotYet(Exception):
    """The event is about a payment not credited yet (it arrived before the payment's own
    report): it stays received, and the retry beat processes it again later."""


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


def _names_its_charge(event: StripeEvent) -> bool:
    """Whether the event's object is a dispute or a refund (it names its charge), not a charge."""
    return event.type.startswith(("charge.dispute.", "charge.refund.", "refund."))


def _charge_payment_intent(event: StripeEvent) -> tuple[str | None, str | None]:
    """(PaymentIntent id, charge id) that a charge.* event is about (a charge, or a dispute)."""
    obj = event.payload["data"].get("object") or {}
    charge_id = obj.get("charge") if _names_its_charge(event) else obj.get("id")
    if isinstance(charge_id, dict):
        charge_id = charge_id.get("id")
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    return intent or None, charge_id or None


def _card_payment(event: StripeEvent, intent_id: str) -> Payment | None:
    return Payment.objects.filter(
        source=PaymentSource.CARD, external_reference=intent_id, merchant__livemode=event.livemode
    ).first()


def charge_prepare(event: StripeEvent) -> dict:
    """Outside the transaction, for charge.refunded, a dispute's events (charge.dispute.*) and a refund's
    failure (charge.refund.updated, refund.updated, refund.failed): the PaymentIntent
    the charge belongs to (retrieved with the charge when the event does not name it); when its
    payment is not credited yet but a card attempt of this platform made it (the refund or the
    dispute arrived before the payment's own report), the PaymentIntent retrieved and credited
    now if it succeeded; and for a refund, the charge's refunds (the event's own list when it
    holds them all, else listed from Stripe), each of which is recorded once."""
    from apps.cards.stripe_client import stripe_client

    intent_id, charge_id = _charge_payment_intent(event)
    client = None
    if intent_id is None and charge_id:
        client = stripe_client(livemode=event.livemode)
        intent_id = client.v1.charges.retrieve(charge_id).payment_intent
        if isinstance(intent_id, dict):
            intent_id = intent_id.get("id")
    if not intent_id:
        return {"payment_intent": None, "refunds": []}
    attempt = _card_attempt(event, {"id": intent_id})
    if attempt is None and _card_payment(event, intent_id) is None:
        return {"payment_intent": intent_id, "refunds": []}  # not this platform's
    if attempt is not None and _card_payment(event, intent_id) is None:
        client = client or stripe_client(livemode=event.livemode)
        intent = client.v1.payment_intents.retrieve(intent_id).to_dict()
        if intent.get("status") == "succeeded":
            intent_credit(attempt, intent)
    refunds = []
    if event.type == "charge.refunded":
        listed = (event.payload["data"].get("object") or {}).get("refunds")
        if isinstance(listed, dict) and isinstance(listed.get("data"), list) and not listed.get("has_more"):
            refunds = listed["data"]
        elif charge_id:
            client = client or stripe_client(livemode=event.livemode)
            refunds = [
                refund.to_dict()
                for refund in client.v1.refunds.list(params={"charge": charge_id, "limit": 100}).auto_paging_iter()
            ]
    return {"payment_intent": intent_id, "refunds": refunds}


def _payment_or_wait(event: StripeEvent, prepared: dict) -> Payment | None:
    intent_id = (prepared or {}).get("payment_intent")
    if not intent_id:
        return None
    payment = _card_payment(event, intent_id)
    if payment is None and _card_attempt(event, {"id": intent_id}) is not None:
        raise NotYet(f"The payment of {intent_id} is not credited yet; this event waits for it.")
    return payment


# Refunds that give money back (Stripe's amount_refunded counts these); failed or canceled ones do not.
REFUND_COUNTED = ("succeeded", "pending")
# What Stripe says of a refund that gave nothing back after all (it may have been pending).
REFUND_UNDONE = ("failed", "canceled")


def charge_refunded(event: StripeEvent, prepared: dict) -> Outcome:
    """Each refund of the charge recorded once through the payments service (Stripe's
    amount_refunded is cumulative: the refund ids say which are new)."""
    payment = _payment_or_wait(event, prepared)
    if payment is None:
        return Outcome(False, "The refunded charge is no card payment of this platform.")
    done = []
    for refund in sorted(prepared["refunds"], key=lambda r: (r.get("created") or 0, r.get("id") or "")):
        if not refund.get("id") or refund.get("status") not in (*REFUND_COUNTED, *REFUND_UNDONE):
            continue
        currency = str(refund.get("currency") or payment.currency).upper()
        if refund["status"] in REFUND_UNDONE:
            # listed failed or canceled already (taken from Stripe now): undone, or recorded so
            undone = payment_refund_fail(
                source=PaymentSource.CARD,
                payment_reference=payment.external_reference,
                refund_reference=refund["id"],
                status=refund["status"],
                amount=from_minor_units(refund["amount"], currency),
                clearing=STRIPE_CLEARING,
                livemode=event.livemode,
            )
            if undone.undone:
                done.append(f"{refund['id']} {refund['status']}, credited back")
            continue
        result = payment_refund(
            source=PaymentSource.CARD,
            payment_reference=payment.external_reference,
            refund_reference=refund["id"],
            amount=from_minor_units(refund["amount"], currency),
            clearing=STRIPE_CLEARING,
            livemode=event.livemode,
        )
        if result.created:
            done.append(f"{refund['id']} {result.refund.amount}")
    if not done:
        return Outcome(True, f"No new refund of {payment.external_reference} (each was recorded before).")
    return Outcome(True, f"Refunded from {payment.external_reference}: {', '.join(done)}.")


def refund_failed_prepare(event: StripeEvent) -> dict | None:
    """`charge_prepare` for a refund that failed or was canceled; nothing fetched for the other
    statuses (every refund's own updates), which change nothing here."""
    if (event.payload["data"].get("object") or {}).get("status") not in REFUND_UNDONE:
        return None
    return charge_prepare(event)


def refund_failed(event: StripeEvent, prepared: dict) -> Outcome:
    """A refund Stripe reports failed or canceled (charge.refund.updated, and newer API
    versions' refund.updated and refund.failed; the object is the refund): its debit undone
    once through the payments service. A refund of a payment not credited yet waits for it
    (NotYet); one not recorded yet is recorded failed, so that its late charge.refunded
    changes nothing. Other statuses change nothing here (charge.refunded records refunds)."""
    refund = event.payload["data"].get("object") or {}
    status = refund.get("status")
    if status not in REFUND_UNDONE or not refund.get("id"):
        return Outcome(False, f"Refund {refund.get('id')!r} is {status!r}: nothing to undo.")
    payment = _payment_or_wait(event, prepared)
    if payment is None:
        return Outcome(False, "The refund's charge is no card payment of this platform.")
    currency = str(refund.get("currency") or payment.currency).upper()
    result = payment_refund_fail(
        source=PaymentSource.CARD,
        payment_reference=payment.external_reference,
        refund_reference=str(refund["id"]),
        status=status,
        amount=from_minor_units(refund.get("amount") or 0, currency),
        clearing=STRIPE_CLEARING,
        livemode=event.livemode,
    )
    recorded = result.refund
    if result.undone:
        return Outcome(
            True,
            f"Refund {recorded.external_reference} {status}: {format_amount(recorded.amount, recorded.currency)} "
            "credited back to the wallet.",
        )
    if recorded.ledger_transaction_id is None:
        return Outcome(True, f"Refund {recorded.external_reference} recorded {recorded.status}; it had moved nothing.")
    return Outcome(True, f"Refund {recorded.external_reference} was undone before ({recorded.status}).")


# Stripe's dispute statuses in the order a dispute goes through them: an inquiry ("warning_")
# first, which may turn into a chargeback (needs_response, under_review) on the same dispute,
# then its outcome. A later report never takes a dispute back to an earlier status.
DISPUTE_STATUS_RANK = {
    "": 0,
    "warning_needs_response": 1,
    "warning_under_review": 2,
    "warning_closed": 3,
    "needs_response": 4,
    "under_review": 5,
    "won": 6,
    "lost": 6,
    "prevented": 6,
}


def dispute_status_rank(status: str) -> int:
    return DISPUTE_STATUS_RANK.get(status, 0)


def charge_dispute(event: StripeEvent, prepared: dict) -> Outcome:
    """The payer disputed the charge (charge.dispute.created): recorded and published
    (payment.disputed); no money moves. Its later reports (charge.dispute.updated, .closed:
    under review, won, lost) update the recorded status, and record a dispute whose creation
    was not heard (published then)."""
    payment = _payment_or_wait(event, prepared)
    if payment is None:
        return Outcome(False, "The disputed charge is no card payment of this platform.")
    dispute = event.payload["data"].get("object") or {}
    currency = str(dispute.get("currency") or payment.currency).upper()
    status = str(dispute.get("status") or "")
    recorded, created = payment_dispute(
        source=PaymentSource.CARD,
        payment_reference=payment.external_reference,
        dispute_reference=str(dispute.get("id") or event.stripe_id),
        amount=from_minor_units(dispute.get("amount") or 0, currency),
        reason=str(dispute.get("reason") or ""),
        processor_status=status,
        livemode=event.livemode,
        status_rank=dispute_status_rank,
    )
    if created:
        return Outcome(
            True, f"Dispute {recorded.external_reference} of {payment.external_reference} recorded ({status})."
        )
    if recorded.processor_status == status[:64] and event.type != "charge.dispute.created":
        return Outcome(True, f"Dispute {recorded.external_reference} is {status}.")
    return Outcome(True, f"Dispute {recorded.external_reference} was recorded before ({recorded.processor_status}).")


# What each type does: handler(event, prepared), prepared being what PREPARE[type] (if any)
# fetched from Stripe outside the transaction.
HANDLERS: dict[str, Callable] = {
    "payment_intent.succeeded": lambda event, _: payment_intent_succeeded(event),
    "payment_intent.payment_failed": lambda event, _: payment_intent_payment_failed(event),
    "setup_intent.succeeded": setup_intent_succeeded,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": charge_dispute,
    "charge.dispute.updated": charge_dispute,
    "charge.dispute.closed": charge_dispute,
    "charge.refund.updated": refund_failed,
    "refund.updated": refund_failed,
    "refund.failed": refund_failed,
}
PREPARE: dict[str, Callable] = {
    "setup_intent.succeeded": setup_intent_prepare,
    "charge.refunded": charge_prepare,
    "charge.dispute.created": charge_prepare,
    "charge.dispute.updated": charge_prepare,
    "charge.dispute.closed": charge_prepare,
    "charge.refund.updated": refund_failed_prepare,
    "refund.updated": refund_failed_prepare,
    "refund.failed": refund_failed_prepare,
}
