"""The catalog: what a merchant sells (products), how usage of it is measured (billable
metrics), what it costs (prices) and how it is bundled for customers (plans)."""

from django.db import models

from apps.core.fields import AmountField, Currency
from apps.core.models import TenantModel


class Aggregation(models.TextChoices):
    SUM = "SUM"
    COUNT = "COUNT"
    AVG = "AVG"
    MIN = "MIN"
    MAX = "MAX"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    LATEST = "LATEST"


# Aggregations whose period total is the sum of each event's quantity, so that every event
# can be priced on its own when it arrives (an instant price).
ADDITIVE_AGGREGATIONS = (Aggregation.SUM, Aggregation.COUNT)


class PriceModel(models.TextChoices):
    STANDARD = "standard"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"
    PERCENTAGE = "percentage"


class PaymentTerm(models.TextChoices):
    INSTANT = "instant"
    IN_ARREARS = "in_arrears"
    IN_ADVANCE = "in_advance"


class BillingInterval(models.TextChoices):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"


class Invoicing(models.TextChoices):
    """Who invoices a plan's usage: the platform at each period's close (automatic), or the
    merchant itself through one-off invoices (manual: the close then invoices no usage)."""

    AUTOMATIC = "automatic"
    MANUAL = "manual"


class Product(TenantModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["merchant", "created_at"], name="product_merchant_created")]

    def __str__(self):
        return self.name


class BillableMetric(TenantModel):
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="billable_metrics")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    unit = models.CharField(max_length=50, blank=True)
    aggregation = models.CharField(max_length=16, choices=Aggregation.choices)
    value_property = models.CharField(
        max_length=200, blank=True, help_text="The usage metadata key aggregated; blank: the reported quantity."
    )
    group_by = models.JSONField(default=list, blank=True, help_text="Usage metadata keys to group the meter by.")

    class Meta:
        indexes = [models.Index(fields=["merchant", "created_at"], name="metric_merchant_created")]

    def __str__(self):
        return f"{self.name} ({self.aggregation})"


class Price(TenantModel):
    """A metered price (with a billable metric, priced by `properties`) or a fee (no metric, `amount`)."""

    billable_metric = models.ForeignKey(
        BillableMetric, null=True, blank=True, on_delete=models.PROTECT, related_name="prices"
    )
    model = models.CharField(max_length=16, choices=PriceModel.choices, default=PriceModel.STANDARD)
    payment_term = models.CharField(max_length=16, choices=PaymentTerm.choices)
    invoice_display_name = models.CharField(max_length=200, blank=True)
    currency = models.CharField(max_length=8, choices=Currency.choices)
    properties = models.JSONField(default=dict, blank=True)
    free_units = AmountField(default=0)
    allow_price_override = models.BooleanField(default=False)
    amount = AmountField(null=True, blank=True, help_text="The fee of a price without a billable metric.")
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(billable_metric__isnull=False) | models.Q(amount__isnull=False),
                name="price_fee_has_amount",
            ),
            models.CheckConstraint(condition=models.Q(free_units__gte=0), name="price_free_units_not_negative"),
            models.CheckConstraint(
                condition=models.Q(amount__isnull=True) | models.Q(amount__gte=0), name="price_amount_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["merchant", "created_at"], name="price_merchant_created")]

    def __str__(self):
        label = self.invoice_display_name or (str(self.billable_metric.name) if self.billable_metric_id else "Fee")
        archived = " (archived)" if self.archived_at else ""
        return f"{label}: {self.model} {self.payment_term} {self.currency}{archived}"

    @property
    def is_fee(self) -> bool:
        return self.billable_metric_id is None


class Plan(TenantModel):
    name = models.CharField(max_length=200)
    code = models.SlugField(max_length=100, help_text="Unique per merchant, such as starter or growth.")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="plans")
    currency = models.CharField(max_length=8, choices=Currency.choices)
    billing_interval = models.CharField(max_length=16, choices=BillingInterval.choices, default=BillingInterval.MONTHLY)
    prices = models.ManyToManyField(Price, blank=True, related_name="plans")
    features = models.JSONField(default=dict, blank=True)
    invoicing = models.CharField(max_length=16, choices=Invoicing.choices, default=Invoicing.AUTOMATIC)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant", "code"], name="plan_unique_merchant_code")]
        indexes = [models.Index(fields=["merchant", "created_at"], name="plan_merchant_created")]

    def __str__(self):
        return f"{self.name} ({self.code})"
