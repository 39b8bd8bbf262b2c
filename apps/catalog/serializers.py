"""The public shapes of catalog resources (camelCase), shared by the API, outbound webhooks
and the portal."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.catalog.models import Aggregation, BillingInterval, Currency, Invoicing, PaymentTerm, Plan, Price, PriceModel
from apps.core.metadata import MetadataField
from apps.core.money import format_amount, format_decimal


class CatalogResourceSerializer(serializers.Serializer):
    """`id`, `object`, `livemode`, `merchantId` and timestamps, common to every catalog resource."""

    object_name = ""

    id = serializers.UUIDField(read_only=True)
    object = serializers.SerializerMethodField()
    livemode = serializers.SerializerMethodField()
    merchantId = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    def get_object(self, obj) -> str:
        return self.object_name

    def get_livemode(self, obj) -> bool:
        return obj.merchant.livemode

    def get_merchantId(self, obj) -> str:
        return str(obj.merchant.public_id)


class ProductSerializer(CatalogResourceSerializer):
    object_name = "product"

    name = serializers.CharField()
    description = serializers.CharField()
    metadata = MetadataField()

    class Meta:
        ref_name = "Product"


class BillableMetricSerializer(CatalogResourceSerializer):
    object_name = "billableMetric"

    productId = serializers.UUIDField(source="product_id")
    name = serializers.CharField()
    description = serializers.CharField()
    unit = serializers.CharField()
    aggregation = serializers.ChoiceField(choices=Aggregation.choices)
    valueProperty = serializers.CharField(source="value_property")
    groupBy = serializers.ListField(source="group_by", child=serializers.CharField())

    class Meta:
        ref_name = "BillableMetric"


class PriceSerializer(CatalogResourceSerializer):
    object_name = "price"

    billableMetricId = serializers.UUIDField(source="billable_metric_id", allow_null=True)
    model = serializers.ChoiceField(choices=PriceModel.choices)
    paymentTerm = serializers.ChoiceField(source="payment_term", choices=PaymentTerm.choices)
    invoiceDisplayName = serializers.CharField(source="invoice_display_name")
    currency = serializers.ChoiceField(choices=Currency.choices)
    properties = serializers.SerializerMethodField()
    freeUnits = serializers.SerializerMethodField()
    allowPriceOverride = serializers.BooleanField(source="allow_price_override")
    amount = serializers.SerializerMethodField()
    archivedAt = serializers.DateTimeField(source="archived_at", allow_null=True)

    class Meta:
        ref_name = "Price"

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_properties(self, obj: Price) -> dict[str, Any]:
        return obj.properties

    def get_freeUnits(self, obj: Price) -> str:
        return format_decimal(obj.free_units)

    @extend_schema_field({"type": "string", "nullable": True, "example": "49.00"})
    def get_amount(self, obj: Price) -> str | None:
        return format_amount(obj.amount, obj.currency)


class PlanSerializer(CatalogResourceSerializer):
    object_name = "plan"

    name = serializers.CharField()
    code = serializers.CharField()
    productId = serializers.UUIDField(source="product_id")
    currency = serializers.ChoiceField(choices=Currency.choices)
    billingInterval = serializers.ChoiceField(source="billing_interval", choices=BillingInterval.choices)
    prices = serializers.SerializerMethodField()
    features = serializers.SerializerMethodField()
    invoicing = serializers.ChoiceField(
        choices=Invoicing.choices,
        help_text="automatic: each period's close invoices its usage; manual: the merchant invoices usage itself "
        "(one-off invoices) and the close invoices none.",
    )

    class Meta:
        ref_name = "Plan"

    def get_prices(self, obj: Plan) -> list[str]:
        prices = sorted(obj.prices.all(), key=lambda p: (p.created_at, p.pk))
        return [str(p.pk) for p in prices]

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "rateLimit": {"type": "integer", "nullable": True},
                "monthlyQueryLimit": {"type": "integer", "nullable": True},
                "webhooks": {"type": "integer"},
            },
            "additionalProperties": True,
        }
    )
    def get_features(self, obj: Plan) -> dict[str, Any]:
        return obj.features
