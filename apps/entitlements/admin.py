"""Entitlements admin: read-only; holds are released through the same service as the API."""

from django.contrib import admin

from apps.core.admin import ReadOnlyMixin, run_per_row
from apps.core.errors import Conflict
from apps.core.money import format_amount
from apps.entitlements.models import Entitlement, EntitlementItem
from apps.entitlements.services import entitlement_release
from apps.merchants.admin_base import TenantAdmin, TenantTabularInline


class EntitlementItemInline(ReadOnlyMixin, TenantTabularInline):
    model = EntitlementItem
    staff_permissions = ("view",)
    fields = (
        "billable_metric",
        "price",
        "unit_price_override",
        "quantity",
        "remaining_quantity",
        "reserved_amount",
        "remaining_amount",
        "pricing_model",
        "pricing_properties",
        "free_units",
        "units_before",
    )
    readonly_fields = fields
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("billable_metric", "price", "price__billable_metric")


@admin.register(Entitlement)
class EntitlementAdmin(ReadOnlyMixin, TenantAdmin):
    """Entitlements are created through the API; the admin shows them and can release their holds."""

    staff_permissions = ("view", "change")  # change: the release action

    list_display = ("created_at", "customer", "status", "reserved", "remaining", "uses", "expires_at")
    list_filter = ("status",)
    list_select_related = ("customer", "merchant")
    search_fields = ("id", "customer__email")
    ordering = ("-created_at",)
    readonly_fields = (
        "id",
        "customer",
        "wallet",
        "subscription",
        "status",
        "currency",
        "reserved",
        "remaining",
        "used_count",
        "max_uses",
        "expires_at",
        "released_at",
        "hold_transaction",
        "release_transaction",
        "created_at",
    )
    fields = readonly_fields
    inlines = [EntitlementItemInline]
    actions = ("release_holds",)

    @admin.display(description="reserved", ordering="reserved_amount")
    def reserved(self, obj):
        return f"{format_amount(obj.reserved_amount, obj.currency)} {obj.currency}"

    @admin.display(description="remaining", ordering="remaining_amount")
    def remaining(self, obj):
        return f"{format_amount(obj.remaining_amount, obj.currency)} {obj.currency}"

    @admin.display(description="uses")
    def uses(self, obj):
        return f"{obj.used_count}/{obj.max_uses if obj.max_uses is not None else '∞'}"

    @admin.action(description="Release the selected holds", permissions=["service_action"])
    def release_holds(self, request, queryset):
        def release(entitlement):
            if entitlement.status != Entitlement.Status.ACTIVE:
                raise Conflict(f"it is already {entitlement.status}.", code="ENTITLEMENT_NOT_ACTIVE")
            if entitlement_release(entitlement=entitlement).status != Entitlement.Status.RELEASED:
                raise Conflict("it was already settled.", code="ENTITLEMENT_NOT_ACTIVE")

        run_per_row(
            self,
            request,
            queryset,
            release,
            "Released {count} hold(s).",
            describe=lambda entitlement: f"Entitlement {entitlement.id}",
        )
