"""USDC settlements (a transfer on chain claimed for an invoice or a payment session, confirmed
from the chain itself) and the wallet addresses that customers proved they hold."""

from django.db import models
from django.db.models import Q

from apps.core.fields import AmountField
from apps.core.models import TenantModel


class WalletAddress(TenantModel):
    """An address whose key signed "Pay <merchant> from <address> as customer <id>": settlements
    paid from it may be claimed for that customer only (one customer per address per mode: a
    merchant row is one mode)."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="wallet_addresses")
    address = models.CharField(max_length=42, help_text="Checksummed (EIP-55).")
    signature = models.CharField(max_length=200, help_text="The EIP-191 personal_sign that proved it.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "address"], name="wallet_address_one_customer_per_mode"),
        ]

    def __str__(self):
        return self.address


class Settlement(TenantModel):
    """A transaction hash claimed for a target, pending until the chain confirms or refutes it.

    A hash is accepted once per chain (whatever merchant posts it), while the settlement holds it
    (`holds_hash`): a settlement that failed without a mined receipt (not found in time), or
    because the transfer came from another payer (someone else's transfer claimed), lets it go."""

    class Status(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        FAILED = "failed"

    class FailureReason(models.TextChoices):
        REVERTED = "reverted"
        NOT_FOUND_IN_TIME = "not_found_in_time"
        NO_MATCHING_TRANSFER = "no_matching_transfer"
        WRONG_TOKEN = "wrong_token"
        WRONG_RECIPIENT = "wrong_recipient"
        WRONG_PAYER = "wrong_payer"

    chain = models.CharField(max_length=64)
    chain_id = models.BigIntegerField()
    transaction_hash = models.CharField(max_length=66, help_text="0x + 64 hex, lower case.")
    reference_hash = models.CharField(max_length=66)
    payer_address = models.CharField(max_length=42)
    merchant_address = models.CharField(max_length=42)
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="settlements")
    invoice_id = models.UUIDField(null=True, blank=True)
    session = models.ForeignKey("payments.PaymentSession", on_delete=models.PROTECT, related_name="settlements")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.CharField(max_length=32, choices=FailureReason.choices, blank=True)
    holds_hash = models.BooleanField(default=True)
    required_confirmations = models.PositiveIntegerField()
    confirmations = models.PositiveIntegerField(default=0)
    block_number = models.BigIntegerField(null=True, blank=True)
    block_hash = models.CharField(max_length=66, blank=True)
    # What the matching Transfer logs moved, in base units (a uint256 fits in 78 digits) and in USDC.
    amount_base_units = models.DecimalField(max_digits=78, decimal_places=0, null=True, blank=True)
    amount = AmountField(null=True, blank=True)
    log_indexes = models.JSONField(default=list, blank=True)
    payment = models.ForeignKey(
        "payments.Payment", null=True, blank=True, on_delete=models.PROTECT, related_name="settlements"
    )
    checks = models.PositiveIntegerField(default=0)
    next_check_at = models.DateTimeField()
    last_checked_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "transaction_hash"],
                condition=Q(holds_hash=True),
                name="settlement_hash_once_per_chain",
            ),
            models.CheckConstraint(
                condition=~Q(status="confirmed") | Q(holds_hash=True), name="settlement_confirmed_holds_hash"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_check_at"], name="settlement_due_check"),
            models.Index(fields=["merchant", "invoice_id"], name="settlement_merchant_invoice"),
        ]

    def __str__(self):
        return f"{self.chain} {self.transaction_hash} ({self.status})"
