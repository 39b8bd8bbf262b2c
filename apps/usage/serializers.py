"""Public shapes of usage events and disputes (API, webhooks, portal)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.formats import iso, quantity_str
from apps.core.metadata import MetadataField
from apps.core.money import format_amount
from apps.core.schema import ERROR_SCHEMA, VALIDATION_ERROR_SCHEMA


def usage_event_data(event, lines) -> dict:
    """The response to a usage report, the same for the first request and every replay
    (built from the stored rows' values only)."""
    currency = event.currency
    customer_id = str(event.customer_id)
    amount = format_amount(event.amount, currency)
    return {
        "id": str(event.id),
        "object": "usageEvent",
        "livemode": event.merchant.livemode,
        "idempotencyKey": event.idempotency_key,
        "customerId": customer_id,
        "consumerId": customer_id,
        "subscriptionId": str(event.subscription_id),
        "entitlementId": str(event.entitlement_id) if event.entitlement_id else None,
        "timestamp": iso(event.timestamp),
        "metadata": event.metadata,
        "billing": {
            "price": amount,
            "totalAmount": amount,
            "currency": currency,
            "lines": [
                {
                    "billableMetricId": str(line.billable_metric_id),
                    "priceId": str(line.price_id),
                    "quantity": quantity_str(line.quantity),
                    "unitPrice": format_amount(line.unit_price, currency),
                    "amount": format_amount(line.amount, currency),
                    "paymentTerm": line.payment_term,
                }
                for line in (lines if len(lines) < 2 else sorted(lines, key=lambda line: line.position))
            ],
            "billingEventId": str(event.ledger_transaction_id) if event.ledger_transaction_id else None,
            "invoiceId": str(event.invoice_id) if event.invoice_id else None,
        },
        "settlement": {
            "priceAmount": amount,
            "commissionAmount": format_amount(event.commission_amount, currency),
            "ownerRevenueAmount": format_amount(event.owner_revenue_amount, currency),
            "balanceAfter": format_amount(event.balance_after, currency),
        },
        "createdAt": iso(event.created_at),
    }


def usage_event_detail(event, lines, invoice_id=None) -> dict:
    """A stored event as GET /v0/usage/{id} shows it: the report's response plus its refund,
    and the invoice it is on (its period's: `apps.subscriptions.selectors.period_invoice_ids`)."""
    data = usage_event_data(event, lines)
    if invoice_id is not None:
        data["billing"]["invoiceId"] = str(invoice_id)
    data["refunded"] = event.refunded_at is not None
    data["refundedAt"] = iso(event.refunded_at)
    data["refundReason"] = event.refund_reason or None
    return data


class UsageLineSchema(serializers.Serializer):
    billableMetricId = serializers.UUIDField()
    priceId = serializers.UUIDField()
    quantity = serializers.CharField()
    unitPrice = serializers.CharField(allow_null=True, help_text="Null for in_arrears lines (priced at period close).")
    amount = serializers.CharField(allow_null=True, help_text="Charged now; null for in_arrears lines.")
    paymentTerm = serializers.CharField()


class UsageBillingSchema(serializers.Serializer):
    price = serializers.CharField(help_text="The total charged now.")
    totalAmount = serializers.CharField()
    currency = serializers.CharField()
    lines = UsageLineSchema(many=True)
    billingEventId = serializers.UUIDField(
        allow_null=True, help_text="The ledger transaction; null when nothing moved."
    )
    invoiceId = serializers.UUIDField(allow_null=True)


class UsageSettlementSchema(serializers.Serializer):
    priceAmount = serializers.CharField()
    commissionAmount = serializers.CharField()
    ownerRevenueAmount = serializers.CharField()
    balanceAfter = serializers.CharField(allow_null=True)


class UsageEventSchema(serializers.Serializer):
    """Schema of `usage_event_data` (for the OpenAPI document)."""

    id = serializers.UUIDField()
    object = serializers.CharField()
    livemode = serializers.BooleanField()
    idempotencyKey = serializers.CharField()
    customerId = serializers.UUIDField()
    consumerId = serializers.UUIDField()
    subscriptionId = serializers.UUIDField()
    entitlementId = serializers.UUIDField(allow_null=True)
    timestamp = serializers.DateTimeField()
    metadata = MetadataField(help_text="As sent.")
    billing = UsageBillingSchema()
    settlement = UsageSettlementSchema()
    createdAt = serializers.DateTimeField()


class UsageEventDetailSchema(UsageEventSchema):
    """Schema of `usage_event_detail`: a stored event, with its refund."""

    refunded = serializers.BooleanField()
    refundedAt = serializers.DateTimeField(allow_null=True)
    refundReason = serializers.CharField(allow_null=True)


def _with_status(schema: dict) -> dict:
    status = {"type": "integer", "description": "The status the event alone would have had."}
    return {
        **schema,
        "required": [*schema["required"], "status"],
        "properties": {**schema["properties"], "status": status},
    }


@extend_schema_field({"oneOf": [_with_status(ERROR_SCHEMA), _with_status(VALIDATION_ERROR_SCHEMA)]})
class BatchErrorField(serializers.DictField):
    """The error envelope the event alone would have had, with its status."""


class UsageBatchFailureSchema(serializers.Serializer):
    index = serializers.IntegerField(help_text="The event's position in `events`, from 0.")
    idempotencyKey = serializers.JSONField(
        allow_null=True, help_text="The event's idempotencyKey as sent (a string when valid); null when it sent none."
    )
    error = BatchErrorField()


class UsageBatchSummarySchema(serializers.Serializer):
    total = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    charged = serializers.DictField(
        child=serializers.CharField(), help_text="The total charged now, by currency, rounded to its minor unit."
    )


class UsageBatchResultSchema(serializers.Serializer):
    """The answer to POST /v0/usage/batch (201 when every event succeeded, else 207)."""

    object = serializers.CharField(help_text="usageBatch")
    successful = UsageEventSchema(many=True)
    failed = UsageBatchFailureSchema(many=True)
    summary = UsageBatchSummarySchema()

    class Meta:
        ref_name = "UsageBatchResult"


class DisputeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    usageEventId = serializers.UUIDField(source="usage_event_id")
    customerId = serializers.UUIDField(source="customer_id")
    status = serializers.CharField()
    openedBy = serializers.CharField(source="opened_by")
    message = serializers.CharField()
    declineReason = serializers.CharField(source="decline_reason")
    resolvedAt = serializers.DateTimeField(source="resolved_at", allow_null=True, help_text="Null while open.")
    createdAt = serializers.DateTimeField(source="created_at")

    def get_object(self, obj) -> str:
        return "dispute"
