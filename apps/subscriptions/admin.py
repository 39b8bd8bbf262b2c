from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from apps.core.admin import ReadOnlyMixin, run_per_row
from apps.merchants.admin_base import TenantAdmin
from apps.subscriptions.models import BillingPeriod, Subscription
from apps.subscriptions.services import subscription_terminate


@admin.register(Subscription)
class SubscriptionAdmin(TenantAdmin):
    """Subscriptions are created through the API; the admin shows them and can terminate them."""

    staff_permissions = ("view", "change")  # change: the terminate action

    list_display = ("customer", "plan", "status", "current_period_start", "current_period_end", "created_at")
    list_select_related = ("merchant", "customer", "plan")  # the periods are computed from the plan
    list_filter = ("status",)
    search_fields = ("customer__email", "name", "id")
    readonly_fields = (
        "id",
        "customer",
        "plan",
        "scheduled_plan",
        "wallet",
        "name",
        "status",
        "started_at",
        "period_anchor",
        "switched_at",
        "current_period_start",
        "current_period_end",
        "prefund_amount",
        "minimum_account_balance",
        "activated_at",
        "terminated_at",
        "termination_reason",
        "created_at",
    )
    fields = readonly_fields
    actions = ("terminate",)

    def has_add_permission(self, request, *args):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Terminate the selected subscriptions now", permissions=["service_action"])
    def terminate(self, request, queryset):
        run_per_row(
            self,
            request,
            queryset,
            lambda subscription: subscription_terminate(
                merchant=subscription.merchant, subscription=subscription, reason="terminated in the admin"
            ),
            "Terminated {count} subscription(s).",
            describe=lambda subscription: f"Subscription {subscription.id}",
        )


@admin.register(BillingPeriod)
class BillingPeriodAdmin(ReadOnlyMixin, TenantAdmin):
    """A subscription's billing periods (open -> grace -> closed), moved by the beat; read-only,
    each linked to its subscription and, once written, its invoice."""

    staff_permissions = ("view",)

    list_display = (
        "start",
        "end",
        "status",
        "end_reason",
        "subscription_link",
        "invoice_link",
        "ended_at",
        "closed_at",
    )
    list_select_related = ("merchant", "subscription__customer", "subscription__plan", "plan")
    list_filter = ("status", "end_reason")
    search_fields = ("subscription__customer__email",)
    ordering = ("-start", "-id")
    date_hierarchy = "start"
    readonly_fields = (
        "id",
        "subscription_link",
        "plan",
        "start",
        "end",
        "cycle_start",
        "cycle_end",
        "end_reason",
        "status",
        "ended_at",
        "closed_at",
        "invoice_link",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields

    @admin.display(description="subscription", ordering="subscription__created_at")
    def subscription_link(self, obj):
        url = reverse("admin:subscriptions_subscription_change", args=[obj.subscription_id])
        return format_html('<a href="{}">{}</a>', url, obj.subscription)

    @admin.display(description="invoice")
    def invoice_link(self, obj):
        if obj.invoice_id is None:
            return "-"
        # (by its admin URL's name: subscriptions stands below invoices and does not import it)
        try:
            url = reverse("admin:invoices_invoice_change", args=[obj.invoice_id])
        except NoReverseMatch:
            return str(obj.invoice_id)
        return format_html('<a href="{}">{}</a>', url, obj.invoice_id)
