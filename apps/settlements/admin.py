"""Settlements and proven wallet addresses: viewed here (written only by the API's services),
with a link to the chain's explorer where the chain has one."""

from django.contrib import admin
from django.utils.html import format_html

from apps.core.admin import ReadOnlyMixin
from apps.merchants.admin_base import TenantAdmin
from apps.payments.chains import ChainConfigError, chain_get
from apps.settlements.models import Settlement, WalletAddress


def explorer_link(settlement: Settlement):
    try:
        chain = chain_get(livemode=settlement.merchant.livemode, name=settlement.chain)
    except ChainConfigError:
        chain = None
    url = chain.explorer_tx_url(settlement.transaction_hash) if chain else None
    if not url:
        return settlement.transaction_hash
    return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, settlement.transaction_hash)


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyMixin, TenantAdmin):
    staff_permissions = ("view",)
    list_display = (
        "created_at",
        "chain",
        "transaction",
        "status",
        "failure_reason",
        "amount",
        "confirmations",
        "customer",
    )
    list_filter = ("status", "chain", "failure_reason")
    search_fields = ("transaction_hash", "payer_address", "invoice_id", "customer__email")
    list_select_related = ("merchant", "customer")
    fields = (
        "id",
        "status",
        "failure_reason",
        "chain",
        "chain_id",
        "transaction",
        "reference_hash",
        "payer_address",
        "merchant_address",
        "customer",
        "invoice_id",
        "session",
        "amount",
        "amount_base_units",
        "log_indexes",
        "confirmations",
        "required_confirmations",
        "block_number",
        "block_hash",
        "payment",
        "holds_hash",
        "checks",
        "next_check_at",
        "created_at",
        "confirmed_at",
        "failed_at",
    )
    readonly_fields = fields

    @admin.display(description="transaction")
    def transaction(self, obj):
        return explorer_link(obj)


@admin.register(WalletAddress)
class WalletAddressAdmin(ReadOnlyMixin, TenantAdmin):
    staff_permissions = ("view",)
    list_display = ("address", "customer", "created_at")
    search_fields = ("address", "customer__email")
    list_select_related = ("merchant", "customer")
    fields = ("address", "customer", "signature", "created_at")
    readonly_fields = fields
