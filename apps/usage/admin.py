"""Usage admin: events and disputes are read-only; refunds and dispute decisions go through
the same services as the API (apps.usage.services.refunds)."""

import uuid

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ActionForm
from django.db.models import Exists, OuterRef

from apps.catalog.models import BillableMetric
from apps.core.admin import ReadOnlyMixin, run_per_row
from apps.core.money import format_amount
from apps.merchants.admin_base import TenantAdmin, TenantTabularInline, admin_tenant
from apps.usage.models import Dispute, UsageEvent, UsageLine
from apps.usage.services.refunds import dispute_accept, dispute_decline, usage_refund

REFUND_REASON = "refunded in the admin"
DECLINE_REASON = "declined in the admin"


class ReasonActionForm(ActionForm):
    """The action bar with an optional reason, used by the refund and decline actions."""

    reason = forms.CharField(required=False, max_length=500, label="Reason (optional)")


def _action_reason(request, default: str) -> str:
    return (request.POST.get("reason") or "").strip()[:500] or default


class RefundedFilter(admin.SimpleListFilter):
    title = "refunded"
    parameter_name = "refunded"

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("no", "No"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(refunded_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(refunded_at__isnull=True)
        return queryset


class MetricFilter(admin.SimpleListFilter):
    """Events having a line of one billable metric; the choices are the admin user's metrics only."""

    title = "billable metric"
    parameter_name = "metric"

    def lookups(self, request, model_admin):
        tenant = admin_tenant(request)
        metrics = BillableMetric.objects.select_related("merchant").order_by("name", "created_at")
        if tenant is not None:
            return [(str(m.pk), m.name) for m in metrics.filter(merchant=tenant)]
        return [(str(m.pk), f"{m.name} ({m.merchant})") for m in metrics]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        try:
            metric_id = uuid.UUID(value)
        except ValueError:
            return queryset.none()
        lines = UsageLine.objects.filter(event=OuterRef("pk"), billable_metric_id=metric_id)
        return queryset.filter(Exists(lines))


class UsageLineInline(ReadOnlyMixin, TenantTabularInline):
    model = UsageLine
    staff_permissions = ("view",)
    fields = (
        "position",
        "billable_metric",
        "price",
        "quantity",
        "value",
        "value_text",
        "payment_term",
        "unit_price",
        "amount",
    )
    readonly_fields = fields
    ordering = ("position",)
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("billable_metric", "price", "price__billable_metric")


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyMixin, TenantAdmin):
    """Usage is reported through the API; the admin shows it and can refund it."""

    staff_permissions = ("view", "change")  # change: the refund action

    list_display = (
        "timestamp",
        "idempotency_key",
        "customer",
        "subscription",
        "charged",
        "commission",
        "refunded",
    )
    list_filter = ("currency", RefundedFilter, MetricFilter)
    list_select_related = ("customer", "subscription__plan", "subscription__customer", "merchant")
    date_hierarchy = "timestamp"
    search_fields = ("idempotency_key", "customer__email", "id")
    ordering = ("-timestamp",)
    readonly_fields = (
        "id",
        "idempotency_key",
        "timestamp",
        "customer",
        "subscription",
        "entitlement",
        "currency",
        "amount",
        "commission_amount",
        "owner_revenue_amount",
        "balance_after",
        "ledger_transaction",
        "invoice_id",
        "metadata",
        "refunded_at",
        "refund_reason",
        "refund_transaction",
        "created_at",
    )
    fields = readonly_fields
    inlines = [UsageLineInline]
    actions = ("refund_events",)
    action_form = ReasonActionForm

    @admin.display(description="amount", ordering="amount")
    def charged(self, obj):
        return f"{format_amount(obj.amount, obj.currency)} {obj.currency}"

    @admin.display(description="commission", ordering="commission_amount")
    def commission(self, obj):
        return format_amount(obj.commission_amount, obj.currency)

    @admin.display(description="refunded", boolean=True, ordering="refunded_at")
    def refunded(self, obj):
        return obj.refunded_at is not None

    @admin.action(description="Refund the selected events", permissions=["service_action"])
    def refund_events(self, request, queryset):
        reason = _action_reason(request, REFUND_REASON)
        run_per_row(
            self,
            request,
            queryset.select_related("merchant", "subscription__wallet"),
            lambda event: usage_refund(merchant=event.merchant, event=event, reason=reason),
            "Refunded {count} usage event(s).",
            describe=lambda event: event.idempotency_key,
        )


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyMixin, TenantAdmin):
    """Disputes are opened through the API or the portal; the admin accepts or declines them."""

    staff_permissions = ("view", "change")  # change: the accept and decline actions

    list_display = ("created_at", "usage_event", "customer", "status", "opened_by", "resolved_at")
    list_filter = ("status", "opened_by")
    list_select_related = ("usage_event", "customer", "merchant")
    search_fields = ("id", "usage_event__idempotency_key", "customer__email")
    ordering = ("-created_at",)
    readonly_fields = (
        "id",
        "usage_event",
        "customer",
        "status",
        "opened_by",
        "message",
        "decline_reason",
        "resolved_at",
        "created_at",
    )
    fields = readonly_fields
    actions = ("accept_disputes", "decline_disputes")
    action_form = ReasonActionForm

    def _resolve(self, request, queryset, resolve, verb: str):
        # (a dispute no longer open is refused by the service: DISPUTE_NOT_OPEN)
        run_per_row(
            self,
            request,
            queryset.select_related("merchant", "usage_event__subscription__wallet"),
            resolve,
            f"{verb} {{count}} dispute(s).",
            describe=lambda dispute: f"Dispute {dispute.id}",
        )

    @admin.action(description="Accept (refunds the event)", permissions=["service_action"])
    def accept_disputes(self, request, queryset):
        self._resolve(
            request,
            queryset,
            lambda dispute: dispute_accept(merchant=dispute.merchant, dispute=dispute),
            "Accepted",
        )

    @admin.action(description="Decline", permissions=["service_action"])
    def decline_disputes(self, request, queryset):
        reason = _action_reason(request, DECLINE_REASON)
        self._resolve(
            request,
            queryset,
            lambda dispute: dispute_decline(merchant=dispute.merchant, dispute=dispute, reason=reason),
            "Declined",
        )
