"""What subscriptions announce to the capabilities above them, without importing them.

Subscriptions own billing periods; invoicing (above) acts on them. Each capability registers
here, in its `AppConfig.ready()`:

- `on_period_ended(listener)`: a period's end has passed and it moves to grace; the listener
  writes what the period owes (the invoices app: the period's draft invoice);
- `on_period_closed(listener)`: the period's grace is over and it closes; the listener makes
  final what it wrote (the invoices app: finalizes and collects the invoice).

A listener runs inside the transaction that moves the period, with the period row locked and
the subscription's row read (`period.subscription`); what it writes commits or rolls back
with the move, and a move happens once, so each listener runs once per period (a rerun, a
second worker, a task that comes back after a crash find the period moved and do nothing).
`fresh` tells `on_period_closed` whether nothing can have changed since `on_period_ended`
(both in one run, without a grace window), so that the listener need not compute again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.subscriptions.models import BillingPeriod

PeriodEnded = Callable[["BillingPeriod"], None]
PeriodClosed = Callable[["BillingPeriod", bool], None]

_ended: list[PeriodEnded] = []
_closed: list[PeriodClosed] = []


def on_period_ended(listener: PeriodEnded) -> None:
    if listener not in _ended:
        _ended.append(listener)


def on_period_closed(listener: PeriodClosed) -> None:
    if listener not in _closed:
        _closed.append(listener)


def period_ended(period: BillingPeriod) -> None:
    for listener in _ended:
        listener(period)


def period_closed(period: BillingPeriod, fresh: bool) -> None:
    for listener in _closed:
        listener(period, fresh)
