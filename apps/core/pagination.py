"""List pagination of the contract: `?limit=&offset=` ->
`{"object": "list", "data": [...], "pagination": {"limit", "offset", "total"}}`."""

from django.core.exceptions import ImproperlyConfigured
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from apps.core.errors import FieldError

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


def _parse_non_negative(raw, name: str, default: int, maximum: int | None = None) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise FieldError(name, f"must be a whole number, got {raw!r}", code="INVALID_NUMBER") from None
    if value < 0:
        raise FieldError(name, "must not be negative", code="OUT_OF_RANGE")
    if maximum is not None and value > maximum:
        raise FieldError(name, f"must be at most {maximum}", code="OUT_OF_RANGE")
    return value


def check_total_order(queryset) -> None:
    """Offset paging is exact only over a total order: one that ends in the id. Rows that share
    every other sort key (a batch's events share a timestamp) would otherwise come back in any
    order on each page's query, and paging would skip some and repeat others."""
    ordering = [str(key) for key in queryset.query.order_by]
    if not ordering or ordering[-1].lstrip("-") not in ("id", "pk"):
        raise ImproperlyConfigured(
            f"A {queryset.model.__name__} list must be ordered by keys that end in the id; it is ordered by {ordering}."
        )


class LimitOffsetListPagination(LimitOffsetPagination):
    default_limit = DEFAULT_LIMIT
    max_limit = MAX_LIMIT

    def paginate_queryset(self, queryset, request, view=None):
        check_total_order(queryset)
        return super().paginate_queryset(queryset, request, view)

    def get_limit(self, request):
        limit = _parse_non_negative(request.query_params.get("limit"), "limit", self.default_limit, self.max_limit)
        if limit == 0:
            raise FieldError("limit", "must be at least 1", code="OUT_OF_RANGE")
        return limit

    def get_offset(self, request):
        return _parse_non_negative(request.query_params.get("offset"), "offset", 0)

    def get_paginated_response(self, data):
        return Response(
            {
                "object": "list",
                "data": data,
                "pagination": {"limit": self.limit, "offset": self.offset, "total": self.count},
            }
        )

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["object", "data", "pagination"],
            "properties": {
                "object": {"type": "string", "enum": ["list"]},
                "data": schema,
                "pagination": {
                    "type": "object",
                    "properties": {
                        "limit": {"type": "integer"},
                        "offset": {"type": "integer"},
                        "total": {"type": "integer"},
                    },
                },
            },
        }
