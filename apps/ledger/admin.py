"""Ledger admin: everything read-only (the ledger is append-only); adjustments are added
through the same service as the API."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db.models import Sum

from apps.core.admin import ReadOnlyMixin, TenantAdmin, TenantTabularInline, admin_tenant
from apps.core.errors import ApiError
from apps.core.fields import Currency
from apps.core.money import ZERO, format_amount
from apps.customers.models import Customer
from apps.ledger.models import Account, Adjustment, Entry, LedgerTransaction, Wallet
from apps.ledger.selectors import wallet_balances, wallets_balances
from apps.ledger.services import wallet_adjust


class EntryInline(ReadOnlyMixin, TenantTabularInline):
    model = Entry
    fields = ("account", "shard", "amount")
    readonly_fields = fields
    extra = 0


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyMixin, TenantAdmin):
    list_display = ("created_at", "kind", "currency", "description", "reference")
    list_filter = ("kind", "currency")
    search_fields = ("id", "reference", "description")
    readonly_fields = ("id", "kind", "currency", "description", "reference", "reverses", "metadata", "created_at")
    fields = readonly_fields
    inlines = [EntryInline]


@admin.register(Account)
class AccountAdmin(ReadOnlyMixin, TenantAdmin):
    list_display = ("kind", "currency", "customer", "source", "balance")
    list_select_related = ("customer",)
    list_filter = ("kind", "currency")
    readonly_fields = ("id", "kind", "currency", "customer", "source", "shard_count", "balance")
    fields = readonly_fields

    def get_queryset(self, request):
        # the balance of each row in the page's own query (the sum of its shard rows)
        return super().get_queryset(request).annotate(balance_total=Sum("balances__amount"))

    @admin.display(description="balance")
    def balance(self, obj):
        return format_amount(obj.balance_total or ZERO, obj.currency)


class WalletChangeList(ChangeList):
    """Reads the balances of the whole page in one query, not two columns' worth per row."""

    def get_results(self, request):
        super().get_results(request)
        # Iterating the page's queryset fills its cache: the rows shown are these instances.
        balances = wallets_balances(wallets=self.result_list)
        for wallet in self.result_list:
            wallet.page_balances = balances[wallet.id]


@admin.register(Wallet)
class WalletAdmin(ReadOnlyMixin, TenantAdmin):
    list_display = ("customer", "currency", "available", "held", "created_at")
    list_filter = ("currency",)
    search_fields = ("customer__email", "customer__name")
    readonly_fields = ("id", "customer", "currency", "available", "held", "created_at")
    fields = readonly_fields

    def get_changelist(self, request, **kwargs):
        return WalletChangeList

    @staticmethod
    def _balances(obj):
        balances = getattr(obj, "page_balances", None)
        return balances if balances is not None else wallet_balances(wallet=obj)

    @admin.display(description="available")
    def available(self, obj):
        return format_amount(self._balances(obj).available, obj.currency)

    @admin.display(description="held")
    def held(self, obj):
        return format_amount(self._balances(obj).held, obj.currency)


class AdjustmentForm(forms.ModelForm):
    """Built per request by AdjustmentAdmin.get_form with `tenant` and `actor` set."""

    tenant = None
    actor = ""
    customer = forms.ModelChoiceField(queryset=Customer.objects.none())
    currency = forms.ChoiceField(choices=Currency.choices)

    class Meta:
        model = Adjustment
        fields = ("customer", "currency", "amount", "reason")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        customers = Customer.objects.filter(archived_at__isnull=True).order_by("email")
        self.fields["customer"].queryset = customers.filter(merchant=self.tenant) if self.tenant else customers

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            try:
                self.instance = wallet_adjust(
                    merchant=self.tenant or cleaned["customer"].merchant,
                    customer=cleaned["customer"],
                    amount=cleaned["amount"],
                    currency=cleaned["currency"],
                    reason=cleaned["reason"],
                    actor=f"admin {self.actor}",
                )
            except ApiError as exc:
                raise ValidationError(exc.message) from exc
        return cleaned


@admin.register(Adjustment)
class AdjustmentAdmin(TenantAdmin):
    """Adding an adjustment credits or debits the wallet through `wallet_adjust`; nothing is edited after."""

    list_display = ("created_at", "customer", "amount", "currency", "reason", "actor")
    list_filter = ("currency",)
    search_fields = ("customer__email", "reason")

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:
            return super().get_form(request, obj, change=change, **kwargs)
        return type(
            "AdjustmentForm",
            (AdjustmentForm,),
            {"tenant": admin_tenant(request), "actor": request.user.get_username()},
        )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["customer", "currency", "amount", "reason"]
        return ["customer", "wallet", "amount", "currency", "reason", "actor", "ledger_transaction", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj) if obj is not None else []

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        """The service already wrote the adjustment while validating the form."""
        messages.info(request, f"Wallet {'credited' if obj.amount > 0 else 'debited'} {obj.amount} {obj.currency}.")
