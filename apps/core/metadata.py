"""`metadata` everywhere follows Stripe's rule: at most 50 keys, keys up to 40 characters,
values strings up to 500 characters or numbers or booleans, no nesting. One rule, one message
per breach, for every resource that carries metadata."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.errors import FieldError

MAX_KEYS = 50
MAX_KEY_LENGTH = 40
MAX_VALUE_LENGTH = 500
CODE = "INVALID_METADATA"

SCHEMA = {
    "type": "object",
    "maxProperties": MAX_KEYS,
    "additionalProperties": {
        "oneOf": [{"type": "string", "maxLength": MAX_VALUE_LENGTH}, {"type": "number"}, {"type": "boolean"}]
    },
    "description": (
        f"At most {MAX_KEYS} keys of at most {MAX_KEY_LENGTH} characters; values are strings of at most "
        f"{MAX_VALUE_LENGTH} characters, numbers or booleans (no nesting)."
    ),
}


def metadata_problem(value: Any) -> tuple[str, str] | None:
    """The first breach of the rule in `value` as (key or "", message), or None when it holds."""
    if not isinstance(value, dict):
        return "", "must be an object of keys to values"
    if len(value) > MAX_KEYS:
        return "", f"may hold at most {MAX_KEYS} keys; it holds {len(value)}"
    for key, item in value.items():
        if not key or len(key) > MAX_KEY_LENGTH:
            return key, f"keys are 1 to {MAX_KEY_LENGTH} characters; {key[:60]!r} is {len(key)}"
        if isinstance(item, dict | list):
            return key, "values must be strings, numbers or booleans, not nested objects or lists"
        if item is None:
            return key, "values must be strings, numbers or booleans, not null"
        if isinstance(item, str) and len(item) > MAX_VALUE_LENGTH:
            return key, f"values are at most {MAX_VALUE_LENGTH} characters; this one is {len(item)}"
    return None


def clean_metadata(value: Any, *, field: str = "metadata") -> dict:
    """`value` as stored metadata (None is empty); FieldError 400 INVALID_METADATA naming the
    breach otherwise."""
    if value is None:
        return {}
    problem = metadata_problem(value)
    if problem is not None:
        key, message = problem
        raise FieldError(f"{field}.{key}" if key else field, message, code=CODE)
    return dict(value)


@extend_schema_field(SCHEMA)
class MetadataField(serializers.Field):
    """A serializer field holding metadata by the rule; a breach names `metadata.<key>`."""

    def to_internal_value(self, data):
        problem = metadata_problem(data)
        if problem is not None:
            key, message = problem
            error = serializers.ErrorDetail(message, code=CODE)
            raise serializers.ValidationError({key: [error]} if key else [error])
        return dict(data)

    def to_representation(self, value):
        return value
