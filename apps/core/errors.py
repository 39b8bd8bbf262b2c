"""The one error envelope of the API, and the exceptions that services raise.

`{"error", "message", "code", "details"}`; validation errors list
`errors: [{"field", "message", "code"}]`. 400 is malformed input judged from the
request alone; 422 is a rule that depends on stored data.
"""

import logging

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API reports with its own status and stable code."""

    status_code = status.HTTP_400_BAD_REQUEST
    error = "invalid_request"
    code = "INVALID_REQUEST"

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None, headers=None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}
        self.headers = headers or {}

    def as_body(self) -> dict:
        return {"error": self.error, "message": self.message, "code": self.code, "details": self.details}


class BadRequest(ApiError):
    status_code = 400
    error = "invalid_request"
    code = "INVALID_REQUEST"


class FieldError(ApiError):
    """400 about one field, reported in the validation envelope."""

    status_code = 400
    error = "validation_error"
    code = "INVALID"

    def __init__(self, field: str, message: str, *, code: str = "INVALID"):
        super().__init__(message, code=code)
        self.field = field

    def as_body(self) -> dict:
        return {
            "error": self.error,
            "message": f"{self.field}: {self.message}",
            "errors": [{"field": self.field, "message": self.message, "code": self.code}],
        }


class Unauthenticated(ApiError):
    status_code = 401
    error = "authentication_error"
    code = "AUTHENTICATION_FAILED"

    def __init__(self, message: str, **kwargs):
        super().__init__(message, **kwargs)
        # every 401 names the scheme it expects (RFC 9110), whichever view raised it
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="api"')


class PaymentRequired(ApiError):
    status_code = 402
    error = "payment_required"
    code = "INSUFFICIENT_BALANCE"


class Forbidden(ApiError):
    status_code = 403
    error = "permission_denied"
    code = "FORBIDDEN"


class NotFound(ApiError):
    status_code = 404
    error = "not_found"
    code = "NOT_FOUND"


class Conflict(ApiError):
    status_code = 409
    error = "conflict"
    code = "CONFLICT"


class Unprocessable(ApiError):
    status_code = 422
    error = "unprocessable"
    code = "UNPROCESSABLE"


class RateLimited(ApiError):
    status_code = 429
    error = "rate_limited"
    code = "RATE_LIMITED"


class ServiceUnavailable(ApiError):
    status_code = 503
    error = "service_unavailable"
    code = "SERVICE_UNAVAILABLE"


def database_unavailable(exc: Exception) -> ServiceUnavailable:
    """A request whose database connection failed (dropped, restarted, a deadlock or a
    serialization failure): its transaction rolled back, so nothing of it was written and the
    same request can be sent again. 503 with Retry-After, not a 500: nothing is broken."""
    logger.warning("database unavailable: %s: %s", type(exc).__name__, str(exc).strip()[:200])
    return ServiceUnavailable(
        "The database did not complete this request; nothing of it was written. Send it again.",
        code="DATABASE_UNAVAILABLE",
        headers={"Retry-After": "1"},
    )


# Redis unreachable for a moment (restarting, loading its append-only file, a timeout): the
# request did nothing it cannot do again (verify counts in Redis only when Redis answers).
REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)


def redis_unavailable(exc: Exception) -> ServiceUnavailable:
    logger.warning("redis unavailable: %s: %s", type(exc).__name__, str(exc).strip()[:200])
    return ServiceUnavailable(
        "A service this request needs did not answer; nothing was counted. Send it again.",
        code="SERVICE_UNAVAILABLE",
        headers={"Retry-After": "1"},
    )


def transient_unavailable(exc: Exception) -> ServiceUnavailable | None:
    """The 503 for a database or Redis that failed the request for a moment, or None."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return database_unavailable(exc)
    if isinstance(exc, REDIS_UNAVAILABLE):
        return redis_unavailable(exc)
    return None


def _flatten_validation(detail, prefix: str = "") -> list[dict]:
    """Turn DRF's nested ValidationError detail into [{"field", "message", "code"}]."""
    items: list[dict] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):
                items.extend(_flatten_validation(value, f"{prefix}[{key}]"))
                continue
            name = "" if key == "non_field_errors" else str(key)
            field = f"{prefix}.{name}" if prefix and name else (prefix or name)
            items.extend(_flatten_validation(value, field))
    elif isinstance(detail, list):
        if all(isinstance(x, (str, drf_exceptions.ErrorDetail)) for x in detail):
            for x in detail:
                items.extend(_flatten_validation(x, prefix))
        else:
            for index, value in enumerate(detail):
                if value:
                    items.extend(_flatten_validation(value, f"{prefix}[{index}]"))
    else:
        code = getattr(detail, "code", "invalid") or "invalid"
        items.append({"field": prefix or None, "message": str(detail), "code": str(code).upper()})
    return items


def validation_body(detail) -> dict:
    errors = _flatten_validation(detail)
    first = errors[0] if errors else {"field": None, "message": "Invalid input."}
    message = f"{first['field']}: {first['message']}" if first.get("field") else first["message"]
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return {"error": "validation_error", "message": message, "errors": errors}


def error_body(error: str, message: str, code: str, details: dict | None = None) -> dict:
    return {"error": error, "message": message, "code": code, "details": details or {}}


def api_exception_handler(exc, context):
    """DRF exception handler: every error leaves in the one envelope."""
    if isinstance(exc, ApiError):
        response = Response(exc.as_body(), status=exc.status_code)
        for name, value in exc.headers.items():
            response[name] = value
        return response
    if isinstance(exc, Http404):
        return Response(error_body("not_found", str(exc) or "Not found.", "NOT_FOUND"), status=404)
    if isinstance(exc, PermissionDenied):
        return Response(error_body("permission_denied", str(exc) or "Forbidden.", "FORBIDDEN"), status=403)
    if isinstance(exc, drf_exceptions.ValidationError):
        return Response(validation_body(exc.detail), status=400)
    if isinstance(exc, drf_exceptions.ParseError):
        return Response(
            error_body("invalid_request", f"The body is not valid JSON: {exc.detail}", "MALFORMED_JSON"), status=400
        )
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return Response(
            error_body(
                "invalid_request",
                "Send the body as JSON with Content-Type: application/json.",
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            status=415,
        )
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        return api_exception_handler(Unauthenticated(str(exc.detail)), context)
    if isinstance(exc, drf_exceptions.Throttled):
        wait = max(1, int(exc.wait or 1))
        response = Response(
            error_body(
                "rate_limited",
                f"Too many requests for this API key; retry in {wait} s.",
                "RATE_LIMITED",
                {"retryAfter": wait},
            ),
            status=429,
        )
        response["Retry-After"] = str(wait)
        return response
    if (unavailable := transient_unavailable(exc)) is not None:
        return api_exception_handler(unavailable, context)
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return Response(error_body("invalid_request", str(exc.detail), "METHOD_NOT_ALLOWED"), status=405)
    if isinstance(exc, drf_exceptions.PermissionDenied):
        return Response(error_body("permission_denied", str(exc.detail), "FORBIDDEN"), status=403)
    if isinstance(exc, drf_exceptions.NotFound):
        return Response(error_body("not_found", str(exc.detail), "NOT_FOUND"), status=404)
    if isinstance(exc, drf_exceptions.APIException):
        return Response(
            error_body("invalid_request", str(exc.detail), str(exc.default_code).upper()), status=exc.status_code
        )
    logger.exception("unhandled error in %s", context.get("view").__class__.__name__ if context.get("view") else "api")
    return Response(
        error_body("api_error", "An internal error occurred; it has been logged.", "INTERNAL_ERROR"), status=500
    )


def json_not_found(request, exception=None):
    """404 for URLs that match no route: JSON under /v0, a plain page elsewhere."""
    if request.path.startswith("/v0"):
        return JsonResponse(
            error_body("not_found", f"No endpoint {request.method} {request.path}.", "NOT_FOUND"), status=404
        )
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_server_error(request):
    if request.path.startswith("/v0"):
        return JsonResponse(
            error_body("api_error", "An internal error occurred; it has been logged.", "INTERNAL_ERROR"), status=500
        )
    from django.views.defaults import server_error

    return server_error(request)
