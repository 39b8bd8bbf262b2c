"""Shared model fields: money columns are NUMERIC(38, 12), rates NUMERIC(7, 6)."""

from django.db import models

from apps.core.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, RATE_DECIMAL_PLACES, RATE_MAX_DIGITS


class Currency(models.TextChoices):
    """The currencies the platform bills in (their minor units are in apps.core.money)."""

    USDC = "USDC", "USDC"
    USD = "USD", "USD"


class AmountField(models.DecimalField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", AMOUNT_MAX_DIGITS)
        kwargs.setdefault("decimal_places", AMOUNT_DECIMAL_PLACES)
        super().__init__(*args, **kwargs)


class RateField(models.DecimalField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", RATE_MAX_DIGITS)
        kwargs.setdefault("decimal_places", RATE_DECIMAL_PLACES)
        super().__init__(*args, **kwargs)
