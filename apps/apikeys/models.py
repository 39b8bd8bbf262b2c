"""API keys that a merchant issues to its customers (the contract's "API keys for a merchant's
customers, with tiers"): each opens one tier subscription's limits. Only a keyed hash of the
secret is stored; the secret is shown once."""

from django.db import models

from apps.core.models import TenantModel


class CustomerApiKey(TenantModel):
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="api_keys")
    # the tier subscription whose limits and quota the key draws on (several keys may share it)
    subscription = models.ForeignKey("subscriptions.Subscription", on_delete=models.PROTECT, related_name="api_keys")
    organization_name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=32, unique=True, help_text="The visible start of the key.")
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "customer API key"
        indexes = [
            models.Index(fields=["merchant", "created_at"], name="apikey_merchant_created"),
            models.Index(fields=["customer", "created_at"], name="apikey_customer_created"),
        ]

    def __str__(self):
        return f"{self.prefix}… ({'revoked' if self.revoked_at else 'active'})"


class TierChange(TenantModel):
    """A tier change that waits for its payment: the payment session (purpose tier_change) and
    the tier plan its subscription moves to when the session is paid."""

    session = models.OneToOneField("payments.PaymentSession", on_delete=models.PROTECT, related_name="tier_change")
    subscription = models.ForeignKey("subscriptions.Subscription", on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey("catalog.Plan", on_delete=models.PROTECT, related_name="+")
    applied_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"to {self.plan} ({'applied' if self.applied_at else 'waiting'})"
