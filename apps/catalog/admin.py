"""Merchant staff manage the catalog in the admin. Forms validate through the same service
functions as the API (a graduated price with overlapping tiers is refused with the API's
message), and saves go through the same services."""

import json
import re

from django import forms
from django.conf import settings
from django.contrib import admin
from django.utils.functional import cached_property

from apps.catalog import services
from apps.catalog.models import BillableMetric, Invoicing, Plan, Price, PriceModel, Product
from apps.core.admin import run_per_row
from apps.core.errors import ApiError
from apps.merchants.admin_base import TenantAdmin, TenantModelForm, TenantTabularInline, admin_tenant

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

    def show_service_error(self, form, exc: ApiError) -> None:
        _add_api_error(form, exc)

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
    staff_permissions = ("view",)
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
    staff_permissions = ("view", "add", "change")
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
    staff_permissions = ("view", "add", "change")
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
    'percentage (in percent): {"percentage": "2.5", "minCharge": null, "maxCharge": null}. Empty for a fee. '
    "For a graduated or volume price you may fill the tier rows below instead: when any tier row is filled, "
    "the rows win and this box is ignored."
)
TIERED_MODELS = (PriceModel.GRADUATED, PriceModel.VOLUME)
TIER_PREFIX = "tiers"
TIER_KEYS = ("upTo", "unitPrice", "flatFee")
TIER_ERROR_FIELD = re.compile(r"^properties\.tiers\[(\d+)\](?:\.(\w+))?")
TIER_ROWS_HELP = (
    "Used when the model is graduated or volume; ignored for the other models. Amounts are exact decimals "
    "(up to 12 places). Each tier prices the units above the previous row's upTo up to its own upTo "
    "(inclusive); leave upTo blank on the last row only (no upper bound). Empty rows are ignored, so clear "
    "a row to remove its tier. When any row is filled, the rows replace the properties box."
)
PRICE_FIELDS = services.PRICE_FIELDS


class TierForm(forms.Form):
    """One tier row. Amounts stay text, so that the service parses them exactly as the API does."""

    upTo = forms.CharField(
        label="Up to (inclusive)", required=False, max_length=64, widget=forms.TextInput(attrs={"size": 18})
    )
    unitPrice = forms.CharField(
        label="Unit price", required=False, max_length=64, widget=forms.TextInput(attrs={"size": 18})
    )
    flatFee = forms.CharField(
        label="Flat fee", required=False, max_length=64, widget=forms.TextInput(attrs={"size": 18})
    )

    def as_tier(self) -> dict | None:
        """The row as an API tier (strings, upTo None when blank), or None for an empty row."""
        values = {key: (self.cleaned_data.get(key) or "").strip() for key in TIER_KEYS}
        if not any(values.values()):
            return None
        tier = {"upTo": values["upTo"] or None}
        # A blank unit price is left out, so the service reports it as required, naming the tier.
        tier.update({key: values[key] for key in ("unitPrice", "flatFee") if values[key]})
        return tier


TierFormSet = forms.formset_factory(TierForm, extra=3)


def tier_rows_of(price: Price) -> list[dict]:
    """The initial rows of a stored graduated or volume price: its tiers, blanks for null."""
    tiers = (price.properties or {}).get("tiers") if price.model in TIERED_MODELS else None
    if not isinstance(tiers, list):
        return []
    return [{key: tier.get(key) or "" for key in TIER_KEYS} for tier in tiers if isinstance(tier, dict)]


class PriceForm(CatalogForm):
    """The price's fields plus `tiers`, a formset of tier rows bound from the same POST data.

    For a graduated or volume price with any tier row filled, the rows become `properties`
    before the service validates the price, so they are judged (and refused) exactly like
    the API's `properties.tiers`.
    """

    class Meta:
        model = Price
        fields = ["merchant", *PRICE_FIELDS]
        help_texts = {
            "properties": PROPERTIES_HELP,
            "billable_metric": "Empty for a fee: a flat amount per period (model standard, amount set).",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Bound only when the POST carries the rows' management form (the page always renders it);
        # a POST without it (a script) uses the properties box alone.
        sent = self.is_bound and f"{TIER_PREFIX}-TOTAL_FORMS" in self.data
        self.tiers = TierFormSet(
            self.data if sent else None, prefix=TIER_PREFIX, initial=tier_rows_of(self.instance) or None
        )
        self.tier_rows: list[TierForm] | None = None  # the filled rows, in order, when they are used

    def clean(self):
        properties = self._properties_from_rows()
        if properties is not None:
            self._errors.pop("properties", None)  # the rows win over the box
            self.cleaned_data["properties"] = properties
        return super().clean()

    def _properties_from_rows(self) -> dict | None:
        self.tier_rows = None
        if not self.tiers.is_bound or self.cleaned_data.get("model") not in TIERED_MODELS:
            return None
        if not self.tiers.is_valid():
            problems = [*self.tiers.non_form_errors()] or ["correct the tier rows below."]
            self.add_error(None, f"Tier rows: {' '.join(problems)}")
            return None
        rows = [(row, row.as_tier()) for row in self.tiers.forms]
        rows = [(row, tier) for row, tier in rows if tier is not None]
        if not rows:
            return None
        self.tier_rows = [row for row, _ in rows]
        return {"tiers": [tier for _, tier in rows]}

    @cached_property
    def changed_data(self):
        changed = list(super().changed_data)
        if self.tier_rows and self.tiers.has_changed() and "properties" not in changed:
            changed.append("properties")  # so the admin's history records a change made in the rows
        return changed

    def validate(self, merchant, cleaned) -> None:
        try:
            self._validate(merchant, cleaned)
        except ApiError as exc:
            if not self._show_on_tier_rows(exc):
                raise

    def _show_on_tier_rows(self, exc: ApiError) -> bool:
        """Show an error in `properties` made from the rows at the top of the form and on its row."""
        field = getattr(exc, "field", None) or exc.details.get("field") or ""
        if not self.tier_rows or not field.startswith("properties"):
            return False
        message = exc.message if exc.message.startswith(field) else f"{field}: {exc.message}"
        self.add_error(None, f"Tier rows: {message}")
        match = TIER_ERROR_FIELD.match(field)
        if match and int(match[1]) < len(self.tier_rows):
            row = self.tier_rows[int(match[1])]
            row.add_error(match[2] if match[2] in row.fields else None, exc.message)
        return True

    def _validate(self, merchant, cleaned) -> None:
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
    staff_permissions = ("view", "add", "change")
    list_display = ("__str__", "billable_metric", "model", "payment_term", "currency", "amount", "archived_at")
    list_filter = ("model", "payment_term", "currency")
    readonly_fields = ("archived_at",)
    actions = ("archive_prices",)
    # Renders `form.tiers` after the fieldsets; admin/js/inlines.js gives it "Add another tier".
    change_form_template = "admin/catalog/price/change_form.html"

    @property
    def media(self):
        # As InlineModelAdmin.media: inlines.js after jQuery and jquery.init.js, which it needs when it loads.
        extra = "" if settings.DEBUG else ".min"
        js = [f"vendor/jquery/jquery{extra}.js", "jquery.init.js", "inlines.js"]
        return super().media + forms.Media(js=[f"admin/js/{name}" for name in js])

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        tiers = context["adminform"].form.tiers
        context.update(
            tier_formset=tiers,
            tier_rows_help=TIER_ROWS_HELP,
            tier_formset_data=json.dumps(
                {
                    "name": f"#{tiers.prefix}",
                    "options": {"prefix": tiers.prefix, "addText": "Add another tier", "deleteText": "Remove"},
                }
            ),
        )
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data.get(name) for name in PRICE_FIELDS}
        if change:
            saved = services.price_update(price=Price.objects.get(pk=obj.pk), **data)
        else:
            saved = services.price_create(merchant=self.merchant_of(request, obj), **data)
        self.adopt(obj, saved)

    def has_delete_permission(self, request, obj=None):
        return False  # prices are archived (plans and, later, invoices refer to them)

    @admin.action(description="Archive the selected prices", permissions=["service_action"])
    def archive_prices(self, request, queryset):
        run_per_row(
            self, request, queryset, lambda price: services.price_archive(price=price), "Archived {count} price(s)."
        )


# --- plans -----------------------------------------------------------------------------------

FEATURES_HELP = (
    'JSON: {"rateLimit": 100, "monthlyQueryLimit": 10000, "webhooks": 3} (rateLimit in requests per second; '
    "null means unlimited), plus any named feature with a boolean, string or whole-number value."
)
PLAN_FIELDS = ("name", "code", "product", "currency", "billing_interval", "invoicing", "prices", "features")


class PlanForm(CatalogForm):
    class Meta:
        model = Plan
        fields = ["merchant", *PLAN_FIELDS]
        help_texts = {"features": FEATURES_HELP}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "invoicing" in self.fields:
            self.fields["invoicing"].required = False  # left out: automatic

    def validate(self, merchant, cleaned) -> None:
        cleaned["invoicing"] = cleaned.get("invoicing") or Invoicing.AUTOMATIC
        cleaned["features"], _ = services.plan_clean(
            merchant=merchant,
            plan=None if self.instance._state.adding else self.instance,
            name=cleaned["name"],
            code=cleaned["code"],
            product=cleaned["product"],
            currency=cleaned["currency"],
            billing_interval=cleaned["billing_interval"],
            prices=list(cleaned.get("prices") or []),
            features=cleaned.get("features"),
        )


@admin.register(Plan)
class PlanAdmin(CatalogAdmin):
    form = PlanForm
    staff_permissions = ("view", "add", "change")
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
