"""POST /webhooks/stripe: Stripe's events, verified and stored, answered at once."""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.cards.services.inbox import stripe_event_receive
from apps.core.errors import ApiError


@csrf_exempt
@require_POST
def stripe_webhook(request):
    try:
        stored = stripe_event_receive(payload=request.body, signature=request.headers.get("Stripe-Signature"))
    except ApiError as exc:
        return JsonResponse(exc.as_body(), status=exc.status_code)
    return JsonResponse({"received": True, "id": stored.event.stripe_id, "duplicate": not stored.created})
