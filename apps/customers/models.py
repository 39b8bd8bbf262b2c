from django.db import models
from django.db.models.functions import Lower

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
