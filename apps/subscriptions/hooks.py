"""What subscriptions announce to the capabilities above them, without importing them.

Subscriptions own billing periods; invoicing (above) acts on them. Each capability registers
here, in its `AppConfig.ready()` (a subscription's start, below; its periods):

- `on_period_ended(listener)`: a period's end has passed and it moves to grace; the listener
  writes what the period owes (the invoices app: the period's draft invoice);
- `on_period_closed(listener)`: the period's grace is over and it closes; the listener makes
  final what it wrote (the invoices app: finalizes and collects the invoice);
- `on_period_cut(listener)`: a plan change or termination ended the period early (below).

A listener runs inside the transaction that moves the period, with the period row locked and
the subscription's row read (`period.subscription`); what it writes commits or rolls back
with the move, and a move happens once, so each listener runs once per period (a rerun, a
second worker, a task that comes back after a crash find the period moved and do nothing).
`fresh` tells `on_period_closed` whether nothing can have changed since `on_period_ended`
(both in one run, without a grace window), so that the listener need not compute again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.subscriptions.models import BillingPeriod, Subscription

PeriodEnded = Callable[["BillingPeriod"], None]
PeriodClosed = Callable[["BillingPeriod", bool], None]

PeriodCut = Callable[["BillingPeriod", datetime], None]

_ended: list[PeriodEnded] = []
_closed: list[PeriodClosed] = []
_cut: list[PeriodCut] = []


def on_period_ended(listener: PeriodEnded) -> None:
    if listener not in _ended:
        _ended.append(listener)


def on_period_closed(listener: PeriodClosed) -> None:
    if listener not in _closed:
        _closed.append(listener)


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
    for listener in _ended:
        listener(period)


def period_closed(period: BillingPeriod, fresh: bool) -> None:
    for listener in _closed:
        listener(period, fresh)


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
