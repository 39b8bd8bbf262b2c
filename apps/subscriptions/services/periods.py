"""Billing periods as rows: the first is created with its subscription, each next one by the
close of the one before; the beat moves each period open -> grace -> closed, once.

`periods_advance_many(subscription_ids)` makes every move that is due for a batch of
subscriptions (the beat's task sends a few hundred at once), set-wise: each round, in one
transaction, takes the oldest due period of each subscription and

- open, its end passed (and the settle time, below): moves it to grace, creates the next
  periods (one insert; none for a terminated subscription), and the `on_periods_ended`
  listeners write what each owes (the invoices app: their draft invoices);
- grace (or just moved there) with its grace window (USAGE_GRACE_PERIOD_SECONDS, the time late
  usage is accepted) and the settle time over: closes it, and the `on_periods_closed` listeners
  make it final. Without a grace window both moves are made in the one transaction.

Rounds go on while a subscription still has a move due (periods missed for a while).
`periods_advance(subscription_id)` is the same with a batch of one.

Each round locks the period rows it moves (FOR UPDATE SKIP LOCKED) and acts only on the rows
still where the move starts, so a rerun, a second worker or a task that comes back after a
crash changes nothing; a row locked by another worker is that worker's to move. When a batch's
transaction fails, each of its subscriptions is tried again in a transaction of its own, so
that one subscription's failure does not hold back the others. The settle time
(PERIOD_CLOSE_SETTLE_SECONDS) covers a usage request that was accepted just before the window
shut and commits just after: a period is read for its invoice only once every such request has
finished.
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.errors import Conflict
from apps.subscriptions.hooks import period_ended, period_was_cut, periods_closed, periods_ended
from apps.subscriptions.models import BillingPeriod, Subscription
from apps.subscriptions.periods import period_at
from apps.subscriptions.services.events import subscription_publish

logger = logging.getLogger(__name__)


def _grace() -> timedelta:
    return timedelta(seconds=settings.USAGE_GRACE_PERIOD_SECONDS)


def _settle() -> timedelta:
    return timedelta(seconds=settings.PERIOD_CLOSE_SETTLE_SECONDS)


def period_create(*, subscription: Subscription, start: datetime) -> BillingPeriod:
    """The period of `subscription` that starts at `start`, on its plan (created once: a second
    call, or a concurrent one, returns the same row). `start` begins a period of the plan's
    interval counted from the anchor, or is the moment of the last plan change."""
    interval = subscription.plan.billing_interval
    cycle_start, cycle_end = period_at(subscription.period_anchor, interval, start)
    if start not in (cycle_start, subscription.switched_at):
        raise ValueError(f"{start.isoformat()} does not start a period of subscription {subscription.id}")
    BillingPeriod.objects.bulk_create(
        [
            BillingPeriod(
                merchant_id=subscription.merchant_id,
                subscription=subscription,
                plan_id=subscription.plan_id,
                start=start,
                end=cycle_end,
                cycle_start=cycle_start,
                cycle_end=cycle_end,
            )
        ],
        ignore_conflicts=True,
    )
    return BillingPeriod.objects.get(merchant_id=subscription.merchant_id, subscription=subscription, start=start)


def period_first(*, subscription: Subscription) -> BillingPeriod:
    """The subscription's first period, created with it (in its transaction)."""
    return period_create(subscription=subscription, start=subscription.started_at)


def _switch_plan(subscription: Subscription, plan, at: datetime) -> None:
    """Put the (locked) subscription on `plan` from `at`: the anchor moves to `at` when the
    interval changes, else stays (the period begun at `at` ends at the old anchor's boundary)."""
    if plan.billing_interval != subscription.plan.billing_interval:
        subscription.period_anchor = at
    subscription.plan = plan
    subscription.switched_at = at
    subscription.scheduled_plan = None
    subscription.save(update_fields=["plan", "period_anchor", "switched_at", "scheduled_plan", "updated_at"])


def period_cut(*, subscription: Subscription, at: datetime, reason: str, plan=None) -> BillingPeriod:
    """End the (locked) subscription's open period at `at` for a plan change to `plan` or a
    termination (`reason`), in the caller's transaction: the period row is locked and must be
    open and contain `at` (409 PERIOD_CLOSING when its end has passed and the close is about to
    move it). The period moves to grace as at its end, with the `on_period_cut` listeners (the
    invoices app returns the unused share of its paid in-advance fees, or issues an unpaid fee
    invoice again for the share used) and the `on_period_ended` ones (its invoice, to `at`);
    a change begins the next period at `at` on the new plan."""
    period = (
        BillingPeriod.objects.select_for_update(of=("self",))
        .select_related("subscription__plan", "subscription__merchant", "subscription__customer", "plan")
        .filter(subscription=subscription, status=BillingPeriod.Status.OPEN, start__lte=at)
        .order_by("-start")
        .first()
    )
    if period is None or period.end <= at:
        ends = f" ended at {period.end.isoformat()} and" if period is not None else ""
        raise Conflict(
            f"The current period of subscription {subscription.id}{ends} is being closed; "
            f"try again in {settings.PERIOD_CLOSE_SETTLE_SECONDS + settings.PERIOD_CLOSE_INTERVAL_SECONDS} seconds.",
            code="PERIOD_CLOSING",
        )
    if period.start == at:
        raise Conflict(
            f"The current period of subscription {subscription.id} begins at this very instant; try again.",
            code="PERIOD_CLOSING",
        )
    period.subscription = subscription
    period.end = at
    period.end_reason = reason
    period.status = BillingPeriod.Status.GRACE
    period.ended_at = at
    period.save(update_fields=["end", "end_reason", "status", "ended_at", "updated_at"])
    if plan is not None:
        _switch_plan(subscription, plan, at)
        period_create(subscription=subscription, start=at)
    period_was_cut(period, at)
    period_ended(period)
    return period


def due_periods_filter(now: datetime) -> Q:
    """Periods with a move due at `now`."""
    return Q(status=BillingPeriod.Status.OPEN, end__lte=now - _settle()) | Q(
        status=BillingPeriod.Status.GRACE, end__lte=now - _grace() - _settle()
    )


def due_subscription_ids(*, now: datetime | None = None, limit: int = 10_000) -> list:
    """Subscriptions with a period move due (the beat enqueues them in batches)."""
    now = now or timezone.now()
    rows = (
        BillingPeriod.objects.filter(due_periods_filter(now))
        .order_by("end")
        .values_list("subscription_id", flat=True)[: limit * 2]
    )
    ids = list(dict.fromkeys(rows))
    return ids[:limit]


class PeriodsAdvanceFailed(Exception):
    """Some subscriptions of a batch could not be moved (each was tried on its own; the others
    were moved). The beat enqueues them again at its next tick."""

    def __init__(self, failed: dict):
        self.failed = failed
        super().__init__(
            f"{len(failed)} subscription(s) could not be moved: "
            + "; ".join(f"{subscription_id}: {error!r}" for subscription_id, error in list(failed.items())[:10])
        )


def _oldest_due(subscription_ids: Sequence, now: datetime) -> list:
    """The id of each subscription's oldest period with a move due (not locked)."""
    rows = (
        BillingPeriod.objects.filter(due_periods_filter(now), subscription_id__in=subscription_ids)
        .order_by("subscription_id", "start")
        .values_list("subscription_id", "id")
    )
    oldest: dict = {}
    for subscription_id, period_id in rows:
        oldest.setdefault(subscription_id, period_id)
    return list(oldest.values())


def _round(subscription_ids: Sequence, now: datetime) -> tuple[int, set]:
    """One round, in one transaction: the oldest due move (or both moves, when the grace is
    over too) of each subscription's period that no other worker holds. Returns the moves made
    and the subscriptions that made one."""
    with transaction.atomic():
        candidates = _oldest_due(subscription_ids, now)
        if not candidates:
            return 0, set()
        # A plan change scheduled for a period's end takes its subscription's lock before the
        # period's, in the order of a plan change or a termination (subscription, then period).
        scheduled = list(
            Subscription.objects.filter(periods__pk__in=candidates, scheduled_plan__isnull=False)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if scheduled:
            list(Subscription.objects.select_for_update(no_key=True).filter(pk__in=scheduled).order_by("pk"))
        # Locked, then read again: only the rows still due (a row moved by another worker since
        # is left out, one held by another worker skipped: that worker moves it).
        periods = list(
            BillingPeriod.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("subscription__plan", "subscription__merchant", "subscription__customer", "plan")
            .filter(due_periods_filter(now), pk__in=candidates)
            .order_by("end", "subscription_id")
        )
        if not periods:
            return 0, set()
        settled, graced = now - _settle(), now - _grace() - _settle()
        ending = [p for p in periods if p.status == BillingPeriod.Status.OPEN and p.end <= settled]
        closing = [p for p in periods if p.status == BillingPeriod.Status.GRACE or p in ending]
        closing = [p for p in closing if p.end <= graced]
        if ending:
            for period in ending:
                period.status, period.ended_at, period.updated_at = BillingPeriod.Status.GRACE, now, now
            BillingPeriod.objects.filter(pk__in=[p.pk for p in ending]).update(
                status=BillingPeriod.Status.GRACE, ended_at=now, updated_at=now
            )
            for period in ending:
                if period.subscription.scheduled_plan_id is not None:
                    _apply_scheduled(period.subscription, period)
            _create_next_periods(ending)
            periods_ended(ending)
        if closing:
            for period in closing:
                period.status, period.closed_at, period.updated_at = BillingPeriod.Status.CLOSED, now, now
            BillingPeriod.objects.filter(pk__in=[p.pk for p in closing]).update(
                status=BillingPeriod.Status.CLOSED, closed_at=now, updated_at=now
            )
            periods_closed(closing, {p.id for p in ending})
        return len(ending) + len(closing), {p.subscription_id for p in periods}


def _create_next_periods(ended: list[BillingPeriod]) -> None:
    """The period after each of these, on its subscription's plan (created once: a row that
    exists is left as it is), but for a terminated subscription."""
    rows = []
    for period in ended:
        subscription = period.subscription
        if subscription.status == Subscription.Status.TERMINATED:
            continue
        cycle_start, cycle_end = period_at(subscription.period_anchor, subscription.plan.billing_interval, period.end)
        rows.append(
            BillingPeriod(
                merchant_id=period.merchant_id,
                subscription=subscription,
                plan_id=subscription.plan_id,
                start=period.end,
                end=cycle_end,
                cycle_start=cycle_start,
                cycle_end=cycle_end,
            )
        )
    BillingPeriod.objects.bulk_create(rows, ignore_conflicts=True)


def _advance(subscription_ids: Sequence, now: datetime, max_rounds: int) -> int:
    moves, rounds, pending = 0, 0, list(subscription_ids)
    while pending and rounds < max_rounds:
        made, moved = _round(pending, now)
        if not made:
            break
        moves += made
        rounds += 1
        pending = [subscription_id for subscription_id in pending if subscription_id in moved]
    return moves


def periods_advance_many(*, subscription_ids: Sequence, now: datetime | None = None, max_rounds: int = 1000) -> int:
    """Make every period move due for these subscriptions (see the module); returns how many.
    A batch whose transaction fails is made again subscription by subscription; those that fail
    on their own too raise PeriodsAdvanceFailed once the others are moved."""
    now = now or timezone.now()
    subscription_ids = list(dict.fromkeys(uuid.UUID(str(subscription_id)) for subscription_id in subscription_ids))
    if len(subscription_ids) <= 1:
        return _advance(subscription_ids, now, max_rounds)
    try:
        return _advance(subscription_ids, now, max_rounds)
    except Exception:
        logger.exception("periods: a batch of %d subscriptions failed; moving each on its own", len(subscription_ids))
    moves, failed = 0, {}
    for subscription_id in subscription_ids:
        try:
            moves += _advance([subscription_id], now, max_rounds)
        except Exception as exc:
            logger.exception("periods: subscription %s could not be moved", subscription_id)
            failed[subscription_id] = exc
    if failed:
        raise PeriodsAdvanceFailed(failed)
    return moves


def _apply_scheduled(subscription: Subscription, period: BillingPeriod) -> Subscription:
    """A plan change scheduled for the period's end (effective period_end) takes effect there."""
    locked = Subscription.objects.select_for_update(no_key=True, of=("self",)).select_related("plan", "merchant")
    subscription = locked.get(pk=subscription.pk)
    if subscription.scheduled_plan_id is not None:
        _switch_plan(subscription, subscription.scheduled_plan, period.end)
        subscription_publish(subscription=subscription, type="subscription.updated")
    period.subscription = subscription
    return subscription


def periods_advance(*, subscription_id, now: datetime | None = None, max_steps: int = 1000) -> int:
    """Make every period move due for the subscription (see the module); returns how many."""
    return periods_advance_many(subscription_ids=[subscription_id], now=now, max_rounds=max_steps)
