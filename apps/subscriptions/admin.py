from django.contrib import admin
from django.utils.html import format_html

from apps.core.admin import TenantAdmin, run_per_row
from apps.core.errors import Forbidden
from apps.subscriptions.models import PaymentSession, Subscription
from apps.subscriptions.serializers import checkout_url, session_status
from apps.subscriptions.services import payment_session_pay, subscription_terminate
from apps.subscriptions.services.payment_sessions import TEST_SOURCE


@admin.register(Subscription)
class SubscriptionAdmin(TenantAdmin):
    """Subscriptions are created through the API; the admin shows them and can terminate them."""

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

    @admin.action(description="Terminate the selected subscriptions now")
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


@admin.register(PaymentSession)
class PaymentSessionAdmin(TenantAdmin):
    list_display = ("created_at", "purpose", "amount", "currency", "effective_status", "customer", "checkout")
    list_filter = ("purpose", "status", "currency")
    search_fields = ("id", "customer__email")
    readonly_fields = (
        "id",
        "purpose",
        "mode",
        "status",
        "amount",
        "currency",
        "customer",
        "wallet",
        "subscription",
        "invoice_id",
        "expires_at",
        "paid_at",
        "paid_source",
        "ledger_transaction",
        "checkout",
    )
    fields = readonly_fields
    actions = ("pay_in_sandbox",)

    def has_add_permission(self, request, *args):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def effective_status(self, obj):
        return session_status(obj)

    @admin.display(description="checkout")
    def checkout(self, obj):
        return format_html('<a href="{}" target="_blank" rel="noopener">open</a>', checkout_url(obj))

    @admin.action(description="Pay the selected sessions with the sandbox's test payment")
    def pay_in_sandbox(self, request, queryset):
        def pay(session):
            if session.merchant.livemode:
                raise Forbidden("live sessions are paid only by the customer.")
            payment_session_pay(session_id=session.id, source=TEST_SOURCE)

        run_per_row(
            self,
            request,
            queryset.select_related("merchant"),
            pay,
            "Paid {count} session(s).",
            describe=lambda session: f"Payment session {session.id}",
        )
