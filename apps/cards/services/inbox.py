"""The inbox of Stripe's events: verify, store once, process once.

`stripe_event_receive` (the view's one call) checks the Stripe-Signature header with the SDK
against each mode's webhook secret (the secret that verifies it is the event's mode, and the
event's own `livemode` must agree), stores the raw event, unique on (Stripe's event id, mode),
and has it processed after the commit. `stripe_event_process` (a Celery task's one call) locks
the row and acts only while it is still `received`: a duplicate delivery finds the row that
exists, a concurrent task waits for the lock and then finds it processed, and what a handler
does commits together with the row's new status. What each type does is in
`apps.cards.services.handlers`; a type without a handler is stored and ignored.
"""

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from apps.cards.models import StripeEvent
from apps.cards.stripe_client import stripe_settings
from apps.core.errors import ApiError, BadRequest
from apps.core.jobs import enqueue_after_commit
from apps.core.models import violated_constraint

logger = logging.getLogger(__name__)

# Processing that keeps raising (not a refusal by a service: a bug, a database that went away)
# is tried this many times, by the first task and then beat, before the event is left failed.
MAX_ATTEMPTS = 10
# How long an event may stay received before beat enqueues it again (its first task lost).
STUCK_AFTER = timedelta(seconds=60)
# How long an event about a payment not credited yet (a refund before the payment's own report)
# waits for it, retried by beat, before it is left failed: as long as Stripe retries a delivery.
WAIT_FOR_PAYMENT = timedelta(days=3)


@dataclass(frozen=True)
class Stored:
    event: StripeEvent
    created: bool


def _verified_mode(text: str, signature: str | None) -> bool:
    """The mode whose webhook secret signed `text`; BadRequest when none did."""
    if not signature:
        raise BadRequest("The Stripe-Signature header is missing.", code="STRIPE_SIGNATURE_INVALID")
    configured = False
    for livemode in (True, False):
        secret = stripe_settings(livemode=livemode).webhook_secret
        if not secret:
            continue
        configured = True
        try:
            stripe.WebhookSignature.verify_header(
                text, signature, secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError:
            continue
        return livemode
    if not configured:
        raise BadRequest(
            "No Stripe webhook secret is configured (STRIPE_WEBHOOK_SECRET, STRIPE_TEST_WEBHOOK_SECRET).",
            code="STRIPE_NOT_CONFIGURED",
        )
    raise BadRequest(
        "The Stripe-Signature header does not verify: a wrong secret, an altered body, or a timestamp "
        f"older than {settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS} s.",
        code="STRIPE_SIGNATURE_INVALID",
    )


def stripe_event_receive(*, payload: bytes, signature: str | None) -> Stored:
    """Verify and store one delivery; its processing is enqueued after the commit."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The body is not UTF-8.", code="STRIPE_EVENT_INVALID") from None
    livemode = _verified_mode(text, signature)
    try:
        event = json.loads(text)
    except ValueError:
        raise BadRequest("The body is not JSON.", code="STRIPE_EVENT_INVALID") from None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not event["id"].startswith("evt_")
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("data"), dict)
    ):
        raise BadRequest("The body is not a Stripe event (id evt_..., type, data).", code="STRIPE_EVENT_INVALID")
    if event.get("livemode", livemode) is not livemode:
        raise BadRequest(
            f"The event says livemode {event.get('livemode')} but is signed with the "
            f"{'live' if livemode else 'sandbox'} secret.",
            code="STRIPE_EVENT_INVALID",
        )
    with transaction.atomic():
        try:
            with transaction.atomic():
                row = StripeEvent.objects.create(
                    livemode=livemode, stripe_id=event["id"][:255], type=event["type"][:100], payload=event
                )
        except IntegrityError as exc:
            if violated_constraint(exc) != "stripe_event_unique_per_mode":
                raise
            return Stored(StripeEvent.objects.get(stripe_id=event["id"], livemode=livemode), created=False)
        _enqueue(row.id)
    return Stored(row, created=True)


def _enqueue(event_id) -> None:
    """Processed by a worker after the commit; with the broker out of reach, the event is stored
    all the same (Stripe, told 200, does not send it again) and beat's retry processes it."""
    from apps.cards.tasks import process_stripe_event

    enqueue_after_commit(process_stripe_event, str(event_id), caught_up_by="retry_stuck_stripe_events")


def stripe_event_process(*, event_id) -> str:
    """Process the event once (see the module); returns its status after."""
    from apps.cards.services.handlers import HANDLERS, PREPARE, NotYet

    row = StripeEvent.objects.filter(pk=event_id).first()
    if row is None:
        return "missing"
    if row.status != StripeEvent.Status.RECEIVED:
        return row.status
    prepared = None
    if row.type in PREPARE:
        # what the handler needs from Stripe, fetched before the transaction (never inside one)
        try:
            prepared = PREPARE[row.type](row)
        except Exception as exc:
            logger.warning("Stripe event %s (%s): fetching from Stripe failed: %s", row.stripe_id, row.type, exc)
            # left received for beat to try again, up to MAX_ATTEMPTS like any failure
            StripeEvent.objects.filter(pk=row.pk, status=StripeEvent.Status.RECEIVED).update(
                attempts=F("attempts") + 1,
                status=Case(
                    When(attempts__gte=MAX_ATTEMPTS - 1, then=Value(StripeEvent.Status.FAILED)),
                    default=Value(StripeEvent.Status.RECEIVED),
                ),
                last_error=f"{exc.__class__.__name__}: {exc}"[:5000],
                updated_at=timezone.now(),
            )
            return StripeEvent.objects.get(pk=row.pk).status
    with transaction.atomic():
        row = StripeEvent.objects.select_for_update().filter(pk=event_id).first()
        if row is None:
            return "missing"
        if row.status != StripeEvent.Status.RECEIVED:
            return row.status
        handler = HANDLERS.get(row.type)
        now = timezone.now()
        if handler is None:
            row.status, row.note = StripeEvent.Status.IGNORED, f"{row.type} is not handled."
        else:
            try:
                with transaction.atomic():
                    outcome = handler(row, prepared)
            except NotYet as exc:
                # about a payment not credited yet (its own report still to come): left received
                # for beat, for as long as Stripe itself goes on delivering an event (no error)
                row.note = str(exc)[:500]
                if now - row.created_at >= WAIT_FOR_PAYMENT:
                    row.status = StripeEvent.Status.FAILED
                    row.note = f"Its payment was still not credited {WAIT_FOR_PAYMENT.days} days later: {exc}"[:500]
                row.save(update_fields=["note", "status", "updated_at"])
                return row.status
            except ApiError as exc:
                # the service it reached refused it (money credited to another session): final
                row.status, row.note = StripeEvent.Status.FAILED, exc.message[:500]
                row.last_error = f"{exc.code}: {exc.message}"
            except Exception as exc:
                logger.exception("Stripe event %s (%s) failed to process", row.stripe_id, row.type)
                row.attempts += 1
                row.last_error = f"{exc.__class__.__name__}: {exc}"[:5000]
                if row.attempts >= MAX_ATTEMPTS:
                    row.status = StripeEvent.Status.FAILED
                    row.note = f"Failed {row.attempts} times; see the last error."
                row.save(update_fields=["attempts", "last_error", "status", "note", "updated_at"])
                return row.status
            else:
                row.status = StripeEvent.Status.PROCESSED if outcome.done else StripeEvent.Status.IGNORED
                row.note = outcome.note[:500]
        row.processed_at = now
        row.save(update_fields=["status", "note", "last_error", "processed_at", "updated_at"])
        return row.status


def stripe_events_stuck(*, limit: int = 500) -> list:
    """Ids of events still received a while after they arrived (their task lost, or failing)."""
    before = timezone.now() - STUCK_AFTER
    return list(
        StripeEvent.objects.filter(status=StripeEvent.Status.RECEIVED, updated_at__lt=before)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )


def stripe_events_retry(*, event_ids) -> int:
    """An operator's "process again" of failed events (their cause fixed): received again, their
    error count reset, each enqueued after the commit; processing is as idempotent as ever."""
    with transaction.atomic():
        ids = list(
            StripeEvent.objects.select_for_update()
            .filter(pk__in=list(event_ids), status=StripeEvent.Status.FAILED)
            .values_list("id", flat=True)
        )
        StripeEvent.objects.filter(pk__in=ids).update(
            status=StripeEvent.Status.RECEIVED,
            attempts=0,
            note="Queued again by an operator.",
            updated_at=timezone.now(),
        )
        for event_id in ids:
            _enqueue(event_id)
    return len(ids)
