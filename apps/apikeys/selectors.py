from datetime import datetime

from django.db.models import Sum

from apps.apikeys.models import CustomerApiKey
from apps.apikeys.tiers import is_tier
from apps.core.errors import NotFound, Unauthenticated
from apps.core.secrets import hash_secret
from apps.subscriptions.models import Subscription
from apps.usage.models import UsageLine


def api_key_list(*, merchant, customer_id=None):
    keys = CustomerApiKey.objects.filter(merchant=merchant).select_related("subscription__plan")
    if customer_id is not None:
        keys = keys.filter(customer_id=customer_id)
    return keys.order_by("-created_at", "-id")


def api_key_get(*, merchant, key_id) -> CustomerApiKey:
    key = CustomerApiKey.objects.select_related("subscription__plan").filter(merchant=merchant, pk=key_id).first()
    if key is None:
        raise NotFound(f"No API key {key_id}.", code="API_KEY_NOT_FOUND")
    return key


def tier_subscription(*, customer) -> Subscription | None:
    """The customer's live subscription on a tier plan (the one its keys draw on)."""
    for subscription in (
        Subscription.objects.select_related("plan", "merchant", "wallet", "customer")
        .filter(customer=customer)
        .exclude(status=Subscription.Status.TERMINATED)
        .order_by("created_at", "id")
    ):
        if is_tier(subscription.plan):
            return subscription
    return None


def counted_calls(*, subscription, start: datetime, end: datetime) -> int:
    """Calls that verify counted for the subscription in [start, end), as recorded in usage: the
    lines of the COUNT metrics that its tier plans price (the merchant's query metric)."""
    from apps.apikeys.tiers import tier_of

    metric_id = tier_of(subscription.plan).query_metric_id
    total = UsageLine.objects.filter(
        merchant_id=subscription.merchant_id,
        subscription_id=subscription.id,
        billable_metric_id=metric_id,
        timestamp__gte=start,
        timestamp__lt=end,
    ).aggregate(total=Sum("quantity"))["total"]
    return int(total or 0)


X_API_KEY_MISSING = "Missing API key: send the customer's key in the X-API-Key header."


def customer_key_for_request(request) -> CustomerApiKey:
    """The active customer key of the request's `X-API-Key` header (401 otherwise)."""
    secret = request.META.get("HTTP_X_API_KEY", "").strip()
    if not secret:
        raise Unauthenticated(X_API_KEY_MISSING, code="MISSING_API_KEY")
    key = (
        CustomerApiKey.objects.select_related("merchant", "customer", "subscription__plan")
        .filter(secret_hash=hash_secret(secret))
        .first()
    )
    if key is None:
        raise Unauthenticated("This API key is not valid; keys are shown once, when created.", code="INVALID_API_KEY")
    if key.revoked_at is not None:
        raise Unauthenticated(f"This API key was revoked at {key.revoked_at.isoformat()}.", code="API_KEY_REVOKED")
    return key
