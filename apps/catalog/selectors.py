"""Reads of the catalog, always within one merchant row (live or sandbox).

A row of another merchant or of the other mode is a 404 that does not admit it exists.
`field`, where given, is the request field that named the id (`productId`), so that the
404 says which reference was wrong.
"""

import uuid
from typing import Any

from django.db.models import Prefetch, QuerySet

from apps.catalog.models import BillableMetric, Plan, Price, Product
from apps.core.errors import NotFound
from apps.merchants.models import Merchant


def reference_not_found(*, noun: str, id: Any, field: str | None, merchant: Merchant) -> NotFound:
    mode = "live" if merchant.livemode else "sandbox"
    if field:
        return NotFound(
            f"{field}: no {noun} with id {id} exists for this merchant in {mode} mode.",
            details={"field": field, "id": str(id)},
        )
    return NotFound(f"No {noun} with id {id}.", details={"id": str(id)})


def _get(queryset: QuerySet, *, noun: str, merchant: Merchant, id: Any, field: str | None):
    try:
        pk = id if isinstance(id, uuid.UUID) else uuid.UUID(str(id))
    except (TypeError, ValueError):
        raise reference_not_found(noun=noun, id=id, field=field, merchant=merchant) from None
    row = queryset.filter(merchant=merchant, pk=pk).first()
    if row is None:
        raise reference_not_found(noun=noun, id=id, field=field, merchant=merchant)
    return row


def product_list(*, merchant: Merchant, filters: dict | None = None) -> QuerySet[Product]:
    return Product.objects.filter(merchant=merchant).select_related("merchant").order_by("-created_at", "-id")


def product_get(*, merchant: Merchant, id: Any, field: str | None = None) -> Product:
    return _get(Product.objects.select_related("merchant"), noun="product", merchant=merchant, id=id, field=field)


def billable_metric_list(*, merchant: Merchant, filters: dict | None = None) -> QuerySet[BillableMetric]:
    filters = filters or {}
    queryset = BillableMetric.objects.filter(merchant=merchant).select_related("merchant")
    if filters.get("product_id"):
        queryset = queryset.filter(product_id=filters["product_id"])
    return queryset.order_by("-created_at", "-id")


def billable_metric_get(*, merchant: Merchant, id: Any, field: str | None = None) -> BillableMetric:
    return _get(
        BillableMetric.objects.select_related("merchant", "product"),
        noun="billable metric",
        merchant=merchant,
        id=id,
        field=field,
    )


def price_list(*, merchant: Merchant, filters: dict | None = None) -> QuerySet[Price]:
    """Active prices; archived ones leave the list (they stay readable by id)."""
    filters = filters or {}
    queryset = Price.objects.filter(merchant=merchant, archived_at__isnull=True).select_related("merchant")
    if filters.get("billable_metric_id"):
        queryset = queryset.filter(billable_metric_id=filters["billable_metric_id"])
    if filters.get("currency"):
        queryset = queryset.filter(currency=filters["currency"])
    return queryset.order_by("-created_at", "-id")


def price_get(*, merchant: Merchant, id: Any, field: str | None = None) -> Price:
    return _get(
        Price.objects.select_related("merchant", "billable_metric"), noun="price", merchant=merchant, id=id, field=field
    )


def _plans() -> QuerySet[Plan]:
    return Plan.objects.select_related("merchant").prefetch_related(
        Prefetch("prices", queryset=Price.objects.select_related("billable_metric").order_by("created_at", "id"))
    )


def plan_list(*, merchant: Merchant, filters: dict | None = None) -> QuerySet[Plan]:
    filters = filters or {}
    queryset = _plans().filter(merchant=merchant)
    if filters.get("code"):
        queryset = queryset.filter(code=filters["code"])
    if filters.get("product_id"):
        queryset = queryset.filter(product_id=filters["product_id"])
    return queryset.order_by("-created_at", "-id")


def plan_get(*, merchant: Merchant, id: Any, field: str | None = None) -> Plan:
    return _get(_plans(), noun="plan", merchant=merchant, id=id, field=field)
