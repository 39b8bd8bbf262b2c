"""Input fields shared by every /v0 endpoint."""

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.utils.dateparse import parse_duration
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from apps.core.errors import FieldError
from apps.core.fields import Currency
from apps.core.money import AMOUNT_DECIMAL_PLACES, AMOUNT_INTEGER_DIGITS, amount_digits_problem, parse_amount


@extend_schema_field(
    {
        "oneOf": [{"type": "integer"}, {"type": "string", "example": "PT1H"}],
        "description": "Seconds (an integer) or an ISO 8601 duration such as PT1H.",
    }
)
class DurationInputField(serializers.Field):
    """A duration sent as whole seconds (an integer) or an ISO 8601 duration string ("PT15M",
    "P1D"), bounded by `minimum` and `maximum` (timedeltas)."""

    default_error_messages = {
        "invalid": "must be a whole number of seconds or an ISO 8601 duration such as PT1H.",
        "minimum": "must be at least {minimum} seconds.",
        "maximum": "must be at most {maximum} seconds ({readable}).",
    }

    def __init__(self, *, minimum: timedelta, maximum: timedelta, **kwargs):
        self.minimum = minimum
        self.maximum = maximum
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> timedelta:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            value = timedelta(seconds=data) if abs(data) < 10**9 else None
        elif isinstance(data, str) and data.strip().upper().startswith(("P", "-P")):
            # (parse_duration also reads "HH:MM:SS"; only the ISO 8601 form is offered)
            value = parse_duration(data.strip().upper())
        else:
            value = None
        if value is None:
            self.fail("invalid")
        if value < self.minimum:
            self.fail("minimum", minimum=int(self.minimum.total_seconds()))
        if value > self.maximum:
            self.fail("maximum", maximum=int(self.maximum.total_seconds()), readable=str(self.maximum))
        return value

    def to_representation(self, value):
        return int(value.total_seconds())


class AmountInputField(serializers.Field):
    """A money amount sent as a string of decimal digits (never a JSON float), with at most
    12 fractional and 26 integer digits. `minimum`/`positive` bound it."""

    default_error_messages = {
        "invalid": "{message}",
        "places": "must have at most 12 digits after the decimal point, got {places}",
        "digits": "must have at most 26 digits before the decimal point",
        "positive": "must be greater than 0",
        "minimum": "must be at least {minimum}",
    }

    def __init__(self, *, positive: bool = False, minimum: Decimal | None = None, **kwargs):
        self.positive = positive
        self.minimum = minimum
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> Decimal:
        try:
            value = parse_amount(data, field=self.field_name or "amount")
        except ValueError as exc:
            message = str(exc)
            prefix = f"{self.field_name} "
            self.fail("invalid", message=message.removeprefix(prefix))
        problem = amount_digits_problem(value)
        if problem == "places":
            self.fail("places", places=-value.as_tuple().exponent)
        if problem == "digits":
            self.fail("digits")
        if self.positive and value <= 0:
            self.fail("positive")
        if self.minimum is not None and value < self.minimum:
            self.fail("minimum", minimum=self.minimum)
        return value

    def to_representation(self, value):
        return str(value)


class CurrencyInputField(serializers.ChoiceField):
    def __init__(self, **kwargs):

        super().__init__(choices=[c for c, _ in Currency.choices], **kwargs)


class StrictInputSerializer(serializers.Serializer):
    """Refuses fields it does not know, so that a misspelt field is reported, not ignored. A
    request body's own `merchantId` is known to every request (the contract: where a body names
    it, it must be the key's merchant; ApiView has checked it, 403 MERCHANT_MISMATCH), so an
    integration that sends it with every body is not refused where the request has no other use
    for it."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            top_level = self.parent is None
            unknown = [key for key in data if key not in self.fields and not (top_level and key == "merchantId")]
            if unknown:
                accepted = ", ".join(self.fields)
                raise ValidationError(
                    {
                        str(key): [
                            ErrorDetail(f"is not a field of this request; it takes {accepted}.", "unknown_field")
                        ]
                        for key in unknown
                    }
                )
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string only: a number or a boolean is a type error, not silently turned into text."""

    default_error_messages = {"not_a_string": "must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean only: "true", 1 or "yes" are type errors, not silently taken as true."""

    default_error_messages = {"not_a_boolean": "must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("not_a_boolean")
        return data


def parse_number(value, field: str, *, allow_negative: bool = False) -> Decimal:
    """A number given as a JSON number or a string (quantities are not money, so JSON numbers
    are accepted), with at most 12 fractional and 26 integer digits."""
    kind = "a number" if allow_negative else "a non-negative number"
    if isinstance(value, bool) or value is None:
        raise FieldError(field, f"must be {kind}", code="INVALID_QUANTITY")
    if isinstance(value, (int, float)):
        # a JSON number keeps its written digits (apps.core.parsers.JsonNumber): no float rounding
        value = getattr(value, "text", None) or repr(value) if isinstance(value, float) else str(value)
    if not isinstance(value, str):
        raise FieldError(field, f"must be {kind}", code="INVALID_QUANTITY")
    try:
        quantity = Decimal(value.strip())
    except InvalidOperation:
        raise FieldError(field, f"must be {kind}, got {value!r}", code="INVALID_QUANTITY") from None
    if not quantity.is_finite():
        raise FieldError(field, "must be a finite number", code="INVALID_QUANTITY")
    if quantity < 0 and not allow_negative:
        raise FieldError(field, f"must not be negative, got {value}", code="NEGATIVE_QUANTITY")
    check_amount_digits(quantity, field, "INVALID_QUANTITY")
    return quantity


def check_amount_digits(value: Decimal, field: str, code: str) -> None:
    """400 when `value` does not fit an amount column (NUMERIC(38, 12))."""
    problem = amount_digits_problem(value)
    if problem == "places":
        raise FieldError(field, f"must have at most {AMOUNT_DECIMAL_PLACES} digits after the decimal point", code=code)
    if problem == "digits":
        raise FieldError(
            field, f"is too large (at most {AMOUNT_INTEGER_DIGITS} digits before the decimal point)", code=code
        )
