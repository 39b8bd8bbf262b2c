"""Relaying committed events into deliveries, and sending deliveries.

- `relay_events` claims committed, unrelayed events with `FOR UPDATE SKIP LOCKED` (an id cursor
  would skip events that commit out of order), and makes one delivery per subscribed, enabled
  endpoint of the event's merchant (sandbox and live merchants are apart, so are their
  endpoints).
- `dispatch_due` leases endpoints that have due deliveries and sends each endpoint's deliveries
  one at a time in event order, endpoints in parallel threads: a slow or failing endpoint never
  delays another's, and a failing delivery is rescheduled without holding back the next ones.
  No delivery is sent inside a database transaction. A lease outlives a killed worker by
  `WEBHOOK_LEASE_SECONDS`; then another dispatcher sends again, with the same `webhook-id`.
"""

import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from apps.core.formats import iso
from apps.webhooks.addresses import UrlNotAllowed, check_url
from apps.webhooks.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint

logger = logging.getLogger(__name__)

# The contract's retry schedule: the wait after the 1st, 2nd, ... failed attempt.
RETRY_SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
JITTER = 0.1  # each wait is drawn within +-10%
TIMEOUT_SECONDS = 15
DISABLE_AFTER = timedelta(days=5)
RESPONSE_KEPT = 1024
RELAY_BATCH = 500
DRAIN_PAGE = 100


def payload(event: Event) -> dict:
    return {
        "eventType": event.type,
        "eventId": str(event.id),
        "timestamp": iso(event.created_at),
        "livemode": event.merchant.livemode,
        "data": event.data,
    }


def signed_request(*, endpoint: WebhookEndpoint, event: Event, at: datetime) -> tuple[bytes, dict]:
    """The body and the Standard Webhooks headers of `event` for `endpoint`. The event id is
    the `webhook-id`: the same on every attempt, so a receiver drops what it has seen."""
    body = json.dumps(payload(event), separators=(",", ":"))
    message_id = str(event.id)
    signature = Webhook(endpoint.secret).sign(message_id, at, body)
    headers = {
        "content-type": "application/json",
        "user-agent": "billing-platform-webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }
    return body.encode(), headers


def next_wait(failed_attempts: int, *, rng=random) -> timedelta | None:
    """The wait before the next attempt after `failed_attempts` failures; None when the
    schedule is spent (the delivery has failed)."""
    if failed_attempts > len(RETRY_SCHEDULE):
        return None
    base = RETRY_SCHEDULE[failed_attempts - 1]
    return base * (1 + rng.uniform(-JITTER, JITTER))


# ------------------------------------------------------------------------------------- relay


def relay_events(*, limit: int = RELAY_BATCH) -> int:
    """Turn up to `limit` committed events into deliveries; returns how many were relayed."""
    with transaction.atomic():
        events = list(
            Event.objects.filter(relayed_at__isnull=True)
            .order_by("created_at", "id")
            .select_for_update(skip_locked=True)[:limit]
        )
        if not events:
            return 0
        endpoints: dict = {}
        for endpoint in WebhookEndpoint.objects.filter(
            merchant_id__in={event.merchant_id for event in events}, enabled=True
        ):
            endpoints.setdefault(endpoint.merchant_id, []).append(endpoint)
        now = timezone.now()
        Delivery.objects.bulk_create(
            [
                Delivery(merchant_id=event.merchant_id, endpoint=endpoint, event=event, next_attempt_at=now)
                for event in events
                for endpoint in endpoints.get(event.merchant_id, ())
                if endpoint.subscribes_to(event.type)
            ],
            ignore_conflicts=True,
        )
        Event.objects.filter(pk__in=[event.pk for event in events]).update(relayed_at=now)
    return len(events)


# ---------------------------------------------------------------------------------- dispatch


def _lease_endpoints(*, now: datetime, limit: int) -> list:
    lease = timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
    with transaction.atomic():
        due = Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
        ids = list(
            WebhookEndpoint.objects.filter(enabled=True)
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
            .filter(pk__in=due.values("endpoint_id"))
            .order_by("leased_until", "id")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        WebhookEndpoint.objects.filter(pk__in=ids).update(leased_until=now + lease)
    return ids


def dispatch_due(*, now: datetime | None = None, max_endpoints: int = 32, budget_seconds: float | None = None) -> int:
    """Send what is due, each endpoint's deliveries in event order, endpoints in parallel.
    Returns the number of attempts made."""
    now = now or timezone.now()
    ids = _lease_endpoints(now=now, limit=max_endpoints)
    if not ids:
        return 0
    budget = budget_seconds if budget_seconds is not None else settings.WEBHOOK_LEASE_SECONDS / 2
    if len(ids) == 1:
        return _drain(ids[0], now, budget, close=False)
    with ThreadPoolExecutor(max_workers=min(len(ids), settings.WEBHOOK_DELIVERY_THREADS)) as pool:
        return sum(pool.map(lambda pk: _drain(pk, now, budget, close=True), ids))


def _drain(endpoint_id, now: datetime, budget: float, *, close: bool) -> int:
    """Send the leased endpoint's due deliveries in event order, a page at a time, until none
    is due, the endpoint is disabled, or the time budget is spent."""
    started = time.monotonic()
    sent = 0
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client:
            while time.monotonic() - started < budget:
                page = list(
                    Delivery.objects.filter(
                        endpoint_id=endpoint_id,
                        endpoint__enabled=True,
                        status=Delivery.Status.PENDING,
                        next_attempt_at__lte=now,
                    )
                    .select_related("event__merchant", "endpoint")
                    .order_by("event__created_at", "event_id")[:DRAIN_PAGE]
                )
                for delivery in page:
                    outcome = attempt(delivery, client=client, at=max(now, timezone.now()))
                    sent += 1
                    if outcome.gone or time.monotonic() - started >= budget:
                        break
                    if not outcome.succeeded and delivery.endpoint.failing_since is None:
                        # the endpoint may have just been disabled (5 days): read it again
                        delivery.endpoint.refresh_from_db(fields=["enabled", "failing_since"])
                        if not delivery.endpoint.enabled:
                            break
                else:
                    if len(page) < DRAIN_PAGE:
                        break
                    continue
                break
    except Exception:
        logger.exception("webhooks: dispatching endpoint %s failed", endpoint_id)
    finally:
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(leased_until=None)
        if close:
            connection.close()
    return sent


@dataclass
class Outcome:
    succeeded: bool
    status: int | None
    latency_ms: int
    body: str
    error: str
    gone: bool = False


def send(delivery: Delivery, *, client: httpx.Client, at: datetime) -> Outcome:
    """POST the delivery (never inside a database transaction)."""
    if connection.in_atomic_block:
        raise RuntimeError("a webhook delivery must not be sent inside a database transaction")
    endpoint, event = delivery.endpoint, delivery.event
    started = time.monotonic()
    try:
        check_url(endpoint.url, livemode=event.merchant.livemode)
        body, headers = signed_request(endpoint=endpoint, event=event, at=at)
        response = client.post(endpoint.url, content=body, headers=headers)
        text = response.content[:RESPONSE_KEPT].decode("utf-8", errors="replace")
        latency = int((time.monotonic() - started) * 1000)
        ok = 200 <= response.status_code < 300
        return Outcome(ok, response.status_code, latency, text, "", gone=response.status_code == 410)
    except UrlNotAllowed as exc:
        return Outcome(False, None, int((time.monotonic() - started) * 1000), "", f"url not allowed: {exc}")
    except httpx.TimeoutException:
        return Outcome(False, None, int((time.monotonic() - started) * 1000), "", f"no answer in {TIMEOUT_SECONDS} s")
    except httpx.HTTPError as exc:
        return Outcome(False, None, int((time.monotonic() - started) * 1000), "", f"{type(exc).__name__}: {exc}"[:500])


def attempt(delivery: Delivery, *, client: httpx.Client, at: datetime) -> Outcome:
    outcome = send(delivery, client=client, at=at)
    record(delivery_id=delivery.pk, outcome=outcome, at=at)
    return outcome


def record(*, delivery_id, outcome: Outcome, at: datetime, rng=random) -> None:
    """Log the attempt and move the delivery (and, when its state changes, its endpoint) on,
    in one transaction."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.status != Delivery.Status.PENDING:
            return
        delivery.attempts += 1
        DeliveryAttempt.objects.create(
            merchant_id=delivery.merchant_id,
            delivery=delivery,
            number=delivery.attempts,
            succeeded=outcome.succeeded,
            response_status=outcome.status,
            latency_ms=outcome.latency_ms,
            response_body=outcome.body,
            error=outcome.error,
        )
        delivery.last_attempt_at = at
        delivery.last_response_status = outcome.status
        delivery.last_latency_ms = outcome.latency_ms
        if outcome.succeeded:
            delivery.status = Delivery.Status.SUCCEEDED
            delivery.next_attempt_at = None
            # one cheap conditional update: only an endpoint that was failing changes
            WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, failing_since__isnull=False).update(
                failing_since=None, updated_at=at
            )
        else:
            wait = next_wait(delivery.attempts, rng=rng)
            if wait is None:
                delivery.status = Delivery.Status.FAILED
                delivery.next_attempt_at = None
            else:
                delivery.next_attempt_at = at + wait
            _endpoint_failed(delivery.endpoint_id, outcome=outcome, at=at)
        delivery.save(
            update_fields=[
                "attempts",
                "status",
                "next_attempt_at",
                "last_attempt_at",
                "last_response_status",
                "last_latency_ms",
                "updated_at",
            ]
        )


def _endpoint_failed(endpoint_id, *, outcome: Outcome, at: datetime) -> None:
    """A failed attempt starts (or continues) the endpoint's run of failures; a 410, or a run
    of 5 days, disables it with the reason the merchant reads in the admin and the API."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    changes = []
    if endpoint.failing_since is None:
        endpoint.failing_since = at
        changes.append("failing_since")
    reason = None
    if outcome.gone:
        reason = f"The endpoint answered 410 Gone at {iso(at)}."
    elif at - endpoint.failing_since >= DISABLE_AFTER:
        reason = (
            f"Every delivery failed from {iso(endpoint.failing_since)} to {iso(at)} (5 days); "
            f"the last answer: {outcome.status or outcome.error}."
        )
    if reason and endpoint.enabled:
        endpoint.enabled = False
        endpoint.disabled_at = at
        endpoint.disabled_reason = reason
        changes += ["enabled", "disabled_at", "disabled_reason"]
    if changes:
        endpoint.save(update_fields=[*changes, "updated_at"])
