from django.db.models import Prefetch, QuerySet

from apps.core.errors import NotFound
from apps.invoices.models import Invoice, InvoiceLine


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
