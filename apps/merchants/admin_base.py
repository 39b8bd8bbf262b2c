"""The tenant-scoped admin base that every app's ModelAdmin uses.

A merchant's staff member sees, chooses and saves only rows of their merchant, in
the mode (live or sandbox) picked with the switch in the header. Platform
superusers without a merchant see everything.

It lives here, not in apps.core, because it knows the tenant: apps.core knows no domain.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from apps.core.admin import ReadOnlyMixin, ServiceAdminMixin
from apps.core.models import TenantModel
from apps.merchants.models import Merchant

SANDBOX_SESSION_KEY = "admin_sandbox"


def is_tenant_model(model) -> bool:
    return issubclass(model, TenantModel)


def admin_tenant(request):
    """The merchant row this admin user works on, or None for a platform superuser."""
    if hasattr(request, "_admin_tenant"):
        return request._admin_tenant
    user = request.user
    tenant = None
    if getattr(user, "merchant_id", None):
        tenant = user.merchant
        if request.session.get(SANDBOX_SESSION_KEY):
            tenant = Merchant.objects.get(live_merchant_id=user.merchant_id)
    request._admin_tenant = tenant
    return tenant


class TenantModelForm(forms.ModelForm):
    """Refuses a row that points at another merchant's rows (for superusers, who choose freely)."""

    def clean(self):
        cleaned = super().clean()
        merchant = cleaned.get("merchant")
        if merchant is None and self.instance.merchant_id:
            merchant = self.instance.merchant
        if merchant is None:
            return cleaned
        for name, value in cleaned.items():
            if isinstance(value, TenantModel):
                related = [value]
            elif hasattr(value, "model") and is_tenant_model(value.model):
                related = list(value)
            else:
                continue
            for item in related:
                if item.merchant_id != merchant.pk:
                    raise ValidationError({name: f"{item} belongs to another merchant or mode."})
        return cleaned


class TenantScopedMixin:
    """Querysets and foreign-key choices scoped to the admin user's merchant.

    Permissions are Django's: merchant staff have those of the "Merchant staff" group, which
    holds what each admin declares in `staff_permissions` (apps.merchants.permissions).
    """

    staff_permissions: tuple[str, ...] = ()  # of "view", "add", "change"; empty: platform only

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        tenant = admin_tenant(request)
        if tenant is not None:
            qs = qs.filter(merchant=tenant)
        return qs

    def _scope_related(self, request, db_field, kwargs):
        tenant = admin_tenant(request)
        model = db_field.related_model
        if tenant is not None and model is not None and is_tenant_model(model):
            queryset = kwargs.get("queryset") or model._default_manager.all()
            kwargs["queryset"] = queryset.filter(merchant=tenant)
        return kwargs

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "merchant" and admin_tenant(request) is not None:
            kwargs["queryset"] = Merchant.objects.filter(pk=admin_tenant(request).pk)
        return super().formfield_for_foreignkey(db_field, request, **self._scope_related(request, db_field, kwargs))

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        return super().formfield_for_manytomany(db_field, request, **self._scope_related(request, db_field, kwargs))

    def get_exclude(self, request, obj=None):
        exclude = list(super().get_exclude(request, obj) or [])
        if admin_tenant(request) is not None and "merchant" not in exclude:
            exclude.append("merchant")
        return exclude

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if admin_tenant(request) is not None and "merchant" in fields:
            fields.remove("merchant")
        return fields


class TenantAdmin(TenantScopedMixin, ServiceAdminMixin, admin.ModelAdmin):
    form = TenantModelForm

    def get_list_display(self, request):
        display = list(super().get_list_display(request))
        if admin_tenant(request) is None and "merchant" not in display:
            display.append("merchant")
        return display

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        if admin_tenant(request) is None and "merchant" not in filters:
            filters.append("merchant")
        return filters

    def save_model(self, request, obj, form, change):
        tenant = admin_tenant(request)
        if tenant is not None:
            obj.merchant = tenant
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        instances = formset.save(commit=False)
        for instance in instances:
            if isinstance(instance, TenantModel) and not instance.merchant_id:
                instance.merchant = form.instance.merchant
            instance.save()
        for instance in formset.deleted_objects:
            instance.delete()
        formset.save_m2m()


class TenantInlineMixin(TenantScopedMixin):
    """For inlines of tenant rows: children take their parent's merchant (set in TenantAdmin.save_formset)."""

    def get_exclude(self, request, obj=None):
        exclude = list(super().get_exclude(request, obj) or [])
        if "merchant" not in exclude:
            exclude.append("merchant")
        return exclude


class TenantTabularInline(TenantInlineMixin, admin.TabularInline):
    pass


class TenantStackedInline(TenantInlineMixin, admin.StackedInline):
    pass


class TenantHistoryInline(ReadOnlyMixin, TenantTabularInline):
    """A row's children written only by services (attempts, payments, refunds...), listed
    read-only, oldest first; merchant staff may view them. A subclass names `model` and
    `fields` (every one shown read-only)."""

    staff_permissions = ("view",)
    extra = 0
    ordering = ("created_at",)

    def get_readonly_fields(self, request, obj=None):
        return self.fields
