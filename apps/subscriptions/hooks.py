"""What subscriptions announce to the capabilities above them, without importing them.

Subscriptions own billing periods; invoicing (above) acts on them. Each capability registers
here, in its `AppConfig.ready()` (a subscription's start, below; its periods):

- `on_periods_ended(listener)`: `listener(periods)`: these periods' ends have passed and they
  move to grace; the listener writes what each period owes (the invoices app: their draft
  invoices, set-wise);
- `on_periods_closed(listener)`: `listener(periods, fresh)`: their grace is over and they close;
  the listener makes final what it wrote (the invoices app: finalizes and collects the
  invoices). `fresh` holds the ids of the periods whose end was acted on in the same
  transaction (both moves at once, without a grace window): nothing can have changed since
  `on_periods_ended`, so the listener need not compute again.

The beat's close moves many subscriptions' periods in one transaction and announces them in one
call; a plan change or a termination announces one period (`period_ended(period)`,
`period_closed(period, fresh)`: a list of one). A listener that handles one period at a time
registers with `on_period_ended(listener)` / `on_period_closed(listener)` and is called once per
period, after the set-wise listeners registered before it. `on_period_cut(listener)`: a plan
change or termination ended the period early (below), before its `period_ended`.

A listener runs inside the transaction that moves the periods, with the period rows locked and
each subscription's row read (`period.subscription`, its plan, merchant and customer); what it
writes commits or rolls back with the move, and a move happens once, so each listener runs once
per period (a rerun, a second worker, a task that comes back after a crash find the period
moved, or locked by the worker moving it, and do nothing).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.subscriptions.models import BillingPeriod, Subscription

PeriodsEnded = Callable[[list["BillingPeriod"]], None]
PeriodsClosed = Callable[[list["BillingPeriod"], Collection], None]
PeriodEnded = Callable[["BillingPeriod"], None]
PeriodClosed = Callable[["BillingPeriod", bool], None]
PeriodCut = Callable[["BillingPeriod", datetime], None]

_ended: list[PeriodsEnded] = []
_closed: list[PeriodsClosed] = []
_cut: list[PeriodCut] = []
# one-period listeners, by the set-wise adapter registered for them (so that a second
# registration of the same listener keeps one)
_each_ended: dict[PeriodEnded, PeriodsEnded] = {}
_each_closed: dict[PeriodClosed, PeriodsClosed] = {}


def on_periods_ended(listener: PeriodsEnded) -> None:
    if listener not in _ended:
        _ended.append(listener)


def on_periods_closed(listener: PeriodsClosed) -> None:
    if listener not in _closed:
        _closed.append(listener)


def on_period_ended(listener: PeriodEnded) -> None:
    """Register a listener called once per ended period: `listener(period)`."""
    if listener not in _each_ended:

        def each(periods):
            for period in periods:
                listener(period)

        _each_ended[listener] = each
        on_periods_ended(each)


def on_period_closed(listener: PeriodClosed) -> None:
    """Register a listener called once per closed period: `listener(period, fresh)`."""
    if listener not in _each_closed:

        def each(periods, fresh):
            for period in periods:
                listener(period, period.id in fresh)

        _each_closed[listener] = each
        on_periods_closed(each)


def periods_ended(periods: list[BillingPeriod]) -> None:
    if periods:
        for listener in _ended:
            listener(periods)


def periods_closed(periods: list[BillingPeriod], fresh: Collection) -> None:
    if periods:
        for listener in _closed:
            listener(periods, fresh)


def on_period_cut(listener: PeriodCut) -> None:
    """`listener(period, at)`: a plan change or a termination (`period.end_reason`) ended the
    period early, at `at` (= `period.end`), before `on_period_ended` runs for it; the listener
    settles what was paid ahead for the time after `at` (the invoices app: the unused share of
    in-advance fees returned to the wallet, an unpaid fee invoice issued again for the share
    used). Same transaction and locks as the other period listeners."""
    if listener not in _cut:
        _cut.append(listener)


def period_was_cut(period: BillingPeriod, at: datetime) -> None:
    for listener in _cut:
        listener(period, at)


def period_ended(period: BillingPeriod) -> None:
    periods_ended([period])


def period_closed(period: BillingPeriod, fresh: bool) -> None:
    periods_closed([period], {period.id} if fresh else set())


# --- a subscription's start ----------------------------------------------------------------------


@dataclass(frozen=True)
class StartCharge:
    """What a capability asks at a subscription's start beside its prefund: `amount` still due
    on `invoice_id` (the start invoice), collected with the activation session."""

    amount: Decimal
    invoice_id: uuid.UUID


SubscriptionCreated = Callable[["Subscription"], "StartCharge | None"]
ActivationPaid = Callable[[object, Decimal], Decimal]
ActivationExpired = Callable[[object], None]

_created: list[SubscriptionCreated] = []
_activation_paid: list[ActivationPaid] = []
_activation_expired: list[ActivationExpired] = []


def on_subscription_created(listener: SubscriptionCreated) -> None:
    """`listener(subscription)`, in the creating transaction once the subscription and its first
    period exist, may return a StartCharge (the invoices app: the start invoice's fee)."""
    if listener not in _created:
        _created.append(listener)


def on_activation_paid(listener: ActivationPaid) -> None:
    """`listener(session, amount)`: money for an activation session arrived (credited to the
    wallet); returns what of it the listener applied first (the start invoice), the rest being
    the prefund."""
    if listener not in _activation_paid:
        _activation_paid.append(listener)


def on_activation_expired(listener: ActivationExpired) -> None:
    """`listener(session)`: an activation session expired unpaid (the start invoice is voided)."""
    if listener not in _activation_expired:
        _activation_expired.append(listener)


def subscription_created(subscription: Subscription) -> list[StartCharge]:
    return [charge for charge in (listener(subscription) for listener in _created) if charge is not None]


def activation_paid(session, amount: Decimal) -> Decimal:
    applied = Decimal(0)
    for listener in _activation_paid:
        applied += listener(session, amount - applied)
    return applied


def activation_expired(session) -> None:
    for listener in _activation_expired:
        listener(session)


# --- a subscription's changes -------------------------------------------------------------------

SubscriptionChanged = Callable[["Subscription"], None]
TerminationRequested = Callable[["Subscription"], bool]

_changed: list[SubscriptionChanged] = []
_termination: list[TerminationRequested] = []


def on_subscription_changed(listener: SubscriptionChanged) -> None:
    """`listener(subscription)`: what the API shows of it changed (each subscription.* event),
    inside the change's transaction (the API-keys app reads the tier again after the commit)."""
    if listener not in _changed:
        _changed.append(listener)


def on_termination_requested(listener: TerminationRequested) -> None:
    """`listener(subscription)` -> True when it handled a termination instead of it, in its
    transaction with the subscription locked (the API-keys app: a paid tier goes back to free,
    and its keys keep working)."""
    if listener not in _termination:
        _termination.append(listener)


def subscription_changed(subscription: Subscription) -> None:
    for listener in _changed:
        listener(subscription)


def termination_handled(subscription: Subscription) -> bool:
    return any(listener(subscription) for listener in _termination)
