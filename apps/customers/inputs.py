"""Validation and normalization of customer input, shared by the /v0 views and the admin.

`normalize_email` is the one place where an email address is normalized; every write and
every lookup by email goes through it.
"""

import re
from collections.abc import Mapping
from decimal import Decimal

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from apps.core.inputs import AmountInputField, StrictBooleanField, StrictCharField, StrictInputSerializer
from apps.customers.billing import SUPPORTED_CURRENCIES, CurrencyBillingSettings
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
    """customer_create's arguments from a request's customer (`consumer`, `externalId`,
    `metadata`, `billingSettings`)."""
    consumer = data["consumer"]
    return {
        "email": consumer["email"],
        "name": consumer.get("name") or "",
        "phone": consumer.get("phone") or "",
        "address": address_from_input(consumer.get("address") or {}),
        "external_id": data.get("externalId") or "",
        "metadata": data.get("metadata") or {},
        "billing_settings": data.get("billingSettings") or {},
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


# --- billingSettings ---------------------------------------------------------------------------


def _amount(help_text: str, **kwargs) -> AmountInputField:
    return AmountInputField(required=False, allow_null=True, minimum=Decimal(0), help_text=help_text, **kwargs)


class AutoRechargeInput(StrictInputSerializer):
    """Charge the saved card for `amount` once the available balance falls below `threshold`,
    once per crossing (USD wallets only: cards pay in USD)."""

    enabled = StrictBooleanField()
    threshold = _amount("Required when enabled: recharge once the available balance is below it.")
    amount = _amount(
        "Required and greater than 0 when enabled: what is charged, in the currency's minor unit at most "
        "(USD 2 decimal places, USDC 6)."
    )

    def validate(self, attrs):
        # required also in a PATCH (whose partial validation would let a missing field pass)
        if "enabled" not in attrs:
            raise ValidationError({"enabled": [ErrorDetail("This field is required.", code="required")]})
        return attrs


class CurrencyBillingSettingsInput(StrictInputSerializer):
    """One currency's settings. Given, they replace that currency's settings whole: a field left
    out is unset (no threshold, auto-recharge off)."""

    lowBalanceThreshold = _amount(
        "The merchant hears wallet.low_balance when the wallet's available balance falls below it (once per "
        "crossing); null: never."
    )
    autoRecharge = AutoRechargeInput(required=False, allow_null=True)

    def validate(self, attrs):
        settings = currency_billing_settings(attrs)
        problems = settings.problems(self.field_name)
        if problems:
            errors: dict = {}
            for path, message in problems:
                where = errors
                *parents, leaf = path.split(".")
                for part in parents:
                    where = where.setdefault(part, {})
                where.setdefault(leaf, []).append(ErrorDetail(message, code="invalid_billing_settings"))
            raise ValidationError(errors)
        return settings


def currency_billing_settings(attrs: dict) -> CurrencyBillingSettings:
    recharge = attrs.get("autoRecharge") or {}
    return CurrencyBillingSettings(
        low_balance_threshold=attrs.get("lowBalanceThreshold"),
        auto_recharge_enabled=bool(recharge.get("enabled", False)),
        auto_recharge_threshold=recharge.get("threshold"),
        auto_recharge_amount=recharge.get("amount"),
    )


class _BillingSettingsInput(StrictInputSerializer):
    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = [key for key in data if key not in SUPPORTED_CURRENCIES]
            if unknown:
                message = (
                    f"is not a supported currency; billingSettings is keyed by wallet currency "
                    f"({', '.join(SUPPORTED_CURRENCIES)})."
                )
                raise ValidationError(
                    {str(key): [ErrorDetail(message, code="unsupported_currency")] for key in unknown}
                )
        return super().to_internal_value(data)


# `billingSettings`: a map keyed by wallet currency, one field per supported currency; validated
# into {currency: CurrencyBillingSettings | None} (None removes that currency's settings).
BillingSettingsInput = type(
    "BillingSettingsInput",
    (_BillingSettingsInput,),
    {
        "__module__": __name__,
        "__doc__": (
            "A map keyed by wallet currency: each currency's settings, or null to remove them; currencies not "
            "named are left as they are."
        ),
        **{
            currency: CurrencyBillingSettingsInput(
                required=False,
                allow_null=True,
                help_text=f"The settings of the customer's {currency} wallet; null removes them.",
            )
            for currency in SUPPORTED_CURRENCIES
        },
    },
)
