"""Billing-period arithmetic for subscriptions: pure, ORM-free, UTC only.

Periods are anchored at the subscription's ``startedAt``. Period ``n`` is
``[anchor + n intervals, anchor + (n + 1) intervals)``. Months are always added
to the anchor itself, never chained from the previous period, with the day
clamped to the target month's last day: a monthly subscription started on
31 January renews on 28/29 February, 31 March, 30 April, 31 May. Chaining would
drift to the 28th for ever after one short month. The time of day is kept.

Daily and weekly intervals are fixed lengths (24 hours, 7 days), which is exact
because every computation happens in UTC, where days have no DST changes.

A tier's monthly quota period ("calendar months from startedAt, whatever the
billing interval") is ``period_at(started_at, Interval.MONTHLY, at)``.

Every datetime must be timezone-aware; it is converted to UTC before any
arithmetic, and every datetime returned is in UTC.
"""

import calendar
import enum
import operator
from datetime import UTC, datetime, timedelta
from fractions import Fraction

__all__ = [
    "INTERVALS",
    "Interval",
    "add_intervals",
    "fee_share",
    "period_at",
    "period_index_at",
    "periods_between",
    "proration_fraction",
    "running_period_at",
]


class Interval(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"


INTERVALS: tuple[str, ...] = tuple(interval.value for interval in Interval)

_FIXED_LENGTHS = {
    Interval.DAILY: timedelta(days=1),
    Interval.WEEKLY: timedelta(weeks=1),
}
_MONTH_COUNTS = {
    Interval.MONTHLY: 1,
    Interval.QUARTERLY: 3,
    Interval.YEARLY: 12,
}


def _interval(value: str) -> Interval:
    try:
        return Interval(value)
    except ValueError:
        allowed = ", ".join(INTERVALS)
        raise ValueError(f"unknown billing interval {value!r}; expected one of: {allowed}") from None


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


def _add_months(anchor: datetime, months: int) -> datetime:
    month_index = anchor.month - 1 + months
    year = anchor.year + month_index // 12
    month = month_index % 12 + 1
    if not 1 <= year <= 9999:
        raise ValueError(f"{months} months after {anchor.isoformat()} is out of range")
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def _shift(anchor: datetime, interval: Interval, n: int) -> datetime:
    """Period n's start; the anchor must already be in UTC."""
    if interval in _FIXED_LENGTHS:
        try:
            return anchor + _FIXED_LENGTHS[interval] * n
        except OverflowError:
            raise ValueError(f"{n} {interval.value} periods after {anchor.isoformat()} is out of range") from None
    return _add_months(anchor, _MONTH_COUNTS[interval] * n)


def _index(anchor: datetime, interval: Interval, at: datetime) -> int:
    """Index of the period containing ``at``; both already in UTC."""
    if at < anchor:
        raise ValueError(f"{at.isoformat()} is before the anchor {anchor.isoformat()}")
    if interval in _FIXED_LENGTHS:
        # timedelta floor division is exact to the microsecond.
        return (at - anchor) // _FIXED_LENGTHS[interval]
    months_apart = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    n = months_apart // _MONTH_COUNTS[interval]
    # Period n starts in at's month or an earlier one, and period n + 1 in a
    # later month; only when n starts in at's own month can it start after
    # ``at`` (a later day or time of day), and then n - 1 is the answer.
    if _shift(anchor, interval, n) > at:
        n -= 1
    return n


def add_intervals(anchor: datetime, interval: str, n: int) -> datetime:
    """The start of period ``n``: ``anchor`` plus ``n`` intervals, in UTC (n >= 0)."""
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"n must be zero or positive, got {n}")
    return _shift(_utc(anchor, "anchor"), _interval(interval), n)


def period_index_at(anchor: datetime, interval: str, at: datetime) -> int:
    """The index n of the period containing ``at`` (0 for the first period)."""
    return _index(_utc(anchor, "anchor"), _interval(interval), _utc(at, "at"))


def period_at(anchor: datetime, interval: str, at: datetime) -> tuple[datetime, datetime]:
    """The ``[start, end)`` period containing ``at``; a boundary opens a new period."""
    anchor = _utc(anchor, "anchor")
    interval = _interval(interval)
    n = _index(anchor, interval, _utc(at, "at"))
    return _shift(anchor, interval, n), _shift(anchor, interval, n + 1)


def periods_between(anchor: datetime, interval: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Every ``[start, end)`` period that overlaps ``[start, end)``, in order.

    No period exists before the anchor, so a range reaching back before it
    begins with period 0; an empty range overlaps nothing.
    """
    anchor = _utc(anchor, "anchor")
    interval = _interval(interval)
    start = _utc(start, "start")
    end = _utc(end, "end")
    if end < start:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    if end == start or end <= anchor:
        return []
    n = _index(anchor, interval, max(start, anchor))
    periods = []
    period_start = _shift(anchor, interval, n)
    while period_start < end:
        period_end = _shift(anchor, interval, n + 1)
        periods.append((period_start, period_end))
        n += 1
        period_start = period_end
    return periods


def proration_fraction(period_start: datetime, period_end: datetime, at: datetime) -> Fraction:
    """The share of ``[period_start, period_end)`` remaining after ``at``.

    1 at the start, 0 at the end. A ``Fraction`` (remaining microseconds over
    the period's microseconds) rather than a Decimal, so that nothing is rounded
    here and the caller rounds money once, where the amount is known.
    """
    period_start = _utc(period_start, "period_start")
    period_end = _utc(period_end, "period_end")
    at = _utc(at, "at")
    if period_end <= period_start:
        raise ValueError(f"period_end {period_end.isoformat()} must be after period_start {period_start.isoformat()}")
    if not period_start <= at <= period_end:
        raise ValueError(
            f"{at.isoformat()} is outside the period [{period_start.isoformat()}, {period_end.isoformat()}]"
        )
    microsecond = timedelta(microseconds=1)
    return Fraction((period_end - at) // microsecond, (period_end - period_start) // microsecond)


def running_period_at(
    anchor: datetime, interval: str, at: datetime, switched_at: datetime | None = None
) -> tuple[datetime, datetime]:
    """The ``[start, end)`` period containing ``at`` of a subscription whose plan last changed
    at ``switched_at``: the anchored period, begun at the switch when the switch lies inside it
    (a plan change keeps the anchor when the interval stays the same, so its first period runs
    from the switch to the old anchor's next boundary)."""
    start, end = period_at(anchor, interval, at)
    if switched_at is not None:
        switched_at = _utc(switched_at, "switched_at")
        if start < switched_at <= _utc(at, "at"):
            start = switched_at
    return start, end


def fee_share(start: datetime, end: datetime, cycle_start: datetime, cycle_end: datetime) -> Fraction:
    """The share of a whole period ``[cycle_start, cycle_end)`` that ``[start, end)`` covers,
    exact to the microsecond: 1 for a whole period, less for one begun or ended by a plan
    change or a termination (what its fees are prorated by)."""
    start, end = _utc(start, "start"), _utc(end, "end")
    cycle_start, cycle_end = _utc(cycle_start, "cycle_start"), _utc(cycle_end, "cycle_end")
    if cycle_end <= cycle_start:
        raise ValueError(f"cycle_end {cycle_end.isoformat()} must be after cycle_start {cycle_start.isoformat()}")
    if not cycle_start <= start <= end <= cycle_end:
        raise ValueError(
            f"[{start.isoformat()}, {end.isoformat()}) is not inside [{cycle_start.isoformat()}, {cycle_end.isoformat()})"
        )
    microsecond = timedelta(microseconds=1)
    return Fraction((end - start) // microsecond, (cycle_end - cycle_start) // microsecond)
