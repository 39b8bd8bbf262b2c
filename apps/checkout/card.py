"""The checkout's card path, as the page's Stripe.js form calls it (JSON in and out):

    POST /checkout/{id}/card/setup  -> a SetupIntent for Stripe.js's confirmCardSetup
    POST /checkout/{id}/card/pay    {"setupIntentId"} -> the card saved and what is due charged

Whether the session is paid is decided on the server (the SetupIntent and the PaymentIntent
retrieved from Stripe), never from what the browser reports."""

import json

from django.http import Http404, JsonResponse
from django.views.decorators.http import require_POST

from apps.cards.services.charges import card_charge, card_save, card_setup_start
from apps.cards.stripe_client import stripe_settings
from apps.core.errors import ApiError, BadRequest, Conflict
from apps.payments.models import PaymentSession
from apps.payments.serializers import session_status

STRIPE_JS = "https://js.stripe.com/v3/"
STRIPE_API = "https://api.stripe.com"


def stripe_js_url(*, livemode: bool) -> str:
    """Stripe.js, or the stand-in that a Stripe-compatible server (localstripe) serves itself."""
    base = stripe_settings(livemode=livemode).api_base
    return STRIPE_JS if base == STRIPE_API else f"{base}/js.stripe.com/v3/"


def _pending_session(session_id) -> PaymentSession:
    session = PaymentSession.objects.select_related("merchant", "customer").filter(pk=session_id).first()
    if session is None:
        raise Http404("No such payment session.")
    status = session_status(session)
    if status != PaymentSession.Status.PENDING:
        raise Conflict(
            f"Payment session {session.id} is {status}; it takes no card now.", code="PAYMENT_SESSION_CLOSED"
        )
    return session


def _error(exc: ApiError) -> JsonResponse:
    return JsonResponse(exc.as_body(), status=exc.status_code)


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
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            raise BadRequest("The body is not JSON.", code="INVALID_JSON") from None
        setup_intent_id = body.get("setupIntentId") if isinstance(body, dict) else None
        if not isinstance(setup_intent_id, str) or not setup_intent_id.startswith("seti_"):
            raise BadRequest("setupIntentId (seti_...) is required.", code="SETUP_INTENT_REQUIRED")
        session = _pending_session(session_id)
        card = card_save(customer=session.customer, setup_intent_id=setup_intent_id)
        if session.mode == PaymentSession.Mode.SETUP:
            return JsonResponse({"status": "saved", "card": {"brand": card.brand, "last4": card.last4}})
        attempt = card_charge(session_id=session.id, card=card)
    except ApiError as exc:
        return _error(exc)
    session.refresh_from_db()
    paid = session.status == PaymentSession.Status.PAID
    return JsonResponse(
        {
            "status": attempt.status,
            "failureReason": attempt.failure_reason or None,
            "paymentSessionStatus": session.status,
            "redirect": (session.success_url or f"/checkout/{session.id}") if paid else None,
        }
    )
