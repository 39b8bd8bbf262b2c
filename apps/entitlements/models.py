from django.db import models

from apps.catalog.models import PriceModel
from apps.core.fields import AmountField, Currency
from apps.core.models import TenantModel


class Entitlement(TenantModel):
    """A pre-authorization: funds moved from the wallet's available balance to held, for
    up to `quantity` units of each metric, consumed by usage that names it."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        EXHAUSTED = "exhausted"
        RELEASED = "released"
        EXPIRED = "expired"

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="entitlements")
    wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="entitlements")
    subscription = models.ForeignKey(
        "subscriptions.Subscription", on_delete=models.PROTECT, related_name="entitlements"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    currency = models.CharField(max_length=8, choices=Currency.choices)
    reserved_amount = AmountField()
    remaining_amount = AmountField()
    max_uses = models.PositiveIntegerField(null=True, blank=True)
    used_count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    # Empty when nothing needed holding (the reserved usage fell within free units).
    hold_transaction = models.OneToOneField(
        "ledger.LedgerTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    release_transaction = models.OneToOneField(
        "ledger.LedgerTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(remaining_amount__gte=0), name="entitlement_remaining_not_negative"
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "status"], name="entitlement_customer_status"),
            models.Index(fields=["status", "expires_at"], name="entitlement_status_expiry"),
        ]

    def __str__(self):
        return f"{self.reserved_amount} {self.currency} hold ({self.status})"


class EntitlementItem(TenantModel):
    """One metric of an entitlement: the units reserved and left, at the price reserved.

    How the reservation was priced is kept with it (a snapshot: later changes of the price, or
    of the period's running total, do not reach it): the pricing model and properties (a
    standard price at `unit_price_override` when one was given), the price's free units, and
    the period's running total of the price when it reserved. The first u reserved units cost
    R(u) = price_quantity(strategy, u, free_units, units_before), R(quantity) is
    `reserved_amount`, and usage consumes the units in order (apps.catalog.pricing.reservation).
    """

    entitlement = models.ForeignKey(Entitlement, on_delete=models.CASCADE, related_name="items")
    billable_metric = models.ForeignKey("catalog.BillableMetric", on_delete=models.PROTECT, related_name="+")
    price = models.ForeignKey("catalog.Price", on_delete=models.PROTECT, related_name="+")
    unit_price_override = AmountField(null=True, blank=True)
    quantity = AmountField()
    remaining_quantity = AmountField()
    reserved_amount = AmountField()
    # What this metric may still draw from the hold: one metric cannot use another's funds.
    remaining_amount = AmountField(default=0)
    pricing_model = models.CharField(max_length=16, choices=PriceModel.choices)
    pricing_properties = models.JSONField()
    free_units = AmountField(default=0)
    units_before = AmountField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "entitlement", "billable_metric"], name="entitlement_item_unique_metric"
            ),
        ]
