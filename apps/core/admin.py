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
    """A ModelAdmin whose saves and actions call services.

    Saves: `save_model` calls the service once the form is valid (never `Form.clean()`, which
    must not write). When the service refuses (an ApiError, e.g. an insufficient balance), the
    admin's transaction rolls back and the same POST is shown again with the service's message
    on the form (`show_service_error`): nothing of the save stays. (A `get_form` override must
    build on `super().get_form()`, which adds the refusal to the form.)

    Actions: those that call a service declare `permissions=["service_action"]`: they need the
    model's change permission, also on admins whose forms are read-only (ReadOnlyMixin).
    """

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ApiError as exc:
            if request.method != "POST" or hasattr(request, "_service_refusal"):
                raise
            # Raised out of the admin's transaction.atomic: what the save began is rolled back.
            request._service_refusal = exc
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        refusal = getattr(request, "_service_refusal", None)
        if refusal is None:
            return form
        show = self.show_service_error

        class RefusedForm(form):
            def full_clean(self):
                super().full_clean()
                if self.is_bound:
                    show(self, refusal)

        RefusedForm.__name__ = RefusedForm.__qualname__ = form.__name__
        return RefusedForm

    def show_service_error(self, form, exc: ApiError) -> None:
        """Put a service's refusal on the form; an admin may show it on the field it names."""
        form.add_error(None, exc.message)

    def has_service_action_permission(self, request) -> bool:
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")
