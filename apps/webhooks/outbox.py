"""The outbox: `publish` writes an event in the caller's transaction.

Every app reports what happened through `publish(merchant=..., type=..., data=...)`, inside the
transaction of the change: the event commits with the change or not at all. After the commit
the relay is woken (it also runs on beat every second, so a lost wake-up only delays).
"""

import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.bulk import Statement, insert_rows, new_id, run_statements
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


def publish_many(events: Sequence[tuple[object, str, dict]]) -> int:
    """`publish` for several events at once, `(merchant, type, data)` each, in one insert (a
    set-wise change, such as the period close of many subscriptions, reports each of its
    changes). Each event's time is after the one before it, so that they are relayed in the
    order given. Returns how many were written."""
    if not events:
        return 0
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("publish_many() must run inside the transaction of the changes it reports")
    rows, last = [], None
    for merchant, type, data in events:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        at = timezone.now()
        if last is not None and at <= last:
            at = last + timedelta(microseconds=1)
        last = at
        merchant_id = getattr(merchant, "pk", merchant)
        rows.append((new_id(), at, at, merchant_id, type, data))
    run_statements([insert_rows(Event, EVENT_COLUMNS, rows)])
    wake_relay_after_commit()
    return len(rows)


EVENT_COLUMNS = ("id", "created_at", "updated_at", "merchant_id", "type", "data")


def publish_statement(
    *,
    ctes: str,
    cte_params: Sequence,
    source: str,
    source_params: Sequence = (),
    created_at: datetime,
    also: str = "",
) -> Statement:
    """One statement that publishes the events a query yields, for callers that send it with
    others in one round trip, where `publish` would cost a round trip of its own (a posting's
    follow-up on the usage hot path, apps.ledger.hooks).

    `ctes`: the statement's common table expressions (`name AS (...)`, comma-separated; they
    may modify data), with `cte_params`; `source`: a query over them yielding the columns
    (merchant_id, type, data jsonb) of each event (its types among EVENT_TYPES), with
    `source_params`. The statement answers
    one row, the number of events written: when it is positive, call
    `wake_relay_after_commit()`; then the values of `also` (more columns over the ctes, such as
    an ARRAY(...) of what a cte changed, without parameters). Like `publish`, it belongs inside
    the change's transaction."""
    table = Event._meta.db_table
    return Statement(
        f"WITH {ctes}, published AS (INSERT INTO {table} (id, created_at, updated_at, merchant_id, type, data) "  # noqa: S608 (no user input)
        f"SELECT gen_random_uuid(), %s::timestamptz, %s::timestamptz, merchant_id, type, data FROM ({source}) AS source "
        f"RETURNING 1) SELECT count(*){', ' + also if also else ''} FROM published",
        [*cte_params, created_at.isoformat(), created_at.isoformat(), *source_params],
    )


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
