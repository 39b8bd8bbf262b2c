"""The Stripe inbox, for platform operators (one Stripe account per mode serves every merchant)."""

from django.contrib import admin

from apps.cards.models import StripeEvent
from apps.core.admin import ReadOnlyMixin


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Not a tenant admin: merchant staff hold no permission on it (the "Merchant staff" group
    is given only what tenant admins declare), so operators alone see it."""

    list_display = ("created_at", "livemode", "type", "stripe_id", "status", "attempts", "note")
    list_filter = ("livemode", "status", "type")
    search_fields = ("stripe_id", "type")
    readonly_fields = (
        "id",
        "created_at",
        "livemode",
        "stripe_id",
        "type",
        "status",
        "attempts",
        "note",
        "last_error",
        "processed_at",
        "payload",
    )
    fields = readonly_fields
