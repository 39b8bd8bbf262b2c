from django.contrib.auth.models import AbstractUser
from django.db import models

from apps.core.fields import RateField
from apps.core.models import BaseModel, TenantModel


class Merchant(BaseModel):
    """The tenant. Each live merchant has one sandbox twin: a separate row whose data
    never mixes with the live one's, reporting the live merchant's id with livemode false."""

    name = models.CharField(max_length=200)
    contact_email = models.EmailField(max_length=320)
    commission_rate = RateField(help_text="The platform's share of each charge, e.g. 0.05 for 5%.")
    payout_wallet_address = models.CharField(max_length=42, blank=True, help_text="0x-prefixed EVM address.")
    livemode = models.BooleanField(default=True, editable=False)
    live_merchant = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="sandbox", editable=False
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(livemode=True, live_merchant__isnull=True)
                    | models.Q(livemode=False, live_merchant__isnull=False)
                ),
                name="merchant_sandbox_has_live_twin",
            ),
            models.CheckConstraint(
                condition=models.Q(commission_rate__gte=0, commission_rate__lte=1),
                name="merchant_commission_rate_0_to_1",
            ),
        ]

    def __str__(self):
        return self.name if self.livemode else f"{self.name} (sandbox)"

    @property
    def public_id(self):
        """The one id a merchant has in both modes."""
        return self.live_merchant_id or self.id


class User(AbstractUser):
    """A login to the admin: platform operators (superusers, no merchant) or a merchant's staff."""

    merchant = models.ForeignKey(
        Merchant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="staff",
        limit_choices_to={"livemode": True},
        help_text="The merchant this staff member works for; empty for platform operators.",
    )


class ApiKey(TenantModel):
    """A merchant's secret key. Only a keyed hash is stored; the secret is shown once."""

    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=32, unique=True, help_text="Visible start of the key, for lookup and display.")
    secret_hash = models.CharField(max_length=64, editable=False)
    rate_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per second; 0 turns the limit off; empty uses the platform default."
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self):
        return f"{self.prefix}… ({self.name or 'unnamed'})"
