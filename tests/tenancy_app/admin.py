from django.contrib import admin

from apps.merchants.admin_base import TenantAdmin
from tests.tenancy_app.models import Widget


@admin.register(Widget)
class WidgetAdmin(TenantAdmin):
    staff_permissions = ("view", "add", "change")
    list_display = ("name",)
    fields = ("merchant", "name", "parent")
