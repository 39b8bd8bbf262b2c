"""Invoices: what a customer owes for a period (kind period), at a subscription's start or a
plan change (part 2), or what the merchant computed itself (one_off); their lines; and the
per-merchant sequence that numbers them at finalize."""

from django.db import models
from django.db.models import Q

from apps.core.fields import AmountField, Currency
from apps.core.models import TenantModel


class Invoice(TenantModel):
    """draft (a period's invoice during its grace window, open to late usage) -> open
    (final, numbered, owed) -> paid | void | uncollectible."""

    class Kind(models.TextChoices):
        PERIOD = "period"
        START = "start"
        CHANGE = "change"
        ONE_OFF = "one_off"

    # What a billing period's close, plan change or termination writes for it: one per period.
    CLOSING_KINDS = (Kind.PERIOD, Kind.CHANGE)

    class Status(models.TextChoices):
        DRAFT = "draft"
        OPEN = "open"
        PAID = "paid"
        VOID = "void"
        UNCOLLECTIBLE = "uncollectible"

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(
        "subscriptions.Subscription", null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    period = models.ForeignKey(
        "subscriptions.BillingPeriod", null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="invoices")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    number = models.CharField(max_length=32, null=True, blank=True)
    currency = models.CharField(max_length=8, choices=Currency.choices)
    description = models.CharField(max_length=500, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    subtotal = AmountField(default=0)
    total = AmountField(default=0)
    amount_paid = AmountField(default=0)
    auto_collect = models.BooleanField(default=True)
    due_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    marked_uncollectible_at = models.DateTimeField(null=True, blank=True)
    # Dunning (apps.invoices.services.dunning): when the invoice was found unpaid at due_at
    # (invoice.payment_failed), the collection retries made since, the next one, and when
    # dunning gave up.
    payment_failed_at = models.DateTimeField(null=True, blank=True)
    collection_retries = models.PositiveIntegerField(default=0)
    next_collection_at = models.DateTimeField(null=True, blank=True)
    dunning_ended_at = models.DateTimeField(null=True, blank=True)
    # The payment session behind `paymentUrl` (purpose invoice), replaced when it expires.
    payment_session = models.ForeignKey(
        "payments.PaymentSession", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "number"], condition=Q(number__isnull=False), name="invoice_unique_number"
            ),
            # (a void one may be issued again: a termination reissues an unpaid renewal invoice)
            models.UniqueConstraint(
                fields=["merchant", "period"],
                condition=Q(kind__in=["period", "change"]) & ~Q(status="void"),
                name="invoice_one_closing_per_period",
            ),
            models.UniqueConstraint(
                fields=["merchant", "subscription"],
                condition=Q(kind="start") & ~Q(status="void"),
                name="invoice_one_start_per_subscription",
            ),
            models.CheckConstraint(condition=Q(total__gte=0), name="invoice_total_not_negative"),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0) & Q(amount_paid__lte=models.F("total")),
                name="invoice_paid_within_total",
            ),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(number__isnull=False), name="invoice_final_is_numbered"
            ),
        ]
        indexes = [
            models.Index(fields=["merchant", "created_at"], name="invoice_merchant_created"),
            models.Index(fields=["customer", "status"], name="invoice_customer_status"),
            models.Index(fields=["subscription", "created_at"], name="invoice_subscription"),
            # the wallet sweep: a wallet's open invoices, oldest first
            models.Index(fields=["wallet", "finalized_at"], condition=Q(status="open"), name="invoice_open_by_wallet"),
            # dunning: open invoices by due date, and by their next retry
            models.Index(fields=["due_at"], condition=Q(status="open"), name="invoice_open_by_due"),
            models.Index(
                fields=["next_collection_at"],
                condition=Q(status="open", next_collection_at__isnull=False),
                name="invoice_retry_due",
            ),
        ]

    def __str__(self):
        return f"{self.number or 'draft'} {self.total} {self.currency} ({self.status})"

    @property
    def amount_due(self):
        return self.total - self.amount_paid


class InvoiceLine(TenantModel):
    """One line: a price's usage or fee for a period, or an amount the merchant described.
    `informational` lines (instant usage already charged) stand outside the totals."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    description = models.CharField(max_length=500)
    price = models.ForeignKey("catalog.Price", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    billable_metric = models.ForeignKey(
        "catalog.BillableMetric", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    payment_term = models.CharField(max_length=16, blank=True)
    quantity = AmountField(null=True, blank=True)
    unit_price = AmountField(null=True, blank=True)
    amount = AmountField()
    informational = models.BooleanField(default=False)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["invoice", "merchant", "position"], name="invoice_line_position"),
        ]

    def __str__(self):
        return f"{self.description}: {self.amount}"


class InvoiceSequence(TenantModel):
    """The merchant's (per mode) last invoice number: locked and moved at each finalize, so that
    numbers have no gaps and no duplicates."""

    last_number = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant"], name="invoice_sequence_one_per_merchant")]
