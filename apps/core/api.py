"""The base of every /v0 view: the `merchantId` check, Idempotency-Key handling on POST, and
the error envelope. Who the caller is, is told by the authenticator each view is given (DRF's
`authentication_classes`, by default the merchant's secret key from settings; for the plain hot
path, the `authenticate` argument): core knows no kind of key."""

import json
import logging
import uuid
from collections.abc import Callable

import orjson
from django.db import InterfaceError, OperationalError, transaction
from django.http import HttpResponse
from rest_framework.views import APIView

from apps.core.errors import ApiError, BadRequest, FieldError, Forbidden, error_body, transient_unavailable
from apps.core.idempotency import (
    HEADER,
    Replay,
    idempotency_answer,
    idempotency_claim,
    idempotency_hold,
    idempotency_lock,
    idempotency_settle_failure,
    request_fingerprint,
    validate_key,
)
from apps.core.pagination import LimitOffsetListPagination
from apps.core.parsers import loads_strict

IDEMPOTENT_METHODS = ("POST",)
logger = logging.getLogger(__name__)


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


class _Unanswered(Exception):
    """A claimed request's handler returned a response that is not a 2xx: its transaction
    rolls back, and the response is sent as it is."""

    def __init__(self, response):
        self.response = response


def check_merchant_id(merchant, value) -> None:
    """A body's `merchantId`, where given, must be the key's merchant (403 MERCHANT_MISMATCH)."""
    if value in (None, ""):
        return
    if str(value) != str(merchant.public_id):
        raise Forbidden(
            f"merchantId {value} is not the merchant of this API key ({merchant.public_id}).",
            code="MERCHANT_MISMATCH",
        )


def plain_json_post(request, handle, *, authenticate: Callable) -> HttpResponse:
    """A POST served without DRF's generic machinery, for the ingestion hot path, with the
    merchantId rule and error envelope of every ApiView.

    `authenticate(request)` returns the caller's merchant, having applied its rate limit, or
    raises an ApiError (401, 429); `handle(merchant, data)` returns (status, body).
    """
    try:
        merchant = authenticate(request)
        try:
            data = loads_strict(request.body) if request.body else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"The body is not valid JSON: {exc}", code="MALFORMED_JSON") from None
        if isinstance(data, dict):
            check_merchant_id(merchant, data.get("merchantId"))
        status, body = handle(merchant, data)
        return HttpResponse(render_json(body), status=status, content_type="application/json")
    except ApiError as exc:
        return _error_response(exc)
    except Exception as exc:
        if (unavailable := transient_unavailable(exc)) is not None:
            return _error_response(unavailable)
        logger.exception("unhandled error in %s", request.path)
        body = error_body("api_error", "An internal error occurred; it has been logged.", "INTERNAL_ERROR")
        return HttpResponse(json.dumps(body), status=500, content_type="application/json")


def _error_response(exc: ApiError) -> HttpResponse:
    response = HttpResponse(json.dumps(exc.as_body()), status=exc.status_code, content_type="application/json")
    for name, value in exc.headers.items():
        response[name] = value
    return response


def render_json(body) -> bytes:
    """orjson renders a 1,000-event batch answer several times faster than json.dumps; what it
    cannot render (integers beyond 64 bits, very deep nesting, which events may carry in their
    metadata) falls back to json.dumps: the answer to a committed charge must never fail."""
    try:
        return orjson.dumps(body, default=_as_float)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(body).encode()


def _as_float(value):
    """What orjson leaves to the caller: a JSON number of a body echoed back (JsonNumber)."""
    if isinstance(value, float):
        return float(value)
    raise TypeError


class ApiView(APIView):
    """Views set `idempotent = False` where the header does not apply (usage has its own keys),
    and `calls_out = True` where the handler calls a network service (Stripe): it then runs
    outside any database transaction, its Idempotency-Key held by an advisory lock instead
    (apps.core.idempotency, 5)."""

    idempotent = True
    calls_out = False
    # (also what the schema wraps every list response in: {"object": "list", "data", "pagination"})
    pagination_class = LimitOffsetListPagination

    def paginated_response(self, queryset, serialize):
        """The contract's list envelope for `queryset`; `serialize(rows)` renders one page."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serialize(page))

    def initial(self, request, *args, **kwargs):
        self._idempotency_record = None
        raw_key = request.META.get("HTTP_IDEMPOTENCY_KEY")
        body = request._request.body if request.method in ("POST", "PATCH", "PUT") else b""
        super().initial(request, *args, **kwargs)
        for name, value in request.query_params.items():
            if "\x00" in value or "\x00" in name:
                raise FieldError(name, "must not contain a NUL character", code="INVALID_CHARACTER")
        if request.method in ("POST", "PATCH", "PUT") and body:
            payload = request.data  # parsed once, here; a malformed body is 400 MALFORMED_JSON
            if isinstance(payload, dict):
                check_merchant_id(request.merchant, payload.get("merchantId"))
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

    def dispatch(self, request, *args, **kwargs):
        """DRF's APIView.dispatch, except that a request holding an Idempotency-Key claim runs
        its handler through `_answer_once`."""
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            self.initial(request, *args, **kwargs)
            if request.method.lower() in self.http_method_names:
                handler = getattr(self, request.method.lower(), self.http_method_not_allowed)
            else:
                handler = self.http_method_not_allowed
            if self._idempotency_record is None:
                response = handler(request, *args, **kwargs)
            elif self.calls_out:
                response = self._answer_held(handler, request, *args, **kwargs)
            else:
                response = self._answer_once(handler, request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response

    def _answer_once(self, handler, request, *args, **kwargs):
        """Run the handler in one transaction with its claim locked, re-read and answered
        (see apps.core.idempotency): its work and its stored 2xx answer commit together."""
        record = self._idempotency_record
        try:
            with transaction.atomic():
                replay = idempotency_lock(record=record)
                if replay is not None:
                    self._idempotency_record = None
                    raise _ReplayResponse(replay)
                # (finalized here to be rendered before the commit; dispatch finalizes it again,
                # which changes nothing)
                response = super().finalize_response(request, handler(request, *args, **kwargs), *args, **kwargs)
                if hasattr(response, "render"):
                    response.render()
                if not 200 <= response.status_code < 300:
                    raise _Unanswered(response)
                idempotency_answer(
                    record=record,
                    status=response.status_code,
                    body=response.content,
                    content_type=response.get("Content-Type", "application/json"),
                )
        except _Unanswered as unanswered:
            return unanswered.response
        except (OperationalError, InterfaceError):
            # The database failed the transaction (connection lost, deadlock): nothing of it
            # committed, so the claim is left to a retry, which takes it over at once.
            self._idempotency_record = None
            raise
        self._idempotency_record = None
        return response

    def _answer_held(self, handler, request, *args, **kwargs):
        """Run a handler that calls a network service outside any transaction, its claim held
        by an advisory lock, and store (or release) its answer before letting the claim go."""
        record, self._idempotency_record = self._idempotency_record, None  # (not this request's until held)
        with idempotency_hold(record=record) as replay:
            self._idempotency_record = record
            if replay is not None:
                self._idempotency_record = None
                raise _ReplayResponse(replay)
            try:
                response = handler(request, *args, **kwargs)
            except Exception as exc:
                response = self.handle_exception(exc)
            # (settles the claim: dispatch finalizes it again, which changes nothing)
            return self.finalize_response(request, response, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        """A claim still held here was not answered in its transaction (which rolled back), or
        its handler ran outside one: a 4xx or a 503 releases it, another answer is stored
        where none is."""
        response = super().finalize_response(request, response, *args, **kwargs)
        record = getattr(self, "_idempotency_record", None)
        if record is not None:
            self._idempotency_record = None
            if hasattr(response, "render"):
                response.render()
            try:
                idempotency_settle_failure(
                    record=record,
                    status=response.status_code,
                    body=response.content,
                    content_type=response.get("Content-Type", "application/json"),
                )
            except (OperationalError, InterfaceError):
                # the database is unavailable: the claim stays unlocked, and a retry takes it over
                logger.warning("idempotency claim %s left to a retry: the database is unavailable", record.pk)
        return response
