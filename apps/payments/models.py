"""Payment sessions (what a customer is asked to pay), the attempts to collect them, the
payments that arrived, and the merchants' adjustments of wallets."""

from django.db import models
from django.db.models import Q

from apps.core.fields import AmountField, Currency
from apps.core.models import TenantModel


class PaymentSession(TenantModel):
    """What a customer is asked to pay through the hosted checkout. Its target (a subscription
    to activate, a wallet to top up, later an invoice or a tier change) is paid through the
    handler its purpose registered (apps.payments.registry)."""

    class Purpose(models.TextChoices):
        ACTIVATION = "activation"
        TOP_UP = "top_up"
        INVOICE = "invoice"
        SETUP = "setup"
        TIER_CHANGE = "tier_change"

    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        EXPIRED = "expired"

    class Mode(models.TextChoices):
        PAYMENT = "payment"
        SETUP = "setup"

    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.PAYMENT)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    amount = AmountField()
    # What arrived money applied to the target so far (an underpayment leaves it short of amount).
    amount_paid = AmountField(default=0)
    currency = models.CharField(max_length=8, choices=Currency.choices)
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="payment_sessions")
    wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="payment_sessions")
    subscription = models.ForeignKey(
        "subscriptions.Subscription", null=True, blank=True, on_delete=models.PROTECT, related_name="payment_sessions"
    )
    invoice_id = models.UUIDField(null=True, blank=True)
    expires_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    success_url = models.URLField(max_length=2000, blank=True)
    cancel_url = models.URLField(max_length=2000, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_session_amount_not_negative"),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0) & Q(amount_paid__lte=models.F("amount")),
                name="payment_session_paid_within_amount",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="payment_session_status_expiry")]

    def __str__(self):
        return f"{self.purpose} {self.amount} {self.currency} ({self.status})"


class PaymentSource(models.TextChoices):
    """Where money came from (the contract's payment.source)."""

    CARD = "card"
    USDC = "usdc"
    TEST = "test"
    WALLET = "wallet"


class PaymentAttempt(TenantModel):
    """One try to collect a session: a card charge, a USDC transfer being confirmed, the
    sandbox's test payment. At most one is in flight per session, across all sources."""

    class Status(models.TextChoices):
        IN_FLIGHT = "in_flight"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    session = models.ForeignKey(PaymentSession, on_delete=models.PROTECT, related_name="attempts")
    # The session's invoice (copied), so that one attempt at most is in flight per invoice
    # across all its sessions (an expired session is replaced by another for the same invoice).
    invoice_id = models.UUIDField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=PaymentSource.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_FLIGHT)
    amount = AmountField(help_text="What this attempt asked for.")
    currency = models.CharField(max_length=8, choices=Currency.choices)
    # The processor's id for it once known (a PaymentIntent id, a transaction hash).
    external_reference = models.CharField(max_length=300, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Made while the customer was not there (a saved card charged for an invoice, an
    # auto-recharge): its failure, whenever it is known (at once, by webhook or by beat), is
    # told to the session's purpose handler (`PurposeHandler.off_session_failed`).
    off_session = models.BooleanField(default=False, db_default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "session"],
                condition=Q(status="in_flight"),
                name="payment_attempt_one_in_flight_per_session",
            ),
            models.UniqueConstraint(
                fields=["merchant", "invoice_id"],
                condition=Q(status="in_flight", invoice_id__isnull=False),
                name="payment_attempt_one_in_flight_per_invoice",
            ),
        ]

    def __str__(self):
        return f"{self.source} attempt {self.amount} {self.currency} ({self.status})"


class Payment(TenantModel):
    """Money that arrived: credited in full to the customer's wallet through its source's
    clearing account, and what of it applied to the session's target. One per external
    reference (a PaymentIntent id, chain + transaction hash + log index, test:<session id>),
    whatever merchant or session claims it, so the same money is never credited twice.

    A payment from the wallet itself (source wallet: an invoice paid from the balance) credits
    nothing: it has no ledger transaction of its own, only what its target's handler posts."""

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        REFUNDED = "refunded"
        DISPUTED = "disputed"

    source = models.CharField(max_length=16, choices=PaymentSource.choices)
    external_reference = models.CharField(max_length=300)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUCCEEDED)
    amount = AmountField()
    currency = models.CharField(max_length=8, choices=Currency.choices)
    applied_amount = AmountField(default=0, help_text="What went to the session's target; the rest stays free.")
    # What the processor gave back so far (the sum of the payment's refunds).
    amount_refunded = AmountField(default=0)
    disputed_at = models.DateTimeField(null=True, blank=True)
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="payments")
    wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="payments")
    session = models.ForeignKey(
        PaymentSession, null=True, blank=True, on_delete=models.PROTECT, related_name="payments"
    )
    attempt = models.OneToOneField(
        PaymentAttempt, null=True, blank=True, on_delete=models.PROTECT, related_name="payment"
    )
    ledger_transaction = models.OneToOneField(
        "ledger.LedgerTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_reference"], name="payment_unique_external_reference"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=models.F("amount")),
                name="payment_refunded_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(source="wallet") | Q(ledger_transaction__isnull=False),
                name="payment_credit_has_transaction",
            ),
        ]
        indexes = [models.Index(fields=["merchant", "created_at"], name="payment_merchant_created")]

    def __str__(self):
        return f"{self.source} {self.amount} {self.currency} ({self.external_reference})"


class PaymentRefund(TenantModel):
    """Money of a payment given back by its processor (a Stripe refund), once per the
    processor's refund id: the wallet debited (its balance may go below zero: the customer then
    owes it), after what the payment paid on the session's target was reversed.

    A refund the processor reports failed or canceled afterwards is undone once
    (`undo_transaction`: the debit credited back, what it reversed on the target restored).
    One whose failure is heard before the refund itself is recorded failed at once, with no
    transaction: a later report of it as a refund then changes nothing."""

    class Status(models.TextChoices):
        REFUNDED = "refunded"  # the money left the wallet (Stripe: pending or succeeded)
        FAILED = "failed"
        CANCELED = "canceled"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REFUNDED)
    source = models.CharField(max_length=16, choices=PaymentSource.choices)
    # The processor's id of the refund (re_...), unique per source.
    external_reference = models.CharField(max_length=300)
    amount = AmountField()
    currency = models.CharField(max_length=8, choices=Currency.choices)
    reversed_amount = AmountField(default=0, help_text="What of it undid the payment's target (an invoice payment).")
    ledger_transaction = models.OneToOneField(
        "ledger.LedgerTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Its failure or cancellation: when it was heard, and the transaction that undid the debit
    # (null for one that had never been recorded as a refund).
    failed_at = models.DateTimeField(null=True, blank=True)
    restored_amount = AmountField(default=0, help_text="What its undoing paid again on the target (an invoice).")
    undo_transaction = models.OneToOneField(
        "ledger.LedgerTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_reference"], name="payment_refund_unique_reference"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_refund_amount_positive"),
            models.CheckConstraint(
                condition=Q(status="refunded", ledger_transaction__isnull=False, failed_at__isnull=True)
                | (
                    Q(status__in=["failed", "canceled"], failed_at__isnull=False)
                    & (
                        Q(ledger_transaction__isnull=True, undo_transaction__isnull=True)
                        | Q(ledger_transaction__isnull=False, undo_transaction__isnull=False)
                    )
                ),
                name="payment_refund_undone_once",
            ),
        ]

    def __str__(self):
        return f"refund {self.amount} {self.currency} ({self.external_reference})"


class PaymentDispute(TenantModel):
    """A payment the payer disputed with its bank (a Stripe dispute), once per the processor's
    dispute id: recorded and published (payment.disputed); no money moves automatically."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="disputes")
    source = models.CharField(max_length=16, choices=PaymentSource.choices)
    external_reference = models.CharField(max_length=300)
    amount = AmountField()
    currency = models.CharField(max_length=8, choices=Currency.choices)
    reason = models.CharField(max_length=100, blank=True)
    processor_status = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_reference"], name="payment_dispute_unique_reference"),
        ]

    def __str__(self):
        return f"dispute {self.amount} {self.currency} ({self.external_reference})"


class Adjustment(TenantModel):
    """A merchant's credit (positive) or debit (negative) of a customer's wallet, taken from or
    returned to the merchant's revenue account."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="adjustments")
    wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="adjustments")
    amount = AmountField()
    currency = models.CharField(max_length=8, choices=Currency.choices)
    reason = models.CharField(max_length=500)
    actor = models.CharField(max_length=200, blank=True, help_text="Who made it: the API, or an admin user.")
    ledger_transaction = models.OneToOneField("ledger.LedgerTransaction", on_delete=models.PROTECT, related_name="+")
    # Set by the admin's form (one token per form shown), so that a form submitted twice adjusts once.
    idempotency_key = models.CharField(max_length=64, null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "idempotency_key"], name="adjustment_unique_idempotency_key"),
        ]
        indexes = [models.Index(fields=["customer", "created_at"], name="adjustment_customer_created")]

    def __str__(self):
        return f"{self.amount} {self.currency} ({self.reason})"
