"""What a period's invoice says: a line per price, computed from the period's usage and the
plan's fees (design.md, "Money: precision and rounding").

- in_arrears usage: the metric's aggregation over the period (SUM and COUNT by the sum of the
  lines, the others by `apps.usage.aggregation.aggregate`), of the lines that price priced,
  refunded events left out, priced by the engine as one quantity with the price's free units;
- in_arrears fees: the closed period's; in_advance fees: the next period's (when there is one);
- instant usage, already charged from the wallet, net of refunds: informational lines, outside
  the totals (a plan invoiced manually shows only these: its usage is the merchant's to invoice);
- each amount rounded once, half-even, to the currency's minor unit; the total their sum.

Usage is read from the lines themselves (their price and payment term as charged), so a price
that left the plan during the period is still invoiced for the usage it priced.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Sum

from apps.catalog.models import ADDITIVE_AGGREGATIONS, Aggregation, Invoicing, PaymentTerm, Price, PriceModel
from apps.catalog.pricing import price_quantity, price_strategy
from apps.core.money import ZERO, round_to_minor_unit
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


def period_lines(subscription, plan, start: datetime, end: datetime, next_period) -> list[LineSpec]:
    """The lines of the period [start, end) of `subscription` on `plan`; `next_period` is the
    (start, end) of the period that follows, or None when the subscription ends with this one."""
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
    for price in plan_prices:
        if price.billable_metric_id is not None or price.amount is None:
            continue
        if price.payment_term == PaymentTerm.IN_ARREARS:
            fee_start, fee_end = start, end
        elif price.payment_term == PaymentTerm.IN_ADVANCE and next_period is not None:
            fee_start, fee_end = next_period
        else:
            continue
        lines.append(_fee_line(price, currency, fee_start, fee_end))
    return lines


def _fee_line(price: Price, currency: str, start: datetime, end: datetime) -> LineSpec:
    return LineSpec(
        description=price_label(price),
        amount=round_to_minor_unit(price.amount, currency),
        price=price,
        payment_term=price.payment_term,
        quantity=Decimal(1),
        unit_price=price.amount,
        period_start=start,
        period_end=end,
    )


def start_lines(plan, start: datetime, end: datetime) -> list[LineSpec]:
    """A subscription's start invoice: the plan's in_advance fees for its first period."""
    prices = sorted(plan.prices.all(), key=lambda p: (p.created_at, p.pk))
    return [
        _fee_line(price, plan.currency, start, end)
        for price in prices
        if price.billable_metric_id is None
        and price.amount is not None
        and price.payment_term == PaymentTerm.IN_ADVANCE
    ]


def lines_total(lines: list[LineSpec]) -> Decimal:
    return sum((line.amount for line in lines if not line.informational), ZERO)
