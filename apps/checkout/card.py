"""The checkout's card path, as the page's Stripe.js form calls it (JSON in and out):

    POST /checkout/{id}/card/setup    -> a SetupIntent for Stripe.js's confirmCardSetup
    POST /checkout/{id}/card/pay      {"setupIntentId"} -> the card saved and what is due charged
    POST /checkout/{id}/card/confirm  {"paymentAttemptId"} -> after Stripe.js's confirmCardPayment
                                      (a PaymentIntent that required the customer's action)

Whether the session is paid is decided on the server (the SetupIntent and the PaymentIntent
retrieved from Stripe), never from what the browser reports."""

from django.http import Http404, JsonResponse
from django.views.decorators.http import require_POST

from apps.cards.services.charges import (
    Resolved,
    card_attempt_authentication,
    card_attempt_check,
    card_charge,
    card_save,
    card_setup_start,
)
from apps.checkout.actions import error_response as _error
from apps.checkout.actions import json_body as _body
from apps.checkout.actions import pending_session as _pending_session
from apps.checkout.methods import stripe_js_url
from apps.core.errors import ApiError, BadRequest
from apps.payments.models import PaymentAttempt, PaymentSession, PaymentSource


def _outcome(session: PaymentSession, attempt: PaymentAttempt, checked: Resolved | None = None) -> JsonResponse:
    """The attempt as the server decided it; for a PaymentIntent waiting for the customer's
    authentication, the client secret that Stripe.js's confirmCardPayment needs (from `checked`,
    the retrieval that just settled it, when there was one: Stripe is not asked twice)."""
    session.refresh_from_db()
    paid = session.status == PaymentSession.Status.PAID
    authenticate = None
    if attempt.status == PaymentAttempt.Status.IN_FLIGHT and checked is not None:
        authenticate = checked.authentication_secret
    elif attempt.status == PaymentAttempt.Status.IN_FLIGHT:
        try:
            authenticate = card_attempt_authentication(attempt_id=attempt.id)
        except ApiError:
            # Stripe did not answer: the charge's outcome is not known yet (it may have gone
            # through), so the page says the payment is being processed, never "pay again";
            # beat settles the attempt from its PaymentIntent once Stripe answers
            authenticate = None
    return JsonResponse(
        {
            "status": attempt.status,
            "paymentAttemptId": str(attempt.id),
            "failureReason": attempt.failure_reason or None,
            "paymentSessionStatus": session.status,
            "redirect": (session.success_url or f"/checkout/{session.id}") if paid else None,
            "nextAction": {"type": "authenticate", "clientSecret": authenticate} if authenticate else None,
        }
    )


@require_POST
def checkout_card_setup(request, session_id):
    try:
        session = _pending_session(session_id)
        setup = card_setup_start(session_id=session.id)
    except ApiError as exc:
        return _error(exc)
    return JsonResponse(
        {
            "setupIntentId": setup.setup_intent_id,
            "clientSecret": setup.client_secret,
            "publishableKey": setup.publishable_key,
            "stripeJsUrl": stripe_js_url(livemode=session.merchant.livemode),
        }
    )


@require_POST
def checkout_card_pay(request, session_id):
    try:
        setup_intent_id = _body(request).get("setupIntentId")
        if not isinstance(setup_intent_id, str) or not setup_intent_id.startswith("seti_"):
            raise BadRequest("setupIntentId (seti_...) is required.", code="SETUP_INTENT_REQUIRED")
        session = _pending_session(session_id)
        card = card_save(customer=session.customer, setup_intent_id=setup_intent_id)
        if session.mode == PaymentSession.Mode.SETUP:
            return JsonResponse(
                {
                    "status": "saved",
                    "card": {"brand": card.brand, "last4": card.last4},
                    "redirect": session.success_url or f"/checkout/{session.id}",
                }
            )
        attempt = card_charge(session_id=session.id, card=card)
        return _outcome(session, attempt)
    except ApiError as exc:
        return _error(exc)


@require_POST
def checkout_card_confirm(request, session_id):
    """After the customer authenticated (or not) in Stripe.js: the attempt settled from its
    PaymentIntent retrieved by the server."""
    try:
        attempt_id = _body(request).get("paymentAttemptId")
        session = PaymentSession.objects.select_related("merchant", "customer").filter(pk=session_id).first()
        if session is None:
            raise Http404("No such payment session.")
        attempt = (
            PaymentAttempt.objects.filter(session=session, source=PaymentSource.CARD, pk=attempt_id).first()
            if isinstance(attempt_id, str) and _is_uuid(attempt_id)
            else None
        )
        if attempt is None:
            raise BadRequest(
                "paymentAttemptId must name a card attempt of this payment session.", code="PAYMENT_ATTEMPT_REQUIRED"
            )
        checked = card_attempt_check(attempt_id=attempt.id)
        attempt.refresh_from_db()
        return _outcome(session, attempt, checked)
    except ApiError as exc:
        return _error(exc)


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
