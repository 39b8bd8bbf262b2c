"""Usage events, their priced lines, the period counters of instant prices, disputes."""

from django.db import models

from apps.core.fields import AmountField, Currency
from apps.core.models import TenantModel, unchecked_foreign_key


class UsageEvent(TenantModel):
    """One reported usage event, identified for good by (merchant, idempotency_key).

    It keeps its own figures: the total charged now (instant lines), the commission
    and the owner's share, and the wallet's available balance after the charge.
    """

    # (indexed by the composite indexes below, which start with it)
    merchant = unchecked_foreign_key("merchants.Merchant", related_name="+", db_index=False)
    idempotency_key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    # The keys below are checked where the charge reads their rows, in the same transaction
    # (see unchecked_foreign_key); `usage_check` reports events whose rows do not exist.
    # (indexed by usage_event_customer_ts, which starts with it)
    customer = unchecked_foreign_key("customers.Customer", related_name="usage_events", db_index=False)
    subscription = unchecked_foreign_key("subscriptions.Subscription", related_name="usage_events")
    # (indexed where set: usage_event_entitlement)
    entitlement = unchecked_foreign_key(
        "entitlements.Entitlement", null=True, blank=True, related_name="usage_events", db_index=False
    )
    timestamp = models.DateTimeField()
    currency = models.CharField(max_length=8, choices=Currency.choices)
    amount = AmountField(help_text="Total charged now (instant lines).")
    commission_amount = AmountField()
    owner_revenue_amount = AmountField()
    balance_after = AmountField(null=True, blank=True)
    # Written in the same transaction as the event; several events of a batch share it.
    ledger_transaction = unchecked_foreign_key(
        "ledger.LedgerTransaction", null=True, blank=True, related_name="usage_events", db_index=False
    )
    invoice_id = models.UUIDField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    refund_reason = models.CharField(max_length=500, blank=True)
    refund_transaction = models.OneToOneField(
        "ledger.LedgerTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "idempotency_key"], name="usage_event_unique_idempotency_key"),
        ]
        indexes = [
            models.Index(fields=["merchant", "timestamp"], name="usage_event_merchant_time"),
            # A customer belongs to one merchant: the customer alone leads.
            models.Index(fields=["customer", "timestamp"], name="usage_event_customer_ts"),
            models.Index(
                fields=["entitlement"], condition=models.Q(entitlement__isnull=False), name="usage_event_entitlement"
            ),
        ]

    def __str__(self):
        return f"usage {self.idempotency_key} ({self.amount} {self.currency})"


class UsageLine(TenantModel):
    """One property of an event: a metric, its quantity and value, and its price."""

    # Lines are read through their event, their metric or their subscription, never by date.
    created_at = models.DateTimeField(auto_now_add=True)
    merchant = unchecked_foreign_key("merchants.Merchant", related_name="+", db_index=False)
    # Written with its event, in the same statement's transaction (indexed by usage_line_event_position).
    event = unchecked_foreign_key(UsageEvent, related_name="lines", db_index=False)
    position = models.PositiveSmallIntegerField()
    # (a metric belongs to one merchant: indexed by the composite indexes below, which start with it)
    billable_metric = unchecked_foreign_key("catalog.BillableMetric", related_name="+", db_index=False)
    price = unchecked_foreign_key("catalog.Price", related_name="+")
    # Copied from the event (whose keys are checked) so that meters aggregate from this table alone.
    customer = unchecked_foreign_key("customers.Customer", related_name="+")
    subscription = unchecked_foreign_key("subscriptions.Subscription", related_name="+", db_index=False)
    timestamp = models.DateTimeField()
    quantity = AmountField()
    # The metric's value: the quantity, or the number under the metric's valueProperty;
    # value_text keeps the raw value for UNIQUE_COUNT (an id, a name).
    value = AmountField(null=True, blank=True)
    value_text = models.CharField(max_length=255, blank=True)
    payment_term = models.CharField(max_length=16)
    unit_price = AmountField(null=True, blank=True)
    amount = AmountField(null=True, blank=True, help_text="Charged now; empty for in_arrears (priced at period close).")

    class Meta:
        constraints = [
            # the event leads (lines are read by event); merchant keeps the key within its tenant
            models.UniqueConstraint(fields=["event", "merchant", "position"], name="usage_line_event_position"),
        ]
        indexes = [
            models.Index(fields=["billable_metric", "timestamp"], name="usage_line_metric_ts"),
            models.Index(fields=["subscription", "billable_metric", "timestamp"], name="usage_line_sub_metric_time"),
            models.Index(fields=["billable_metric", "customer", "timestamp"], name="usage_line_meter"),
        ]


class Dispute(TenantModel):
    class Status(models.TextChoices):
        OPEN = "open"
        ACCEPTED = "accepted"
        DECLINED = "declined"

    class OpenedBy(models.TextChoices):
        MERCHANT = "merchant"
        CUSTOMER = "customer"

    usage_event = models.ForeignKey(UsageEvent, on_delete=models.PROTECT, related_name="disputes")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="disputes")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    opened_by = models.CharField(max_length=16, choices=OpenedBy.choices, default=OpenedBy.MERCHANT)
    message = models.TextField()
    decline_reason = models.CharField(max_length=500, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One open dispute per event at a time.
            models.UniqueConstraint(
                fields=["merchant", "usage_event"],
                condition=models.Q(status="open"),
                name="dispute_one_open_per_event",
            ),
        ]
        indexes = [models.Index(fields=["merchant", "status", "created_at"], name="dispute_merchant_status")]
