from django.contrib import admin

from apps.core.errors import Conflict
from apps.merchants.admin_base import TenantAdmin
from tests.tenancy_app.models import Widget


@admin.register(Widget)
class WidgetAdmin(TenantAdmin):
    staff_permissions = ("view", "add", "change")
    list_display = ("name",)
    fields = ("merchant", "name", "parent")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if obj.name == "refused-by-the-service":  # a service refusing after it began to write
            raise Conflict("The service refused this widget.", code="WIDGET_REFUSED")
