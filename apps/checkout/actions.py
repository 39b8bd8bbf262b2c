"""What the checkout's JSON actions share (the card form's and the USDC path's): the session they
act on, still pending; the body as a JSON object; an ApiError as the API's error envelope."""

import json

from django.http import Http404, JsonResponse

from apps.core.errors import ApiError, BadRequest, Conflict
from apps.payments.models import PaymentSession
from apps.payments.serializers import session_status


def checkout_session(session_id) -> PaymentSession:
    session = PaymentSession.objects.select_related("merchant", "customer").filter(pk=session_id).first()
    if session is None:
        raise Http404("No such payment session.")
    return session


def pending_session(session_id) -> PaymentSession:
    session = checkout_session(session_id)
    status = session_status(session)
    if status != PaymentSession.Status.PENDING:
        raise Conflict(
            f"Payment session {session.id} is {status}; it takes no payment now.", code="PAYMENT_SESSION_CLOSED"
        )
    return session


def error_response(exc: ApiError) -> JsonResponse:
    response = JsonResponse(exc.as_body(), status=exc.status_code)
    for name, value in exc.headers.items():
        response[name] = value  # (Retry-After where Stripe or the database did not answer)
    return response


def json_body(request) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise BadRequest("The body is not JSON.", code="INVALID_JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", code="INVALID_JSON")
    return body
