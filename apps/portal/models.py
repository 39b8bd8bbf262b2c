from django.db import models

from apps.core.models import TenantModel


class PortalLink(TenantModel):
    """A single-use link to a customer's hosted portal: the random token is shown once (in the
    url) and stored as its HMAC; opening the link consumes it and starts a portal session."""

    subscription = models.ForeignKey("subscriptions.Subscription", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["merchant", "customer"])]

    def __str__(self):
        return f"portal link {self.id}"
