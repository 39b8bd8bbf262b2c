"""Stripe's side of card payments: the inbox of signed events it sent, each platform customer's
Stripe customer, and the cards saved."""

from django.db import models
from django.db.models import Q

from apps.core.models import BaseModel, TenantModel


class StripeEvent(BaseModel):
    """An event Stripe sent to POST /webhooks/stripe, stored raw once its signature checked out,
    then processed by a task that reads its status first (a duplicate, a concurrent or a late
    delivery changes nothing twice). Platform-level: one Stripe account per mode serves every
    merchant, and an event names the platform's own rows (a payment attempt), not a merchant."""

    class Status(models.TextChoices):
        RECEIVED = "received"  # stored, not processed yet (beat retries those left behind)
        PROCESSED = "processed"
        IGNORED = "ignored"  # a type not handled, or naming nothing of this platform
        FAILED = "failed"  # refused by the service it reached, or failed too many times

    livemode = models.BooleanField(help_text="The mode whose webhook secret signed it.")
    stripe_id = models.CharField(max_length=255, help_text="Stripe's event id (evt_...).")
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0, help_text="Times processing ran into an unexpected error.")
    note = models.CharField(max_length=500, blank=True, help_text="What processing did, or why it did nothing.")
    last_error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stripe_id", "livemode"], name="stripe_event_unique_per_mode"),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="stripe_event_status_created")]

    def __str__(self):
        return f"{self.type} {self.stripe_id} ({self.status})"


class StripeCustomer(TenantModel):
    """The Stripe customer of a platform customer (in the merchant's mode's Stripe account)."""

    customer = models.OneToOneField("customers.Customer", on_delete=models.PROTECT, related_name="stripe_customer")
    stripe_id = models.CharField(max_length=255)

    def __str__(self):
        return self.stripe_id


class SavedCard(TenantModel):
    """A card saved through a SetupIntent, chargeable later (the customer's PaymentMethod)."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="saved_cards")
    stripe_payment_method_id = models.CharField(max_length=255)
    brand = models.CharField(max_length=32, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "stripe_payment_method_id"], name="saved_card_unique_payment_method"
            ),
            models.UniqueConstraint(
                fields=["merchant", "customer"],
                condition=Q(is_default=True, removed_at__isnull=True),
                name="saved_card_one_default_per_customer",
            ),
        ]

    def __str__(self):
        return f"{self.brand} ...{self.last4}"
