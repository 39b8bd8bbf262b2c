"""Ledger admin: everything read-only (the ledger is append-only)."""

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Sum

from apps.core.admin import ReadOnlyMixin
from apps.core.money import ZERO, format_amount
from apps.ledger.models import Account, Entry, LedgerTransaction, Wallet
from apps.ledger.selectors import wallet_balances, wallets_balances
from apps.merchants.admin_base import TenantAdmin, TenantTabularInline


class EntryInline(ReadOnlyMixin, TenantTabularInline):
    model = Entry
    staff_permissions = ("view",)
    fields = ("account", "shard", "amount")
    readonly_fields = fields
    extra = 0


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyMixin, TenantAdmin):
    staff_permissions = ("view",)
    list_display = ("created_at", "kind", "currency", "description", "reference")
    list_filter = ("kind", "currency")
    search_fields = ("id", "reference", "description")
    readonly_fields = ("id", "kind", "currency", "description", "reference", "reverses", "metadata", "created_at")
    fields = readonly_fields
    inlines = [EntryInline]


@admin.register(Account)
class AccountAdmin(ReadOnlyMixin, TenantAdmin):
    staff_permissions = ("view",)
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
    staff_permissions = ("view",)
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
