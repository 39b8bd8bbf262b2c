"""The outbox and the merchant's endpoints.

An `Event` is written in the transaction of the change it reports (`apps.webhooks.outbox.publish`),
so it exists exactly when the change committed. The relay turns each committed event into one
`Delivery` per endpoint subscribed to its type; each try of a delivery is a `DeliveryAttempt`,
the log the merchant reads."""

from django.db import models

from apps.core.models import TenantModel


class WebhookEndpoint(TenantModel):
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text='Event types delivered here, or ["*"] for all.')
    description = models.CharField(max_length=500, blank=True)
    # Kept to sign with (HMAC needs the key itself); shown once, when the endpoint is created.
    secret = models.CharField(max_length=100, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    # Start of the current run of failed attempts (None once one succeeds): 5 days of it disables.
    failing_since = models.DateTimeField(null=True, blank=True)
    # While a dispatcher sends this endpoint's deliveries (one at a time, in event order).
    leased_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["merchant", "created_at"], name="webhook_endpoint_merchant")]

    def __str__(self):
        return self.url

    def subscribes_to(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


class Event(TenantModel):
    """One thing that happened, in the shape the merchant receives (`data` is the resource in
    its API shape). `created_at` is the event's time."""

    type = models.CharField(max_length=100)
    data = models.JSONField()
    # Set once the relay has made its deliveries.
    relayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at", "id"], condition=models.Q(relayed_at__isnull=True), name="webhook_event_unrelayed"
            ),
            models.Index(fields=["merchant", "type", "created_at"], name="webhook_event_merchant_type"),
        ]

    def __str__(self):
        return f"{self.type} {self.id}"


class Delivery(TenantModel):
    """An event on its way to one endpoint: pending until an attempt succeeds or the retry
    schedule runs out."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_response_status = models.PositiveIntegerField(null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "endpoint", "event"], name="webhook_delivery_once"),
        ]
        indexes = [
            models.Index(
                fields=["endpoint", "next_attempt_at"],
                condition=models.Q(status="pending"),
                name="webhook_delivery_due",
            ),
            models.Index(fields=["endpoint", "created_at"], name="webhook_delivery_log"),
        ]
        verbose_name_plural = "deliveries"


class DeliveryAttempt(TenantModel):
    """One try of a delivery, as the endpoint answered it."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    succeeded = models.BooleanField()
    response_status = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField()
    response_body = models.TextField(blank=True, help_text="The first 1 KB of the answer.")
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "delivery", "number"], name="webhook_attempt_once"),
        ]
