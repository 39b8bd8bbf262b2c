from datetime import UTC

from django.db import connection
from django.db.models import Prefetch, QuerySet, Sum
from django.db.models.functions import TruncDate

from apps.core.errors import NotFound
from apps.core.money import ZERO
from apps.usage.models import Dispute, UsageEvent, UsageLine


def usage_events(*, merchant) -> QuerySet[UsageEvent]:
    return (
        UsageEvent.objects.filter(merchant=merchant)
        .select_related("merchant")
        .prefetch_related(Prefetch("lines", queryset=UsageLine.objects.order_by("position")))
    )


def usage_event_list(
    *, merchant, customer_id=None, subscription_id=None, metric_id=None, start=None, end=None
) -> QuerySet[UsageEvent]:
    """The merchant's usage events, newest first, filtered by what is given ([start, end))."""
    queryset = usage_events(merchant=merchant).order_by("-timestamp", "-created_at", "-id")
    if customer_id:
        queryset = queryset.filter(customer_id=customer_id)
    if subscription_id:
        queryset = queryset.filter(subscription_id=subscription_id)
    if metric_id:
        queryset = queryset.filter(lines__billable_metric_id=metric_id).distinct()
    if start:
        queryset = queryset.filter(timestamp__gte=start)
    if end:
        queryset = queryset.filter(timestamp__lt=end)
    return queryset


def price_has_usage(price) -> bool:
    """Whether any usage line was priced by `price` (registered with the catalog's hooks)."""
    return UsageLine.objects.filter(price_id=price.pk).exists()


def metric_has_usage(metric) -> bool:
    """Whether any usage line reports `metric` (registered with the catalog's hooks)."""
    return UsageLine.objects.filter(billable_metric_id=metric.pk).exists()


def dispute_list(*, merchant, status=None, customer_id=None) -> QuerySet[Dispute]:
    queryset = Dispute.objects.filter(merchant=merchant).select_related("merchant").order_by("-created_at", "-id")
    if status:
        queryset = queryset.filter(status=status)
    if customer_id:
        queryset = queryset.filter(customer_id=customer_id)
    return queryset


def usage_event_get(*, merchant, event_id) -> UsageEvent:
    event = usage_events(merchant=merchant).select_related("subscription__wallet").filter(pk=event_id).first()
    if event is None:
        raise NotFound(f"No usage event {event_id}.", code="USAGE_EVENT_NOT_FOUND")
    return event


def dispute_get(*, merchant, dispute_id) -> Dispute:
    dispute = (
        Dispute.objects.filter(merchant=merchant, pk=dispute_id)
        .select_related("merchant", "usage_event__subscription__wallet")
        .first()
    )
    if dispute is None:
        raise NotFound(f"No dispute {dispute_id}.", code="DISPUTE_NOT_FOUND")
    return dispute


# The keys of usage rows that the database does not check (see unchecked_foreign_key):
# (model, field). The charge writes them from rows it read in the same transaction.
UNCHECKED_KEYS = (
    (UsageEvent, "customer"),
    (UsageEvent, "subscription"),
    (UsageEvent, "entitlement"),
    (UsageEvent, "ledger_transaction"),
    (UsageLine, "event"),
    (UsageLine, "billable_metric"),
    (UsageLine, "price"),
    (UsageLine, "customer"),
    (UsageLine, "subscription"),
)


def usage_check(*, since=None) -> list[str]:
    """Usage rows whose unchecked keys point at nothing, and events whose stored total is not
    the sum of their lines' (at most 100 of each kind). An empty list means every usage row
    is whole. `since`: only rows created from then on (the whole table takes a while on
    millions of events)."""
    problems: list[str] = []
    recent = "r.created_at >= %s" if since is not None else "TRUE"
    params = [since] if since is not None else []
    with connection.cursor() as cursor:
        for model, name in UNCHECKED_KEYS:
            field = model._meta.get_field(name)
            table, column = model._meta.db_table, field.column
            parent = field.related_model._meta
            cursor.execute(
                f"SELECT r.id, r.{column} FROM {table} r LEFT JOIN {parent.db_table} p "  # noqa: S608 (names only)
                f"ON p.{parent.pk.column} = r.{column} WHERE {recent} AND r.{column} IS NOT NULL "
                f"AND p.{parent.pk.column} IS NULL ORDER BY 1 LIMIT 100",
                params,
            )
            for row_id, missing in cursor.fetchall():
                problems.append(f"{model._meta.label} {row_id}: {name} {missing} does not exist")
        cursor.execute(
            f"""
            SELECT r.id, r.amount, COALESCE(SUM(l.amount), 0)
            FROM {UsageEvent._meta.db_table} r LEFT JOIN {UsageLine._meta.db_table} l ON l.event_id = r.id
            WHERE {recent}
            GROUP BY r.id, r.amount HAVING r.amount <> COALESCE(SUM(l.amount), 0) OR COUNT(l.id) = 0
            ORDER BY 1 LIMIT 100
            """,  # noqa: S608 (table names only)
            params,
        )
        for event_id, amount, lines_total in cursor.fetchall():
            problems.append(f"usage event {event_id}: amount {amount}, but its lines sum to {lines_total}")
    return problems


def usage_daily(*, merchant, customer_id, start, end, metric_id=None) -> list[dict]:
    """A customer's usage in [start, end) per metric and UTC day, refunded events left out:
    `[{"metric_id", "metric_name", "day" (a date), "quantity", "amount" (charged at once; in_arrears
    lines are priced on the invoice), "currency"}]`, ordered by metric name, then day."""
    lines = UsageLine.objects.filter(
        merchant=merchant,
        customer_id=customer_id,
        timestamp__gte=start,
        timestamp__lt=end,
        event__refunded_at__isnull=True,
    )
    if metric_id is not None:
        lines = lines.filter(billable_metric_id=metric_id)
    rows = (
        lines.annotate(day=TruncDate("timestamp", tzinfo=UTC))
        .values("billable_metric_id", "billable_metric__name", "day", "event__currency")
        .annotate(quantity=Sum("quantity"), amount=Sum("amount"))
        .order_by("billable_metric__name", "billable_metric_id", "day")
    )
    return [
        {
            "metric_id": row["billable_metric_id"],
            "metric_name": row["billable_metric__name"],
            "day": row["day"],
            "quantity": row["quantity"],
            "amount": row["amount"] or ZERO,
            "currency": row["event__currency"],
        }
        for row in rows
    ]
