from django.db.models import Prefetch, QuerySet

from apps.core.errors import NotFound
from apps.invoices.models import Invoice, InvoiceLine
from apps.invoices.services.lines import FeePeriod, LineSpec, period_lines
from apps.subscriptions.models import BillingPeriod


def _with_rows(queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
    return queryset.select_related("merchant", "payment_session").prefetch_related(
        Prefetch("lines", queryset=InvoiceLine.objects.order_by("position"))
    )


def invoice_list(*, merchant, customer_id=None, subscription_id=None, status=None) -> QuerySet[Invoice]:
    queryset = Invoice.objects.filter(merchant=merchant)
    if customer_id is not None:
        queryset = queryset.filter(customer_id=customer_id)
    if subscription_id is not None:
        queryset = queryset.filter(subscription_id=subscription_id)
    if status is not None:
        queryset = queryset.filter(status=status)
    return _with_rows(queryset).order_by("-created_at", "-id")


def invoice_get(*, merchant, invoice_id) -> Invoice:
    invoice = _with_rows(Invoice.objects.filter(merchant=merchant, pk=invoice_id)).first()
    if invoice is None:
        raise NotFound(f"No invoice {invoice_id}.", code="INVOICE_NOT_FOUND")
    return invoice


def invoice_estimate(*, subscription) -> list[LineSpec]:
    """What the subscription's invoice for its current period would say if the period ended
    now: its usage so far and in_arrears fees (LineSpecs, informational lines included); the next
    period's in_advance fees, which the real invoice adds, are not in it."""
    period = (
        BillingPeriod.objects.select_related("plan")
        .filter(subscription=subscription, status=BillingPeriod.Status.OPEN)
        .order_by("-start")
        .first()
    )
    if period is None:
        return []
    return period_lines(subscription, FeePeriod(period.plan, period.start, period.end, period.share), None)
