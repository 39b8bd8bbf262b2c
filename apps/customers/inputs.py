"""Validation and normalization of customer input, shared by the /v0 views and the admin.

`normalize_email` is the one place where an email address is normalized; every write and
every lookup by email goes through it.
"""

import re

from rest_framework import serializers

from apps.core.inputs import StrictCharField, StrictInputSerializer
from apps.customers.countries import ISO_3166_ALPHA2

EMAIL_MAX_LENGTH = 320
ADDRESS_KEYS = ("line1", "line2", "city", "state", "country", "zipCode")

_COUNTRY_SHAPE = re.compile(r"^[A-Za-z]{2}$")


def normalize_email(email: str) -> str:
    """Surrounding whitespace removed and the domain lower-cased (domains have no case).

    The local part keeps its case as given; uniqueness compares whole addresses without case
    (the partial unique index on lower(email)), and lookups use `iexact`.
    """
    email = (email or "").strip()
    local, at, domain = email.rpartition("@")
    if not at:
        return email
    return f"{local}@{domain.lower()}"


class StrictEmailField(serializers.EmailField):
    default_error_messages = {"invalid": "Enter a valid email address.", "not_a_string": "Must be a string."}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", EMAIL_MAX_LENGTH)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return normalize_email(super().to_internal_value(data))


def _optional_text(max_length: int, **kwargs) -> StrictCharField:
    return StrictCharField(max_length=max_length, required=False, allow_blank=True, allow_null=True, **kwargs)


class AddressInputSerializer(StrictInputSerializer):
    """A postal address. Unknown keys are refused; `country` is ISO 3166-1 alpha-2.

    Null or an empty string for a key means "not set" (and, in a PATCH, clears it).
    """

    line1 = _optional_text(200)
    line2 = _optional_text(200)
    city = _optional_text(200)
    state = _optional_text(200)
    country = _optional_text(2, help_text="ISO 3166-1 alpha-2 code, e.g. US; upper-cased.")
    zipCode = _optional_text(32)

    def validate_country(self, value):
        if value in (None, ""):
            return value
        if not _COUNTRY_SHAPE.match(value) or value.upper() not in ISO_3166_ALPHA2:
            raise serializers.ValidationError(
                f"{value!r} is not an ISO 3166-1 alpha-2 country code (two letters, e.g. US).", code="invalid_country"
            )
        return value.upper()


def customer_fields_from_input(data: dict) -> dict:
    """customer_create's arguments from a request's customer (`consumer`, `externalId`, `metadata`)."""
    consumer = data["consumer"]
    return {
        "email": consumer["email"],
        "name": consumer.get("name") or "",
        "phone": consumer.get("phone") or "",
        "address": address_from_input(consumer.get("address") or {}),
        "external_id": data.get("externalId") or "",
        "metadata": data.get("metadata") or {},
    }


def address_from_input(validated: dict) -> dict:
    """The stored form of a validated address: only the keys that are set."""
    return {key: value for key, value in validated.items() if key in ADDRESS_KEYS and value not in (None, "")}


class ConsumerInputSerializer(serializers.Serializer):
    """The contract's `consumer`: who the customer is. `email` is required on create."""

    name = _optional_text(200)
    email = StrictEmailField()
    phone = _optional_text(40)
    address = AddressInputSerializer(required=False, allow_null=True)
