"""The aggregation engine against hand-computed values."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.catalog.models import Aggregation, PaymentTerm, Price
from apps.subscriptions.periods import period_at
from apps.usage.aggregation import MAX_WINDOWS, TooManyWindows, aggregate, format_value
from apps.usage.models import UsageLine
from tests.factories import MerchantFactory, sandbox_of
from tests.usage.rows import UsageWorld, at
from tests.usage.world import Billing

START = at("2025-03-01T00:00")
END = at("2025-04-01T00:00")


@pytest.fixture
def world(merchant):
    return UsageWorld(merchant)


def total(world, metric, start=START, end=END, **kwargs):
    return aggregate(merchant=world.merchant, metric=metric, start=start, end=end, **kwargs).total


# --- each aggregation ----------------------------------------------------------------------------


def test_sum_adds_the_values_under_the_value_property(world):
    metric = world.metric(Aggregation.SUM, value_property="tokens")
    world.report(metric, "2025-03-02T00:00", value="2.5")
    world.report(metric, "2025-03-03T00:00", value="3")
    world.report(metric, "2025-03-04T00:00", value="4.25")
    world.report(metric, "2025-03-04T00:00", value=None)  # no `tokens` in that event

    assert total(world, metric) == Decimal("9.75")


def test_count_bills_the_sum_of_quantities_not_the_number_of_events(world):
    metric = world.metric(Aggregation.COUNT)
    world.report(metric, "2025-03-02T00:00", quantity="1")
    world.report(metric, "2025-03-02T01:00", quantity="1")
    world.report(metric, "2025-03-02T02:00", quantity="3")

    assert total(world, metric) == Decimal("5")


def test_avg_is_the_exact_mean_rounded_half_even_to_12_places(world):
    metric = world.metric(Aggregation.AVG)
    for value in ("1", "2", "2"):
        world.report(metric, "2025-03-02T00:00", value=value)

    assert total(world, metric) == Decimal("1.666666666667")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("0.000000000001", "0.000000000002"), Decimal("0.000000000002")),  # ...15 -> even 2
        (("0.000000000001", "0.000000000000"), Decimal("0.000000000000")),  # ...05 -> even 0
        (("0.000000000003", "0.000000000004"), Decimal("0.000000000004")),  # ...35 -> even 4
    ],
)
def test_avg_rounds_a_half_to_even(world, values, expected):
    metric = world.metric(Aggregation.AVG)
    for value in values:
        world.report(metric, "2025-03-02T00:00", value=value)

    assert total(world, metric) == expected


def test_avg_min_max_leave_out_lines_without_a_value(world):
    avg = world.metric(Aggregation.AVG, value_property="latency")
    low = world.metric(Aggregation.MIN, value_property="latency")
    high = world.metric(Aggregation.MAX, value_property="latency")
    for metric in (avg, low, high):
        world.report(metric, "2025-03-02T00:00", value="-1.5")
        world.report(metric, "2025-03-02T00:00", value="3")
        world.report(metric, "2025-03-02T00:00", value="2")
        world.report(metric, "2025-03-02T00:00", value=None)

    assert total(world, avg) == Decimal("1.166666666667")
    assert total(world, low) == Decimal("-1.5")
    assert total(world, high) == Decimal("3")


def test_unique_count_counts_distinct_strings_and_ignores_blanks(world):
    metric = world.metric(Aggregation.UNIQUE_COUNT, value_property="userId")
    for text in ("alice", "bob", "alice", "Alice", ""):
        world.report(metric, "2025-03-02T00:00", value=None, value_text=text)

    assert total(world, metric) == Decimal("3")


def test_latest_is_the_value_with_the_greatest_timestamp_whatever_the_order_of_reports(world):
    metric = world.metric(Aggregation.LATEST, value_property="seats")
    world.report(metric, "2025-03-20T00:00", value="7")
    world.report(metric, "2025-03-02T00:00", value="9")  # reported later, about an earlier moment

    assert total(world, metric) == Decimal("7")


def test_latest_breaks_a_timestamp_tie_by_the_event_created_last(world):
    metric = world.metric(Aggregation.LATEST, value_property="seats")
    world.report(metric, "2025-03-20T00:00", value="5", created_at=at("2025-03-21T00:00"))
    world.report(metric, "2025-03-20T00:00", value="6", created_at=at("2025-03-20T12:00"))

    assert total(world, metric) == Decimal("5")


def test_latest_breaks_a_full_tie_by_the_greatest_line_id(world):
    metric = world.metric(Aggregation.LATEST, value_property="seats")
    created = at("2025-03-21T00:00")
    lines = [world.report(metric, "2025-03-20T00:00", value=str(n), created_at=created) for n in range(1, 6)]

    assert total(world, metric) == max(lines, key=lambda line: line.id).value


def test_latest_skips_a_later_line_without_a_value(world):
    metric = world.metric(Aggregation.LATEST, value_property="seats")
    world.report(metric, "2025-03-10T00:00", value="4")
    world.report(metric, "2025-03-11T00:00", value=None)

    assert total(world, metric) == Decimal("4")


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        (Aggregation.SUM, Decimal("0")),
        (Aggregation.COUNT, Decimal("0")),
        (Aggregation.UNIQUE_COUNT, Decimal("0")),
        (Aggregation.AVG, None),
        (Aggregation.MIN, None),
        (Aggregation.MAX, None),
        (Aggregation.LATEST, None),
    ],
)
def test_a_metric_without_usage(world, aggregation, expected):
    metric = world.metric(aggregation)

    result = total(world, metric)

    if expected is None:
        assert result is None
    else:
        assert result == expected


# --- time range ----------------------------------------------------------------------------------


def test_the_range_includes_its_start_and_excludes_its_end(world):
    metric = world.metric(Aggregation.SUM)
    world.report(metric, START - dt.timedelta(microseconds=1), quantity="100")
    world.report(metric, START, quantity="1")
    world.report(metric, END - dt.timedelta(microseconds=1), quantity="2")
    world.report(metric, END, quantity="1000")

    assert total(world, metric) == Decimal("3")


# --- windows -------------------------------------------------------------------------------------


def test_hour_windows_are_utc_aligned_clipped_to_the_range_and_include_empty_hours(world):
    metric = world.metric(Aggregation.SUM)
    world.report(metric, "2025-03-01T10:15", quantity="100")  # same hour, before the range
    world.report(metric, "2025-03-01T10:45", quantity="1")
    world.report(metric, "2025-03-01T12:10", quantity="2")
    world.report(metric, "2025-03-01T12:59", quantity="3")
    world.report(metric, "2025-03-01T13:00", quantity="1000")  # at the end, excluded

    result = aggregate(
        merchant=world.merchant, metric=metric, start=at("2025-03-01T10:30"), end=at("2025-03-01T13:00"), window="HOUR"
    )

    assert result.windows == [
        (at("2025-03-01T10:30"), at("2025-03-01T11:00"), Decimal("1")),
        (at("2025-03-01T11:00"), at("2025-03-01T12:00"), Decimal("0")),
        (at("2025-03-01T12:00"), at("2025-03-01T13:00"), Decimal("5")),
    ]
    assert result.total == Decimal("6")


def test_day_windows_of_min_hold_none_for_days_without_usage(world):
    metric = world.metric(Aggregation.MIN, value_property="latency")
    world.report(metric, "2025-03-01T23:59:59", value="4")
    world.report(metric, "2025-03-01T08:00", value="6")
    world.report(metric, "2025-03-03T00:00", value="2")

    result = aggregate(
        merchant=world.merchant, metric=metric, start=at("2025-03-01T00:00"), end=at("2025-03-04T00:00"), window="DAY"
    )

    assert result.windows == [
        (at("2025-03-01T00:00"), at("2025-03-02T00:00"), Decimal("4")),
        (at("2025-03-02T00:00"), at("2025-03-03T00:00"), None),
        (at("2025-03-03T00:00"), at("2025-03-04T00:00"), Decimal("2")),
    ]


def test_month_windows_cross_a_year_and_have_calendar_lengths(world):
    metric = world.metric(Aggregation.UNIQUE_COUNT, value_property="userId")
    world.report(metric, "2024-11-20T00:00", value=None, value_text="a")
    world.report(metric, "2024-11-21T00:00", value=None, value_text="a")
    world.report(metric, "2025-01-31T23:00", value=None, value_text="a")
    world.report(metric, "2025-02-01T00:00", value=None, value_text="b")
    world.report(metric, "2025-02-28T00:00", value=None, value_text="c")

    result = aggregate(
        merchant=world.merchant,
        metric=metric,
        start=at("2024-11-15T00:00"),
        end=at("2025-03-01T00:00"),
        window="MONTH",
    )

    assert result.windows == [
        (at("2024-11-15T00:00"), at("2024-12-01T00:00"), Decimal("1")),
        (at("2024-12-01T00:00"), at("2025-01-01T00:00"), Decimal("0")),
        (at("2025-01-01T00:00"), at("2025-02-01T00:00"), Decimal("1")),
        (at("2025-02-01T00:00"), at("2025-03-01T00:00"), Decimal("2")),
    ]
    assert result.total == Decimal("3")  # distinct over the range, not the sum of the windows


def test_windows_of_latest_and_avg(world):
    latest = world.metric(Aggregation.LATEST, value_property="seats")
    avg = world.metric(Aggregation.AVG, value_property="seats")
    for metric in (latest, avg):
        world.report(metric, "2025-03-01T01:00", value="3")
        world.report(metric, "2025-03-01T02:00", value="4")
        world.report(metric, "2025-03-03T05:00", value="10")

    kwargs = {"merchant": world.merchant, "start": at("2025-03-01"), "end": at("2025-03-04"), "window": "DAY"}

    assert [w[2] for w in aggregate(metric=latest, **kwargs).windows] == [Decimal("4"), None, Decimal("10")]
    assert [w[2] for w in aggregate(metric=avg, **kwargs).windows] == [Decimal("3.5"), None, Decimal("10")]


def test_windows_with_timestamps_in_another_offset_are_aligned_to_utc(world):
    metric = world.metric(Aggregation.COUNT)
    paris = dt.timezone(dt.timedelta(hours=1))
    world.report(metric, dt.datetime(2025, 3, 2, 0, 30, tzinfo=paris))  # 2025-03-01T23:30Z

    result = aggregate(
        merchant=world.merchant,
        metric=metric,
        start=dt.datetime(2025, 3, 1, 1, 0, tzinfo=paris),
        end=dt.datetime(2025, 3, 3, 1, 0, tzinfo=paris),
        window="DAY",
    )

    assert result.windows == [
        (at("2025-03-01T00:00"), at("2025-03-02T00:00"), Decimal("1")),
        (at("2025-03-02T00:00"), at("2025-03-03T00:00"), Decimal("0")),
    ]


def test_more_windows_than_the_limit_is_refused(world):
    metric = world.metric(Aggregation.SUM)
    start = at("2020-01-01T00:00")

    with pytest.raises(TooManyWindows):
        aggregate(
            merchant=world.merchant,
            metric=metric,
            start=start,
            end=start + dt.timedelta(hours=MAX_WINDOWS + 1),
            window="HOUR",
        )
    exactly = aggregate(
        merchant=world.merchant, metric=metric, start=start, end=start + dt.timedelta(hours=MAX_WINDOWS), window="HOUR"
    )
    assert len(exactly.windows) == MAX_WINDOWS


# --- groups --------------------------------------------------------------------------------------


def test_group_by_one_key_with_a_group_for_events_without_it(world):
    metric = world.metric(Aggregation.SUM, group_by=["region"])
    world.report(metric, "2025-03-02T00:00", quantity="1", metadata={"region": "us"})
    world.report(metric, "2025-03-02T00:00", quantity="2", metadata={"region": "eu"})
    world.report(metric, "2025-03-02T00:00", quantity="4", metadata={"region": "us"})
    world.report(metric, "2025-03-02T00:00", quantity="8", metadata={})

    result = aggregate(merchant=world.merchant, metric=metric, start=START, end=END, group_by=["region"])

    assert result.groups == [
        {"group": {"region": "eu"}, "value": Decimal("2")},
        {"group": {"region": "us"}, "value": Decimal("5")},
        {"group": {"region": None}, "value": Decimal("8")},
    ]
    assert result.total == Decimal("15")


def test_group_by_two_keys(world):
    metric = world.metric(Aggregation.MAX, value_property="ms", group_by=["region", "model"])
    world.report(metric, "2025-03-02T00:00", value="10", metadata={"region": "us", "model": "small"})
    world.report(metric, "2025-03-02T00:00", value="30", metadata={"region": "us", "model": "small"})
    world.report(metric, "2025-03-02T00:00", value="20", metadata={"region": "us", "model": "large"})
    world.report(metric, "2025-03-02T00:00", value="5", metadata={"region": "eu", "model": "small"})
    world.report(metric, "2025-03-02T00:00", value="7", metadata={"region": "eu", "model": 3})

    result = aggregate(merchant=world.merchant, metric=metric, start=START, end=END, group_by=["region", "model"])

    assert result.groups == [
        {"group": {"region": "eu", "model": "3"}, "value": Decimal("7")},
        {"group": {"region": "eu", "model": "small"}, "value": Decimal("5")},
        {"group": {"region": "us", "model": "large"}, "value": Decimal("20")},
        {"group": {"region": "us", "model": "small"}, "value": Decimal("30")},
    ]


def test_group_by_unique_count_and_latest(world):
    unique = world.metric(Aggregation.UNIQUE_COUNT, value_property="userId", group_by=["plan"])
    latest = world.metric(Aggregation.LATEST, value_property="seats", group_by=["plan"])
    world.report(unique, "2025-03-02T00:00", value=None, value_text="a", metadata={"plan": "pro"})
    world.report(unique, "2025-03-03T00:00", value=None, value_text="a", metadata={"plan": "pro"})
    world.report(unique, "2025-03-03T00:00", value=None, value_text="b", metadata={"plan": "pro"})
    world.report(unique, "2025-03-03T00:00", value=None, value_text="a", metadata={"plan": "free"})
    world.report(latest, "2025-03-05T00:00", value="3", metadata={"plan": "pro"})
    world.report(latest, "2025-03-04T00:00", value="8", metadata={"plan": "pro"})
    world.report(latest, "2025-03-01T00:00", value="1", metadata={"plan": "free"})

    kwargs = {"merchant": world.merchant, "start": START, "end": END, "group_by": ["plan"]}

    assert aggregate(metric=unique, **kwargs).groups == [
        {"group": {"plan": "free"}, "value": Decimal("1")},
        {"group": {"plan": "pro"}, "value": Decimal("2")},
    ]
    assert aggregate(metric=latest, **kwargs).groups == [
        {"group": {"plan": "free"}, "value": Decimal("1")},
        {"group": {"plan": "pro"}, "value": Decimal("3")},
    ]


def test_total_windows_and_groups_take_three_queries(world, django_assert_num_queries):
    metric = world.metric(Aggregation.LATEST, value_property="seats", group_by=["region"])
    for day in range(1, 20):
        world.report(metric, f"2025-03-{day:02d}T00:00", value=str(day), metadata={"region": f"r{day % 3}"})

    with django_assert_num_queries(3):
        result = aggregate(
            merchant=world.merchant, metric=metric, start=START, end=END, window="DAY", group_by=["region"]
        )

    assert result.total == Decimal("19")
    assert len(result.windows) == 31
    assert [g["value"] for g in result.groups] == [Decimal("18"), Decimal("19"), Decimal("17")]


# --- what is never counted -----------------------------------------------------------------------


def test_refunded_events_are_excluded(world):
    metric = world.metric(Aggregation.SUM)
    world.report(metric, "2025-03-02T00:00", quantity="5")
    world.report(metric, "2025-03-02T00:00", quantity="7", refunded=True)

    result = aggregate(merchant=world.merchant, metric=metric, start=START, end=END, window="MONTH", group_by=["x"])

    assert result.total == Decimal("5")
    assert result.windows[0][2] == Decimal("5")
    assert result.groups == [{"group": {"x": None}, "value": Decimal("5")}]


def test_customer_and_subscription_filters_exclude_other_usage(world):
    metric = world.metric(Aggregation.SUM)
    other_customer, other_subscription = world.another_customer("other@example.com")
    world.report(metric, "2025-03-02T00:00", quantity="5")
    world.report(metric, "2025-03-02T00:00", quantity="7", customer=other_customer, subscription=other_subscription)

    assert total(world, metric) == Decimal("12")
    assert total(world, metric, customer_id=world.customer.id) == Decimal("5")
    assert total(world, metric, customer_id=other_customer.id) == Decimal("7")
    assert total(world, metric, subscription_id=other_subscription.id) == Decimal("7")
    assert total(world, metric, customer_id=world.customer.id, subscription_id=other_subscription.id) == Decimal("0")


def test_price_and_payment_term_filters_keep_only_the_lines_one_price_bills(world):
    metric = world.metric(Aggregation.SUM)
    arrears = metric.prices.get()
    instant = world.price(metric, PaymentTerm.INSTANT)
    world.report(metric, "2025-03-02T00:00", quantity="5", price=instant, metadata={"region": "eu"})
    world.report(metric, "2025-03-20T00:00", quantity="7", price=arrears, metadata={"region": "eu"})
    world.report(metric, "2025-03-21T00:00", quantity="11", price=arrears, refunded=True)

    assert total(world, metric) == Decimal("12")
    assert total(world, metric, payment_term=PaymentTerm.IN_ARREARS) == Decimal("7")
    assert total(world, metric, payment_term=PaymentTerm.INSTANT) == Decimal("5")
    assert total(world, metric, price_id=arrears.id) == Decimal("7")
    assert total(world, metric, price_id=instant.id) == Decimal("5")
    assert total(world, metric, price_id=instant.id, payment_term=PaymentTerm.IN_ARREARS) == Decimal("0")
    result = aggregate(
        merchant=world.merchant,
        metric=metric,
        start=START,
        end=END,
        payment_term=PaymentTerm.IN_ARREARS,
        window="MONTH",
        group_by=["region"],
    )
    assert result.windows[0][2] == Decimal("7")
    assert result.groups == [{"group": {"region": "eu"}, "value": Decimal("7")}]


def test_in_arrears_billing_after_a_plan_switch_never_counts_usage_charged_instantly(api):
    """A metric priced instant, then (the plan switched to a new price) in_arrears, in one period:
    aggregating what the in_arrears price bills counts only its own usage."""
    billing = Billing(api.merchant)
    metric = billing.metric(aggregation="SUM", properties={"unitPrice": "0.01"})
    instant = Price.objects.get(billable_metric=metric)
    billing.fund("10")
    charged = api.post("/v0/usage", billing.event("instant", metric, quantity=5)).json()
    assert charged["billing"]["price"] == "0.050000"
    arrears = api.post(
        "/v0/prices",
        {
            "billableMetricId": str(metric.id),
            "paymentTerm": "in_arrears",
            "currency": "USDC",
            "properties": {"unitPrice": "0.01"},
        },
    ).json()
    assert api.patch(f"/v0/plans/{billing.plan.id}", {"prices": [arrears["id"]]}).status_code == 200
    later = api.post("/v0/usage", billing.event("arrears", metric, quantity=7)).json()
    assert later["billing"]["price"] == "0.000000"
    subscription = billing.subscription
    start, end = period_at(subscription.started_at, billing.plan.billing_interval, timezone.now())

    def period_total(**filters):
        return aggregate(
            merchant=api.merchant, metric=metric, start=start, end=end, subscription_id=subscription.id, **filters
        ).total

    assert period_total() == Decimal("12")
    assert period_total(price_id=arrears["id"], payment_term=PaymentTerm.IN_ARREARS) == Decimal("7")
    assert period_total(payment_term=PaymentTerm.IN_ARREARS) == Decimal("7")
    assert period_total(price_id=instant.id) == Decimal("5")
    assert billing.available() == Decimal("9.95")


def test_another_merchants_and_the_sandboxs_usage_are_never_counted(merchant):
    live = UsageWorld(merchant)
    sandbox = UsageWorld(sandbox_of(merchant))
    other = UsageWorld(MerchantFactory())
    metric = live.metric(Aggregation.SUM)
    live.report(metric, "2025-03-02T00:00", quantity="1")
    sandbox.report(sandbox.metric(Aggregation.SUM), "2025-03-02T00:00", quantity="10")
    other.report(other.metric(Aggregation.SUM), "2025-03-02T00:00", quantity="100")
    # A sandbox line that (wrongly) names the live metric is still the sandbox's.
    forged = sandbox.report(sandbox.metric(Aggregation.SUM), "2025-03-02T00:00", quantity="1000")
    UsageLine.objects.filter(pk=forged.pk).update(billable_metric=metric)

    assert total(live, metric) == Decimal("1")
    with pytest.raises(ValueError):
        aggregate(merchant=sandbox.merchant, metric=metric, start=START, end=END)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (Decimal("0E-12"), "0"),
        (Decimal("100.000000000000"), "100"),
        (Decimal("1.500000000000"), "1.5"),
        (Decimal("-0.000000000001"), "-0.000000000001"),
        (Decimal("12345678901234567890123456.123456789012"), "12345678901234567890123456.123456789012"),
    ],
)
def test_format_value_is_exact_without_exponent_or_trailing_zeros(value, text):
    assert format_value(value) == text
