"""The card path on the server: a Stripe customer per platform customer, a SetupIntent that the
checkout confirms with Stripe.js, the card saved, then what the session still asks for charged.

Every call to Stripe runs outside a database transaction. A charge is one payment attempt
(the payments service keeps one in flight per session and invoice, across all sources):

1. the attempt row is committed (`payment_attempt_start`);
2. a PaymentIntent is created unconfirmed, with the customer and the card, the attempt's id as
   its idempotency key (and in its metadata);
3. its id is committed on the attempt, before anything can charge the card;
4. it is confirmed; then it is retrieved and the server decides (never the browser): succeeded
   credits what Stripe captured through the payments service, failed fails the attempt. Its
   webhook may report the same first: the payments service credits a PaymentIntent once.

A crash between these steps leaves the attempt in flight: `card_attempts_resolve` (beat) fails an
attempt that never got a PaymentIntent id (nothing was confirmed), cancels and fails one whose
PaymentIntent was never confirmed, and settles the others from the PaymentIntent retrieved."""

from dataclasses import dataclass
from datetime import timedelta

import stripe
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.cards.models import SavedCard, StripeCustomer
from apps.cards.services.handlers import Outcome, intent_credit, intent_fail
from apps.cards.services.saved_cards import saved_card_record
from apps.cards.stripe_client import CARD_CURRENCY, CardUnavailable, stripe_client, stripe_settings, to_minor_units
from apps.core.errors import ApiError, Conflict, PaymentRequired
from apps.payments.models import PaymentAttempt, PaymentSession, PaymentSource
from apps.payments.services import payment_attempt_fail, payment_attempt_start

# An attempt in flight this long is looked at by beat (a charge takes seconds).
IN_FLIGHT_GRACE = timedelta(minutes=2)
# A PaymentIntent waiting for the customer's authentication this long is canceled: its attempt
# would otherwise keep every other way of paying the session out.
AUTHENTICATION_TIMEOUT = timedelta(minutes=30)


# Seconds a client is asked to wait before sending again a request that Stripe did not answer.
STRIPE_RETRY_AFTER = "5"
# What card_attempt_resolve says of an attempt left in flight because Stripe did not answer.
UNREACHABLE = "left in flight, Stripe unreachable"


class CardPathUnavailable(ApiError):
    status_code = 503
    error = "service_unavailable"
    code = "CARD_UNAVAILABLE"


def _client(livemode: bool) -> stripe.StripeClient:
    try:
        return stripe_client(livemode=livemode)
    except CardUnavailable as exc:
        raise CardPathUnavailable(f"Card unavailable: {exc}") from None


def stripe_unreachable(exc: stripe.StripeError) -> bool:
    """Stripe did not answer (a timeout, a dropped connection) or failed on its side (5xx, 429):
    the same request may succeed later. Anything else is Stripe's answer about the request."""
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return True
    return isinstance(exc, stripe.APIError) or (exc.http_status or 0) >= 500


def _stripe_failed(exc: stripe.StripeError, *, charged_nothing: bool = True) -> ApiError:
    """Stripe refused or could not be reached: a declined card is 402; Stripe unreachable is 503
    STRIPE_UNAVAILABLE with Retry-After (nothing was charged: send it again in a moment); any
    other refusal 503 STRIPE_ERROR."""
    message = exc.user_message or str(exc) or exc.__class__.__name__
    if isinstance(exc, stripe.CardError):
        return PaymentRequired(message, code="CARD_DECLINED")
    if stripe_unreachable(exc):
        return CardPathUnavailable(
            "The card processor (Stripe) did not answer"
            + ("; nothing was charged" if charged_nothing else "")
            + ". Try again in a moment.",
            code="STRIPE_UNAVAILABLE",
            details={"stripeError": exc.__class__.__name__},
            headers={"Retry-After": STRIPE_RETRY_AFTER},
        )
    return CardPathUnavailable(f"Stripe: {message}", code="STRIPE_ERROR")


def stripe_customer_ensure(*, customer) -> str:
    """The customer's Stripe customer id, created in its mode's Stripe account when first needed."""
    found = StripeCustomer.objects.filter(customer=customer).values_list("stripe_id", flat=True).first()
    if found:
        return found
    client = _client(customer.merchant.livemode)
    try:
        created = client.v1.customers.create(
            params={"email": customer.email, "metadata": {"platformCustomerId": str(customer.id)}},
            options={"idempotency_key": f"customer:{customer.id}"},
        )
    except stripe.StripeError as exc:
        raise _stripe_failed(exc) from None
    try:
        with transaction.atomic():
            StripeCustomer.objects.create(merchant=customer.merchant, customer=customer, stripe_id=created.id)
    except IntegrityError:
        # created meanwhile by a concurrent request: that one is kept (Stripe's idempotency key
        # returned it the same customer; localstripe's extra one is never used)
        pass
    return StripeCustomer.objects.get(customer=customer).stripe_id


@dataclass(frozen=True)
class CardSetup:
    setup_intent_id: str
    client_secret: str  # for Stripe.js confirmCardSetup, in the customer's browser
    publishable_key: str
    api_base: str


def _card_session(session_id) -> PaymentSession:
    session = PaymentSession.objects.select_related("merchant", "customer").filter(pk=session_id).first()
    if session is None:
        raise Conflict(f"No payment session {session_id}.", code="PAYMENT_SESSION_NOT_FOUND")
    if session.currency != CARD_CURRENCY:
        raise Conflict(
            f"Cards pay {CARD_CURRENCY} sessions; payment session {session.id} is in {session.currency}.",
            code="CARD_CURRENCY_UNSUPPORTED",
        )
    return session


def card_setup_start(*, session_id) -> CardSetup:
    """A SetupIntent for the session's customer, for the checkout to confirm with Stripe.js."""
    session = _card_session(session_id)
    livemode = session.merchant.livemode
    client = _client(livemode)
    stripe_customer = stripe_customer_ensure(customer=session.customer)
    try:
        intent = client.v1.setup_intents.create(
            params={
                "customer": stripe_customer,
                "usage": "off_session",
                "metadata": {"paymentSessionId": str(session.id)},
            }
        )
    except stripe.StripeError as exc:
        raise _stripe_failed(exc) from None
    config = stripe_settings(livemode=livemode)
    return CardSetup(intent.id, intent.client_secret, config.publishable_key, config.api_base)


def card_save(*, customer, setup_intent_id: str) -> SavedCard:
    """Save the card of a SetupIntent the customer confirmed: decided from the SetupIntent
    retrieved from Stripe (its status and its customer), never from what the browser says."""
    livemode = customer.merchant.livemode
    client = _client(livemode)
    stripe_customer = stripe_customer_ensure(customer=customer)
    try:
        intent = client.v1.setup_intents.retrieve(setup_intent_id)
    except stripe.StripeError as exc:
        raise _stripe_failed(exc) from None
    if intent.customer != stripe_customer:
        raise Conflict(f"SetupIntent {setup_intent_id} is not this customer's.", code="SETUP_INTENT_MISMATCH")
    if intent.status != "succeeded" or not intent.payment_method:
        raise PaymentRequired(
            f"The card was not saved: its SetupIntent is {intent.status}"
            + (" (the card was declined)." if intent.status == "canceled" else "."),
            code="CARD_NOT_SAVED",
            details={"setupIntentStatus": intent.status},
        )
    try:
        method = client.v1.payment_methods.retrieve(intent.payment_method)
    except stripe.StripeError as exc:
        raise _stripe_failed(exc) from None
    card = method.card
    saved = saved_card_record(customer=customer, method_id=method.id, card=card.to_dict() if card else {})
    _setup_session_done(customer, intent.metadata.to_dict() if intent.metadata else {})
    return saved


def _setup_session_done(customer, metadata) -> None:
    """A setup session whose SetupIntent saved the card is done (paid, nothing charged)."""
    from apps.cards.services.payment_methods import setup_session_complete

    session_id = (metadata or {}).get("paymentSessionId")
    if session_id:
        setup_session_complete(customer=customer, session_id=session_id)


def card_charge(*, session_id, card: SavedCard, off_session: bool = False) -> PaymentAttempt:
    """Charge what the session still asks for to a saved card (see the module). Returns the
    attempt as the server decided it: succeeded, failed, or still in flight (a PaymentIntent
    that needs the customer's authentication, or that Stripe still processes).

    `off_session`: the customer is not there (an invoice collected, an auto-recharge); the
    PaymentIntent is confirmed with off_session=true, so a card that needs authentication
    fails (authentication_required) instead of waiting for the customer."""
    session = _card_session(session_id)
    if card.customer_id != session.customer_id or card.merchant_id != session.merchant_id or card.removed_at:
        raise Conflict("That card is not one of this customer's saved cards.", code="CARD_NOT_FOUND")
    livemode = session.merchant.livemode
    client = _client(livemode)
    stripe_customer = stripe_customer_ensure(customer=session.customer)
    attempt = payment_attempt_start(
        session_id=session.id, source=PaymentSource.CARD, merchant=session.merchant, off_session=off_session
    )
    try:
        intent = client.v1.payment_intents.create(
            params={
                "amount": to_minor_units(attempt.amount, attempt.currency),
                "currency": attempt.currency.lower(),
                "customer": stripe_customer,
                "payment_method": card.stripe_payment_method_id,
                "metadata": {"paymentAttemptId": str(attempt.id), "paymentSessionId": str(session.id)},
            },
            options={"idempotency_key": f"attempt:{attempt.id}"},
        )
    except stripe.StripeError as exc:
        payment_attempt_fail(attempt_id=attempt.id, reason=f"Stripe refused the PaymentIntent: {exc}")
        raise _stripe_failed(exc) from None
    PaymentAttempt.objects.filter(pk=attempt.pk, status=PaymentAttempt.Status.IN_FLIGHT, external_reference="").update(
        external_reference=intent.id, updated_at=timezone.now()
    )
    try:
        client.v1.payment_intents.confirm(
            intent.id,
            params={"off_session": True} if off_session else None,
            # (sent again by the SDK when its answer is lost: Stripe confirms it once)
            options={"idempotency_key": f"attempt:{attempt.id}:confirm"},
        )
    except stripe.CardError:
        pass  # a decline: the PaymentIntent retrieved below says so (last_payment_error)
    except stripe.StripeError:
        # not known whether it was confirmed: the PaymentIntent retrieved (now, or by beat) decides
        pass
    card_attempt_resolve(attempt_id=attempt.id)
    attempt.refresh_from_db()
    return attempt


@dataclass(frozen=True)
class Resolved:
    """What `card_attempt_check` did (`note`), and, for a PaymentIntent that waits for the
    customer's authentication, its client secret (Stripe.js's confirmCardPayment needs it)."""

    note: str
    authentication_secret: str | None = None


def card_attempt_resolve(*, attempt_id) -> str:
    """Settle a card attempt in flight from its PaymentIntent retrieved from Stripe; returns what
    was done. Used right after confirming, and by beat for attempts a crash left in flight."""
    return card_attempt_check(attempt_id=attempt_id).note


def card_attempt_check(*, attempt_id) -> Resolved:
    """`card_attempt_resolve`, with the client secret of a PaymentIntent left waiting for the
    customer's authentication (one retrieval serves both: the checkout's polling asks this)."""
    attempt = PaymentAttempt.objects.select_related("merchant").get(pk=attempt_id, source=PaymentSource.CARD)
    if attempt.status != PaymentAttempt.Status.IN_FLIGHT:
        return Resolved(f"already {attempt.status}")
    if not attempt.external_reference:
        # never got a PaymentIntent id, so nothing was ever confirmed: nothing can be charged
        payment_attempt_fail(attempt_id=attempt.id, reason="Interrupted before the card was charged.")
        return Resolved("failed: no PaymentIntent")
    client = _client(attempt.merchant.livemode)
    try:
        intent = client.v1.payment_intents.retrieve(attempt.external_reference)
    except stripe.StripeError as exc:
        return Resolved(f"{UNREACHABLE if stripe_unreachable(exc) else 'left in flight'}: {exc.__class__.__name__}")
    age = timezone.now() - attempt.created_at
    if (intent.status == "requires_confirmation" and age > IN_FLIGHT_GRACE) or (
        intent.status == "requires_action" and age > AUTHENTICATION_TIMEOUT
    ):
        # created but never confirmed (a crash between the two), or never authenticated by the
        # customer: it will never charge once canceled
        try:
            intent = client.v1.payment_intents.cancel(intent.id)
        except stripe.StripeError as exc:
            return Resolved(f"left in flight: {exc.__class__.__name__}")
    # (the payments service locks the session's target, the session, then the attempt, as the
    # webhook's handler does: whichever comes second finds the PaymentIntent credited)
    data = intent.to_dict()
    outcome: Outcome
    if intent.status == "succeeded":
        outcome = intent_credit(attempt, data)
    elif intent.status in ("requires_payment_method", "canceled"):
        outcome = intent_fail(attempt, data)
    else:
        return Resolved(
            f"left in flight: {intent.status}",
            intent.client_secret if intent.status == "requires_action" else None,
        )
    return Resolved(outcome.note)


def card_attempt_authentication(*, attempt_id) -> str | None:
    """The client secret of the attempt's PaymentIntent while it waits for the customer's
    authentication (requires_action: Stripe.js's confirmCardPayment in the customer's browser),
    else None. The outcome is decided afterwards on the server (`card_attempt_resolve`)."""
    attempt = PaymentAttempt.objects.select_related("merchant").get(pk=attempt_id, source=PaymentSource.CARD)
    if attempt.status != PaymentAttempt.Status.IN_FLIGHT or not attempt.external_reference:
        return None
    client = _client(attempt.merchant.livemode)
    try:
        intent = client.v1.payment_intents.retrieve(attempt.external_reference)
    except stripe.StripeError as exc:
        raise _stripe_failed(exc, charged_nothing=False) from None
    return intent.client_secret if intent.status == "requires_action" else None


def card_attempts_resolve(*, limit: int = 200) -> int:
    """Beat: resolve card attempts left in flight past IN_FLIGHT_GRACE (a crash, a lost answer)."""
    before = timezone.now() - IN_FLIGHT_GRACE
    ids = list(
        PaymentAttempt.objects.filter(
            source=PaymentSource.CARD, status=PaymentAttempt.Status.IN_FLIGHT, created_at__lt=before
        )
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )
    for attempt_id in ids:
        try:
            note = card_attempt_resolve(attempt_id=attempt_id)
        except ApiError:
            continue  # the mode lost its Stripe configuration: the attempt waits for it
        if note.startswith(UNREACHABLE):
            # Stripe does not answer: the rest wait for the next run, instead of each waiting
            # out its own timeouts in this one
            break
    return len(ids)
