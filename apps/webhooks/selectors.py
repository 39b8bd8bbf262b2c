from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.webhooks.models import Delivery, WebhookEndpoint


def webhook_endpoint_list(*, merchant) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(merchant=merchant).select_related("merchant").order_by("-created_at", "-id")


def webhook_endpoint_get(*, merchant, endpoint_id) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_related("merchant").filter(merchant=merchant, pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound(f"No webhook endpoint {endpoint_id}.", code="WEBHOOK_ENDPOINT_NOT_FOUND")
    return endpoint


def webhook_delivery_list(*, merchant, endpoint) -> QuerySet[Delivery]:
    """The endpoint's delivery log, newest first."""
    return (
        Delivery.objects.filter(merchant=merchant, endpoint=endpoint)
        .select_related("event", "merchant")
        .order_by("-created_at", "-id")
    )
