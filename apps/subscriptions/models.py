from datetime import datetime

from django.db import models
from django.utils import timezone

from apps.core.fields import AmountField, Currency
from apps.core.models import TenantModel
from apps.subscriptions.periods import period_at


class Subscription(TenantModel):
    """A customer's subscription to a plan: pending_payment -> active -> (past_due) -> terminated."""

    class Status(models.TextChoices):
        PENDING_PAYMENT = "pending_payment"
        ACTIVE = "active"
        PAST_DUE = "past_due"
        TERMINATED = "terminated"

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.ForeignKey("catalog.Plan", on_delete=models.PROTECT, related_name="subscriptions")
    wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="subscriptions")
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    started_at = models.DateTimeField()
    prefund_amount = AmountField(null=True, blank=True)
    minimum_account_balance = AmountField(default=0)
    success_url = models.URLField(max_length=2000, blank=True)
    failure_url = models.URLField(max_length=2000, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)
    termination_reason = models.CharField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["merchant", "created_at"], name="subscription_merchant_created"),
            models.Index(fields=["customer", "status"], name="subscription_customer_status"),
        ]

    def __str__(self):
        return f"{self.name or self.plan} for {self.customer} ({self.status})"

    @property
    def current_period(self) -> tuple[datetime, datetime]:
        """The [start, end) billing period now: computed, never stored, so that it moves on by
        itself. Before startedAt it is the first period; a terminated subscription keeps the
        period it ended in. Reads `plan` (select_related it where subscriptions are listed)."""
        at = self.terminated_at or timezone.now()
        return period_at(self.started_at, self.plan.billing_interval, max(at, self.started_at))

    @property
    def current_period_start(self) -> datetime:
        return self.current_period[0]

    @property
    def current_period_end(self) -> datetime:
        return self.current_period[1]


class PaymentSession(TenantModel):
    """What a customer is asked to pay through the hosted checkout."""

    class Purpose(models.TextChoices):
        ACTIVATION = "activation"
        TOP_UP = "top_up"
        INVOICE = "invoice"
        SETUP = "setup"

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
    currency = models.CharField(max_length=8, choices=Currency.choices)
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="payment_sessions")
    wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="payment_sessions")
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.PROTECT, related_name="payment_sessions"
    )
    invoice_id = models.UUIDField(null=True, blank=True)
    expires_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    paid_source = models.CharField(max_length=64, blank=True)
    ledger_transaction = models.OneToOneField(
        "ledger.LedgerTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    success_url = models.URLField(max_length=2000, blank=True)
    cancel_url = models.URLField(max_length=2000, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="payment_session_amount_not_negative"),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="payment_session_status_expiry")]

    def __str__(self):
        return f"{self.purpose} {self.amount} {self.currency} ({self.status})"
