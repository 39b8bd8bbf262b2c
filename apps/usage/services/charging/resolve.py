"""The rules that depend on stored data: what an event is charged to, or why it is refused.

`resolve` turns each parsed event into a `ResolvedEvent` (its customer, subscription, period,
entitlement and, per property, the metric, the price and the value), or into the ApiError that
refuses it: 404 (customer, metric, subscription or entitlement not found), 409 (no or several
active subscriptions), 422 (archived customer, usage outside the periods open to it, a metric
not priced or not entitled, a price override not allowed, a metric value missing). A stored
event's key answers with `replay` (or 409 when the body differs). Nothing here writes or locks.
"""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings

from apps.catalog.models import BillableMetric, PaymentTerm, Price
from apps.core.errors import ApiError, Conflict, FieldError, Forbidden, NotFound, Unprocessable
from apps.core.money import ZERO, format_decimal
from apps.core.process_cache import ProcessCache
from apps.entitlements.models import Entitlement, EntitlementItem
from apps.merchants.models import Merchant
from apps.subscriptions.periods import add_intervals, period_index_at, running_period_at
from apps.subscriptions.selectors import CustomerRef, SubscriptionIndex, UsageSubscription, choose_subscription
from apps.usage.inputs import UsageInput, parse_number
from apps.usage.models import UsageEvent
from apps.usage.serializers import usage_event_data
from apps.usage.services.charging.lookup import NamedRows, named_rows

if TYPE_CHECKING:
    from apps.usage.services.charging.rows import StoredEvent, StoredLine


@dataclass(slots=True)
class ResolvedLine:
    """One property of an event: what it counts and the price that charges it."""

    metric: BillableMetric
    price: Price
    quantity: Decimal
    value: Decimal | None
    value_text: str
    unit_price_override: Decimal | None
    # the entitlement's item for this metric, when the event names an entitlement
    entitlement_item: EntitlementItem | None = None
    # set by rate.price_event
    unit_price: Decimal | None = None
    amount: Decimal | None = None
    payment_term: str | None = None


@dataclass(slots=True)
class ResolvedEvent:
    """An event the stored data allows, carried through the charge: priced by `rate`, decided
    by `decide` (balance_after), written by `rows` and `write` (row, line_rows)."""

    input: UsageInput
    customer: CustomerRef
    subscription: UsageSubscription
    period_start: datetime
    lines: list[ResolvedLine]
    entitlement: Entitlement | None = None
    # The highest minimumAccountBalance of the active subscriptions sharing the wallet.
    wallet_minimum: Decimal = ZERO
    # set by rate.price_event
    amount: Decimal = ZERO
    commission: Decimal = ZERO
    owner_revenue: Decimal = ZERO
    # set under the lock (charge)
    balance_after: Decimal | None = None
    # set by rows.prepare_rows
    transaction_id: uuid.UUID | None = None
    row: "StoredEvent | None" = None
    line_rows: "list[StoredLine]" = field(default_factory=list)

    @property
    def currency(self) -> str:
        return self.subscription.wallet.currency


def replay(event: UsageEvent, request_hash: str) -> dict:
    """The stored event's answer, or 409 when this body is not the one stored under its key."""
    if event.request_hash != request_hash:
        raise Conflict(
            f"idempotencyKey {event.idempotency_key!r} was already used for another usage event "
            f"({event.id}) with a different body; a key identifies one event for good.",
            code="IDEMPOTENCY_KEY_REUSED",
            details={"usageEventId": str(event.id)},
        )
    return usage_event_data(event, list(event.lines.all()))


def metric_value(
    metric: BillableMetric, quantity: Decimal, metadata: dict, field_name: str
) -> tuple[Decimal | None, str]:
    """(value, value_text) of a line: the quantity, or what the metric's valueProperty names."""
    if not metric.value_property:
        return quantity, ""
    if metric.value_property not in metadata:
        raise Unprocessable(
            f"{field_name}: billable metric {metric.id} ({metric.name}) aggregates metadata.{metric.value_property}; "
            "send it in the event's metadata.",
            code="METRIC_VALUE_MISSING",
            details={"field": f"metadata.{metric.value_property}"},
        )
    raw = metadata[metric.value_property]
    if metric.aggregation == "UNIQUE_COUNT":
        return None, str(raw)[:255]
    try:
        value = parse_number(raw, f"metadata.{metric.value_property}", allow_negative=True)
    except FieldError:
        raise Unprocessable(
            f"metadata.{metric.value_property} must be a number for billable metric {metric.id} ({metric.aggregation}); "
            f"got {raw!r}.",
            code="METRIC_VALUE_NOT_NUMERIC",
        ) from None
    return value, str(raw)[:255]


# subscription id -> (its anchor, its interval, its last switch, the grace in seconds, valid
# from, valid until, window)
_windows = ProcessCache(ttl_seconds=None, max_entries=200_000)


def open_window(
    subscription: UsageSubscription, now: datetime
) -> tuple[datetime, datetime, tuple[datetime, datetime] | None]:
    """(start, end, current period or None): [start, end) are the periods open to usage now,
    the current one, and the previous one while it is within its grace period (late usage is
    accepted until its invoice is final), never before the subscription's last plan change
    (usage before it belongs to a period the change closed, on the old plan). Kept per process
    for as long as it holds (it runs for every event of a batch: a hit is a dict lookup and six
    comparisons)."""
    interval = subscription.plan.billing_interval
    anchor = subscription.period_anchor
    switched = subscription.switched_at
    grace_seconds = settings.USAGE_GRACE_PERIOD_SECONDS
    cached = _windows.get(subscription.id)
    if (
        cached is not None
        and cached[0] == anchor
        and cached[1] == interval
        and cached[2] == switched
        and cached[3] == grace_seconds
        and cached[4] <= now < cached[5]
    ):
        return cached[6]
    grace = timedelta(seconds=grace_seconds)
    if now < anchor:
        valid, window = (datetime.min.replace(tzinfo=UTC), anchor), (anchor, add_intervals(anchor, interval, 1), None)
    else:
        index = period_index_at(anchor, interval, now)
        start, end = running_period_at(anchor, interval, now, switched)
        if index > 0 and now < start + grace:
            # (a grace longer than the interval still ends this window with the period)
            valid = (start, min(start + grace, end))
            window = (add_intervals(anchor, interval, index - 1), end, (start, end))
        else:
            valid = (start + grace if index > 0 else start, end)
            window = (start, end, (start, end))
        if switched is not None and window[0] < switched:
            window = (switched, window[1], window[2])
    _windows.set(subscription.id, (anchor, interval, switched, grace_seconds, *valid, window))
    return window


# (customer, metrics, subscriptionId) -> the subscription chosen, or why none is
Choices = dict[tuple[uuid.UUID, tuple[uuid.UUID, ...], uuid.UUID | None], UsageSubscription | ApiError]


def resolve(
    merchant: Merchant, inputs: list[UsageInput], now: datetime, subscriptions: SubscriptionIndex
) -> list[ResolvedEvent | ApiError]:
    """ResolvedEvent for each input, or the ApiError that refuses it."""
    named = named_rows(merchant, inputs, subscriptions)
    resolved: list[ResolvedEvent | ApiError] = []
    memo: Choices = {}
    for event in inputs:
        try:
            resolved.append(_resolve_one(merchant, event, now, named, subscriptions, memo))
        except ApiError as error:
            resolved.append(error)
    return resolved


def _choose(
    memo: Choices,
    subscriptions: SubscriptionIndex,
    customer_id: uuid.UUID,
    metric_ids: list[uuid.UUID],
    explicit_id: uuid.UUID | None,
) -> UsageSubscription:
    """choose_subscription, once per (customer, metrics, subscriptionId) of a batch."""
    key = (customer_id, tuple(metric_ids), explicit_id)
    if key not in memo:
        try:
            memo[key] = choose_subscription(
                customer_id=customer_id, metric_ids=metric_ids, subscriptions=subscriptions, explicit_id=explicit_id
            )
        except ApiError as error:
            memo[key] = error
    outcome = memo[key]
    if isinstance(outcome, ApiError):
        raise outcome
    return outcome


def _resolve_one(
    merchant: Merchant,
    event: UsageInput,
    now: datetime,
    named: NamedRows,
    subscriptions: SubscriptionIndex,
    memo: Choices,
) -> ResolvedEvent:
    if event.merchant_id is not None and event.merchant_id != str(merchant.public_id):
        raise Forbidden(
            f"merchantId {event.merchant_id} is not the merchant of this API key ({merchant.public_id}).",
            code="MERCHANT_MISMATCH",
        )
    customer = named.customers.get(event.customer_id)
    if customer is None:
        raise NotFound(f"customerId: no customer {event.customer_id}.", code="CUSTOMER_NOT_FOUND")
    if customer.archived_at is not None:
        raise Unprocessable(f"Customer {customer.id} is archived; it cannot report usage.", code="CUSTOMER_ARCHIVED")
    metrics = named.metrics
    for index, prop in enumerate(event.properties):
        if prop.billable_metric_id not in metrics:
            raise NotFound(
                f"properties[{index}].billableMetricId: no billable metric {prop.billable_metric_id}.",
                code="BILLABLE_METRIC_NOT_FOUND",
            )
    subscription = _choose(
        memo, subscriptions, customer.id, [p.billable_metric_id for p in event.properties], event.subscription_id
    )

    window_start, window_end, current = open_window(subscription, now)
    if not event.counted and not window_start <= event.timestamp < max(window_end, now + timedelta(minutes=5)):
        raise Unprocessable(
            f"timestamp {event.timestamp.isoformat()} is outside the periods open to usage of subscription "
            f"{subscription.id}: [{window_start.isoformat()}, {window_end.isoformat()}).",
            code="USAGE_OUTSIDE_OPEN_PERIOD",
            details={"windowStart": window_start.isoformat(), "windowEnd": window_end.isoformat()},
        )
    if current is not None and current[0] <= event.timestamp < current[1]:
        period_start = current[0]
    else:
        try:
            period_start, _ = running_period_at(
                subscription.period_anchor,
                subscription.plan.billing_interval,
                event.timestamp,
                subscription.switched_at,
            )
        except ValueError:  # a counted call from before the anchor a plan change moved
            period_start = current[0] if current is not None else window_start

    entitlement = None
    if event.entitlement_id:
        entitlement = named.entitlements.get(event.entitlement_id)
        if entitlement is None or entitlement.customer_id != customer.id:
            raise NotFound(
                f"entitlementId: no entitlement {event.entitlement_id} of customer {customer.id}.",
                code="ENTITLEMENT_NOT_FOUND",
            )
        if entitlement.subscription_id != subscription.id:
            raise Unprocessable(
                f"Entitlement {entitlement.id} belongs to subscription {entitlement.subscription_id}, "
                f"not to {subscription.id} which prices this usage.",
                code="ENTITLEMENT_SUBSCRIPTION_MISMATCH",
            )
    entitled_items = {item.billable_metric_id: item for item in entitlement.items.all()} if entitlement else {}

    lines = []
    for index, prop in enumerate(event.properties):
        metric = metrics[prop.billable_metric_id]
        price = subscription.metric_prices.get(metric.id)
        if price is None:
            raise Unprocessable(
                f"properties[{index}]: the plan of subscription {subscription.id} does not price billable metric "
                f"{metric.id} ({metric.name}); all properties of one event belong to one subscription.",
                code="METRIC_NOT_PRICED",
            )
        item = None
        if entitlement is not None:
            item = entitled_items.get(metric.id)
            if item is None:
                raise Unprocessable(
                    f"properties[{index}]: entitlement {entitlement.id} reserves nothing for billable metric {metric.id}.",
                    code="METRIC_NOT_ENTITLED",
                )
            if prop.price is not None and prop.price != item.unit_price_override:
                reserved_at = (
                    f"at {format_decimal(item.unit_price_override)} a unit"
                    if item.unit_price_override is not None
                    else f"by price {item.price_id}"
                )
                raise Unprocessable(
                    f"properties[{index}].price: usage from entitlement {entitlement.id} is charged what the "
                    f"entitlement reserved for its units ({reserved_at}, when it was created); leave price out, "
                    "or send the price the entitlement reserved at.",
                    code="PRICE_OVERRIDE_WITH_ENTITLEMENT",
                )
            # usage from a hold is priced by the price it reserved at, as it was then (its snapshot)
            price = item.price
        elif prop.price is not None:
            if not price.allow_price_override:
                raise Unprocessable(
                    f"properties[{index}].price: price {price.id} of billable metric {metric.id} does not allow a "
                    "per-event price; set allowPriceOverride on the price, or leave price out.",
                    code="PRICE_OVERRIDE_NOT_ALLOWED",
                )
            if price.payment_term != PaymentTerm.INSTANT:
                raise Unprocessable(
                    f"properties[{index}].price: billable metric {metric.id} is billed {price.payment_term}, at the "
                    "period's end, from the plan's price; a per-event price applies to instant prices only.",
                    code="PRICE_OVERRIDE_NOT_INSTANT",
                )
        value, value_text = metric_value(metric, prop.quantity, event.metadata, f"properties[{index}]")
        lines.append(ResolvedLine(metric, price, prop.quantity, value, value_text, prop.price, item))
    wallet_minimum = subscriptions.wallet_minimum[subscription.wallet_id]
    return ResolvedEvent(event, customer, subscription, period_start, lines, entitlement, wallet_minimum)
