"""Models that exist only in the test settings, to prove the tenant boundary."""

from django.db import models

from apps.core.models import TenantModel


class Widget(TenantModel):
    name = models.CharField(max_length=100)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT)

    def __str__(self):
        return self.name


class WidgetCall(models.Model):
    """Counts how often the create endpoint body actually ran (platform-level bookkeeping for tests)."""

    idempotency_label = models.CharField(max_length=100)
