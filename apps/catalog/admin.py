"""Merchant staff manage the catalog in the admin. Forms validate through the same service
functions as the API (a graduated price with overlapping tiers is refused with the API's
message), and saves go through the same services."""

import re

from django import forms
from django.contrib import admin

from apps.catalog import services
from apps.catalog.models import BillableMetric, Plan, Price, Product
from apps.core.admin import TenantAdmin, TenantModelForm, TenantTabularInline, admin_tenant
from apps.core.errors import ApiError

# The API's names of fields, as services report them, and the form fields they belong to.
FORM_FIELD_OF = {
    "name": "name",
    "description": "description",
    "metadata": "metadata",
    "productId": "product",
    "aggregation": "aggregation",
    "groupBy": "group_by",
    "valueProperty": "value_property",
    "billableMetricId": "billable_metric",
    "model": "model",
    "paymentTerm": "payment_term",
    "currency": "currency",
    "properties": "properties",
    "freeUnits": "free_units",
    "amount": "amount",
    "code": "code",
    "prices": "prices",
    "features": "features",
}


def _add_api_error(form: forms.Form, exc: ApiError) -> None:
    """Show a service's error on the form field it names, with the API's message."""
    field = getattr(exc, "field", None) or exc.details.get("field") or ""
    root = re.split(r"[.\[]", field, maxsplit=1)[0]
    name = FORM_FIELD_OF.get(root)
    message = exc.message
    if field and field != root and not message.startswith(field):
        message = f"{field}: {message}"
    form.add_error(name if name in form.fields else None, message)


class CatalogForm(TenantModelForm):
    """Runs `validate(merchant, cleaned)` (a service's clean function) once the fields are valid."""

    tenant = None  # set per request by CatalogAdmin.get_form

    def clean(self):
        cleaned = super().clean()
        if self._errors:
            return cleaned
        merchant = self.tenant or cleaned.get("merchant") or getattr(self.instance, "merchant", None)
        if merchant is None:
            return cleaned
        try:
            self.validate(merchant, cleaned)
        except ApiError as exc:
            _add_api_error(self, exc)
        return cleaned

    def validate(self, merchant, cleaned) -> None:
        raise NotImplementedError


class CatalogAdmin(TenantAdmin):
    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.tenant = admin_tenant(request)
        return form

    def merchant_of(self, request, obj):
        return admin_tenant(request) or obj.merchant

    def adopt(self, obj, saved) -> None:
        """Make the admin's `obj` the row a service saved, for the admin's messages and redirect."""
        obj.pk = saved.pk
        obj.merchant = saved.merchant
        obj.__dict__.update({f.attname: getattr(saved, f.attname) for f in saved._meta.concrete_fields})
        obj._state.adding = False


# --- products --------------------------------------------------------------------------------


class ProductForm(CatalogForm):
    class Meta:
        model = Product
        fields = ["merchant", "name", "description", "metadata"]

    def validate(self, merchant, cleaned) -> None:
        services.product_clean(name=cleaned["name"], metadata=cleaned.get("metadata"))


class BillableMetricInline(TenantTabularInline):
    """The product's metrics, read only here: each is edited on its own page, through the service."""

    model = BillableMetric
    fields = ("name", "aggregation", "unit", "value_property")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Product)
class ProductAdmin(CatalogAdmin):
    form = ProductForm
    list_display = ("name", "created_at")
    search_fields = ("name",)
    inlines = [BillableMetricInline]

    def save_model(self, request, obj, form, change):
        data = {"name": obj.name, "description": obj.description, "metadata": obj.metadata}
        if change:
            saved = services.product_update(product=Product.objects.get(pk=obj.pk), **data)
        else:
            saved = services.product_create(merchant=self.merchant_of(request, obj), **data)
        self.adopt(obj, saved)


# --- billable metrics ------------------------------------------------------------------------


class BillableMetricForm(CatalogForm):
    class Meta:
        model = BillableMetric
        fields = ["merchant", "product", "name", "description", "unit", "aggregation", "value_property", "group_by"]
        help_texts = {"group_by": 'A JSON list of usage metadata keys, such as ["region"].'}

    def validate(self, merchant, cleaned) -> None:
        services.billable_metric_clean(
            merchant=merchant,
            metric=None if self.instance._state.adding else self.instance,
            product=cleaned["product"],
            name=cleaned["name"],
            aggregation=cleaned["aggregation"],
            group_by=cleaned.get("group_by"),
            value_property=cleaned.get("value_property") or "",
        )


METRIC_FIELDS = ("product", "name", "description", "unit", "aggregation", "value_property", "group_by")


@admin.register(BillableMetric)
class BillableMetricAdmin(CatalogAdmin):
    form = BillableMetricForm
    list_display = ("name", "product", "aggregation", "unit", "created_at")
    list_filter = ("aggregation",)
    search_fields = ("name",)

    def save_model(self, request, obj, form, change):
        data = {name: getattr(obj, name) for name in METRIC_FIELDS}
        if change:
            saved = services.billable_metric_update(metric=BillableMetric.objects.get(pk=obj.pk), **data)
        else:
            saved = services.billable_metric_create(merchant=self.merchant_of(request, obj), **data)
        self.adopt(obj, saved)


# --- prices ----------------------------------------------------------------------------------

PROPERTIES_HELP = (
    'JSON, with amounts as strings. standard: {"unitPrice": "0.001"}; graduated or volume: '
    '{"tiers": [{"upTo": "1000", "unitPrice": "0.002", "flatFee": "0"}, {"upTo": null, "unitPrice": "0.001"}]} '
    '(upTo is inclusive; the last tier has upTo null); package: {"packageSize": "100", "packagePrice": "1"}; '
    'percentage (in percent): {"percentage": "2.5", "minCharge": null, "maxCharge": null}. Empty for a fee.'
)
PRICE_FIELDS = (
    "billable_metric",
    "model",
    "payment_term",
    "currency",
    "properties",
    "free_units",
    "allow_price_override",
    "amount",
    "invoice_display_name",
)


class PriceForm(CatalogForm):
    class Meta:
        model = Price
        fields = ["merchant", *PRICE_FIELDS]
        help_texts = {
            "properties": PROPERTIES_HELP,
            "billable_metric": "Empty for a fee: a flat amount per period (model standard, amount set).",
        }

    def validate(self, merchant, cleaned) -> None:
        values = {name: cleaned.get(name) for name in PRICE_FIELDS}
        if not self.instance._state.adding:
            services.price_update_clean(price=self.instance, **values)
            return
        services.price_clean(
            merchant=merchant,
            billable_metric=values["billable_metric"],
            model=values["model"],
            payment_term=values["payment_term"],
            properties=values["properties"],
            free_units=values["free_units"],
            amount=values["amount"],
        )


@admin.register(Price)
class PriceAdmin(CatalogAdmin):
    form = PriceForm
    list_display = ("__str__", "billable_metric", "model", "payment_term", "currency", "amount", "archived_at")
    list_filter = ("model", "payment_term", "currency")
    readonly_fields = ("archived_at",)
    actions = ("archive_prices",)

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data.get(name) for name in PRICE_FIELDS}
        if change:
            saved = services.price_update(price=Price.objects.get(pk=obj.pk), **data)
        else:
            saved = services.price_create(merchant=self.merchant_of(request, obj), **data)
        self.adopt(obj, saved)

    def has_delete_permission(self, request, obj=None):
        return False  # prices are archived (plans and, later, invoices refer to them)

    @admin.action(description="Archive the selected prices")
    def archive_prices(self, request, queryset):
        for price in queryset:
            services.price_archive(price=price)
        self.message_user(request, f"Archived {queryset.count()} price(s).")


# --- plans -----------------------------------------------------------------------------------

FEATURES_HELP = (
    'JSON: {"rateLimit": 100, "monthlyQueryLimit": 10000, "webhooks": 3} (rateLimit in requests per second; '
    "null means unlimited), plus any named feature with a boolean, string or whole-number value."
)
PLAN_FIELDS = ("name", "code", "product", "currency", "billing_interval", "prices", "features")


class PlanForm(CatalogForm):
    class Meta:
        model = Plan
        fields = ["merchant", *PLAN_FIELDS]
        help_texts = {"features": FEATURES_HELP}

    def validate(self, merchant, cleaned) -> None:
        cleaned["features"], _ = services.plan_clean(
            merchant=merchant,
            plan=None if self.instance._state.adding else self.instance,
            name=cleaned["name"],
            code=cleaned["code"],
            product=cleaned["product"],
            currency=cleaned["currency"],
            prices=list(cleaned.get("prices") or []),
            features=cleaned.get("features"),
        )


@admin.register(Plan)
class PlanAdmin(CatalogAdmin):
    form = PlanForm
    list_display = ("name", "code", "currency", "billing_interval", "created_at")
    list_filter = ("currency", "billing_interval")
    search_fields = ("name", "code")
    filter_horizontal = ("prices",)

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data.get(name) for name in PLAN_FIELDS}
        data["prices"] = list(data["prices"] or [])
        if change:
            saved = services.plan_update(plan=Plan.objects.get(pk=obj.pk), merge_features=False, **data)
        else:
            saved = services.plan_create(merchant=self.merchant_of(request, obj), **data)
        self.adopt(obj, saved)

    def save_related(self, request, form, formsets, change):
        # The service has set the prices; only inlines (none yet) remain to be saved.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)
