import uuid

from django.db import models


class BaseModel(models.Model):
    """UUID primary key and created/updated timestamps, for every model of the platform."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TenantModel(BaseModel):
    """A row owned by one merchant (live or sandbox): every selector filters on `merchant`."""

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")

    class Meta:
        abstract = True

    @property
    def livemode(self) -> bool:
        return self.merchant.livemode


def unchecked_foreign_key(to, **options):
    """A foreign key without a database constraint, for append-only rows written on the
    ingestion hot path (usage events and lines, ledger transactions and entries).

    PostgreSQL checks a foreign key by taking FOR KEY SHARE on the parent row; when every
    concurrent charge points at the same parents (the merchant, the metric, the price, the
    revenue and commission accounts), those shared locks pile up as MultiXacts and cost more
    than the rest of the insert. The parents here are never deleted (PROTECT, archiving) and
    the ids come from rows read in the same transaction; `manage.py ledger_check` verifies
    that every entry's account exists.
    """
    options.setdefault("on_delete", models.PROTECT)
    return models.ForeignKey(to, db_constraint=False, **options)


def violated_constraint(error) -> str | None:
    """The name of the constraint an IntegrityError broke (PostgreSQL reports it), or None."""
    diag = getattr(error.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


class IdempotencyRecord(TenantModel):
    """The stored first response of a POST sent with an Idempotency-Key header."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"

    key = models.CharField(max_length=255)
    request_method = models.CharField(max_length=10)
    request_path = models.CharField(max_length=2048)
    request_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "key"], name="idempotency_unique_merchant_key"),
        ]

    def __str__(self):
        return f"{self.key} ({self.status})"
