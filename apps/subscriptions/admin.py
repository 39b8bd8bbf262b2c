from django.contrib import admin

from apps.core.admin import run_per_row
from apps.merchants.admin_base import TenantAdmin
from apps.subscriptions.models import Subscription
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
        "wallet",
        "name",
        "status",
        "started_at",
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
