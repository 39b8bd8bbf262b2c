from django.db.models import Q, QuerySet

from apps.core.errors import NotFound
from apps.core.process_cache import ProcessCache
from apps.subscriptions.models import PaymentSession, Subscription


def subscription_list(*, merchant, filters: dict | None = None) -> QuerySet[Subscription]:
    filters = filters or {}
    queryset = (
        Subscription.objects.filter(merchant=merchant).select_related("merchant", "wallet").order_by("-created_at")
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


def payment_session_get(*, merchant, session_id) -> PaymentSession:
    session = PaymentSession.objects.select_related("merchant").filter(merchant=merchant, pk=session_id).first()
    if session is None:
        raise NotFound(f"No payment session {session_id}.", code="PAYMENT_SESSION_NOT_FOUND")
    return session


def customer_has_live_subscription(*, customer) -> bool:
    """Whether the customer has a subscription that is not terminated."""
    return Subscription.objects.filter(customer=customer).exclude(status=Subscription.Status.TERMINATED).exists()


class SubscriptionIndex(dict):
    """Subscriptions by id, indexed once for a whole batch: the active ones by customer, and
    the highest minimumAccountBalance of the active ones sharing each wallet."""

    def __init__(self, rows):
        super().__init__((row.id, row) for row in rows)
        self.active_by_customer: dict = {}
        self.wallet_minimum: dict = {}
        for row in rows:
            if row.status != Subscription.Status.ACTIVE:
                continue
            self.active_by_customer.setdefault(row.customer_id, []).append(row)
            current = self.wallet_minimum.get(row.wallet_id)
            if current is None or row.minimum_account_balance > current:
                self.wallet_minimum[row.wallet_id] = row.minimum_account_balance


USAGE_SUBSCRIPTION_FIELDS = (
    "merchant_id",
    "customer_id",
    "plan_id",
    "wallet_id",
    "name",
    "status",
    "started_at",
    "minimum_account_balance",
)
ACCOUNT_FIELDS = ("merchant_id", "customer_id", "kind", "currency", "source", "shard_count")

# A plan's prices, per process, under (plan id, plan.updated_at): catalog services touch a
# plan whenever its prices change, and the TTL bounds any change made around them.
_plan_prices = ProcessCache(ttl_seconds=300)


def plan_metric_prices(plans) -> dict:
    """{plan id: {billable_metric_id: price}} for the metered prices of these plans."""
    from apps.catalog.models import Plan

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
            loaded[link.plan_id][link.price.billable_metric_id] = link.price
        for plan_id, prices in loaded.items():
            _plan_prices.set((plan_id, missing[plan_id].updated_at), prices)
            result[plan_id] = prices
    return result


def usage_subscriptions(*, merchant, customer_ids, explicit_ids=()) -> SubscriptionIndex:
    """The customers' active subscriptions and the ones named explicitly, by id, each with
    `metric_prices`: {billable_metric_id: its price on the plan}."""
    queryset = (
        Subscription.objects.filter(merchant=merchant, customer_id__in=customer_ids)
        .filter(Q(status=Subscription.Status.ACTIVE) | Q(pk__in=list(explicit_ids)))
        .select_related("customer", "plan", "wallet", "wallet__available_account", "wallet__held_account")
        # Only what charging reads: a 1,000-event batch builds 6,000 of these objects.
        .only(
            *USAGE_SUBSCRIPTION_FIELDS,
            "customer__merchant_id",
            "customer__archived_at",
            "plan__billing_interval",
            "plan__currency",
            "plan__updated_at",
            "wallet__merchant_id",
            "wallet__customer_id",
            "wallet__currency",
            *(f"wallet__{side}__{name}" for side in ("available_account", "held_account") for name in ACCOUNT_FIELDS),
        )
    )
    rows = list(queryset)
    prices = plan_metric_prices({s.plan_id: s.plan for s in rows}.values())
    for subscription in rows:
        subscription.metric_prices = prices[subscription.plan_id]
    return SubscriptionIndex(rows)


def choose_subscription(*, customer_id, metric_ids, subscriptions, explicit_id=None) -> Subscription:
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
        if explicit.status != Subscription.Status.ACTIVE:
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
