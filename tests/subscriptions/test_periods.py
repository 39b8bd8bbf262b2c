from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import pytest

from apps.subscriptions import periods
from apps.subscriptions.periods import (
    INTERVALS,
    Interval,
    add_intervals,
    period_at,
    period_index_at,
    periods_between,
    proration_fraction,
)

US = timedelta(microseconds=1)
EST = timezone(timedelta(hours=-5))
IST = timezone(timedelta(hours=5, minutes=30))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_intervals_are_the_five_api_names():
    assert INTERVALS == ("daily", "weekly", "monthly", "quarterly", "yearly")
    assert [interval.value for interval in Interval] == list(INTERVALS)


# (anchor, interval, n, expected start of period n)
ADD_INTERVALS_CASES = [
    # Period 0 is the anchor itself.
    (utc(2024, 1, 31, 10, 30), "monthly", 0, utc(2024, 1, 31, 10, 30)),
    # Monthly from 31 January: clamped, then back to the 31st (never chained).
    (utc(2023, 1, 31, 10, 30), "monthly", 1, utc(2023, 2, 28, 10, 30)),
    (utc(2023, 1, 31, 10, 30), "monthly", 2, utc(2023, 3, 31, 10, 30)),
    (utc(2023, 1, 31, 10, 30), "monthly", 3, utc(2023, 4, 30, 10, 30)),
    (utc(2023, 1, 31, 10, 30), "monthly", 4, utc(2023, 5, 31, 10, 30)),
    (utc(2024, 1, 31, 10, 30), "monthly", 1, utc(2024, 2, 29, 10, 30)),
    (utc(2024, 1, 31, 10, 30), "monthly", 2, utc(2024, 3, 31, 10, 30)),
    # 30 and 29 January.
    (utc(2023, 1, 30), "monthly", 1, utc(2023, 2, 28)),
    (utc(2023, 1, 30), "monthly", 2, utc(2023, 3, 30)),
    (utc(2024, 1, 30), "monthly", 1, utc(2024, 2, 29)),
    (utc(2023, 1, 29), "monthly", 1, utc(2023, 2, 28)),
    (utc(2023, 1, 29), "monthly", 2, utc(2023, 3, 29)),
    (utc(2024, 1, 29), "monthly", 1, utc(2024, 2, 29)),
    # 28 February stays on the 28th, even in a leap February.
    (utc(2023, 2, 28), "monthly", 1, utc(2023, 3, 28)),
    (utc(2023, 2, 28), "monthly", 12, utc(2024, 2, 28)),
    # Across year ends.
    (
        utc(2023, 12, 31, 23, 59, 59, 999999),
        "monthly",
        1,
        utc(2024, 1, 31, 23, 59, 59, 999999),
    ),
    (utc(2023, 12, 31), "monthly", 2, utc(2024, 2, 29)),
    (utc(2023, 11, 30), "monthly", 3, utc(2024, 2, 29)),
    # Century years: 2100 is not a leap year, 2000 is.
    (utc(2100, 1, 31), "monthly", 1, utc(2100, 2, 28)),
    (utc(2000, 1, 31), "monthly", 1, utc(2000, 2, 29)),
    # Quarterly from an end of quarter.
    (utc(2024, 3, 31, 8), "quarterly", 1, utc(2024, 6, 30, 8)),
    (utc(2024, 3, 31, 8), "quarterly", 2, utc(2024, 9, 30, 8)),
    (utc(2024, 3, 31, 8), "quarterly", 3, utc(2024, 12, 31, 8)),
    (utc(2024, 3, 31, 8), "quarterly", 4, utc(2025, 3, 31, 8)),
    (utc(2023, 11, 30), "quarterly", 1, utc(2024, 2, 29)),
    (utc(2023, 11, 30), "quarterly", 2, utc(2024, 5, 30)),
    (utc(2023, 12, 31), "quarterly", 1, utc(2024, 3, 31)),
    (utc(2099, 11, 30), "quarterly", 1, utc(2100, 2, 28)),
    (utc(2023, 10, 31), "quarterly", 1, utc(2024, 1, 31)),
    # Yearly from a leap day.
    (utc(2024, 2, 29, 12), "yearly", 1, utc(2025, 2, 28, 12)),
    (utc(2024, 2, 29, 12), "yearly", 2, utc(2026, 2, 28, 12)),
    (utc(2024, 2, 29, 12), "yearly", 3, utc(2027, 2, 28, 12)),
    (utc(2024, 2, 29, 12), "yearly", 4, utc(2028, 2, 29, 12)),
    (utc(2096, 2, 29), "yearly", 4, utc(2100, 2, 28)),
    (utc(1996, 2, 29), "yearly", 4, utc(2000, 2, 29)),
    (utc(2000, 2, 29), "yearly", 100, utc(2100, 2, 28)),
    (utc(2000, 2, 29), "yearly", 400, utc(2400, 2, 29)),
    (utc(2023, 12, 31, 23), "yearly", 1, utc(2024, 12, 31, 23)),
    # Daily and weekly are fixed lengths in UTC, through leap days and year ends.
    (utc(2024, 2, 28, 23), "daily", 1, utc(2024, 2, 29, 23)),
    (utc(2024, 2, 28, 23), "daily", 2, utc(2024, 3, 1, 23)),
    (utc(2100, 2, 28), "daily", 1, utc(2100, 3, 1)),
    (utc(2000, 2, 28), "daily", 1, utc(2000, 2, 29)),
    (utc(2023, 12, 31, 12), "daily", 1, utc(2024, 1, 1, 12)),
    (utc(2024, 1, 1), "daily", 365, utc(2024, 12, 31)),
    (utc(2023, 1, 1), "daily", 365, utc(2024, 1, 1)),
    (utc(2024, 1, 31), "daily", 1, utc(2024, 2, 1)),
    (utc(2024, 2, 26, 6), "weekly", 1, utc(2024, 3, 4, 6)),
    (utc(2023, 12, 28), "weekly", 1, utc(2024, 1, 4)),
    (utc(2100, 2, 22), "weekly", 1, utc(2100, 3, 1)),
    (utc(2000, 2, 22), "weekly", 1, utc(2000, 2, 29)),
    (utc(2024, 1, 31), "weekly", 1, utc(2024, 2, 7)),
    # 50 years out.
    (utc(2024, 1, 31, 9), "monthly", 600, utc(2074, 1, 31, 9)),
    (utc(2024, 1, 31, 9), "monthly", 601, utc(2074, 2, 28, 9)),
    (utc(2024, 1, 31, 9), "quarterly", 200, utc(2074, 1, 31, 9)),
    (utc(2024, 2, 29, 9), "yearly", 50, utc(2074, 2, 28, 9)),
    (utc(2024, 2, 29, 9), "yearly", 52, utc(2076, 2, 29, 9)),
    (utc(2024, 1, 31, 9), "daily", 18305, utc(2074, 3, 14, 9)),
    (utc(2024, 1, 31, 9), "weekly", 2615, utc(2074, 3, 14, 9)),
]


@pytest.mark.parametrize(("anchor", "interval", "n", "expected"), ADD_INTERVALS_CASES)
def test_add_intervals_adds_to_the_anchor_and_clamps_to_month_end(anchor, interval, n, expected):
    result = add_intervals(anchor, interval, n)
    assert result == expected
    assert result.tzinfo is UTC


def test_add_intervals_accepts_the_enum():
    assert add_intervals(utc(2024, 1, 31), Interval.QUARTERLY, 1) == utc(2024, 4, 30)


# (anchor, interval, at, expected (start, end))
PERIOD_AT_CASES = [
    pytest.param(
        utc(2024, 1, 31),
        "monthly",
        utc(2024, 1, 31),
        (utc(2024, 1, 31), utc(2024, 2, 29)),
        id="monthly-at-anchor",
    ),
    pytest.param(
        utc(2024, 1, 31),
        "monthly",
        utc(2024, 2, 29),
        (utc(2024, 2, 29), utc(2024, 3, 31)),
        id="monthly-boundary-opens-new-period",
    ),
    pytest.param(
        utc(2024, 1, 31),
        "monthly",
        utc(2024, 2, 29) - US,
        (utc(2024, 1, 31), utc(2024, 2, 29)),
        id="monthly-microsecond-before-boundary",
    ),
    pytest.param(
        utc(2024, 1, 31, 15),
        "monthly",
        utc(2024, 2, 29, 14, 59, 59, 999999),
        (utc(2024, 1, 31, 15), utc(2024, 2, 29, 15)),
        id="monthly-same-day-earlier-time",
    ),
    pytest.param(
        utc(2024, 1, 31, 15),
        "monthly",
        utc(2024, 3, 30, 23),
        (utc(2024, 2, 29, 15), utc(2024, 3, 31, 15)),
        id="monthly-same-month-earlier-day",
    ),
    pytest.param(
        utc(2023, 1, 31),
        "monthly",
        utc(2023, 4, 30),
        (utc(2023, 4, 30), utc(2023, 5, 31)),
        id="monthly-clamped-boundary",
    ),
    pytest.param(
        utc(2023, 12, 31, 23),
        "monthly",
        utc(2024, 1, 1),
        (utc(2023, 12, 31, 23), utc(2024, 1, 31, 23)),
        id="monthly-year-end",
    ),
    pytest.param(
        utc(2100, 1, 31),
        "monthly",
        utc(2100, 3, 1),
        (utc(2100, 2, 28), utc(2100, 3, 31)),
        id="monthly-2100-not-leap",
    ),
    pytest.param(
        utc(2000, 1, 31),
        "monthly",
        utc(2000, 2, 29),
        (utc(2000, 2, 29), utc(2000, 3, 31)),
        id="monthly-2000-leap",
    ),
    pytest.param(
        utc(2024, 3, 31),
        "quarterly",
        utc(2024, 6, 30),
        (utc(2024, 6, 30), utc(2024, 9, 30)),
        id="quarterly-boundary",
    ),
    pytest.param(
        utc(2024, 3, 31),
        "quarterly",
        utc(2024, 6, 30) - US,
        (utc(2024, 3, 31), utc(2024, 6, 30)),
        id="quarterly-microsecond-before-boundary",
    ),
    pytest.param(
        utc(2024, 3, 31),
        "quarterly",
        utc(2025, 1, 15),
        (utc(2024, 12, 31), utc(2025, 3, 31)),
        id="quarterly-year-end",
    ),
    pytest.param(
        utc(2024, 2, 29, 12),
        "yearly",
        utc(2025, 2, 28, 12),
        (utc(2025, 2, 28, 12), utc(2026, 2, 28, 12)),
        id="yearly-leap-day-boundary",
    ),
    pytest.param(
        utc(2024, 2, 29, 12),
        "yearly",
        utc(2025, 2, 28, 12) - US,
        (utc(2024, 2, 29, 12), utc(2025, 2, 28, 12)),
        id="yearly-leap-day-microsecond-before",
    ),
    pytest.param(
        utc(2024, 2, 29, 12),
        "yearly",
        utc(2028, 2, 28, 13),
        (utc(2027, 2, 28, 12), utc(2028, 2, 29, 12)),
        id="yearly-2028-leap",
    ),
    pytest.param(
        utc(2096, 2, 29),
        "yearly",
        utc(2100, 3, 1),
        (utc(2100, 2, 28), utc(2101, 2, 28)),
        id="yearly-2100-not-leap",
    ),
    pytest.param(
        utc(1996, 2, 29),
        "yearly",
        utc(2000, 2, 29),
        (utc(2000, 2, 29), utc(2001, 2, 28)),
        id="yearly-2000-leap",
    ),
    pytest.param(
        utc(2024, 2, 28, 6),
        "daily",
        utc(2024, 2, 29, 6),
        (utc(2024, 2, 29, 6), utc(2024, 3, 1, 6)),
        id="daily-boundary",
    ),
    pytest.param(
        utc(2024, 2, 28, 6),
        "daily",
        utc(2024, 2, 29, 6) - US,
        (utc(2024, 2, 28, 6), utc(2024, 2, 29, 6)),
        id="daily-microsecond-before-boundary",
    ),
    pytest.param(
        utc(2023, 12, 31, 18),
        "daily",
        utc(2024, 1, 1, 17),
        (utc(2023, 12, 31, 18), utc(2024, 1, 1, 18)),
        id="daily-year-end",
    ),
    pytest.param(
        utc(2024, 2, 26),
        "weekly",
        utc(2024, 3, 4),
        (utc(2024, 3, 4), utc(2024, 3, 11)),
        id="weekly-boundary",
    ),
    pytest.param(
        utc(2024, 2, 26),
        "weekly",
        utc(2024, 3, 4) - US,
        (utc(2024, 2, 26), utc(2024, 3, 4)),
        id="weekly-microsecond-before-boundary",
    ),
    pytest.param(
        utc(2024, 1, 31, 9),
        "daily",
        utc(2074, 3, 15, 8),
        (utc(2074, 3, 14, 9), utc(2074, 3, 15, 9)),
        id="daily-50-years",
    ),
    pytest.param(
        utc(2024, 1, 31, 9),
        "weekly",
        utc(2074, 3, 15, 8),
        (utc(2074, 3, 14, 9), utc(2074, 3, 21, 9)),
        id="weekly-50-years",
    ),
    pytest.param(
        utc(2024, 1, 31, 9),
        "monthly",
        utc(2074, 3, 15, 8),
        (utc(2074, 2, 28, 9), utc(2074, 3, 31, 9)),
        id="monthly-50-years",
    ),
    pytest.param(
        utc(2024, 1, 31, 9),
        "quarterly",
        utc(2074, 3, 15, 8),
        (utc(2074, 1, 31, 9), utc(2074, 4, 30, 9)),
        id="quarterly-50-years",
    ),
    pytest.param(
        utc(2024, 1, 31, 9),
        "yearly",
        utc(2074, 3, 15, 8),
        (utc(2074, 1, 31, 9), utc(2075, 1, 31, 9)),
        id="yearly-50-years",
    ),
]


@pytest.mark.parametrize(("anchor", "interval", "at", "expected"), PERIOD_AT_CASES)
def test_period_at_returns_the_period_containing_at(anchor, interval, at, expected):
    start, end = period_at(anchor, interval, at)
    assert (start, end) == expected
    assert start.tzinfo is UTC
    assert end.tzinfo is UTC
    n = period_index_at(anchor, interval, at)
    assert add_intervals(anchor, interval, n) == start
    assert add_intervals(anchor, interval, n + 1) == end


@pytest.mark.parametrize(
    ("anchor", "interval", "at", "expected"),
    [
        (utc(2024, 1, 31), "monthly", utc(2024, 1, 31), 0),
        (utc(2024, 1, 31), "monthly", utc(2024, 2, 29) - US, 0),
        (utc(2024, 1, 31), "monthly", utc(2024, 2, 29), 1),
        (utc(2024, 1, 31, 9), "monthly", utc(2074, 3, 15, 8), 601),
        (utc(2024, 1, 31, 9), "quarterly", utc(2074, 3, 15, 8), 200),
        (utc(2024, 1, 31, 9), "yearly", utc(2074, 1, 31, 9) - US, 49),
        (utc(2024, 1, 31, 9), "yearly", utc(2074, 1, 31, 9), 50),
        (utc(2024, 1, 31, 9), "daily", utc(2074, 3, 15, 8), 18305),
        (utc(2024, 1, 31, 9), "weekly", utc(2074, 3, 15, 8), 2615),
    ],
)
def test_period_index_at(anchor, interval, at, expected):
    assert period_index_at(anchor, interval, at) == expected


ORACLE_ANCHORS = [
    utc(2024, 1, 31, 23, 59, 59, 999999),
    utc(2023, 1, 29, 12),
    utc(2024, 2, 29),
    utc(2023, 3, 31, 6, 30),
    utc(2023, 12, 31, 1),
    utc(2000, 2, 29, 0, 0, 0, 1),
]


@pytest.mark.parametrize("anchor", ORACLE_ANCHORS)
@pytest.mark.parametrize("interval", INTERVALS)
def test_periods_tile_and_match_dateutil_over_50_years(anchor, interval):
    relativedelta = pytest.importorskip("dateutil.relativedelta").relativedelta
    steps = {
        "daily": relativedelta(days=1),
        "weekly": relativedelta(weeks=1),
        "monthly": relativedelta(months=1),
        "quarterly": relativedelta(months=3),
        "yearly": relativedelta(years=1),
    }
    count = {"daily": 18300, "weekly": 2610, "monthly": 600, "quarterly": 200}
    stride = {"daily": 97, "weekly": 13}
    for n in range(0, count.get(interval, 50), stride.get(interval, 1)):
        # relativedelta also adds to the anchor and clamps to the month end.
        start = anchor + steps[interval] * n
        end = anchor + steps[interval] * (n + 1)
        assert add_intervals(anchor, interval, n) == start
        assert period_at(anchor, interval, start) == (start, end)
        assert period_at(anchor, interval, end - US) == (start, end)
        assert period_index_at(anchor, interval, start + (end - start) / 2) == n


def test_period_at_computes_the_index_without_walking_the_periods(monkeypatch):
    calls = []
    shift = periods._shift

    def counting_shift(*args):
        calls.append(args)
        return shift(*args)

    monkeypatch.setattr(periods, "_shift", counting_shift)
    for interval in INTERVALS:
        calls.clear()
        period_at(utc(2024, 1, 31, 9), interval, utc(2074, 3, 15, 8))
        assert len(calls) <= 3, interval


NAIVE = datetime(2024, 1, 31)
AWARE = utc(2024, 1, 31)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: add_intervals(NAIVE, "monthly", 1), id="add_intervals"),
        pytest.param(lambda: period_at(NAIVE, "monthly", AWARE), id="period_at-anchor"),
        pytest.param(lambda: period_at(AWARE, "monthly", NAIVE), id="period_at-at"),
        pytest.param(lambda: period_index_at(NAIVE, "daily", AWARE), id="index-anchor"),
        pytest.param(lambda: period_index_at(AWARE, "daily", NAIVE), id="index-at"),
        pytest.param(lambda: periods_between(NAIVE, "weekly", AWARE, AWARE), id="between-anchor"),
        pytest.param(lambda: periods_between(AWARE, "weekly", NAIVE, AWARE), id="between-start"),
        pytest.param(lambda: periods_between(AWARE, "weekly", AWARE, NAIVE), id="between-end"),
        pytest.param(
            lambda: proration_fraction(NAIVE, utc(2024, 2, 1), AWARE),
            id="proration-start",
        ),
        pytest.param(
            lambda: proration_fraction(AWARE, datetime(2024, 2, 1), AWARE),
            id="proration-end",
        ),
        pytest.param(lambda: proration_fraction(AWARE, utc(2024, 2, 1), NAIVE), id="proration-at"),
    ],
)
def test_naive_datetimes_are_rejected(call):
    with pytest.raises(ValueError, match="timezone-aware"):
        call()


def test_a_date_is_not_a_datetime():
    with pytest.raises(TypeError, match="must be a datetime"):
        add_intervals(AWARE.date(), "monthly", 1)


def test_non_utc_anchor_is_converted_before_adding_months():
    # 20:00 on 31 January at UTC-5 is 01:00 on 1 February in UTC, so the
    # subscription renews on the 1st; local arithmetic would give 29 February.
    anchor = datetime(2024, 1, 31, 20, tzinfo=EST)
    result = add_intervals(anchor, "monthly", 1)
    assert result == utc(2024, 3, 1, 1)
    assert result.tzinfo is UTC
    assert result.utcoffset() == timedelta(0)


def test_non_utc_at_is_converted():
    anchor = utc(2024, 1, 31)
    # 05:29:59.999999 on 29 February at UTC+5:30 is still 28 February in UTC.
    before = datetime(2024, 2, 29, 5, 29, 59, 999999, tzinfo=IST)
    at_boundary = datetime(2024, 2, 29, 5, 30, tzinfo=IST)
    assert period_at(anchor, "monthly", before) == (utc(2024, 1, 31), utc(2024, 2, 29))
    start, end = period_at(anchor, "monthly", at_boundary)
    assert (start, end) == (utc(2024, 2, 29), utc(2024, 3, 31))
    assert start.tzinfo is UTC


@pytest.mark.parametrize("interval", ["hourly", "Monthly", "", "month", None])
def test_unknown_interval_names_the_allowed_ones(interval):
    with pytest.raises(ValueError, match="daily, weekly, monthly, quarterly, yearly"):
        add_intervals(AWARE, interval, 1)
    with pytest.raises(ValueError, match="unknown billing interval"):
        period_at(AWARE, interval, AWARE)


def test_negative_n_is_rejected():
    with pytest.raises(ValueError, match="zero or positive"):
        add_intervals(AWARE, "monthly", -1)


def test_fractional_n_is_rejected():
    with pytest.raises(TypeError):
        add_intervals(AWARE, "daily", 1.5)


@pytest.mark.parametrize("interval", INTERVALS)
def test_at_before_the_anchor_is_rejected(interval):
    with pytest.raises(ValueError, match="before the anchor"):
        period_at(AWARE, interval, AWARE - US)
    with pytest.raises(ValueError, match="before the anchor"):
        period_index_at(AWARE, interval, AWARE - US)


@pytest.mark.parametrize("interval", INTERVALS)
def test_beyond_the_datetime_range_is_a_value_error(interval):
    with pytest.raises(ValueError, match="out of range"):
        add_intervals(utc(9999, 6, 1), interval, 10_000)


PERIODS_BETWEEN_CASES = [
    pytest.param(
        utc(2024, 1, 31),
        "monthly",
        utc(2024, 2, 15),
        utc(2024, 5, 1),
        [
            (utc(2024, 1, 31), utc(2024, 2, 29)),
            (utc(2024, 2, 29), utc(2024, 3, 31)),
            (utc(2024, 3, 31), utc(2024, 4, 30)),
            (utc(2024, 4, 30), utc(2024, 5, 31)),
        ],
        id="monthly-partial-ends",
    ),
    pytest.param(
        utc(2024, 1, 31),
        "monthly",
        utc(2024, 2, 29),
        utc(2024, 3, 31),
        [(utc(2024, 2, 29), utc(2024, 3, 31))],
        id="exactly-one-period-end-exclusive",
    ),
    pytest.param(
        utc(2024, 1, 31),
        "monthly",
        utc(2024, 2, 29) - US,
        utc(2024, 2, 29) + US,
        [(utc(2024, 1, 31), utc(2024, 2, 29)), (utc(2024, 2, 29), utc(2024, 3, 31))],
        id="straddling-a-boundary",
    ),
    pytest.param(
        utc(2024, 1, 31),
        "quarterly",
        utc(2020, 1, 1),
        utc(2024, 5, 1),
        [(utc(2024, 1, 31), utc(2024, 4, 30)), (utc(2024, 4, 30), utc(2024, 7, 31))],
        id="start-before-anchor-begins-at-period-0",
    ),
    pytest.param(
        utc(2024, 1, 31),
        "daily",
        utc(2024, 1, 1),
        utc(2024, 1, 31),
        [],
        id="ends-at-anchor",
    ),
    pytest.param(
        utc(2024, 1, 31),
        "weekly",
        utc(2024, 3, 1),
        utc(2024, 3, 1),
        [],
        id="empty-range",
    ),
    pytest.param(
        utc(2023, 12, 30, 12),
        "daily",
        utc(2023, 12, 31),
        utc(2024, 1, 1, 12),
        [
            (utc(2023, 12, 30, 12), utc(2023, 12, 31, 12)),
            (utc(2023, 12, 31, 12), utc(2024, 1, 1, 12)),
        ],
        id="daily-year-end",
    ),
    pytest.param(
        utc(2024, 2, 29),
        "yearly",
        utc(2026, 6, 1),
        utc(2028, 3, 1),
        [
            (utc(2026, 2, 28), utc(2027, 2, 28)),
            (utc(2027, 2, 28), utc(2028, 2, 29)),
            (utc(2028, 2, 29), utc(2029, 2, 28)),
        ],
        id="yearly-leap-day",
    ),
    pytest.param(
        utc(2024, 1, 31, 9),
        "monthly",
        utc(2074, 2, 1),
        utc(2074, 4, 1),
        [
            (utc(2074, 1, 31, 9), utc(2074, 2, 28, 9)),
            (utc(2074, 2, 28, 9), utc(2074, 3, 31, 9)),
            (utc(2074, 3, 31, 9), utc(2074, 4, 30, 9)),
        ],
        id="monthly-50-years",
    ),
]


@pytest.mark.parametrize(("anchor", "interval", "start", "end", "expected"), PERIODS_BETWEEN_CASES)
def test_periods_between_lists_the_overlapping_periods(anchor, interval, start, end, expected):
    assert periods_between(anchor, interval, start, end) == expected


def test_periods_between_rejects_a_reversed_range():
    with pytest.raises(ValueError, match="before start"):
        periods_between(AWARE, "monthly", utc(2024, 3, 1), utc(2024, 2, 1))


PRORATION_CASES = [
    pytest.param(utc(2024, 2, 29), utc(2024, 3, 31), utc(2024, 2, 29), Fraction(1), id="at-start"),
    pytest.param(utc(2024, 2, 29), utc(2024, 3, 31), utc(2024, 3, 31), Fraction(0), id="at-end"),
    pytest.param(
        utc(2024, 2, 29),
        utc(2024, 3, 31),
        utc(2024, 3, 15),
        Fraction(16, 31),
        id="middle-of-31-days",
    ),
    pytest.param(
        utc(2023, 2, 1),
        utc(2023, 3, 1),
        utc(2023, 2, 15),
        Fraction(1, 2),
        id="half-of-february",
    ),
    pytest.param(
        utc(2024, 1, 1),
        utc(2024, 1, 1, 0, 0, 3),
        utc(2024, 1, 1, 0, 0, 1),
        Fraction(2, 3),
        id="thirds-of-seconds-exact",
    ),
    pytest.param(
        utc(2024, 2, 29),
        utc(2024, 3, 31),
        utc(2024, 3, 31) - US,
        Fraction(1, 31 * 86_400 * 1_000_000),
        id="one-microsecond-left",
    ),
    pytest.param(
        utc(2024, 1, 1),
        utc(2025, 1, 1),
        datetime(2024, 7, 1, 5, 30, tzinfo=IST),
        Fraction(184, 366),
        id="non-utc-at",
    ),
]


@pytest.mark.parametrize(("start", "end", "at", "expected"), PRORATION_CASES)
def test_proration_fraction_is_the_exact_share_remaining(start, end, at, expected):
    result = proration_fraction(start, end, at)
    assert isinstance(result, Fraction)
    assert result == expected


@pytest.mark.parametrize(
    ("start", "end", "at"),
    [
        (utc(2024, 2, 1), utc(2024, 3, 1), utc(2024, 2, 1) - US),
        (utc(2024, 2, 1), utc(2024, 3, 1), utc(2024, 3, 1) + US),
        (utc(2024, 3, 1), utc(2024, 2, 1), utc(2024, 2, 15)),
        (utc(2024, 3, 1), utc(2024, 3, 1), utc(2024, 3, 1)),
    ],
)
def test_proration_fraction_rejects_at_outside_or_an_empty_period(start, end, at):
    with pytest.raises(ValueError):
        proration_fraction(start, end, at)
