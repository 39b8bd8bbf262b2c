import json
from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html_join
from rest_framework import serializers

from apps.core.admin import run_per_row
from apps.core.errors import validation_body
from apps.core.metadata import MetadataField
from apps.customers.billing import SUPPORTED_CURRENCIES
from apps.customers.inputs import AddressInputSerializer, BillingSettingsInput, address_from_input
from apps.customers.models import Customer
from apps.customers.selectors import customer_find_active_by_email, customers_billing_settings
from apps.customers.serializers import billing_settings_data
from apps.customers.services import customer_archive, customer_create, customer_update
from apps.merchants.admin_base import TenantAdmin, TenantModelForm, admin_tenant

# Links to a customer's rows in the admins of apps above customers (which imports none of them):
# each app adds a function of the customer that returns an HTML link, or "" for none.
CUSTOMER_LINKS: list[Callable[[Customer], str]] = []


def customer_admin_link_add(link: Callable[[Customer], str]) -> None:
    """Show `link(customer)` on each customer's admin page (called by an app's admin module)."""
    if link not in CUSTOMER_LINKS:
        CUSTOMER_LINKS.append(link)


class ArchivedFilter(admin.SimpleListFilter):
    title = "archived"
    parameter_name = "archived"

    def lookups(self, request, model_admin):
        return (("no", "Active"), ("yes", "Archived"))

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(archived_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(archived_at__isnull=False)
        return queryset


def billing_settings_shown(customer) -> dict:
    """The customer's billingSettings as the API answers them, without the currencies it has none for."""
    rows = customers_billing_settings(customers=[customer])[customer.pk]
    return {currency: value for currency, value in billing_settings_data(rows).items() if value is not None}


class CustomerAdminForm(TenantModelForm):
    """The same rules as the API: the address, metadata and billing settings shapes, and one
    active customer per email."""

    tenant = None  # the admin user's merchant row, set by CustomerAdmin.get_form

    billing_settings = forms.JSONField(
        required=False,
        label="Billing settings",
        help_text=(
            'As the API\'s billingSettings, keyed by wallet currency: {"USDC": {"lowBalanceThreshold": "5", '
            '"autoRecharge": {"enabled": true, "threshold": "10", "amount": "50"}}}. Amounts are strings. '
            "A currency left out has no settings."
        ),
    )

    class Meta:
        model = Customer
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["billing_settings"].initial = billing_settings_shown(self.instance)

    def clean_billing_settings(self):
        """{currency: CurrencyBillingSettings or None} for every supported currency: the form
        holds the whole of the customer's settings, so a currency left out is removed."""
        value = self.cleaned_data.get("billing_settings") or {}
        serializer = BillingSettingsInput(data=value)
        if not serializer.is_valid():
            raise forms.ValidationError(
                [
                    f"{error['field']}: {error['message']}" if error.get("field") else error["message"]
                    for error in validation_body(serializer.errors)["errors"]
                ]
            )
        return {currency: serializer.validated_data.get(currency) for currency in SUPPORTED_CURRENCIES}

    def clean_address(self):
        value = self.cleaned_data.get("address") or {}
        serializer = AddressInputSerializer(data=value)
        if not serializer.is_valid():
            raise forms.ValidationError(
                [
                    f"{field}: {error}" if field != "non_field_errors" else str(error)
                    for field, errors in serializer.errors.items()
                    for error in errors
                ]
            )
        return address_from_input(serializer.validated_data)

    def clean_metadata(self):
        value = self.cleaned_data.get("metadata") or {}
        try:
            return MetadataField().run_validation(value)
        except serializers.ValidationError as error:
            raise forms.ValidationError([str(message) for message in error.detail]) from None

    def clean(self):
        cleaned = super().clean()
        if not self.instance._state.adding:
            return cleaned
        merchant = self.tenant or cleaned.get("merchant")
        email = cleaned.get("email")
        if merchant is not None and email and customer_find_active_by_email(merchant=merchant, email=email):
            self.add_error("email", "A customer of this merchant already has this email.")
        return cleaned


@admin.register(Customer)
class CustomerAdmin(TenantAdmin):
    form = CustomerAdminForm
    staff_permissions = ("view", "add", "change")
    list_display = ("email", "name", "external_id", "archived_at", "created_at")
    list_filter = (ArchivedFilter,)
    search_fields = ("email", "name", "external_id")
    ordering = ("-created_at",)
    fields = (
        "merchant",
        "email",
        "name",
        "phone",
        "address",
        "external_id",
        "metadata",
        "billing_settings",
        "id",
        "archived_at",
        "created_at",
        "updated_at",
        "elsewhere",
    )
    actions = ("archive_customers",)

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if obj is None:
            fields = [f for f in fields if f not in ("id", "archived_at", "created_at", "updated_at", "elsewhere")]
        return fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # The email is the customer's identity per merchant; the merchant never changes.
        return ("merchant", "email", "id", "archived_at", "created_at", "updated_at", "elsewhere")

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"tenant": admin_tenant(request)})

    @admin.display(description="Billing settings")
    def billing_settings(self, obj):
        """Shown where the form cannot be changed (an archived customer, a view-only user)."""
        return json.dumps(billing_settings_shown(obj)) if obj is not None and obj.pk else "{}"

    @admin.display(description="Elsewhere")
    def elsewhere(self, obj):
        """The customer's rows in other admins (CUSTOMER_LINKS)."""
        links = [link(obj) for link in CUSTOMER_LINKS] if obj is not None and obj.pk else []
        return format_html_join("", "<div>{}</div>", ((link,) for link in links if link)) or "-"

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.archived_at is not None:
            return False  # archived customers are kept as they were; they can be viewed
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False  # customers are archived (the action below), never deleted: the ledger keeps their history

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            customer_update(
                merchant=obj.merchant,
                customer=obj,
                name=data.get("name", ""),
                phone=data.get("phone", ""),
                address={key: (data.get("address") or {}).get(key) for key in AddressInputSerializer().fields},
                external_id=data.get("external_id", ""),
                metadata=data.get("metadata") or {},
                billing_settings=data.get("billing_settings") or {},
            )
            return
        merchant = admin_tenant(request) or data["merchant"]
        customer, created = customer_create(
            merchant=merchant,
            email=data["email"],
            name=data.get("name", ""),
            phone=data.get("phone", ""),
            address=data.get("address") or {},
            external_id=data.get("external_id", ""),
            metadata=data.get("metadata") or {},
            billing_settings=data.get("billing_settings") or {},
        )
        if not created:
            # Another request created this email between the form check and the save.
            messages.warning(request, f"A customer with {customer.email} already existed; it was left unchanged.")
        obj.pk, obj.merchant, obj.email = customer.pk, customer.merchant, customer.email
        obj._state.adding = False

    @admin.action(description="Archive the selected customers", permissions=["service_action"])
    def archive_customers(self, request, queryset):
        run_per_row(
            self,
            request,
            queryset.select_related("merchant"),
            lambda customer: customer_archive(merchant=customer.merchant, customer=customer),
            "Archived {count} customer(s).",
        )
