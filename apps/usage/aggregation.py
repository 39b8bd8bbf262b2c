"""The aggregation engine of billable metrics, computed by the database.

A metric's usage is its UsageLine rows (one per event property reporting the metric) whose
timestamp falls in [start, end), excluding lines of refunded events. The metric's aggregation
reduces them to one number:

- SUM: the sum of `value` (the quantity, or the number under the metric's valueProperty);
- COUNT: the sum of `quantity` (a COUNT report usually sends 1; the contract bills SUM and COUNT
  metrics by the sum of quantities, so that each event can be priced on its own);
- AVG, MIN, MAX: over `value` (lines without a value are left out);
- UNIQUE_COUNT: the number of distinct non-blank `value_text`;
- LATEST: the `value` of the line with the greatest timestamp, ties broken by the event's
  created_at, then the line's id.

The total, the windows (UTC-aligned hours, days or months) and the groups (keys of the event's
`metadata`) take one query each. AVG is the exact sum divided by the count in Python, rounded
half-even to 12 places once, so that it does not depend on PostgreSQL's division scale.
"""

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Count, DecimalField, F, Func, Max, Min, Q, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, Trunc

from apps.catalog.models import Aggregation, BillableMetric
from apps.core.fields import AmountField
from apps.core.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, MONEY_CONTEXT, ZERO, round_amount
from apps.usage.models import UsageLine

UTC = dt.UTC


class WindowSize:
    HOUR = "HOUR"
    DAY = "DAY"
    MONTH = "MONTH"
    CHOICES = (HOUR, DAY, MONTH)


# More buckets than this is a request for a different window size (366 days of hours is 8,784).
MAX_WINDOWS = 9000

# Aggregations whose value over an empty set is 0 rather than "no value".
ZERO_WHEN_EMPTY = (Aggregation.SUM, Aggregation.COUNT, Aggregation.UNIQUE_COUNT)

_TRUNC_KIND = {WindowSize.HOUR: "hour", WindowSize.DAY: "day", WindowSize.MONTH: "month"}


class TooManyWindows(ValueError):
    pass


@dataclass
class AggregationResult:
    aggregation: str
    total: Decimal | None
    windows: list[tuple[dt.datetime, dt.datetime, Decimal | None]] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)


def _decimal_field():
    return DecimalField(max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES)


class _First(Func):
    """`(array)[1]`: the first element of an ordered ARRAY_AGG."""

    template = "(%(expressions)s)[1]"


def _latest_value():
    return _First(
        ArrayAgg(
            "value",
            order_by=(F("timestamp").desc(), F("event__created_at").desc(), F("id").desc()),
            filter=Q(value__isnull=False),
        ),
        output_field=_decimal_field(),
    )


def _aggregates(aggregation: str) -> dict:
    """The database aggregates that `_finish` turns into the metric's value."""
    if aggregation == Aggregation.SUM:
        return {"v": Coalesce(Sum("value"), ZERO, output_field=AmountField())}
    if aggregation == Aggregation.COUNT:
        return {"v": Coalesce(Sum("quantity"), ZERO, output_field=AmountField())}
    if aggregation == Aggregation.AVG:
        return {"v_sum": Sum("value"), "v_count": Count("value")}
    if aggregation == Aggregation.MIN:
        return {"v": Min("value")}
    if aggregation == Aggregation.MAX:
        return {"v": Max("value")}
    if aggregation == Aggregation.UNIQUE_COUNT:
        return {"v": Count("value_text", distinct=True, filter=~Q(value_text=""))}
    if aggregation == Aggregation.LATEST:
        return {"v": _latest_value()}
    raise ValueError(f"unknown aggregation {aggregation!r}")


def _finish(aggregation: str, row: dict | None) -> Decimal | None:
    if row is None:
        return ZERO if aggregation in ZERO_WHEN_EMPTY else None
    if aggregation == Aggregation.AVG:
        if not row["v_count"]:
            return None
        return round_amount(MONEY_CONTEXT.divide(row["v_sum"], Decimal(row["v_count"])))
    value = row["v"]
    if isinstance(value, int):
        value = Decimal(value)
    return value


def truncate(moment: dt.datetime, window: str) -> dt.datetime:
    """The UTC-aligned start of the window holding `moment` (what date_trunc computes)."""
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if window == WindowSize.HOUR:
        return moment
    moment = moment.replace(hour=0)
    if window == WindowSize.DAY:
        return moment
    if window == WindowSize.MONTH:
        return moment.replace(day=1)
    raise ValueError(f"unknown window size {window!r}")


def next_window(window_start: dt.datetime, window: str) -> dt.datetime:
    if window == WindowSize.HOUR:
        return window_start + dt.timedelta(hours=1)
    if window == WindowSize.DAY:
        return window_start + dt.timedelta(days=1)
    if window == WindowSize.MONTH:
        if window_start.month == 12:
            return window_start.replace(year=window_start.year + 1, month=1)
        return window_start.replace(month=window_start.month + 1)
    raise ValueError(f"unknown window size {window!r}")


def window_starts(start: dt.datetime, end: dt.datetime, window: str) -> list[dt.datetime]:
    """The aligned starts of the windows that overlap [start, end); TooManyWindows past MAX_WINDOWS."""
    starts = []
    current = truncate(start, window)
    while current < end:
        starts.append(current)
        if len(starts) > MAX_WINDOWS:
            raise TooManyWindows(f"more than {MAX_WINDOWS} {window} windows between {start} and {end}")
        current = next_window(current, window)
    return starts


def usage_lines(
    *,
    merchant,
    metric: BillableMetric,
    start,
    end,
    customer_id=None,
    subscription_id=None,
    price_id=None,
    payment_term: str | None = None,
):
    """The lines a meter aggregates: the metric's, in [start, end), of events not refunded.

    `price_id` and `payment_term` select the lines priced by one price, or on one term: what
    an invoice bills. A metric can be priced instant by one price and in_arrears by another in
    one period (a plan switched to a new price); invoicing its in_arrears usage must not count
    the lines already charged instantly."""
    queryset = UsageLine.objects.filter(
        merchant=merchant,
        billable_metric=metric,
        timestamp__gte=start,
        timestamp__lt=end,
        event__refunded_at__isnull=True,
    )
    if customer_id is not None:
        queryset = queryset.filter(customer_id=customer_id)
    if subscription_id is not None:
        queryset = queryset.filter(subscription_id=subscription_id)
    if price_id is not None:
        queryset = queryset.filter(price_id=price_id)
    if payment_term is not None:
        queryset = queryset.filter(payment_term=payment_term)
    return queryset


def aggregate(
    *,
    merchant,
    metric: BillableMetric,
    start: dt.datetime,
    end: dt.datetime,
    customer_id=None,
    subscription_id=None,
    price_id=None,
    payment_term: str | None = None,
    group_by: list[str] | None = None,
    window: str | None = None,
) -> AggregationResult:
    """The metric's usage over [start, end): its total, and where asked its windows and groups.

    `price_id` and `payment_term` keep only the lines priced by that price, or on that term
    (see `usage_lines`): billing aggregates what one price bills, never what another charged.

    `windows` lists (window_start, window_end, value) for every UTC-aligned window that overlaps
    [start, end), the first and last clipped to the range (only usage inside it is counted);
    windows without usage hold 0 for SUM/COUNT/UNIQUE_COUNT and None otherwise. `groups` lists
    {"group": {key: value or None}, "value"} for every combination of the keys found in the
    events' metadata, in key order.
    """
    if metric.merchant_id != merchant.id:
        raise ValueError("the metric belongs to another merchant")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    aggregation = metric.aggregation
    aggregates = _aggregates(aggregation)
    lines = usage_lines(
        merchant=merchant,
        metric=metric,
        start=start,
        end=end,
        customer_id=customer_id,
        subscription_id=subscription_id,
        price_id=price_id,
        payment_term=payment_term,
    )

    total_row = lines.aggregate(**aggregates)
    result = AggregationResult(aggregation=aggregation, total=_finish(aggregation, total_row))

    if window is not None:
        starts = window_starts(start, end, window)
        rows = (
            lines.annotate(bucket=Trunc("timestamp", _TRUNC_KIND[window], tzinfo=UTC))
            .values("bucket")
            .annotate(**aggregates)
            .order_by("bucket")
        )
        by_bucket = {row["bucket"]: row for row in rows}
        for bucket in starts:
            result.windows.append(
                (
                    max(bucket, start),
                    min(next_window(bucket, window), end),
                    _finish(aggregation, by_bucket.get(bucket)),
                )
            )

    if group_by:
        # Aliases stand in for the keys, which may be any string.
        aliases = {f"group_{index}": key for index, key in enumerate(group_by)}
        rows = (
            lines.annotate(**{alias: KeyTextTransform(key, "event__metadata") for alias, key in aliases.items()})
            .values(*aliases)
            .annotate(**aggregates)
            .order_by(*(F(alias).asc(nulls_last=True) for alias in aliases))
        )
        for row in rows:
            result.groups.append(
                {
                    "group": {key: row[alias] for alias, key in aliases.items()},
                    "value": _finish(aggregation, row),
                }
            )
    return result


def format_value(value: Decimal | None) -> str | None:
    """A meter value as the API renders it: exact, without trailing zeros or exponent ("1.5", "100")."""
    if value is None:
        return None
    if value == 0:
        return "0"
    return format(value.normalize(context=MONEY_CONTEXT), "f")
