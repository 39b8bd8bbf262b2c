"""Admin helpers that know no domain: actions that call a service per row, read-only admins.

The tenant-scoped ModelAdmin base knows the tenant, so it lives with it: merchants/admin_base.py.
"""

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth import get_permission_codename

from apps.core.errors import ApiError


def run_per_row(modeladmin, request, queryset, action: Callable, done_message: str, *, describe: Callable = str) -> int:
    """Run an admin action's service on each selected row. A row the service refuses (an
    ApiError) is reported by name (`describe(row)`) with the service's message, and the others
    go on: a refusal is a message, never a 500. Then `done_message`, formatted with `{count}`
    (the rows done), is shown. Returns that count."""
    done = 0
    for row in queryset:
        try:
            action(row)
        except ApiError as exc:
            modeladmin.message_user(request, f"{describe(row)}: {exc.message}", messages.ERROR)
        else:
            done += 1
    modeladmin.message_user(request, done_message.format(count=done), messages.SUCCESS if done else messages.INFO)
    return done


class ReadOnlyMixin:
    """For admins of rows written only by services (the ledger, usage): view, never edit."""

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ServiceAdminMixin:
    """A ModelAdmin whose actions call services.

    Such actions declare `permissions=["service_action"]`: they need the model's change
    permission, also on admins whose forms are read-only (ReadOnlyMixin).
    """

    def has_service_action_permission(self, request) -> bool:
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")
