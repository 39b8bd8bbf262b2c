"""Writes of the merchant's webhook endpoints."""

import base64
import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core.errors import FieldError
from apps.webhooks.addresses import UrlNotAllowed, check_url
from apps.webhooks.models import Delivery, Event, WebhookEndpoint
from apps.webhooks.outbox import EVENT_TYPES, TEST_EVENT_TYPE, wake_dispatcher_after_commit

MAX_EVENTS = len(EVENT_TYPES)


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and 24 random bytes in base64 (192 bits)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def clean_url(url: Any, *, livemode: bool) -> str:
    if not isinstance(url, str) or not url.strip():
        raise FieldError("url", "is required: the https address that receives the events", code="REQUIRED")
    url = url.strip()
    if len(url) > 2000:
        raise FieldError("url", "must be at most 2000 characters", code="INVALID_URL")
    try:
        check_url(url, livemode=livemode)
    except UrlNotAllowed as exc:
        raise FieldError("url", str(exc), code="URL_NOT_ALLOWED") from None
    return url


def clean_events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events:
        raise FieldError("events", 'must be a non-empty list of event types, or ["*"] for all', code="INVALID_EVENTS")
    for index, name in enumerate(events):
        if name != "*" and name not in EVENT_TYPES:
            raise FieldError(
                f"events[{index}]",
                f"{name!r} is not an event type; use one of {', '.join(EVENT_TYPES)}, or *",
                code="UNKNOWN_EVENT_TYPE",
            )
    return ["*"] if "*" in events else list(dict.fromkeys(events))


def webhook_endpoint_create(*, merchant, url: str, events: list, description: str = "") -> WebhookEndpoint:
    url = clean_url(url, livemode=merchant.livemode)
    events = clean_events(events)
    return WebhookEndpoint.objects.create(
        merchant=merchant, url=url, events=events, description=description, secret=new_secret()
    )


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, **changes) -> WebhookEndpoint:
    """Change `url`, `events`, `description` or `enabled`; enabling a disabled endpoint clears
    why it was disabled and its run of failures."""
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().select_related("merchant").get(pk=endpoint.pk)
        fields = []
        if "url" in changes:
            locked.url = clean_url(changes["url"], livemode=locked.merchant.livemode)
            fields.append("url")
        if "events" in changes:
            locked.events = clean_events(changes["events"])
            fields.append("events")
        if "description" in changes:
            locked.description = changes["description"]
            fields.append("description")
        if "enabled" in changes and changes["enabled"] != locked.enabled:
            locked.enabled = changes["enabled"]
            if locked.enabled:
                locked.disabled_at, locked.disabled_reason, locked.failing_since = None, "", None
            else:
                locked.disabled_at, locked.disabled_reason = timezone.now(), "Disabled by the merchant."
            fields += ["enabled", "disabled_at", "disabled_reason", "failing_since"]
        if fields:
            locked.save(update_fields=[*fields, "updated_at"])
    return locked


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its delivery log; nothing more is sent to it."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()


def webhook_endpoint_test(*, endpoint: WebhookEndpoint) -> Delivery:
    """Queue a `webhook.test` event for this endpoint alone, due at once (sent within a second,
    by the dispatcher, like every delivery: signed, logged, retried); returns its delivery."""
    now = timezone.now()
    with transaction.atomic():
        event = Event.objects.create(
            merchant_id=endpoint.merchant_id,
            type=TEST_EVENT_TYPE,
            data={"object": "webhook_test", "endpointId": str(endpoint.pk), "message": "A test event."},
            relayed_at=now,
        )
        delivery = Delivery.objects.create(
            merchant_id=endpoint.merchant_id, endpoint=endpoint, event=event, next_attempt_at=now
        )
        wake_dispatcher_after_commit()
    return Delivery.objects.select_related("event").get(pk=delivery.pk)


def webhook_delivery_resend(*, delivery: Delivery) -> Delivery:
    """Send a delivery again (the admin's "send again"): it becomes due now, with its attempt
    count kept, whatever its status."""
    with transaction.atomic():
        locked = Delivery.objects.select_for_update().get(pk=delivery.pk)
        locked.status = Delivery.Status.PENDING
        locked.next_attempt_at = timezone.now()
        locked.save(update_fields=["status", "next_attempt_at", "updated_at"])
        wake_dispatcher_after_commit()
    return locked
