from apps.core.errors import NotFound
from apps.settlements.models import Settlement


def settlement_get(*, merchant, settlement_id) -> Settlement:
    settlement = Settlement.objects.select_related("merchant").filter(merchant=merchant, pk=settlement_id).first()
    if settlement is None:
        raise NotFound(f"No settlement {settlement_id}.", code="SETTLEMENT_NOT_FOUND")
    return settlement


def settlement_list(*, merchant, invoice_id=None):
    queryset = Settlement.objects.select_related("merchant").filter(merchant=merchant)
    if invoice_id is not None:
        queryset = queryset.filter(invoice_id=invoice_id)
    return queryset.order_by("-created_at", "-id")
