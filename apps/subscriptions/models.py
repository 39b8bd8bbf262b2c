from datetime import datetime

from django.db import models
from django.utils import timezone

from apps.core.fields import AmountField
from apps.core.models import TenantModel
from apps.subscriptions.periods import fee_share, running_period_at


class Subscription(TenantModel):
    """A customer's subscription to a plan: pending_payment -> active -> (past_due) -> terminated."""

    class Status(models.TextChoices):
        PENDING_PAYMENT = "pending_payment"
        ACTIVE = "active"
        PAST_DUE = "past_due"
        TERMINATED = "terminated"

    # Usage is charged to these (a past_due subscription keeps its instant, prepaid charges).
    CHARGEABLE = (Status.ACTIVE, Status.PAST_DUE)

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.ForeignKey("catalog.Plan", on_delete=models.PROTECT, related_name="subscriptions")
    wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="subscriptions")
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    started_at = models.DateTimeField()
    # Periods are counted from the anchor: startedAt, or the moment of a plan change to another
    # interval. A plan change begins a period at `switched_at` (one to the same interval keeps
    # the anchor, so that period ends where the old one would have). `scheduled_plan` replaces
    # the plan when the current period ends (a change with effective period_end).
    period_anchor = models.DateTimeField()
    switched_at = models.DateTimeField(null=True, blank=True)
    scheduled_plan = models.ForeignKey(
        "catalog.Plan", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
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
        period it ended in (cut at its end). Reads `plan` (select_related it where subscriptions
        are listed)."""
        at = max(self.terminated_at or timezone.now(), self.period_anchor)
        start, end = running_period_at(self.period_anchor, self.plan.billing_interval, at, self.switched_at)
        if self.terminated_at is not None and start < self.terminated_at < end:
            end = self.terminated_at
        return start, end

    @property
    def current_period_start(self) -> datetime:
        return self.current_period[0]

    @property
    def current_period_end(self) -> datetime:
        return self.current_period[1]


class BillingPeriod(TenantModel):
    """One billing period of a subscription, [start, end): open while it runs, grace once its
    end has passed and its invoice is a draft still open to late usage, closed once that
    invoice is final. Created as periods begin (the first with the subscription, each next one
    by the close of the one before). The close, a plan change and a termination lock this row
    and act only while it is open, so a period is closed, and its usage invoiced, once."""

    class Status(models.TextChoices):
        OPEN = "open"
        GRACE = "grace"
        CLOSED = "closed"

    class EndReason(models.TextChoices):
        END = "end", "its end"
        CHANGE = "change", "a plan change"
        TERMINATION = "termination", "a termination"

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="periods")
    # The plan the period is billed on (a plan change ends the period and begins another).
    plan = models.ForeignKey("catalog.Plan", on_delete=models.PROTECT, related_name="+")
    start = models.DateTimeField()
    end = models.DateTimeField()
    # The whole period of the plan's interval that [start, end) is part of: the same unless a
    # plan change began it or a change or termination cut it short; fees are prorated by the
    # share of it that the period covers (`share`).
    cycle_start = models.DateTimeField()
    cycle_end = models.DateTimeField()
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, default=EndReason.END)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    # When its end was acted on (grace) and when its invoice became final (closed).
    ended_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # The period's invoice, set by the invoices app when it writes it: what a usage event's
    # billing.invoiceId reads (usage rows are never updated).
    invoice_id = models.UUIDField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "subscription", "start"], name="billing_period_unique_start"),
            models.CheckConstraint(
                condition=models.Q(end__gt=models.F("start")), name="billing_period_ends_after_start"
            ),
            models.CheckConstraint(
                condition=models.Q(cycle_start__lte=models.F("start"), cycle_end__gte=models.F("end")),
                name="billing_period_inside_cycle",
            ),
        ]
        indexes = [
            # the beat's sweeps: open periods by end, grace periods by end
            models.Index(fields=["status", "end"], condition=~models.Q(status="closed"), name="billing_period_due"),
            models.Index(fields=["subscription", "start"], name="billing_period_subscription"),
        ]

    def __str__(self):
        return f"{self.start:%Y-%m-%d %H:%M} - {self.end:%Y-%m-%d %H:%M} ({self.status})"

    @property
    def share(self):
        """The share of its whole period that this one covers (a Fraction, 1 when whole)."""
        return fee_share(self.start, self.end, self.cycle_start, self.cycle_end)


class UsageCounter(TenantModel):
    """Units already charged in one period for one instant price of one subscription: the
    running total that graduated tiers and free units need (usage charges it, entitlements price
    holds from it). Read and written under the wallet's lock."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="+")
    price = models.ForeignKey("catalog.Price", on_delete=models.PROTECT, related_name="+")
    period_start = models.DateTimeField()
    units = AmountField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "subscription", "price", "period_start"], name="usage_counter_unique_period"
            ),
        ]
