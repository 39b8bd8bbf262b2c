"""Real-time usage charging: each reported event is priced and paid for exactly once.

One code path serves single events and batches:

1. `parse_usage_event` judges each event from the request alone (400s).
2. `_resolve` loads what the events name (customers, metrics, subscriptions, prices,
   entitlements) in a few queries and applies the rules that depend on stored data
   (404, 409, 422).
3. `_charge` prices and charges them in one database transaction: the wallets'
   balance rows are locked first (in one order), each event is priced (instant
   graduated and package prices continue from the period's running total, read
   under that lock), checked against the wallet's minimum balance or the entitlement's hold
   (402, nothing written), then the events, their lines and one balanced ledger
   transaction (per currency) are written. A response is returned only after commit.

An event's `idempotencyKey` is its identity for good: a replay returns the first
response and moves nothing; a concurrent duplicate waits on the unique index until
the first commits, then returns its response; another body under the same key is 409.
"""

import uuid
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from django.utils import timezone

from apps.catalog.models import BillableMetric, PaymentTerm, Price
from apps.catalog.pricing import price_line_amount
from apps.core.bulk import StalePreparedStatement, Statement, array_param, insert_rows, new_id, run_statements
from apps.core.errors import ApiError, Conflict, FieldError, Forbidden, NotFound, PaymentRequired, Unprocessable
from apps.core.models import violated_constraint
from apps.core.money import ZERO, format_amount, format_decimal, round_amount, split_commission
from apps.core.process_cache import ProcessCache
from apps.customers.models import Customer
from apps.entitlements.models import Entitlement, EntitlementItem
from apps.entitlements.services import entitlement_after_use, entitlement_item_charge, entitlement_used_up
from apps.ledger.lock_objects import lock_balances, locked_rows, wallets_lock_statement
from apps.ledger.models import LedgerTransaction
from apps.ledger.services import (
    Posting,
    TransactionSpec,
    ledger_post_many,
    merchant_revenue_account,
    platform_commission_account,
)
from apps.subscriptions.models import Subscription
from apps.subscriptions.periods import add_intervals, period_at, period_index_at
from apps.subscriptions.selectors import (
    SubscriptionIndex,
    choose_subscription,
    usage_subscriptions_from_rows,
    usage_subscriptions_statement,
    usage_wallet_ids_statement,
)
from apps.usage.inputs import UsageInput, parse_number, parse_usage_event
from apps.usage.models import UsageCounter, UsageEvent, UsageLine
from apps.usage.pricing import needs_counter
from apps.usage.serializers import usage_event_data

MAX_BATCH_EVENTS = 1000
IDEMPOTENCY_CONSTRAINT = "usage_event_unique_idempotency_key"
CONFLICT_RETRIES = 3


@dataclass
class ResolvedLine:
    metric: BillableMetric
    price: Price
    quantity: Decimal
    value: Decimal | None
    value_text: str
    unit_price_override: Decimal | None
    entitlement_item: EntitlementItem | None = None
    # Filled in by _charge.
    unit_price: Decimal | None = None
    amount: Decimal | None = None
    payment_term: str | None = None


@dataclass
class ResolvedEvent:
    input: UsageInput
    customer: Customer
    subscription: Subscription
    period_start: object
    lines: list[ResolvedLine]
    entitlement: Entitlement | None = None
    # The highest minimumAccountBalance of the active subscriptions sharing the wallet.
    wallet_minimum: Decimal = ZERO
    # Filled in by _charge.
    amount: Decimal = ZERO
    commission: Decimal = ZERO
    owner_revenue: Decimal = ZERO
    balance_after: Decimal | None = None
    transaction_id: uuid.UUID | None = None
    row: "StoredEvent | None" = None
    line_rows: list["StoredLine"] = field(default_factory=list)

    @property
    def currency(self) -> str:
        return self.subscription.wallet.currency


class _DuplicateRace(Exception):
    """A concurrent request stored one of these keys first: start again, it is now a replay."""


# ---------------------------------------------------------------------------- replays


def _replay(event: UsageEvent, request_hash: str) -> dict:
    if event.request_hash != request_hash:
        raise Conflict(
            f"idempotencyKey {event.idempotency_key!r} was already used for another usage event "
            f"({event.id}) with a different body; a key identifies one event for good.",
            code="IDEMPOTENCY_KEY_REUSED",
            details={"usageEventId": str(event.id)},
        )
    return usage_event_data(event, list(event.lines.all()))


def _stored_events(merchant, keys) -> dict[str, UsageEvent]:
    """The stored events under `keys`, with their lines (replays are rare: the ORM is fine)."""
    if not keys:
        return {}
    queryset = (
        UsageEvent.objects.filter(merchant=merchant, idempotency_key__in=list(keys))
        .select_related("merchant")
        .prefetch_related(Prefetch("lines", queryset=UsageLine.objects.order_by("position")))
    )
    return {event.idempotency_key: event for event in queryset}


def _lookup(merchant, inputs: list[UsageInput], *, lock_wallets: bool = False):
    """In one round trip: which keys are stored already (almost none are), the subscriptions
    the events can be charged to, and, with `lock_wallets` (inside the charge's transaction),
    their wallets' balance rows, locked. Returns (existing events, SubscriptionIndex,
    {(account_id, shard): amount} or None)."""
    probe = Statement(
        # The keys drive one index lookup each (see subscriptions.selectors._USAGE_SCOPE):
        # filtering every event of the merchant against the keys was quadratic.
        "SELECT e.idempotency_key FROM unnest(%s::varchar[]) AS k(key) CROSS JOIN LATERAL ("  # noqa: S608 (no user input)
        f"SELECT e0.idempotency_key FROM {UsageEvent._meta.db_table} e0 "
        "WHERE e0.merchant_id = %s AND e0.idempotency_key = k.key OFFSET 0) e",
        [array_param({i.idempotency_key for i in inputs}, "varchar"), merchant.id],
        # Not a generic plan: one made while the events table was nearly empty (a new
        # deployment, a new connection at start) saw the (merchant, timestamp) index cost the
        # same as the unique key's, and a connection that took it scanned every event of the
        # merchant for each key, for as long as it lived (1.6 - 3.2 s per batch in the bench).
        prepare=False,
    )
    scope = {
        "merchant": merchant,
        "customer_ids": {i.customer_id for i in inputs},
        "explicit_ids": {i.subscription_id for i in inputs if i.subscription_id},
    }
    statements = [probe, usage_subscriptions_statement(**scope)]
    if lock_wallets:
        statements.append(wallets_lock_statement(usage_wallet_ids_statement(**scope)))
    found, rows, *locked = run_statements(statements)
    existing = _stored_events(merchant, [row[0] for row in found]) if found else {}
    balances = {(account_id, shard): amount for account_id, shard, amount in locked[0]} if locked else None
    return existing, usage_subscriptions_from_rows(rows), balances


# ---------------------------------------------------------------------------- resolution


def _metric_value(metric: BillableMetric, quantity: Decimal, metadata: dict, field_name: str):
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


# subscription id -> (its start, its interval, the grace in seconds, valid from, valid until, window)
_windows = ProcessCache(ttl_seconds=None, max_entries=200_000)


def _open_window(subscription: Subscription, now):
    """(start, end, current period or None): [start, end) are the periods open to usage now,
    the current one, and the previous one while it is within its grace period (late usage is
    accepted until its invoice is final). Kept per process for as long as it holds (it runs
    for every event of a batch: a hit is a dict lookup and five comparisons)."""
    interval = subscription.plan.billing_interval
    anchor = subscription.started_at
    grace_seconds = settings.USAGE_GRACE_PERIOD_SECONDS
    cached = _windows.get(subscription.id)
    if (
        cached is not None
        and cached[0] == anchor
        and cached[1] == interval
        and cached[2] == grace_seconds
        and cached[3] <= now < cached[4]
    ):
        return cached[5]
    grace = timedelta(seconds=grace_seconds)
    if now < anchor:
        valid, window = (datetime.min.replace(tzinfo=UTC), anchor), (anchor, add_intervals(anchor, interval, 1), None)
    else:
        index = period_index_at(anchor, interval, now)
        start, end = period_at(anchor, interval, now)
        if index > 0 and now < start + grace:
            # (a grace longer than the interval still ends this window with the period)
            valid = (start, min(start + grace, end))
            window = (add_intervals(anchor, interval, index - 1), end, (start, end))
        else:
            valid = (start + grace if index > 0 else start, end)
            window = (start, end, (start, end))
    _windows.set(subscription.id, (anchor, interval, grace_seconds, *valid, window))
    return window


def _resolve(merchant, inputs: list[UsageInput], now, subscriptions: SubscriptionIndex) -> list:
    """ResolvedEvent for each input, or the ApiError that refuses it."""
    customer_ids = {i.customer_id for i in inputs}
    metric_ids = {p.billable_metric_id for i in inputs for p in i.properties}
    entitlement_ids = {i.entitlement_id for i in inputs if i.entitlement_id}

    # The subscriptions bring their customers and their plans' prices with the metrics, so
    # that the usual event needs no other read; the rest is loaded only when missing.
    customers = {s.customer_id: s.customer for s in subscriptions.values()}
    metrics = {
        price.billable_metric_id: price.billable_metric
        for s in subscriptions.values()
        for price in s.metric_prices.values()
    }
    missing_customers = customer_ids - customers.keys()
    if missing_customers:
        customers.update({c.id: c for c in Customer.objects.filter(merchant=merchant, pk__in=missing_customers)})
    missing_metrics = metric_ids - metrics.keys()
    if missing_metrics:
        metrics.update({m.id: m for m in BillableMetric.objects.filter(merchant=merchant, pk__in=missing_metrics)})
    entitlements = {}
    if entitlement_ids:
        items = Prefetch("items", queryset=EntitlementItem.objects.select_related("price"))
        entitlements = {
            e.id: e
            for e in Entitlement.objects.filter(merchant=merchant, pk__in=entitlement_ids).prefetch_related(items)
        }

    resolved, memo = [], {}
    for event in inputs:
        try:
            resolved.append(_resolve_one(merchant, event, now, customers, metrics, subscriptions, entitlements, memo))
        except ApiError as error:
            resolved.append(error)
    return resolved


def _choose(memo: dict, subscriptions, customer_id, metric_ids, explicit_id):
    """choose_subscription, once per (customer, metrics, subscriptionId) of a batch."""
    key = ("choice", customer_id, tuple(metric_ids), explicit_id)
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


def _resolve_one(merchant, event, now, customers, metrics, subscriptions, entitlements, memo):
    if event.merchant_id is not None and event.merchant_id != str(merchant.public_id):
        raise Forbidden(
            f"merchantId {event.merchant_id} is not the merchant of this API key ({merchant.public_id}).",
            code="MERCHANT_MISMATCH",
        )
    customer = customers.get(event.customer_id)
    if customer is None:
        raise NotFound(f"customerId: no customer {event.customer_id}.", code="CUSTOMER_NOT_FOUND")
    if customer.archived_at is not None:
        raise Unprocessable(f"Customer {customer.id} is archived; it cannot report usage.", code="CUSTOMER_ARCHIVED")
    for index, prop in enumerate(event.properties):
        if prop.billable_metric_id not in metrics:
            raise NotFound(
                f"properties[{index}].billableMetricId: no billable metric {prop.billable_metric_id}.",
                code="BILLABLE_METRIC_NOT_FOUND",
            )
    subscription = _choose(
        memo, subscriptions, customer.id, [p.billable_metric_id for p in event.properties], event.subscription_id
    )

    window_start, window_end, current = _open_window(subscription, now)
    if not window_start <= event.timestamp < max(window_end, now + timedelta(minutes=5)):
        raise Unprocessable(
            f"timestamp {event.timestamp.isoformat()} is outside the periods open to usage of subscription "
            f"{subscription.id}: [{window_start.isoformat()}, {window_end.isoformat()}).",
            code="USAGE_OUTSIDE_OPEN_PERIOD",
            details={"windowStart": window_start.isoformat(), "windowEnd": window_end.isoformat()},
        )
    if current is not None and current[0] <= event.timestamp < current[1]:
        period_start = current[0]
    else:
        period_start, _ = period_at(subscription.started_at, subscription.plan.billing_interval, event.timestamp)

    entitlement = None
    if event.entitlement_id:
        entitlement = entitlements.get(event.entitlement_id)
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
        value, value_text = _metric_value(metric, prop.quantity, event.metadata, f"properties[{index}]")
        lines.append(ResolvedLine(metric, price, prop.quantity, value, value_text, prop.price, item))
    wallet_minimum = subscriptions.wallet_minimum[subscription.wallet_id]
    return ResolvedEvent(event, customer, subscription, period_start, lines, entitlement, wallet_minimum)


# ---------------------------------------------------------------------------- charging


def _price_line(line: ResolvedLine, units_before: Decimal) -> None:
    if line.entitlement_item is not None:
        # charged now from the hold, what it reserved for these units (whatever the price became)
        result = entitlement_item_charge(line.entitlement_item, line.quantity)
        line.payment_term = PaymentTerm.INSTANT
    elif line.price.payment_term != PaymentTerm.INSTANT:
        line.unit_price = None
        line.amount = None
        line.payment_term = line.price.payment_term
        return
    else:
        result = price_line_amount(line.price, line.quantity, line.unit_price_override, units_before)
        line.payment_term = PaymentTerm.INSTANT
    line.amount = result.amount
    line.unit_price = round_amount(result.unit_price)


def _entitlement_refusal(entitlement: Entitlement, event: ResolvedEvent, now) -> str | None:
    if entitlement.status != Entitlement.Status.ACTIVE:
        return f"entitlement {entitlement.id} is {entitlement.status}"
    if entitlement.expires_at <= now:
        return f"entitlement {entitlement.id} expired at {entitlement.expires_at.isoformat()}"
    if entitlement.max_uses is not None and entitlement.used_count >= entitlement.max_uses:
        return f"entitlement {entitlement.id} was used {entitlement.used_count} of {entitlement.max_uses} times"
    for line in event.lines:
        item = line.entitlement_item
        if line.quantity > item.remaining_quantity:
            return (
                f"entitlement {entitlement.id} has {item.remaining_quantity} units of billable metric "
                f"{line.metric.id} left, not {line.quantity}"
            )
    if event.amount > entitlement.remaining_amount:
        return (
            f"entitlement {entitlement.id} holds {format_amount(entitlement.remaining_amount, entitlement.currency)} "
            f"{entitlement.currency}, not {format_amount(event.amount, entitlement.currency)}"
        )
    return None


def _charge(
    merchant, events: list[ResolvedEvent], now, locked: dict | None = None, *, shared_transaction: bool = True
) -> list:
    """Price, check and write `events` in one transaction; returns, per event, itself or its refusal.

    `locked`: the wallet balance rows the caller locked already in this transaction (_lookup).
    """
    outcomes: list = list(events)
    # Concurrent batches over the same customers wait for each other's wallets: what does not
    # depend on a locked row (the price of an event that names no entitlement and whose prices
    # keep no running total, its rows, their encoding) is done before the lock.
    prepared = None
    if all(_priced_alone(event) for event in events):
        for event in events:
            _price_event(merchant, event, ZERO_COUNTERS)
        prepared = _prepare_rows(merchant, events, now, shared_transaction=shared_transaction)
    # With `locked`, inside the caller's transaction (record_one), which any error aborts as a
    # whole: no savepoint. Otherwise its own transaction, or a savepoint within a caller's, so
    # that a duplicate race can be retried.
    with transaction.atomic(savepoint=locked is None):
        wallets = {e.subscription.wallet_id: e.subscription.wallet for e in events}
        # Only the rows an event can debit: the available balance, and the held one of
        # wallets whose events name an entitlement.
        held_wallets = {e.subscription.wallet_id for e in events if e.entitlement is not None}
        needed = [(w.available_account_id, 0) for w in wallets.values()] + [
            (w.held_account_id, 0) for w in wallets.values() if w.id in held_wallets
        ]
        if locked is None:
            balances = lock_balances(needed)
        elif all(key in locked for key in needed):
            balances = locked
        else:
            # a subscription changed between the reads: start again from the lookup
            raise _DuplicateRace()
        available = {w.id: balances[(w.available_account_id, 0)] for w in wallets.values()}
        minimums = {e.subscription.wallet_id: e.wallet_minimum for e in events}
        entitlement_ids = {e.entitlement.id for e in events if e.entitlement}
        locked_entitlements, items = {}, {}
        if entitlement_ids:
            locked_entitlements = {e.id: e for e in locked_rows(Entitlement.objects.filter(pk__in=entitlement_ids))}
            items = {
                item.id: item
                for item in EntitlementItem.objects.filter(entitlement_id__in=entitlement_ids).select_related("price")
            }
        items_by_entitlement: dict = defaultdict(list)
        for item in items.values():
            items_by_entitlement[item.entitlement_id].append(item)
        counter_keys = {
            (e.subscription.id, line.price.id, e.period_start)
            for e in events
            for line in e.lines
            if needs_counter(line.price)
        }
        counters = {}
        if counter_keys:
            rows = UsageCounter.objects.filter(
                merchant=merchant,
                subscription_id__in={k[0] for k in counter_keys},
                price_id__in={k[1] for k in counter_keys},
                period_start__in={k[2] for k in counter_keys},
            )
            counters = {(r.subscription_id, r.price_id, r.period_start): r.units for r in rows}
        touched_counters = set()

        for index, event in enumerate(events):
            if event.entitlement is not None:
                event.entitlement = locked_entitlements[event.entitlement.id]
                for line in event.lines:
                    line.entitlement_item = items[line.entitlement_item.id]
            pending_counters = {} if prepared is not None else _price_event(merchant, event, counters)
            wallet_id = event.subscription.wallet_id
            if event.entitlement is not None:
                refusal = _entitlement_refusal(event.entitlement, event, now)
                if refusal:
                    outcomes[index] = PaymentRequired(
                        f"This usage exceeds its entitlement: {refusal}.", code="ENTITLEMENT_EXHAUSTED"
                    )
                    continue
                entitlement = event.entitlement
                entitlement.remaining_amount -= event.amount
                entitlement.used_count += 1
                for line in event.lines:
                    line.entitlement_item.remaining_quantity -= line.quantity
                    line.entitlement_item.remaining_amount -= line.amount or ZERO
                if entitlement_used_up(entitlement, items_by_entitlement[entitlement.id]):
                    # what is left of the hold goes back to available now (written in _write)
                    available[wallet_id] += entitlement.remaining_amount
                    entitlement.status = Entitlement.Status.EXHAUSTED
            else:
                minimum = minimums.get(wallet_id, ZERO)
                if event.amount > ZERO and available[wallet_id] - event.amount < minimum:
                    currency = event.subscription.wallet.currency
                    outcomes[index] = PaymentRequired(
                        f"The wallet has {format_amount(available[wallet_id], currency)} {currency} available and "
                        f"must keep {format_amount(minimum, currency)}; this usage costs "
                        f"{format_amount(event.amount, currency)}. Top up the wallet and retry with the same "
                        "idempotencyKey.",
                        code="INSUFFICIENT_BALANCE",
                        details={
                            "available": format_amount(available[wallet_id], currency),
                            "required": format_amount(event.amount, currency),
                            "minimumBalance": format_amount(minimum, currency),
                            "currency": currency,
                        },
                    )
                    continue
                available[wallet_id] -= event.amount
            counters.update(pending_counters)
            touched_counters.update(pending_counters)
            event.balance_after = available[wallet_id]

        charged = [e for e in outcomes if isinstance(e, ResolvedEvent)]
        if not charged:
            return outcomes
        if prepared is None or len(charged) != len(events):
            # priced under the lock, or some refused: the rows are built (again) for what is charged
            prepared = _prepare_rows(merchant, charged, now, shared_transaction=shared_transaction)
        _write(merchant, prepared, counters, touched_counters, now)
    return outcomes


ZERO_COUNTERS: dict = {}


def _priced_alone(event: ResolvedEvent) -> bool:
    """Whether the event's price depends on nothing a lock guards: no hold, no running total."""
    return event.entitlement is None and not any(needs_counter(line.price) for line in event.lines)


def _price_event(merchant, event: ResolvedEvent, counters: dict) -> dict:
    """Price the event's lines (graduated tiers, packages and free units continue from `counters`) and
    split its total; returns the running totals it moves."""
    pending_counters: dict = {}
    for line in event.lines:
        key = (event.subscription.id, line.price.id, event.period_start)
        before = pending_counters.get(key, counters.get(key, ZERO))
        _price_line(line, before)
        if needs_counter(line.price):
            pending_counters[key] = before + line.quantity
    event.amount = sum((line.amount for line in event.lines if line.amount is not None), ZERO)
    event.commission, event.owner_revenue = split_commission(event.amount, merchant.commission_rate)
    return pending_counters


COUNTER_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "merchant_id",
    "subscription_id",
    "price_id",
    "period_start",
    "units",
)


@dataclass(slots=True)
class StoredEvent:
    """The values of a usage event row as written (what `usage_event_data` reads)."""

    id: str
    created_at: object
    updated_at: object
    merchant_id: uuid.UUID
    idempotency_key: str
    request_hash: str
    customer_id: uuid.UUID
    subscription_id: uuid.UUID
    entitlement_id: uuid.UUID | None
    timestamp: object
    currency: str
    amount: Decimal
    commission_amount: Decimal
    owner_revenue_amount: Decimal
    balance_after: Decimal | None
    ledger_transaction_id: uuid.UUID | None
    invoice_id: uuid.UUID | None
    metadata: dict
    refund_reason: str
    merchant: object = None


@dataclass(slots=True)
class StoredLine:
    """The values of a usage line row as written (its id is made by the server: no answer shows it)."""

    created_at: object
    updated_at: object
    merchant_id: uuid.UUID
    event_id: str
    position: int
    billable_metric_id: uuid.UUID
    price_id: uuid.UUID
    customer_id: uuid.UUID
    subscription_id: uuid.UUID
    timestamp: object
    quantity: Decimal
    value: Decimal | None
    value_text: str
    payment_term: str
    unit_price: Decimal | None
    amount: Decimal | None


# The columns written, in the order of the fields above (the event's `merchant` is for the answer).
EVENT_COLUMNS = tuple(f.name for f in fields(StoredEvent) if f.name != "merchant")
LINE_COLUMNS = tuple(f.name for f in fields(StoredLine))
SERVER_IDS = {"id": "gen_random_uuid()"}


@dataclass
class _PreparedRows:
    """The rows of events about to be written, in key order, and their INSERTs."""

    events: list[ResolvedEvent]
    event_insert: Statement
    line_insert: Statement


BALANCE_AFTER_PARAM = EVENT_COLUMNS.index("balance_after")


def _transaction_group(event: ResolvedEvent, shared_transaction: bool):
    # A batch posts one ledger transaction per currency for all its events: a debit per
    # wallet (or hold) and one credit each to the merchant's revenue and the platform's
    # commission; each event keeps its own figures, which sum to the transaction's. Single
    # reports charged together (combining) keep one ledger transaction each, as alone.
    return (event.currency, None if shared_transaction else event.input.idempotency_key)


def _prepare_rows(merchant, events: list[ResolvedEvent], now, *, shared_transaction: bool) -> _PreparedRows:
    """Build and encode the rows of priced events (their balance_after is set by _write)."""
    transaction_ids: dict = {}
    # in key order, so that two requests sharing keys wait on each other in one order
    ordered = sorted(events, key=lambda e: e.input.idempotency_key)
    for event in ordered:
        event.transaction_id = None
        if event.amount > ZERO:
            group = _transaction_group(event, shared_transaction)
            event.transaction_id = transaction_ids.get(group)
            if event.transaction_id is None:
                event.transaction_id = transaction_ids[group] = uuid.uuid4()
        event.row = StoredEvent(
            new_id(),
            now,
            now,
            merchant.id,
            event.input.idempotency_key,
            event.input.request_hash,
            event.customer.id,
            event.subscription.id,
            event.entitlement.id if event.entitlement else None,
            event.input.timestamp,
            event.currency,
            event.amount,
            event.commission,
            event.owner_revenue,
            None,  # balance_after: known under the lock, set by _write
            event.transaction_id,
            None,
            event.input.metadata,
            "",
            merchant,
        )
        event.line_rows = [
            StoredLine(
                now,
                now,
                merchant.id,
                event.row.id,
                position,
                line.metric.id,
                line.price.id,
                event.customer.id,
                event.subscription.id,
                event.input.timestamp,
                line.quantity,
                line.value,
                line.value_text,
                line.payment_term,
                line.unit_price,
                line.amount,
            )
            for position, line in enumerate(event.lines)
        ]
    event_values, line_values = attrgetter(*EVENT_COLUMNS), attrgetter(*LINE_COLUMNS)
    return _PreparedRows(
        ordered,
        insert_rows(UsageEvent, EVENT_COLUMNS, [event_values(e.row) for e in ordered]),
        insert_rows(
            UsageLine,
            LINE_COLUMNS,
            [line_values(line) for e in ordered for line in e.line_rows],
            generated=SERVER_IDS,
        ),
    )


def _write(merchant, prepared: _PreparedRows, counters, touched_counters, now) -> None:
    """Write the charged events, their lines, counters, entitlements and ledger transactions:
    one round trip for the ledger and the rows beside it."""
    charged = prepared.events
    groups: dict = defaultdict(list)
    for event in charged:
        if event.transaction_id is not None:
            groups[event.transaction_id].append(event)
    specs = []
    for transaction_id, members in groups.items():
        currency = members[0].currency
        debits: dict = {}
        for event in members:
            wallet = event.subscription.wallet
            source = wallet.held_account if event.entitlement is not None else wallet.available_account
            debits[source.id] = (source, debits.get(source.id, (source, ZERO))[1] + event.amount)
        total = sum((e.amount for e in members), ZERO)
        commission = sum((e.commission for e in members), ZERO)
        specs.append(
            TransactionSpec(
                merchant=merchant,
                kind=LedgerTransaction.Kind.USAGE,
                currency=currency,
                postings=[
                    *(Posting(source, -amount) for source, amount in debits.values()),
                    Posting(merchant_revenue_account(merchant=merchant, currency=currency), total - commission),
                    Posting(platform_commission_account(currency=currency, livemode=merchant.livemode), commission),
                ],
                description=f"usage: {len(members)} event(s)",
                metadata={"events": len(members)},
                id=transaction_id,
            )
        )

    # The balances after each charge are known only now, under the lock.
    for event in charged:
        event.row.balance_after = event.balance_after
    event_params = list(prepared.event_insert.params)
    event_params[BALANCE_AFTER_PARAM] = array_param([e.balance_after for e in charged], "numeric")
    statements = [Statement(prepared.event_insert.sql, event_params), prepared.line_insert]
    if touched_counters:
        upsert = insert_rows(
            UsageCounter,
            COUNTER_COLUMNS,
            [(new_id(), now, now, merchant.id, *key, counters[key]) for key in sorted(touched_counters, key=str)],
        )
        statements.append(
            Statement(
                upsert.sql + " ON CONFLICT (merchant_id, subscription_id, price_id, period_start) "
                "DO UPDATE SET units = EXCLUDED.units, updated_at = EXCLUDED.updated_at",
                upsert.params,
            )
        )
    try:
        # No savepoint: a duplicate key aborts the whole transaction, and the caller starts
        # again (the other request's event is then a replay).
        if specs:
            ledger_post_many(specs, wallets_locked=True, then=statements)
        else:
            run_statements(statements)
    except IntegrityError as exc:
        if violated_constraint(exc) != IDEMPOTENCY_CONSTRAINT:
            raise
        raise _DuplicateRace() from exc

    entitlements = {e.entitlement.id: e.entitlement for e in charged if e.entitlement is not None}
    items = {line.entitlement_item.id: line.entitlement_item for e in charged if e.entitlement for line in e.lines}
    for item in items.values():
        item.save(update_fields=["remaining_quantity", "remaining_amount", "updated_at"])
    for entitlement in entitlements.values():
        entitlement_after_use(entitlement=entitlement)


# ---------------------------------------------------------------------------- public services


def usage_record(*, merchant, raw: dict) -> dict:
    """Charge one usage event (or replay it). Raises the ApiError that refuses it."""
    now = timezone.now()
    return record_one(merchant, parse_usage_event(raw, now=now), now)


def record_one(merchant, event: UsageInput, now) -> dict:
    """Charge one parsed event (or replay it); raises the ApiError that refuses it. One
    transaction from the lookup on: the wallet is locked as its subscription is read."""
    outcome = record_many(merchant, {0: event}, now, lock_first=True)[0]
    if isinstance(outcome, ApiError):
        raise outcome
    return outcome


def _contended(event: UsageInput) -> Conflict:
    return Conflict(f"idempotencyKey {event.idempotency_key!r} is contended; retry.", code="IDEMPOTENCY_KEY_IN_USE")


def _record_attempt(merchant, pending: dict, now, outcomes: dict, lock_first: bool, shared_transaction: bool) -> None:
    """One attempt of `record_many` for the `pending` events: fills `outcomes`; raises
    _DuplicateRace or StalePreparedStatement when it must start again."""
    existing, subscriptions, locked = _lookup(merchant, list(pending.values()), lock_wallets=lock_first)
    for index, event in list(pending.items()):
        if event.idempotency_key in existing:
            try:
                outcomes[index] = _replay(existing[event.idempotency_key], event.request_hash)
            except ApiError as error:
                outcomes[index] = error
            del pending[index]
    if not pending:
        return
    indexes = list(pending)
    resolved = _resolve(merchant, [pending[i] for i in indexes], now, subscriptions)
    to_charge = []
    for index, outcome in zip(indexes, resolved, strict=True):
        if isinstance(outcome, ApiError):
            outcomes[index] = outcome
        else:
            to_charge.append((index, outcome))
    if not to_charge:
        return
    charged = _charge(merchant, [r for _, r in to_charge], now, locked, shared_transaction=shared_transaction)
    for (index, _), outcome in zip(to_charge, charged, strict=True):
        if isinstance(outcome, ApiError):
            outcomes[index] = outcome
        else:
            outcomes[index] = usage_event_data(outcome.row, outcome.line_rows)


def record_many(merchant, parsed: dict, now, *, lock_first: bool = False, shared_transaction: bool = True) -> dict:
    """Charge parsed events together ({index: UsageInput}); each succeeds or fails on its own.

    Returns {index: the event's response body, or the ApiError that refuses it}. The same
    key twice: the later one is a replay of the first, or a 409 if its body differs.

    `lock_first`: one transaction from the lookup on, the wallets locked as the subscriptions
    are read (one round trip fewer; for single reports and small rounds). Refusals are
    outcomes, not exceptions, so such a transaction that wrote nothing ends in a COMMIT: a
    ROLLBACK would make psycopg forget the connection's prepared statements. Without it, a
    large batch resolves its events before it takes any lock, so that concurrent batches hold
    their wallets for less time.

    `shared_transaction`: one ledger transaction per currency for all the events (a batch), or
    one per event (single reports charged together, each answered as if alone).
    """
    outcomes: dict = {}
    first_index: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    for index, event in parsed.items():
        if event.idempotency_key in first_index:
            duplicates[index] = first_index[event.idempotency_key]
        else:
            first_index[event.idempotency_key] = index

    for _ in range(CONFLICT_RETRIES):
        pending = {i: e for i, e in parsed.items() if i not in duplicates and i not in outcomes}
        try:
            with transaction.atomic() if lock_first else nullcontext():
                _record_attempt(merchant, pending, now, outcomes, lock_first, shared_transaction)
        except (_DuplicateRace, StalePreparedStatement):
            continue
        break
    else:
        for index, event in parsed.items():
            if index not in outcomes and index not in duplicates:
                outcomes[index] = _contended(event)

    for index, first in duplicates.items():
        if parsed[first].request_hash == parsed[index].request_hash:
            outcomes[index] = outcomes[first]
        else:
            key = parsed[index].idempotency_key
            outcomes[index] = Conflict(
                f"idempotencyKey {key!r} appears earlier in this batch (events[{first}]) with a different body.",
                code="IDEMPOTENCY_KEY_REUSED",
            )
    return outcomes


def _failure(index: int, key, error: ApiError) -> dict:
    body = error.as_body()
    body["status"] = error.status_code
    return {"index": index, "idempotencyKey": key, "error": body}


def usage_record_batch(*, merchant, raw_events) -> tuple[int, dict]:
    """Charge up to 1,000 events; each succeeds or fails on its own. Returns (status, body)."""
    if not isinstance(raw_events, list) or not raw_events:
        raise FieldError("events", "must be a non-empty list of usage events", code="REQUIRED")
    if len(raw_events) > MAX_BATCH_EVENTS:
        raise FieldError(
            "events", f"holds {len(raw_events)} events; a batch holds at most {MAX_BATCH_EVENTS}", code="TOO_MANY"
        )
    now = timezone.now()
    results: dict[int, dict] = {}
    failures: dict[int, dict] = {}
    parsed: dict[int, UsageInput] = {}
    for index, raw in enumerate(raw_events):
        try:
            parsed[index] = parse_usage_event(raw, prefix=f"events[{index}].", now=now)
        except ApiError as error:
            key = raw.get("idempotencyKey") if isinstance(raw, dict) else None
            failures[index] = _failure(index, key, error)
    for index, outcome in record_many(merchant, parsed, now).items():
        if isinstance(outcome, ApiError):
            failures[index] = _failure(index, parsed[index].idempotency_key, outcome)
        else:
            results[index] = outcome

    successful = [results[i] for i in sorted(results)]
    failed = [failures[i] for i in sorted(failures)]
    charged_total: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for body in successful:
        charged_total[body["billing"]["currency"]] += Decimal(body["billing"]["totalAmount"])
    summary = {
        "total": len(raw_events),
        "succeeded": len(successful),
        "failed": len(failed),
        "charged": {
            currency: format_amount(round_amount(amount), currency) for currency, amount in charged_total.items()
        },
    }
    status = 201 if not failed else 207
    return status, {"object": "usageBatch", "successful": successful, "failed": failed, "summary": summary}
