from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from apps.core.fields import AmountField, Currency
from apps.core.models import TenantModel


class Customer(TenantModel):
    """A merchant's customer (the contract's `consumer`). One per merchant and email,
    compared without case, among customers that are not archived."""

    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(max_length=320)
    phone = models.CharField(max_length=40, blank=True)
    address = models.JSONField(default=dict, blank=True)
    external_id = models.CharField(max_length=255, blank=True, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    # An Ethereum address the customer gave (POST /v0/billing/checkout): an unproven hint that
    # the hosted checkout pre-fills, never an address proven to be the customer's.
    wallet_address_hint = models.CharField(max_length=42, blank=True, default="", db_default="")
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "merchant",
                Lower("email"),
                condition=models.Q(archived_at__isnull=True),
                name="customer_unique_merchant_email",
            ),
        ]
        indexes = [models.Index(fields=["merchant", "created_at"], name="customer_merchant_created")]

    def __str__(self):
        return f"{self.name} <{self.email}>" if self.name else self.email


class BillingSettings(TenantModel):
    """A customer's billing settings for its wallet in one currency: one row per currency of the
    contract's `billingSettings` (a map keyed by currency). Below `low_balance_threshold` the
    merchant hears wallet.low_balance; auto-recharge charges the saved card for
    `auto_recharge_amount` once the available balance falls below `auto_recharge_threshold`
    (apps.cards.services.auto_recharge). Typed columns, so that the usage hot path can read
    or join the threshold (apps.customers.selectors.low_balance_threshold)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="billing_settings")
    currency = models.CharField(max_length=8, choices=Currency.choices)
    low_balance_threshold = AmountField(null=True, blank=True)
    # Whether wallet.low_balance was published for the current fall below the threshold: set
    # when it is, cleared when the balance is back at or above it (or the threshold changes),
    # so that the merchant hears once per crossing (apps.customers.low_balance).
    low_balance_alerted = models.BooleanField(default=False, editable=False)
    auto_recharge_enabled = models.BooleanField(default=False)
    auto_recharge_threshold = AmountField(null=True, blank=True)
    auto_recharge_amount = AmountField(null=True, blank=True)
    # Whether the available balance is below the auto-recharge threshold since it last crossed
    # it: set when it falls below (an auto-recharge is then charged once), cleared when it is
    # back at or above it (or the settings change), so that the card is charged once per
    # crossing (apps.cards.services.auto_recharge).
    auto_recharge_triggered = models.BooleanField(default=False, editable=False)
    # The top-up session the current crossing's charge pays (null until it is made).
    auto_recharge_session_id = models.UUIDField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "billing settings"
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "customer", "currency"], name="billing_settings_unique_customer_currency"
            ),
            models.CheckConstraint(
                condition=Q(low_balance_threshold__isnull=True) | Q(low_balance_threshold__gte=0),
                name="billing_settings_low_balance_threshold_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(auto_recharge_threshold__isnull=True) | Q(auto_recharge_threshold__gte=0),
                name="billing_settings_recharge_threshold_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(auto_recharge_amount__isnull=True) | Q(auto_recharge_amount__gte=0),
                name="billing_settings_recharge_amount_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(auto_recharge_enabled=False)
                | Q(auto_recharge_threshold__isnull=False, auto_recharge_amount__gt=0),
                name="billing_settings_recharge_enabled_complete",
            ),
        ]

    def __str__(self):
        return f"{self.currency} billing settings of {self.customer_id}"
