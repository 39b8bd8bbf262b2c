"""OpenAPI generation for /v0: what every operation can answer, errors included.

- Views nest their input serializer as `InputSerializer`, so each request component is named
  after its view (SubscriptionListApi -> SubscriptionListInput).
- Every DELETE of this API answers 200 with the resource it archived or released (not 204).
- Every operation lists the error statuses it can give, in the one error envelope (`Error`) or,
  for 400, also the validation envelope (`ValidationError`). The statuses that follow from the
  request's shape are computed here (see `ApiAutoSchema.error_statuses`); those that follow from
  the services a view calls (402, 409, 422, and 404 for ids named in a body) are declared on the
  view method with `@api_errors({...})`.
"""

import copy
from collections.abc import Callable, Mapping

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, get_doc

ERROR_SCHEMA = {
    "type": "object",
    "description": "The error envelope of every /v0 error except validation errors.",
    "required": ["error", "message", "code", "details"],
    "properties": {
        "error": {"type": "string", "description": "The kind of error.", "example": "not_found"},
        "message": {"type": "string", "description": "For a person: what went wrong and what to do."},
        "code": {
            "type": "string",
            "pattern": "^[A-Z0-9_]+$",
            "description": "Stable, UPPER_SNAKE.",
            "example": "NOT_FOUND",
        },
        "details": {"type": "object", "additionalProperties": True, "description": "Facts about the error."},
    },
}

VALIDATION_ERROR_ITEM_SCHEMA = {
    "type": "object",
    "required": ["field", "message", "code"],
    "properties": {
        "field": {
            "type": "string",
            "nullable": True,
            "description": "The field, as a path (`consumer.email`, `events[3].customerId`); null for the whole body.",
        },
        "message": {"type": "string"},
        "code": {"type": "string", "pattern": "^[A-Z0-9_]+$"},
    },
}

VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": "Malformed input: each field that is missing, of the wrong type or out of range.",
    "required": ["error", "message", "errors"],
    "properties": {
        # (a pattern, not an enum: drf-spectacular's enum hook would rewrite this shared dict)
        "error": {"type": "string", "pattern": "^validation_error$", "description": "Always validation_error."},
        "message": {"type": "string", "description": "The first error, for a person."},
        "errors": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ValidationErrorItem"}},
    },
}

BODY_METHODS = ("POST", "PUT", "PATCH")

# What each computed status means, whatever the operation.
DESCRIPTIONS = {
    400: (
        "Malformed input, judged from the request alone: the validation envelope names each field (a query "
        "parameter, or a body field) that is missing, of the wrong type or out of range"
    ),
    "400-body": "; a body that is not JSON is MALFORMED_JSON",
    401: "No valid API key: MISSING_API_KEY, MALFORMED_AUTHORIZATION, INVALID_API_KEY or API_KEY_REVOKED",
    403: "MERCHANT_MISMATCH: the body's merchantId is not the merchant of the API key",
    404: "No such resource for this merchant in this key's mode (another merchant's, or the other mode's, too)",
    409: (
        "IDEMPOTENCY_KEY_REUSED: the Idempotency-Key was used with another body; IDEMPOTENCY_KEY_IN_USE: a request "
        "with the same key is running"
    ),
    413: "REQUEST_TOO_LARGE: the body is larger than 8 MiB",
    414: (
        "URI_TOO_LONG: the request line (method, path and query string) is longer than 4094 bytes (the web "
        "server's limit, answered before the API reads the request)"
    ),
    415: "UNSUPPORTED_MEDIA_TYPE: the body is not sent as application/json",
    429: (
        "RATE_LIMITED: too many requests for this API key, or from this address without a valid key "
        "(RATE_LIMIT_API_UNAUTHENTICATED); retry after Retry-After seconds"
    ),
    431: (
        "REQUEST_HEADERS_TOO_LARGE: more than 100 headers, or one longer than 8190 bytes (the web server's "
        "limit, answered before the API reads the request)"
    ),
    503: (
        "DATABASE_UNAVAILABLE: the database did not complete the request (a dropped connection, a deadlock), so "
        "nothing of it was written; SERVICE_UNAVAILABLE: Redis did not answer for a moment, so nothing was "
        "counted. Send the same request again after Retry-After seconds (with the same Idempotency-Key: a 503 is "
        "never stored as its answer)"
    ),
}

HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="api"'}},
    429: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Seconds to wait before retrying.",
            "required": True,
        }
    },
    # (not required: a 503 about this server's own setup, such as PDF_UNAVAILABLE, has none)
    503: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Seconds to wait before sending the request again (with every transient 503).",
        }
    },
}

ERRORS_ATTRIBUTE = "_api_errors"


def api_errors(errors: Mapping[int, str]) -> Callable:
    """Declare the error statuses that a view method can give beyond those computed from the
    request's shape, each with the codes that give it: `@api_errors({409: "PRICE_IN_USE: ..."})`.
    402, 409 and 422 follow from the services the view calls; 404 from ids that a body names."""

    def decorate(method):
        declared = dict(getattr(method, ERRORS_ATTRIBUTE, {}))
        declared.update(errors)
        setattr(method, ERRORS_ATTRIBUTE, declared)
        return method

    return decorate


def declared_errors(view, method: str) -> dict[int, str]:
    return dict(getattr(getattr(view, method.lower(), None), ERRORS_ATTRIBUTE, {}))


class ApiAutoSchema(AutoSchema):
    def _get_serializer_name(self, serializer, direction, bypass_extensions=False):
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        serializer_class = serializer if isinstance(serializer, type) else type(serializer)
        if serializer_class.__name__ == "InputSerializer" and "." in serializer_class.__qualname__:
            owner = serializer_class.__qualname__.split(".")[0].removesuffix("Api")
            return f"{owner}Input" + name.removeprefix("Input")
        return name

    def get_description(self):
        """The method's docstring, else the view's own (not one inherited from ApiView)."""
        method_doc = get_doc(getattr(self.view, self.method.lower(), None))
        own_doc = get_doc(self.view.__class__) if vars(self.view.__class__).get("__doc__") else ""
        return method_doc or own_doc

    # --- responses -----------------------------------------------------------------------

    def _get_response_bodies(self, direction="response"):
        response_serializers = self.get_response_serializers()
        if self.method == "DELETE" and response_serializers is not None and not isinstance(response_serializers, dict):
            # a DELETE of this API archives or releases, and answers the resource as it now is
            responses = {"200": self._get_response_for_code(response_serializers, "200", direction=direction)}
        else:
            responses = super()._get_response_bodies(direction)
        for status, response in self.error_responses().items():
            responses[str(status)] = response
        return dict(sorted(responses.items()))

    def error_statuses(self) -> dict[int, str]:
        """Each error status this operation can give, with its description."""
        authenticated = bool(self.view.get_authenticators())
        has_body = self.method in BODY_METHODS
        plain_post = self.method == "POST" and getattr(self.view, "plain_post", False)
        statuses: dict[int, list[str]] = {}

        def add(status: int, text: str) -> None:
            statuses.setdefault(status, []).append(text)

        # ApiView refuses a NUL character in any query parameter, so every operation has input.
        add(400, DESCRIPTIONS[400] + (DESCRIPTIONS["400-body"] if has_body else ""))
        if authenticated:
            add(401, DESCRIPTIONS[401])
            # (the per-key limit, and the per-address one of requests without a valid key)
            add(429, DESCRIPTIONS[429])
        if has_body:
            add(403, DESCRIPTIONS[403])
            add(413, DESCRIPTIONS[413])
            if not plain_post:
                add(415, DESCRIPTIONS[415])
        if "{" in self.path:
            add(404, DESCRIPTIONS[404])
        # (gunicorn's limits, billing_platform/gunicorn_worker.py: any request can exceed them)
        add(414, DESCRIPTIONS[414])
        add(431, DESCRIPTIONS[431])
        # (every operation reads the database; authentication and the rate limits read Redis)
        add(503, DESCRIPTIONS[503])
        if self.method == "POST" and getattr(self.view, "idempotent", False) and not plain_post:
            add(409, DESCRIPTIONS[409])
        for status, text in declared_errors(self.view, self.method).items():
            add(status, text)
        return {status: ". ".join(texts) + "." for status, texts in sorted(statuses.items())}

    def error_responses(self) -> dict[int, dict]:
        error = self._component("Error", ERROR_SCHEMA)
        self._component("ValidationErrorItem", VALIDATION_ERROR_ITEM_SCHEMA)
        validation = self._component("ValidationError", VALIDATION_ERROR_SCHEMA)
        responses = {}
        for status, description in self.error_statuses().items():
            if status == 400:
                schema = {"oneOf": [validation, error]} if self.method in BODY_METHODS else validation
            else:
                schema = error
            response = {"description": description, "content": {"application/json": {"schema": schema}}}
            if status in HEADERS:
                response["headers"] = HEADERS[status]
            responses[status] = response
        return responses

    def _component(self, name: str, schema: dict) -> dict:
        component = ResolvedComponent(
            name=name, type=ResolvedComponent.SCHEMA, object=name, schema=copy.deepcopy(schema)
        )
        self.registry.register_on_missing(component)
        return component.ref


class AmountInputFieldExtension(OpenApiSerializerFieldExtension):
    """A money amount in a request: a string of decimal digits, documented with its pattern (at
    most 26 integer and 12 fractional digits; no sign where it must be positive)."""

    target_class = "apps.core.inputs.AmountInputField"

    def map_serializer_field(self, auto_schema, direction):
        sign = "" if self.target.positive or (self.target.minimum is not None and self.target.minimum >= 0) else "-?"
        return {
            "type": "string",
            "pattern": f"^{sign}[0-9]{{1,26}}(\\.[0-9]{{1,12}})?$",
            "example": "10.50",
            "description": "A decimal string (never a JSON number)"
            + (", greater than 0" if self.target.positive else "")
            + ".",
        }
