"""Billing periods as rows: the first is created with its subscription, each next one by the
close of the one before; the beat moves each period open -> grace -> closed, once.

`periods_advance(subscription_id)` does every move that is due for one subscription, each in
a transaction of its own, oldest period first:

- open, its end passed (and the settle time, below): the period moves to grace, the next one is
  created (unless the subscription is terminated), and the `on_period_ended` listeners write
  what it owes (the invoices app: its draft invoice);
- grace, its grace window (USAGE_GRACE_PERIOD_SECONDS, the time late usage is accepted) and the
  settle time over: it closes, and the `on_period_closed` listeners make it final.

Each move locks the period row and acts only if the row is still where the move starts, so a
rerun, a second worker or a task that comes back after a crash changes nothing. The settle
time (PERIOD_CLOSE_SETTLE_SECONDS) covers a usage request that was accepted just before the
window shut and commits just after: a period is read for its invoice only once every such
request has finished.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.errors import Conflict
from apps.subscriptions.hooks import period_closed, period_ended, period_was_cut
from apps.subscriptions.models import BillingPeriod, Subscription
from apps.subscriptions.periods import period_at
from apps.subscriptions.services.events import subscription_publish


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
    """Subscriptions with a period move due (the beat enqueues one task per id)."""
    now = now or timezone.now()
    rows = (
        BillingPeriod.objects.filter(due_periods_filter(now))
        .order_by("end")
        .values_list("subscription_id", flat=True)[: limit * 2]
    )
    ids = list(dict.fromkeys(rows))
    return ids[:limit]


def _step(subscription_id, now: datetime, ended_now: set) -> bool:
    """One due move of the subscription's oldest period that has one; whether one was made."""
    with transaction.atomic():
        found = (
            BillingPeriod.objects.filter(due_periods_filter(now), subscription_id=subscription_id)
            .order_by("start")
            .values_list("id", "subscription__scheduled_plan_id")
            .first()
        )
        if found is None:
            return False
        candidate, scheduled = found
        if scheduled is not None:
            # a scheduled plan change takes the subscription's lock: before the period's, in the
            # order of a plan change or termination, which lock the subscription then its period
            Subscription.objects.select_for_update(no_key=True, of=("self",)).filter(pk=subscription_id).first()
        period = (
            BillingPeriod.objects.select_for_update(of=("self",))
            .select_related("subscription__plan", "subscription__merchant", "subscription__customer", "plan")
            .get(pk=candidate)
        )
        if period.status == BillingPeriod.Status.OPEN and period.end <= now - _settle():
            period.status = BillingPeriod.Status.GRACE
            period.ended_at = now
            period.save(update_fields=["status", "ended_at", "updated_at"])
            subscription = period.subscription
            if subscription.status != Subscription.Status.TERMINATED:
                if subscription.scheduled_plan_id is not None:
                    subscription = _apply_scheduled(subscription, period)
                period_create(subscription=subscription, start=period.end)
            period_ended(period)
            ended_now.add(period.id)
            return True
        if period.status == BillingPeriod.Status.GRACE and period.end <= now - _grace() - _settle():
            period.status = BillingPeriod.Status.CLOSED
            period.closed_at = now
            period.save(update_fields=["status", "closed_at", "updated_at"])
            period_closed(period, period.id in ended_now)
            return True
        # moved by another worker since the read: look again
        return True


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
    now = now or timezone.now()
    ended_now: set = set()
    steps = 0
    while steps < max_steps and _step(subscription_id, now, ended_now):
        steps += 1
    return steps
