"""The outbox: `publish` writes an event in the caller's transaction.

Every app reports what happened through `publish(merchant=..., type=..., data=...)`, inside the
transaction of the change: the event commits with the change or not at all. After the commit
the relay is woken (it also runs on beat every second, so a lost wake-up only delays).
"""

import logging
import threading
import time
from datetime import datetime

from django.conf import settings
from django.db import transaction

from apps.core.formats import iso
from apps.webhooks.models import Event

logger = logging.getLogger(__name__)

# The contract's event types (api-v0.md, Outbound webhooks). An endpoint subscribes to some of
# them or to "*".
EVENT_TYPES = (
    "customer.created",
    "subscription.created",
    "subscription.activated",
    "subscription.updated",
    "subscription.past_due",
    "subscription.terminated",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.voided",
    "payment.succeeded",
    "payment.failed",
    "payment.refunded",
    "payment.disputed",
    "settlement.confirmed",
    "settlement.failed",
    "wallet.low_balance",
    "entitlement.expired",
    "dispute.opened",
    "dispute.resolved",
)
# Sent only by POST /v0/webhookEndpoints/{id}/test, to that endpoint.
TEST_EVENT_TYPE = "webhook.test"


def publish(*, merchant, type: str, data: dict, updated_at: datetime | None = None) -> Event:
    """Record that `type` happened to the resource `data` (its API shape) of `merchant`.

    Must run inside the transaction of the change (it raises otherwise, so an event is never
    written for a change that may roll back, nor lost for one that commits). `updated_at` is
    the resource's last change, carried as `data.updatedAt` when the shape lacks it, so that a
    receiver can order what it gets."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("publish() must run inside the transaction of the change it reports")
    if updated_at is not None and "updatedAt" not in data:
        data = {**data, "updatedAt": iso(updated_at)}
    event = Event.objects.create(merchant=merchant, type=type, data=data)
    wake_relay_after_commit()
    return event


_last_wake = 0.0
_wake_lock = threading.Lock()
WAKE_INTERVAL = 0.2


def wake_relay_after_commit() -> None:
    if settings.WEBHOOK_WAKE_RELAY:
        transaction.on_commit(_wake_relay)


def wake_dispatcher_after_commit() -> None:
    """For deliveries made due directly (a test event, "send again")."""
    if settings.WEBHOOK_WAKE_RELAY:
        transaction.on_commit(_wake_dispatcher)


def _wake_dispatcher() -> None:
    from apps.webhooks.tasks import dispatch_webhooks

    try:
        dispatch_webhooks.delay()
    except Exception:  # beat's sweep sends it within a second
        logger.warning("webhooks: could not wake the dispatcher; beat will", exc_info=True)


def _wake_relay() -> None:
    """Enqueue the relay, at most every WAKE_INTERVAL per process (beat runs it every second
    anyway): a burst of events costs one message."""
    global _last_wake
    with _wake_lock:
        now = time.monotonic()
        if now - _last_wake < WAKE_INTERVAL:
            return
        _last_wake = now
    from apps.webhooks.tasks import relay_webhook_events

    try:
        relay_webhook_events.delay()
    except Exception:  # a broker that is down must not fail a committed change; beat catches up
        logger.warning("webhooks: could not wake the relay; beat will", exc_info=True)
