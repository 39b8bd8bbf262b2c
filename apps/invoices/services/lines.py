"""What a period's invoice says: a line per price, computed from the period's usage and the
plan's fees (design.md, "Money: precision and rounding").

- in_arrears usage: the metric's aggregation over the period (SUM and COUNT by the sum of the
  lines, the others by `apps.usage.aggregation.aggregate`), of the lines that price priced,
  refunded events left out, priced by the engine as one quantity with the price's free units;
- in_arrears fees: the closed period's; in_advance fees: the next period's (when there is one),
  on that period's plan; each prorated by the share of its whole period that the period covers
  (a period begun or cut short by a plan change or a termination), exact to the microsecond;
- instant usage, already charged from the wallet, net of refunds: informational lines, outside
  the totals (a plan invoiced manually shows only these: its usage is the merchant's to invoice);
- each amount rounded once, half-even, to the currency's minor unit; the total their sum.

Usage is read from the lines themselves (their price and payment term as charged), so a price
that left the plan during the period is still invoiced for the usage it priced.

`periods_lines` computes many periods' lines at once (the beat's close, set-wise): one usage
query for all of them, then the pure pricing engine in Python for each.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from apps.catalog.models import ADDITIVE_AGGREGATIONS, Aggregation, Invoicing, PaymentTerm, Plan, Price, PriceModel
from apps.catalog.pricing import price_quantity, price_strategy
from apps.core.bulk import Statement, array_param, run_statements
from apps.core.money import MONEY_CONTEXT, ZERO, round_amount, round_to_minor_unit
from apps.usage.aggregation import aggregate
from apps.usage.models import UsageEvent, UsageLine


@dataclass
class LineSpec:
    description: str
    amount: Decimal
    price: Price | None = None
    payment_term: str = ""
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    informational: bool = False
    period_start: datetime | None = None
    period_end: datetime | None = None

    @property
    def billable_metric_id(self):
        return self.price.billable_metric_id if self.price is not None else None


def price_label(price: Price) -> str:
    if price.invoice_display_name:
        return price.invoice_display_name
    if price.billable_metric_id:
        return price.billable_metric.name
    return "Fee"


@dataclass(frozen=True)
class FeePeriod:
    """A period whose fees an invoice bills: its plan, [start, end), and the share of its whole
    period that it covers (a Fraction: 1, or less for a period begun or cut by a plan change or
    a termination), by which its fees are prorated."""

    plan: object
    start: datetime
    end: datetime
    share: Fraction = Fraction(1)


@dataclass(frozen=True)
class PeriodToInvoice:
    """A period of `subscription` to compute the lines of; `next_period` is the period that
    follows (whose in_advance fees it bills), or None when the subscription ends with it."""

    subscription: object
    period: FeePeriod
    next_period: FeePeriod | None

    @property
    def plan(self):
        return self.period.plan

    @property
    def start(self) -> datetime:
        return self.period.start

    @property
    def end(self) -> datetime:
        return self.period.end


_USAGE_SQL = None


def _usage_sql() -> str:
    global _USAGE_SQL
    if _USAGE_SQL is None:
        line, event = UsageLine._meta.db_table, UsageEvent._meta.db_table
        # One index range (usage_line_sub_metric_time) per period, its events joined for
        # refunded_at; grouped by (period, price, payment term).
        _USAGE_SQL = (
            "SELECT k.i, l.price_id, l.payment_term, SUM(l.quantity), SUM(l.value), SUM(l.amount), COUNT(l.id) "  # noqa: S608 (names from models)
            "FROM unnest(%s::integer[], %s::uuid[], %s::uuid[], %s::timestamptz[], %s::timestamptz[]) "
            "AS k(i, merchant_id, subscription_id, start_at, end_at) "
            f"JOIN {line} l ON l.subscription_id = k.subscription_id AND l.merchant_id = k.merchant_id "
            "AND l.timestamp >= k.start_at AND l.timestamp < k.end_at "
            f"JOIN {event} e ON e.id = l.event_id "
            "WHERE e.refunded_at IS NULL "
            "GROUP BY k.i, l.price_id, l.payment_term"
        )
    return _USAGE_SQL


def _usage_by_price(items: list[PeriodToInvoice]) -> list[list[dict]]:
    """Each period's usage of its subscription, by (price, payment term): one query for all."""
    usage: list[list[dict]] = [[] for _ in items]
    if not items:
        return usage
    statement = Statement(
        _usage_sql(),
        [
            array_param(range(len(items)), "integer"),
            array_param(item.subscription.merchant_id for item in items),
            array_param(item.subscription.id for item in items),
            array_param((item.start for item in items), "timestamptz"),
            array_param((item.end for item in items), "timestamptz"),
        ],
        prepare=False,
    )
    (rows,) = run_statements([statement])
    for index, price_id, payment_term, quantity, value, amount, lines in rows:
        usage[index].append(
            {
                "price_id": price_id,
                "payment_term": payment_term,
                "quantity": quantity,
                "value": value,
                "amount": amount,
                "lines": lines,
            }
        )
    return usage


def _arrears_quantity(subscription, price: Price, row: dict, start: datetime, end: datetime) -> Decimal | None:
    aggregation = price.billable_metric.aggregation
    if aggregation == Aggregation.COUNT:
        return row["quantity"] or ZERO
    if aggregation == Aggregation.SUM:
        return row["value"] or ZERO
    assert aggregation not in ADDITIVE_AGGREGATIONS
    return aggregate(
        merchant=subscription.merchant,
        metric=price.billable_metric,
        start=start,
        end=end,
        subscription_id=subscription.id,
        price_id=price.id,
        payment_term=PaymentTerm.IN_ARREARS,
    ).total


def _plan_prices(plans) -> dict:
    """Each plan's prices (with their metrics), in the order they were created: one query."""
    prices: dict = {plan.id: [] for plan in plans}
    links = Plan.prices.through.objects.filter(plan_id__in=list(prices)).select_related("price__billable_metric")
    for link in links:
        prices[link.plan_id].append(link.price)
    for plan_id, listed in prices.items():
        prices[plan_id] = sorted(listed, key=lambda p: (p.created_at, p.pk))
    return prices


def periods_lines(items: list[PeriodToInvoice]) -> list[list[LineSpec]]:
    """The lines of each of these periods (see the module), in a few queries for all: their
    usage in one, their plans' prices (the next periods' too) in another, prices that left a
    plan in a third."""
    usage = _usage_by_price(items)
    plans = {item.plan.id: item.plan for item in items}
    plans.update({item.next_period.plan.id: item.next_period.plan for item in items if item.next_period})
    plan_prices = _plan_prices(plans.values())
    known = {price.id: price for listed in plan_prices.values() for price in listed}
    missing = {row["price_id"] for rows in usage for row in rows} - set(known)
    others = sorted(
        Price.objects.filter(pk__in=missing).select_related("billable_metric"), key=lambda p: (p.created_at, p.pk)
    )
    return [_period_lines(item, plan_prices, others, rows) for item, rows in zip(items, usage, strict=True)]


def period_lines(subscription, period: FeePeriod, next_period: FeePeriod | None) -> list[LineSpec]:
    """The lines of `period` of `subscription`: its usage and in_arrears fees, and the
    in_advance fees of `next_period` (None when the subscription ends with this one)."""
    return periods_lines([PeriodToInvoice(subscription, period, next_period)])[0]


def _period_lines(item: PeriodToInvoice, all_prices: dict, others: list[Price], usage: list[dict]):
    subscription, plan, start, end = item.subscription, item.plan, item.start, item.end
    plan_prices = all_prices[plan.id]
    currency = plan.currency
    prices = {p.id: p for p in plan_prices}
    used = {row["price_id"] for row in usage}
    for price in others:  # prices that left the plan, for the usage they priced
        if price.id in used and price.id not in prices:
            prices[price.id] = price
    order = {price_id: index for index, price_id in enumerate(prices)}
    usage = sorted(usage, key=lambda row: (order[row["price_id"]], row["payment_term"]))

    lines: list[LineSpec] = []
    for row in usage:
        price = prices[row["price_id"]]
        if row["payment_term"] == PaymentTerm.INSTANT:
            lines.append(
                LineSpec(
                    description=f"{price_label(price)} (charged as used)",
                    amount=row["amount"] or ZERO,
                    price=price,
                    payment_term=PaymentTerm.INSTANT,
                    quantity=row["quantity"] or ZERO,
                    informational=True,
                    period_start=start,
                    period_end=end,
                )
            )
        elif row["payment_term"] == PaymentTerm.IN_ARREARS and plan.invoicing == Invoicing.AUTOMATIC:
            quantity = _arrears_quantity(subscription, price, row, start, end)
            if quantity is None:  # AVG, MIN, MAX, LATEST over lines without a value
                continue
            result = price_quantity(price_strategy(price), quantity, free_units=price.free_units)
            lines.append(
                LineSpec(
                    description=price_label(price),
                    amount=round_to_minor_unit(result.amount, currency),
                    price=price,
                    payment_term=PaymentTerm.IN_ARREARS,
                    quantity=quantity,
                    unit_price=result.unit_price if price.model == PriceModel.STANDARD else None,
                    period_start=start,
                    period_end=end,
                )
            )
    lines += fee_lines(item.period, PaymentTerm.IN_ARREARS, prices=plan_prices)
    if item.next_period is not None:
        lines += fee_lines(item.next_period, PaymentTerm.IN_ADVANCE, prices=all_prices[item.next_period.plan.id])
    return lines


def prorate(amount: Decimal, share: Fraction, currency: str) -> Decimal:
    """`amount` x `share`, rounded once half-even to the currency's minor unit."""
    if share == 1:
        return round_to_minor_unit(amount, currency)
    return round_to_minor_unit(MONEY_CONTEXT.divide(amount * share.numerator, Decimal(share.denominator)), currency)


def fee_lines(period: FeePeriod, term: str, *, prices=None) -> list[LineSpec]:
    """The plan's fees of payment term `term` for `period`, prorated by its share."""
    if prices is None:
        prices = sorted(period.plan.prices.all(), key=lambda p: (p.created_at, p.pk))
    currency = period.plan.currency
    lines = []
    for price in prices:
        if price.billable_metric_id is not None or price.amount is None or price.payment_term != term:
            continue
        label = price_label(price)
        if period.share != 1:
            label = f"{label} (prorated: {period.start:%Y-%m-%d %H:%M:%S} - {period.end:%Y-%m-%d %H:%M:%S} UTC)"
        lines.append(
            LineSpec(
                description=label,
                amount=prorate(price.amount, period.share, currency),
                price=price,
                payment_term=price.payment_term,
                quantity=round_amount(MONEY_CONTEXT.divide(Decimal(period.share.numerator), period.share.denominator)),
                unit_price=price.amount,
                period_start=period.start,
                period_end=period.end,
            )
        )
    return lines


def start_lines(plan, start: datetime, end: datetime) -> list[LineSpec]:
    """A subscription's start invoice: the plan's in_advance fees for its first period."""
    return fee_lines(FeePeriod(plan, start, end), PaymentTerm.IN_ADVANCE)


def lines_total(lines: list[LineSpec]) -> Decimal:
    return sum((line.amount for line in lines if not line.informational), ZERO)
