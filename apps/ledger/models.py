"""Double-entry ledger: accounts, append-only transactions and entries, balance rows.

Sign convention: an account's balance is the sum of its entries' amounts; every
transaction's entries sum to zero. Money entering the platform leaves a clearing
account negative; a wallet holding customer money is positive.

Balances live in `Balance` rows updated in the same database transaction as the
entries. Wallet accounts have one balance row (shard 0), locked to check limits.
Accounts that every charge touches (merchant revenue, platform commission,
clearing) have several shard rows, so that concurrent charges do not queue on one
row; their balance is the sum of the shards.
"""

from django.db import models

from apps.core.fields import AmountField, Currency
from apps.core.models import BaseModel, TenantModel, unchecked_foreign_key


class Account(BaseModel):
    class Kind(models.TextChoices):
        WALLET_AVAILABLE = "wallet_available"
        WALLET_HELD = "wallet_held"
        MERCHANT_REVENUE = "merchant_revenue"
        PLATFORM_COMMISSION = "platform_commission"
        CLEARING = "clearing"

    PLATFORM_KINDS = (Kind.PLATFORM_COMMISSION, Kind.CLEARING)
    WALLET_KINDS = (Kind.WALLET_AVAILABLE, Kind.WALLET_HELD)

    # Empty only for the platform's own accounts (commission, clearing).
    merchant = models.ForeignKey(
        "merchants.Merchant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    currency = models.CharField(max_length=8, choices=Currency.choices)
    customer = models.ForeignKey(
        "customers.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source = models.CharField(max_length=64, blank=True, help_text="Funding source of a clearing account.")
    # Sandbox and live money never meet: every account belongs to one mode (a merchant's
    # accounts to its own; the platform has a commission and clearing account per mode), and
    # a transaction posts to accounts of its merchant's mode only (ledger_post refuses others).
    livemode = models.BooleanField()
    shard_count = models.PositiveSmallIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "customer", "kind", "currency", "source", "livemode"],
                name="ledger_account_unique_identity",
                nulls_distinct=False,
            ),
            models.CheckConstraint(
                condition=models.Q(merchant__isnull=True, kind__in=["platform_commission", "clearing"])
                | (models.Q(merchant__isnull=False) & ~models.Q(kind__in=["platform_commission", "clearing"])),
                name="ledger_account_platform_has_no_merchant",
            ),
            models.CheckConstraint(
                condition=models.Q(customer__isnull=False, kind__in=["wallet_available", "wallet_held"])
                | (models.Q(customer__isnull=True) & ~models.Q(kind__in=["wallet_available", "wallet_held"])),
                name="ledger_account_wallet_has_customer",
            ),
        ]

    def __str__(self):
        owner = self.source or (self.customer_id and f"customer {self.customer_id}") or self.merchant_id or "platform"
        return f"{self.kind} {self.currency} ({owner}{'' if self.livemode else ', sandbox'})"


class Balance(models.Model):
    """A balance row (one per account shard), changed only with the entries that explain it."""

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="balances")
    shard = models.PositiveSmallIntegerField(default=0)
    amount = AmountField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "shard"], name="ledger_balance_unique_shard"),
        ]


class LedgerTransaction(TenantModel):
    """One movement of money. Never updated or deleted (enforced by a database trigger);
    a correction is a reversing transaction."""

    class Kind(models.TextChoices):
        PAYMENT = "payment"
        USAGE = "usage"
        HOLD = "hold"
        HOLD_RELEASE = "hold_release"
        ADJUSTMENT = "adjustment"
        REVERSAL = "reversal"
        INVOICE_PAYMENT = "invoice_payment"
        FEE = "fee"
        # Moves amounts between the modes' accounts once, when the ledger was split by mode
        # (migration ledger 0007): the one kind whose entries reach both modes.
        RECLASSIFICATION = "reclassification"

    # (indexed by ledger_txn_merchant_created)
    merchant = unchecked_foreign_key("merchants.Merchant", related_name="+", db_index=False)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    currency = models.CharField(max_length=8, choices=Currency.choices)
    description = models.CharField(max_length=500, blank=True)
    # What this transaction settles, unique per merchant (e.g. "payment_session:<id>"), so that the
    # same business event can never post twice.
    reference = models.CharField(max_length=200, null=True, blank=True)
    reverses = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by")
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "reference"], name="ledger_transaction_unique_reference"),
        ]
        indexes = [models.Index(fields=["merchant", "created_at"], name="ledger_txn_merchant_created")]

    def __str__(self):
        return f"{self.kind} {self.currency} {self.id}"


class Entry(TenantModel):
    """One leg of a transaction: `amount` (signed) on one account shard."""

    merchant = unchecked_foreign_key("merchants.Merchant", related_name="+")
    # Written with its transaction in one round trip; `ledger_check` reports entries of none.
    transaction = unchecked_foreign_key(LedgerTransaction, related_name="entries")
    # (indexed by ledger_entry_account_shard)
    account = unchecked_foreign_key(Account, related_name="entries", db_index=False)
    shard = models.PositiveSmallIntegerField(default=0)
    amount = AmountField()

    class Meta:
        verbose_name_plural = "entries"
        indexes = [models.Index(fields=["account", "shard"], name="ledger_entry_account_shard")]


class Wallet(TenantModel):
    """A customer's balance in one currency: an available and a held account."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="wallets")
    currency = models.CharField(max_length=8, choices=Currency.choices)
    available_account = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="+")
    held_account = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "customer", "currency"], name="wallet_unique_customer_currency"
            ),
        ]

    def __str__(self):
        return f"{self.customer} {self.currency}"
