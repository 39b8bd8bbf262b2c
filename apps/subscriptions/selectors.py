import functools
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import Prefetch, QuerySet

from apps.core.bulk import Statement, array_param, run_statements
from apps.core.errors import Conflict, NotFound
from apps.core.process_cache import ProcessCache
from apps.payments.models import PaymentSession
from apps.payments.selectors import latest_sessions
from apps.subscriptions.models import BillingPeriod, Subscription


def subscription_list(*, merchant, filters: dict | None = None) -> QuerySet[Subscription]:
    filters = filters or {}
    activation_sessions = Prefetch(
        "payment_sessions",
        queryset=latest_sessions(purpose=PaymentSession.Purpose.ACTIVATION),
        to_attr="activation_sessions",
    )
    queryset = (
        Subscription.objects.filter(merchant=merchant)
        .select_related("merchant", "wallet", "plan")
        .prefetch_related(activation_sessions)
        .order_by("-created_at", "-id")
    )
    if filters.get("customer_id"):
        queryset = queryset.filter(customer_id=filters["customer_id"])
    if filters.get("plan_id"):
        queryset = queryset.filter(plan_id=filters["plan_id"])
    if filters.get("status"):
        queryset = queryset.filter(status=filters["status"])
    return queryset


def subscription_get(*, merchant, subscription_id) -> Subscription:
    subscription = (
        Subscription.objects.select_related("merchant", "wallet", "plan", "customer")
        .filter(merchant=merchant, pk=subscription_id)
        .first()
    )
    if subscription is None:
        raise NotFound(f"No subscription {subscription_id}.", code="SUBSCRIPTION_NOT_FOUND")
    return subscription


def customer_has_live_subscription(*, customer) -> bool:
    """Whether the customer has a subscription that is not terminated."""
    return Subscription.objects.filter(customer=customer).exclude(status=Subscription.Status.TERMINATED).exists()


def plan_live_subscription_count(plan) -> int:
    """How many subscriptions to `plan` are not terminated (registered with the catalog's hooks)."""
    return Subscription.objects.filter(plan=plan).exclude(status=Subscription.Status.TERMINATED).count()


def refuse_archiving_a_billed_customer(customer) -> None:
    """A customer with a subscription that is not terminated is not archived (registered with the
    customers' hooks): 409 CUSTOMER_HAS_ACTIVE_SUBSCRIPTION."""
    if customer_has_live_subscription(customer=customer):
        raise Conflict(
            f"Customer {customer.id} has a subscription that is not terminated; terminate it before deleting "
            "the customer.",
            code="CUSTOMER_HAS_ACTIVE_SUBSCRIPTION",
        )


class SubscriptionIndex(dict):
    """Subscriptions by id, indexed once for a whole batch: the chargeable ones (active, past_due)
    by customer, and the highest minimumAccountBalance of those sharing each wallet."""

    def __init__(self, rows):
        super().__init__((row.id, row) for row in rows)
        self.active_by_customer: dict = {}
        self.wallet_minimum: dict = {}
        for row in rows:
            if row.status not in Subscription.CHARGEABLE:
                continue
            self.active_by_customer.setdefault(row.customer_id, []).append(row)
            current = self.wallet_minimum.get(row.wallet_id)
            if current is None or row.minimum_account_balance > current:
                self.wallet_minimum[row.wallet_id] = row.minimum_account_balance


# A plan's prices, per process, under (plan id, plan.updated_at): catalog services touch a
# plan whenever its prices change, and the TTL bounds any change made around them.
_plan_prices = ProcessCache(ttl_seconds=300)


def plan_metric_prices(plans) -> dict:
    """{plan id: {billable_metric_id: price}} for the metered prices of these plans, each
    price with its parsed pricing strategy as `parsed_strategy`."""
    from apps.catalog.models import Plan
    from apps.catalog.pricing import pricing_strategy

    result, missing = {}, {}
    for plan in plans:
        cached = _plan_prices.get((plan.id, plan.updated_at))
        if cached is None:
            missing[plan.id] = plan
        else:
            result[plan.id] = cached
    if missing:
        loaded: dict = {plan_id: {} for plan_id in missing}
        links = Plan.prices.through.objects.filter(
            plan_id__in=list(missing), price__billable_metric__isnull=False
        ).select_related("price__billable_metric")
        for link in links:
            price = link.price
            # parsed once here rather than on every line priced (see catalog.pricing.price_strategy);
            # a change to the price touches the plan, so it is loaded again under a new key
            price.parsed_strategy = pricing_strategy(price.model, price.properties)
            loaded[link.plan_id][price.billable_metric_id] = price
        for plan_id, prices in loaded.items():
            _plan_prices.set((plan_id, missing[plan_id].updated_at), prices)
            result[plan_id] = prices
    return result


@dataclass(frozen=True, slots=True)
class AccountRef:
    """What posting to a ledger account needs of it (see ledger.services.Posting)."""

    id: uuid.UUID
    kind: str
    currency: str
    shard_count: int
    livemode: bool

    def __str__(self):
        return f"{self.kind} {self.currency} ({self.id})"


@dataclass(frozen=True, slots=True)
class WalletRef:
    id: uuid.UUID
    currency: str
    available_account: AccountRef
    held_account: AccountRef

    @property
    def available_account_id(self):
        return self.available_account.id

    @property
    def held_account_id(self):
        return self.held_account.id


@dataclass(frozen=True, slots=True)
class CustomerRef:
    id: uuid.UUID
    archived_at: datetime | None


@dataclass(frozen=True, slots=True)
class PlanRef:
    id: uuid.UUID
    billing_interval: str
    currency: str
    updated_at: datetime


@dataclass(slots=True)
class UsageSubscription:
    """A subscription as charging reads it: plain values, read in one query."""

    id: uuid.UUID
    customer: CustomerRef
    plan: PlanRef
    wallet: WalletRef
    status: str
    started_at: datetime
    minimum_account_balance: Decimal
    # periods are counted from the anchor; the one running at a plan change is begun by it
    period_anchor: datetime
    switched_at: datetime | None
    metric_prices: dict = field(default_factory=dict)

    @property
    def customer_id(self):
        return self.customer.id

    @property
    def plan_id(self):
        return self.plan.id

    @property
    def wallet_id(self):
        return self.wallet.id


@functools.cache
def _usage_subscriptions_sql() -> str:
    from apps.catalog.models import Plan
    from apps.customers.models import Customer
    from apps.ledger.models import Account, Wallet

    account = "{a}.id, {a}.kind, {a}.currency, {a}.shard_count, {a}.livemode"
    return (
        "SELECT s.id, s.status, s.started_at, s.minimum_account_balance, "  # noqa: S608 (names from models)
        "c.id, c.archived_at, p.id, p.billing_interval, p.currency, p.updated_at, w.id, w.currency, "
        f"{account.format(a='a')}, {account.format(a='h')}, s.period_anchor, s.switched_at "
        f"FROM {_USAGE_SCOPE} "
        f"JOIN {Customer._meta.db_table} c ON c.id = s.customer_id "
        f"JOIN {Plan._meta.db_table} p ON p.id = s.plan_id "
        f"JOIN {Wallet._meta.db_table} w ON w.id = s.wallet_id "
        f"JOIN {Account._meta.db_table} a ON a.id = w.available_account_id "
        f"JOIN {Account._meta.db_table} h ON h.id = w.held_account_id "
        f"WHERE {_USAGE_WHERE}"
    )


# The subscriptions that usage of these customers may be charged to (see usage_subscriptions).
# The customers' ids drive the query, one index lookup each: a LATERAL subquery with
# OFFSET 0 is not flattened, so the plan stays a nested loop over the ids whatever the
# planner guesses of the array's size (a prepared statement's generic plan cannot see it,
# and hashing every subscription of the merchant cost more than the charge).
_USAGE_SCOPE = (
    "unnest(%s::uuid[]) AS k(customer_id) CROSS JOIN LATERAL ("  # noqa: S608 (names from models)
    "SELECT s0.id, s0.merchant_id, s0.customer_id, s0.plan_id, s0.wallet_id, s0.status, s0.started_at, "
    "s0.minimum_account_balance, s0.period_anchor, s0.switched_at "
    f"FROM {Subscription._meta.db_table} s0 WHERE s0.customer_id = k.customer_id OFFSET 0) s"
)
_USAGE_WHERE = "s.merchant_id = %s AND (s.status = ANY(%s::text[]) OR s.id = ANY(%s::uuid[]))"
_USAGE_WALLET_IDS_SQL = f"SELECT s.wallet_id FROM {_USAGE_SCOPE} WHERE {_USAGE_WHERE}"  # noqa: S608 (no user input)


def _usage_params(merchant, customer_ids, explicit_ids) -> list:
    return [
        array_param(customer_ids),
        merchant.id,
        array_param([status.value for status in Subscription.CHARGEABLE], "text"),
        array_param(explicit_ids),
    ]


def usage_wallet_ids_statement(*, merchant, customer_ids, explicit_ids=()) -> Statement:
    """The ids of the wallets of the subscriptions that `usage_subscriptions` reads (a query for
    `ledger.lock_objects.wallets_lock_statement`, which locks their balance rows)."""
    return Statement(_USAGE_WALLET_IDS_SQL, _usage_params(merchant, customer_ids, explicit_ids))


def usage_subscriptions_statement(*, merchant, customer_ids, explicit_ids=()) -> Statement:
    """The query of `usage_subscriptions`, for a caller that sends it with other statements."""
    return Statement(_usage_subscriptions_sql(), _usage_params(merchant, customer_ids, explicit_ids))


def usage_subscriptions_from_rows(rows) -> SubscriptionIndex:
    """The SubscriptionIndex of the rows of `usage_subscriptions_statement`."""
    subscriptions = []
    for r in rows:
        wallet = WalletRef(r[10], r[11], AccountRef(*r[12:17]), AccountRef(*r[17:22]))
        subscriptions.append(
            UsageSubscription(r[0], CustomerRef(r[4], r[5]), PlanRef(*r[6:10]), wallet, r[1], r[2], r[3], r[22], r[23])
        )
    prices = plan_metric_prices({s.plan.id: s.plan for s in subscriptions}.values())
    for subscription in subscriptions:
        subscription.metric_prices = prices[subscription.plan.id]
    return SubscriptionIndex(subscriptions)


def usage_subscriptions(*, merchant, customer_ids, explicit_ids=()) -> SubscriptionIndex:
    """The customers' active subscriptions and the ones named explicitly, by id, each with
    `metric_prices`: {billable_metric_id: its price on the plan}. One query of plain values:
    a 1,000-event batch reads up to 1,000 of these."""
    statement = usage_subscriptions_statement(merchant=merchant, customer_ids=customer_ids, explicit_ids=explicit_ids)
    (rows,) = run_statements([statement])
    return usage_subscriptions_from_rows(rows)


def choose_subscription(*, customer_id, metric_ids, subscriptions, explicit_id=None) -> UsageSubscription:
    """The subscription that usage of `metric_ids` by the customer is charged to.

    `subscriptions` is the SubscriptionIndex of `usage_subscriptions`. The one named, else the customer's
    only active subscription whose plan prices the metrics (409 NO_ACTIVE_SUBSCRIPTION,
    409 AMBIGUOUS_SUBSCRIPTION, 422 METRIC_NOT_PRICED otherwise).
    """
    from apps.core.errors import Conflict, Unprocessable

    if explicit_id is not None:
        explicit = subscriptions.get(explicit_id)
        if explicit is None or explicit.customer_id != customer_id:
            raise NotFound(
                f"subscriptionId: no subscription {explicit_id} of customer {customer_id}.",
                code="SUBSCRIPTION_NOT_FOUND",
            )
        if explicit.status not in Subscription.CHARGEABLE:
            raise Conflict(
                f"Subscription {explicit.id} is {explicit.status}; usage is charged to an active subscription.",
                code="NO_ACTIVE_SUBSCRIPTION",
            )
        return explicit
    active = subscriptions.active_by_customer.get(customer_id, [])
    if not active:
        raise Conflict(
            f"Customer {customer_id} has no active subscription to charge this usage to.",
            code="NO_ACTIVE_SUBSCRIPTION",
        )
    candidates = [s for s in active if any(m in s.metric_prices for m in metric_ids)]
    if len(candidates) > 1:
        raise Conflict(
            f"Customer {customer_id} has {len(candidates)} active subscriptions whose plans price these metrics "
            f"({', '.join(str(s.id) for s in candidates)}); name one with subscriptionId.",
            code="AMBIGUOUS_SUBSCRIPTION",
            details={"subscriptionIds": [str(s.id) for s in candidates]},
        )
    if not candidates:
        raise Unprocessable(
            f"No active subscription of customer {customer_id} prices billable metric {metric_ids[0]}; "
            "add a price for it to the plan.",
            code="METRIC_NOT_PRICED",
        )
    return candidates[0]


def period_invoice_ids(events) -> dict:
    """{event id: the invoice of its period} for those of `events` (rows with subscription_id
    and timestamp) whose period has an invoice: one query for a page of events."""
    events = [e for e in events if e.subscription_id is not None]
    if not events:
        return {}
    periods = BillingPeriod.objects.filter(
        subscription_id__in={e.subscription_id for e in events},
        invoice_id__isnull=False,
        start__lte=max(e.timestamp for e in events),
        end__gt=min(e.timestamp for e in events),
    ).values_list("subscription_id", "start", "end", "invoice_id")
    by_subscription: dict = {}
    for subscription_id, start, end, invoice_id in periods:
        by_subscription.setdefault(subscription_id, []).append((start, end, invoice_id))
    found = {}
    for event in events:
        for start, end, invoice_id in by_subscription.get(event.subscription_id, ()):
            if start <= event.timestamp < end:
                found[event.id] = invoice_id
    return found
