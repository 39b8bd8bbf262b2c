"""The base of every /v0 view: merchant key auth, the `merchantId` check, and
Idempotency-Key handling on POST."""

import json
import uuid

from django.http import HttpResponse
from rest_framework.views import APIView

from apps.core.errors import FieldError, Forbidden
from apps.core.idempotency import (
    HEADER,
    Replay,
    idempotency_claim,
    idempotency_complete,
    request_fingerprint,
    validate_key,
)
from apps.core.pagination import LimitOffsetListPagination

IDEMPOTENT_METHODS = ("POST",)


def uuid_param(request, name: str):
    """A query parameter that must be an id, or None when absent; 400 naming it when malformed."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise FieldError(name, f"must be an id (UUID), got {raw!r}", code="INVALID_ID") from None


def choice_param(request, name: str, choices) -> str | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    if raw not in choices:
        raise FieldError(name, f"must be one of {', '.join(choices)}; got {raw!r}", code="INVALID_CHOICE")
    return raw


class _ReplayResponse(Exception):
    def __init__(self, replay: Replay):
        self.replay = replay


def check_merchant_id(request, value) -> None:
    """A body's `merchantId`, where given, must be the key's merchant (403 MERCHANT_MISMATCH)."""
    if value in (None, ""):
        return
    if str(value) != str(request.merchant.public_id):
        raise Forbidden(
            f"merchantId {value} is not the merchant of this API key ({request.merchant.public_id}).",
            code="MERCHANT_MISMATCH",
        )


class ApiView(APIView):
    """Views set `idempotent = False` where the header does not apply (usage has its own keys)."""

    idempotent = True

    def paginated_response(self, queryset, serialize):
        """The contract's list envelope for `queryset`; `serialize(rows)` renders one page."""
        paginator = LimitOffsetListPagination()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serialize(page))

    def initial(self, request, *args, **kwargs):
        self._idempotency_record = None
        raw_key = request.META.get("HTTP_IDEMPOTENCY_KEY")
        body = request._request.body if request.method in ("POST", "PATCH", "PUT") else b""
        super().initial(request, *args, **kwargs)
        if request.method in ("POST", "PATCH", "PUT") and body:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                check_merchant_id(request, payload.get("merchantId"))
        if raw_key is not None and self.idempotent and request.method in IDEMPOTENT_METHODS:
            key = validate_key(raw_key)
            claimed = idempotency_claim(
                merchant=request.merchant,
                key=key,
                method=request.method,
                path=request.get_full_path(),
                request_hash=request_fingerprint(method=request.method, path=request.get_full_path(), body=body),
            )
            if isinstance(claimed, Replay):
                raise _ReplayResponse(claimed)
            self._idempotency_record = claimed

    def handle_exception(self, exc):
        if isinstance(exc, _ReplayResponse):
            response = HttpResponse(exc.replay.body, status=exc.replay.status, content_type=exc.replay.content_type)
            response[f"{HEADER}-Replayed"] = "true"
            response["Idempotent-Replayed"] = "true"
            return response
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        record = getattr(self, "_idempotency_record", None)
        if record is not None:
            self._idempotency_record = None
            if hasattr(response, "render"):
                response.render()
            idempotency_complete(
                record=record,
                status=response.status_code,
                body=response.content,
                content_type=response.get("Content-Type", "application/json"),
            )
        return response
