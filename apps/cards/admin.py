"""The Stripe inbox, for platform operators (one Stripe account per mode serves every merchant)."""

from django.contrib import admin, messages

from apps.cards.models import StripeEvent
from apps.cards.services.inbox import stripe_events_retry
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
    actions = ["process_again"]

    @admin.action(description="Process the selected failed events again", permissions=["process_again"])
    def process_again(self, request, queryset):
        count = stripe_events_retry(event_ids=queryset.values_list("id", flat=True))
        messages.info(request, f"Queued {count} failed event(s) again; the others were not failed.")

    def has_process_again_permission(self, request) -> bool:
        # operators only (the inbox is not a tenant admin)
        return request.user.is_active and request.user.is_superuser
