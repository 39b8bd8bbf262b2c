"""Loading what the events name: every read of the charge, and the locks that come with them.

Before the charge's lock (or, for single reports, with it): `lookup` reads in one round trip
which keys are stored already, the subscriptions the events can be charged to and, inside the
charge's transaction, their wallets' balance rows, locked; `named_rows` loads what the
subscriptions did not bring (customers without an active subscription, metrics no plan of
theirs prices, the entitlements named). Under the lock: `lock_holds` (the entitlements named,
locked, and their items) and `period_counters` (the running totals of graduated, package and
free-unit prices). The locks are built by `apps.ledger.lock_objects`, which keeps their order.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Prefetch

from apps.catalog.models import BillableMetric
from apps.core.bulk import Statement, array_param, run_statements
from apps.customers.models import Customer
from apps.entitlements.models import Entitlement, EntitlementItem
from apps.ledger.lock_objects import locked_rows, wallets_lock_statement
from apps.merchants.models import Merchant
from apps.subscriptions.models import UsageCounter
from apps.subscriptions.selectors import (
    CustomerRef,
    SubscriptionIndex,
    usage_subscriptions_from_rows,
    usage_subscriptions_statement,
    usage_wallet_ids_statement,
)
from apps.usage.inputs import UsageInput
from apps.usage.models import UsageEvent, UsageLine

# {(account_id, shard): amount} of locked balance rows (see apps.ledger.lock_objects)
Balances = dict[tuple[uuid.UUID, int], Decimal]
# (subscription id, price id, period start) -> units charged in the period so far
CounterKey = tuple[uuid.UUID, uuid.UUID, datetime]
Counters = dict[CounterKey, Decimal]


@dataclass(slots=True)
class Lookup:
    """What `lookup` read: the stored events under the keys (almost always none), the
    subscriptions, and the locked balance rows (None when not asked to lock)."""

    existing: dict[str, UsageEvent]
    subscriptions: SubscriptionIndex
    balances: Balances | None


@dataclass(slots=True)
class NamedRows:
    """What the events name beyond their subscriptions, by id."""

    customers: dict[uuid.UUID, CustomerRef]
    metrics: dict[uuid.UUID, BillableMetric]
    entitlements: dict[uuid.UUID, Entitlement]


def stored_events(merchant: Merchant, keys) -> dict[str, UsageEvent]:
    """The stored events under `keys`, with their lines (replays are rare: the ORM is fine)."""
    if not keys:
        return {}
    queryset = (
        UsageEvent.objects.filter(merchant=merchant, idempotency_key__in=list(keys))
        .select_related("merchant")
        .prefetch_related(Prefetch("lines", queryset=UsageLine.objects.order_by("position")))
    )
    return {event.idempotency_key: event for event in queryset}


def lookup(merchant: Merchant, inputs: list[UsageInput], *, lock_wallets: bool = False) -> Lookup:
    """In one round trip: which keys are stored already (almost none are), the subscriptions
    the events can be charged to, and, with `lock_wallets` (inside the charge's transaction),
    their wallets' balance rows, locked."""
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
    existing = stored_events(merchant, [row[0] for row in found]) if found else {}
    balances = {(account_id, shard): amount for account_id, shard, amount in locked[0]} if locked else None
    return Lookup(existing, usage_subscriptions_from_rows(rows), balances)


def named_rows(merchant: Merchant, inputs: list[UsageInput], subscriptions: SubscriptionIndex) -> NamedRows:
    """The customers, metrics and entitlements the events name. The subscriptions bring their
    customers and their plans' prices with the metrics, so that the usual event needs no other
    read; the rest is loaded only when missing (one query each)."""
    customer_ids = {i.customer_id for i in inputs}
    metric_ids = {p.billable_metric_id for i in inputs for p in i.properties}
    entitlement_ids = {i.entitlement_id for i in inputs if i.entitlement_id}

    customers = {s.customer_id: s.customer for s in subscriptions.values()}
    metrics = {
        price.billable_metric_id: price.billable_metric
        for s in subscriptions.values()
        for price in s.metric_prices.values()
    }
    missing_customers = customer_ids - customers.keys()
    if missing_customers:
        rows = Customer.objects.filter(merchant=merchant, pk__in=missing_customers).values_list("id", "archived_at")
        customers.update({row[0]: CustomerRef(*row) for row in rows})
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
    return NamedRows(customers, metrics, entitlements)


def lock_holds(entitlement_ids) -> tuple[dict[uuid.UUID, Entitlement], dict[uuid.UUID, EntitlementItem]]:
    """The entitlements, locked (after the wallets' balance rows: their lock guards the items
    too), and all their items, each by id (two queries)."""
    entitlements = {e.id: e for e in locked_rows(Entitlement.objects.filter(pk__in=entitlement_ids))}
    items = {
        item.id: item
        for item in EntitlementItem.objects.filter(entitlement_id__in=entitlement_ids).select_related("price")
    }
    return entitlements, items


def period_counters(merchant: Merchant, keys: set[CounterKey]) -> Counters:
    """The running totals of the period for `keys` that have one (read under the wallets' lock,
    which guards them: every charge that moves them holds it)."""
    rows = UsageCounter.objects.filter(
        merchant=merchant,
        subscription_id__in={k[0] for k in keys},
        price_id__in={k[1] for k in keys},
        period_start__in={k[2] for k in keys},
    )
    return {(r.subscription_id, r.price_id, r.period_start): r.units for r in rows}
