"""Stripe's side of card payments: the inbox of signed events it sent."""

from django.db import models

from apps.core.models import BaseModel


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
