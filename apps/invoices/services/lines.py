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
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from django.db.models import Count, Sum

from apps.catalog.models import ADDITIVE_AGGREGATIONS, Aggregation, Invoicing, PaymentTerm, Price, PriceModel
from apps.catalog.pricing import price_quantity, price_strategy
from apps.core.money import MONEY_CONTEXT, ZERO, round_amount, round_to_minor_unit
from apps.usage.aggregation import aggregate
from apps.usage.models import UsageLine


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


def _usage_by_price(subscription, start: datetime, end: datetime) -> list[dict]:
    """The period's usage of the subscription, by (price, payment term): one query."""
    return list(
        UsageLine.objects.filter(
            merchant_id=subscription.merchant_id,
            subscription_id=subscription.id,
            timestamp__gte=start,
            timestamp__lt=end,
            event__refunded_at__isnull=True,
        )
        .values("price_id", "payment_term")
        .annotate(quantity=Sum("quantity"), value=Sum("value"), amount=Sum("amount"), lines=Count("id"))
        .order_by()
    )


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


@dataclass(frozen=True)
class FeePeriod:
    """A period whose fees an invoice bills: its plan, [start, end), and the share of its whole
    period that it covers (a Fraction: 1, or less for a period begun or cut by a plan change or
    a termination), by which its fees are prorated."""

    plan: object
    start: datetime
    end: datetime
    share: Fraction = Fraction(1)


def period_lines(subscription, period: FeePeriod, next_period: FeePeriod | None) -> list[LineSpec]:
    """The lines of `period` of `subscription`: its usage and in_arrears fees, and the
    in_advance fees of `next_period` (None when the subscription ends with this one)."""
    plan, start, end = period.plan, period.start, period.end
    currency = plan.currency
    usage = _usage_by_price(subscription, start, end)
    plan_prices = sorted(plan.prices.select_related("billable_metric"), key=lambda p: (p.created_at, p.pk))
    prices = {p.id: p for p in plan_prices}
    missing = {row["price_id"] for row in usage} - set(prices)
    if missing:
        for price in Price.objects.filter(pk__in=missing).select_related("billable_metric"):
            prices[price.id] = price
    order = {price_id: index for index, price_id in enumerate(prices)}
    usage.sort(key=lambda row: (order[row["price_id"]], row["payment_term"]))

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
    lines += fee_lines(period, PaymentTerm.IN_ARREARS, prices=plan_prices)
    if next_period is not None:
        lines += fee_lines(next_period, PaymentTerm.IN_ADVANCE)
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
