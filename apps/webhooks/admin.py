"""The merchant's webhook endpoints and their delivery log, tenant scoped."""

from django.contrib import admin
from django.utils.html import format_html

from apps.core.admin import ReadOnlyMixin, run_per_row
from apps.merchants.admin_base import TenantAdmin, TenantTabularInline
from apps.webhooks.models import Delivery, DeliveryAttempt, WebhookEndpoint
from apps.webhooks.services import webhook_delivery_resend, webhook_endpoint_update


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(TenantAdmin):
    """Endpoints are created through the API (the signing secret is shown once, there); here
    they are watched, changed and re-enabled."""

    staff_permissions = ("view", "change")
    list_display = ("url", "events", "enabled", "state", "failing_since", "created_at")
    list_filter = ("enabled",)
    search_fields = ("url", "id")
    fields = ("url", "events", "description", "enabled", "disabled_at", "disabled_reason", "failing_since")
    readonly_fields = ("disabled_at", "disabled_reason", "failing_since")

    def has_add_permission(self, request):
        return False

    @admin.display(description="why disabled")
    def state(self, obj):
        if obj.enabled:
            return "failing" if obj.failing_since else "ok"
        return format_html('<strong style="color:#b00">{}</strong>', obj.disabled_reason or "disabled")

    def save_model(self, request, obj, form, change):
        changes = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in ("url", "events", "description", "enabled")
        }
        webhook_endpoint_update(endpoint=obj, **changes)


class DeliveryAttemptInline(ReadOnlyMixin, TenantTabularInline):
    model = DeliveryAttempt
    extra = 0
    fields = ("number", "created_at", "succeeded", "response_status", "latency_ms", "error", "response_body")
    readonly_fields = fields
    ordering = ("number",)
    staff_permissions = ("view",)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyMixin, TenantAdmin):
    staff_permissions = ("view", "change")  # change: "send again"
    list_display = (
        "created_at",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_response_status",
        "next_attempt_at",
    )
    list_filter = ("status",)
    search_fields = ("event__id", "endpoint__url")
    fields = (
        "endpoint",
        "event",
        "event_type",
        "status",
        "attempts",
        "last_attempt_at",
        "last_response_status",
        "last_latency_ms",
        "next_attempt_at",
    )
    readonly_fields = fields
    inlines = (DeliveryAttemptInline,)
    actions = ("send_again",)
    list_select_related = ("event", "endpoint")

    @admin.display(description="event type")
    def event_type(self, obj):
        return obj.event.type

    @admin.action(description="Send the selected deliveries again", permissions=["service_action"])
    def send_again(self, request, queryset):
        run_per_row(
            self,
            request,
            queryset,
            lambda delivery: webhook_delivery_resend(delivery=delivery),
            "{count} delivery(ies) will be sent again within a second.",
            describe=lambda delivery: f"Delivery {delivery.id}",
        )
