"""The catalog endpoints of /v0: products, billable metrics, prices and plans.

Input serializers check shapes and types (400 naming the field, unknown fields refused);
the services check the rules, so that the admin applies the same ones.
"""

from collections.abc import Mapping
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from apps.catalog import selectors, services
from apps.catalog.models import Aggregation, BillingInterval, Currency, Invoicing, PaymentTerm, PriceModel
from apps.catalog.serializers import BillableMetricSerializer, PlanSerializer, PriceSerializer, ProductSerializer
from apps.core.api import ApiView, choice_param, uuid_param
from apps.core.errors import FieldError
from apps.core.inputs import StrictBooleanField, StrictCharField, StrictInputSerializer
from apps.core.metadata import MetadataField
from apps.core.schema import api_errors

# --- input fields ----------------------------------------------------------------------------


def choice(choices, **kwargs) -> serializers.ChoiceField:
    names = ", ".join(value for value, _ in choices)
    return serializers.ChoiceField(
        choices=choices, error_messages={"invalid_choice": f'must be one of {names}; got "{{input}}".'}, **kwargs
    )


def reference(**kwargs) -> serializers.UUIDField:
    return serializers.UUIDField(error_messages={"invalid": 'must be an id (a UUID); got "{value}".'}, **kwargs)


@extend_schema_field({"type": "string", "example": "0.001", "description": "A decimal string, never a JSON number."})
class DecimalStringField(serializers.Field):
    """Passed through as sent: the service parses it, refusing JSON floats with a message."""

    def to_internal_value(self, data):
        return data


@extend_schema_field(OpenApiTypes.OBJECT)
class JsonObjectField(serializers.JSONField):
    pass


@extend_schema_field({"type": "array", "items": {"type": "string"}})
class StringListField(serializers.JSONField):
    pass


@extend_schema_field({"type": "array", "items": {"type": "string", "format": "uuid"}})
class IdListField(serializers.JSONField):
    pass


def merchant_id_field() -> serializers.CharField:
    # Checked against the key's merchant by ApiView (403 MERCHANT_MISMATCH).
    return serializers.CharField(required=False, allow_blank=True)


def _rename(data: Mapping, names: dict[str, str]) -> dict[str, Any]:
    return {names.get(key, key): value for key, value in data.items() if key != "merchantId"}


def _id_list(value: Any, *, field: str) -> list[str]:
    if not isinstance(value, list):
        raise FieldError(field, f'{field} must be a list of price ids, such as ["{_EXAMPLE_ID}"].', code="INVALID")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise FieldError(f"{field}[{index}]", "must be a price id (a string).", code="INVALID")
    return value


_EXAMPLE_ID = "8f0c6f3e-3b1a-4c39-9a55-0d9f5d8b2a10"

# What the services refuse, by status (see apps.core.schema.api_errors).
PRODUCT_NOT_FOUND = "productId names no product of this merchant in this mode"
METRIC_NOT_FOUND = "billableMetricId names no billable metric of this merchant in this mode"
PLAN_PRICES_UNFIT = (
    "PRICE_ARCHIVED: an archived price cannot join a plan; PRICE_CURRENCY_MISMATCH: a price in another currency than "
    "the plan's; PLAN_METRIC_PRICED_TWICE: two prices of one billable metric"
)
INSTANT_NEEDS_ADDITIVE = (
    "INSTANT_PRICE_NEEDS_SUM_OR_COUNT: an instant price of a metric that is not SUM or COUNT (known only at the end "
    "of the period)"
)

# --- products --------------------------------------------------------------------------------


class ProductInput(StrictInputSerializer):
    merchantId = merchant_id_field()
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True, default="")
    metadata = MetadataField(required=False, default=dict)

    class Meta:
        ref_name = "ProductInput"


class ProductListApi(ApiView):
    InputSerializer = ProductInput

    @extend_schema(operation_id="products_list", responses=ProductSerializer(many=True), tags=["catalog"])
    def get(self, request):
        queryset = selectors.product_list(merchant=request.merchant)
        return self.paginated_response(queryset, lambda rows: ProductSerializer(rows, many=True).data)

    @extend_schema(
        operation_id="products_create", request=ProductInput, responses={201: ProductSerializer}, tags=["catalog"]
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        product = services.product_create(merchant=request.merchant, **_rename(data.validated_data, {}))
        return Response(ProductSerializer(product).data, status=201)


class ProductDetailApi(ApiView):
    InputSerializer = ProductInput

    @extend_schema(operation_id="products_retrieve", responses=ProductSerializer, tags=["catalog"])
    def get(self, request, product_id):
        return Response(ProductSerializer(selectors.product_get(merchant=request.merchant, id=product_id)).data)

    @extend_schema(operation_id="products_update", request=ProductInput, responses=ProductSerializer, tags=["catalog"])
    def patch(self, request, product_id):
        product = selectors.product_get(merchant=request.merchant, id=product_id)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        product = services.product_update(product=product, **_rename(data.validated_data, {}))
        return Response(ProductSerializer(product).data)


# --- billable metrics ------------------------------------------------------------------------


class BillableMetricInput(StrictInputSerializer):
    merchantId = merchant_id_field()
    productId = reference()
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True, default="")
    unit = StrictCharField(required=False, allow_blank=True, max_length=50, default="")
    aggregation = choice(Aggregation.choices)
    valueProperty = StrictCharField(required=False, allow_blank=True, max_length=200, default="")
    groupBy = StringListField(required=False, default=list)

    class Meta:
        ref_name = "BillableMetricInput"


METRIC_NAMES = {"productId": "product", "valueProperty": "value_property", "groupBy": "group_by"}


def _metric_kwargs(request, validated: Mapping) -> dict[str, Any]:
    kwargs = _rename(validated, METRIC_NAMES)
    if "product" in kwargs:
        kwargs["product"] = selectors.product_get(merchant=request.merchant, id=kwargs["product"], field="productId")
    return kwargs


class BillableMetricListApi(ApiView):
    InputSerializer = BillableMetricInput

    @extend_schema(
        operation_id="billable_metrics_list",
        parameters=[OpenApiParameter("productId", OpenApiTypes.UUID)],
        responses=BillableMetricSerializer(many=True),
        tags=["catalog"],
    )
    def get(self, request):
        queryset = selectors.billable_metric_list(
            merchant=request.merchant, filters={"product_id": uuid_param(request, "productId")}
        )
        return self.paginated_response(queryset, lambda rows: BillableMetricSerializer(rows, many=True).data)

    @api_errors({404: PRODUCT_NOT_FOUND})
    @extend_schema(
        operation_id="billable_metrics_create",
        request=BillableMetricInput,
        responses={201: BillableMetricSerializer},
        tags=["catalog"],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        metric = services.billable_metric_create(
            merchant=request.merchant, **_metric_kwargs(request, data.validated_data)
        )
        return Response(BillableMetricSerializer(metric).data, status=201)


class BillableMetricDetailApi(ApiView):
    InputSerializer = BillableMetricInput

    @extend_schema(operation_id="billable_metrics_retrieve", responses=BillableMetricSerializer, tags=["catalog"])
    def get(self, request, metric_id):
        metric = selectors.billable_metric_get(merchant=request.merchant, id=metric_id)
        return Response(BillableMetricSerializer(metric).data)

    @api_errors(
        {
            404: PRODUCT_NOT_FOUND,
            409: "METRIC_HAS_USAGE: aggregation or valueProperty of a metric that already has usage",
            422: INSTANT_NEEDS_ADDITIVE,
        }
    )
    @extend_schema(
        operation_id="billable_metrics_update",
        request=BillableMetricInput,
        responses=BillableMetricSerializer,
        tags=["catalog"],
    )
    def patch(self, request, metric_id):
        metric = selectors.billable_metric_get(merchant=request.merchant, id=metric_id)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        metric = services.billable_metric_update(metric=metric, **_metric_kwargs(request, data.validated_data))
        return Response(BillableMetricSerializer(metric).data)


# --- prices ----------------------------------------------------------------------------------


class PriceInput(StrictInputSerializer):
    merchantId = merchant_id_field()
    billableMetricId = reference(required=False, allow_null=True, default=None)
    model = choice(PriceModel.choices, required=False, default=PriceModel.STANDARD)
    paymentTerm = choice(PaymentTerm.choices)
    invoiceDisplayName = StrictCharField(required=False, allow_blank=True, max_length=200, default="")
    currency = choice(Currency.choices)
    properties = JsonObjectField(required=False, allow_null=True, default=None)
    freeUnits = DecimalStringField(required=False, allow_null=True, default=None)
    allowPriceOverride = StrictBooleanField(required=False, default=False)
    amount = DecimalStringField(required=False, allow_null=True, default=None)

    class Meta:
        ref_name = "PriceInput"


PRICE_NAMES = {
    "billableMetricId": "billable_metric",
    "paymentTerm": "payment_term",
    "invoiceDisplayName": "invoice_display_name",
    "freeUnits": "free_units",
    "allowPriceOverride": "allow_price_override",
}


def _price_kwargs(request, validated: Mapping) -> dict[str, Any]:
    kwargs = _rename(validated, PRICE_NAMES)
    if kwargs.get("billable_metric") is not None:
        kwargs["billable_metric"] = selectors.billable_metric_get(
            merchant=request.merchant, id=kwargs["billable_metric"], field="billableMetricId"
        )
    return kwargs


class PriceListApi(ApiView):
    InputSerializer = PriceInput

    @extend_schema(
        operation_id="prices_list",
        parameters=[
            OpenApiParameter("billableMetricId", OpenApiTypes.UUID),
            OpenApiParameter("currency", OpenApiTypes.STR, enum=Currency.values),
        ],
        responses=PriceSerializer(many=True),
        tags=["catalog"],
    )
    def get(self, request):
        queryset = selectors.price_list(
            merchant=request.merchant,
            filters={
                "billable_metric_id": uuid_param(request, "billableMetricId"),
                "currency": choice_param(request, "currency", Currency.values),
            },
        )
        return self.paginated_response(queryset, lambda rows: PriceSerializer(rows, many=True).data)

    @api_errors({404: METRIC_NOT_FOUND, 422: INSTANT_NEEDS_ADDITIVE})
    @extend_schema(operation_id="prices_create", request=PriceInput, responses={201: PriceSerializer}, tags=["catalog"])
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        price = services.price_create(merchant=request.merchant, **_price_kwargs(request, data.validated_data))
        return Response(PriceSerializer(price).data, status=201)


class PriceDetailApi(ApiView):
    InputSerializer = PriceInput

    @extend_schema(operation_id="prices_retrieve", responses=PriceSerializer, tags=["catalog"])
    def get(self, request, price_id):
        return Response(PriceSerializer(selectors.price_get(merchant=request.merchant, id=price_id)).data)

    @api_errors(
        {
            404: METRIC_NOT_FOUND,
            409: "PRICE_IN_USE: a price that has priced usage keeps its terms",
            422: "PRICE_ARCHIVED: an archived price cannot change; PRICE_CURRENCY_MISMATCH, PLAN_METRIC_PRICED_TWICE: "
            f"the change does not fit a plan that holds the price; {INSTANT_NEEDS_ADDITIVE}",
        }
    )
    @extend_schema(operation_id="prices_update", request=PriceInput, responses=PriceSerializer, tags=["catalog"])
    def patch(self, request, price_id):
        price = selectors.price_get(merchant=request.merchant, id=price_id)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        price = services.price_update(price=price, **_price_kwargs(request, data.validated_data))
        return Response(PriceSerializer(price).data)

    @extend_schema(operation_id="prices_archive", request=None, responses=PriceSerializer, tags=["catalog"])
    def delete(self, request, price_id):
        price = selectors.price_get(merchant=request.merchant, id=price_id)
        return Response(PriceSerializer(services.price_archive(price=price)).data)


# --- plans -----------------------------------------------------------------------------------


class PlanInput(StrictInputSerializer):
    merchantId = merchant_id_field()
    name = StrictCharField(max_length=200)
    code = StrictCharField(
        max_length=100,
        validators=[
            RegexValidator(
                r"^[-a-zA-Z0-9_]+\Z",
                message="must be a slug: letters, digits, hyphens and underscores, such as starter.",
                code="invalid_slug",
            )
        ],
    )
    productId = reference()
    currency = choice(Currency.choices)
    billingInterval = choice(BillingInterval.choices, required=False, default=BillingInterval.MONTHLY)
    prices = IdListField(required=False, default=list)
    features = JsonObjectField(required=False, default=dict)
    invoicing = choice(Invoicing.choices, required=False, default=Invoicing.AUTOMATIC)

    class Meta:
        ref_name = "PlanInput"


PLAN_NAMES = {"productId": "product", "billingInterval": "billing_interval"}


def _plan_kwargs(request, validated: Mapping) -> dict[str, Any]:
    kwargs = _rename(validated, PLAN_NAMES)
    if "product" in kwargs:
        kwargs["product"] = selectors.product_get(merchant=request.merchant, id=kwargs["product"], field="productId")
    if "prices" in kwargs:
        ids = _id_list(kwargs["prices"], field="prices")
        kwargs["prices"] = [
            selectors.price_get(merchant=request.merchant, id=price_id, field=f"prices[{index}]")
            for index, price_id in enumerate(ids)
        ]
    return kwargs


class PlanListApi(ApiView):
    InputSerializer = PlanInput

    @extend_schema(
        operation_id="plans_list",
        parameters=[OpenApiParameter("code", OpenApiTypes.STR), OpenApiParameter("productId", OpenApiTypes.UUID)],
        responses=PlanSerializer(many=True),
        tags=["catalog"],
    )
    def get(self, request):
        queryset = selectors.plan_list(
            merchant=request.merchant,
            filters={"code": request.query_params.get("code"), "product_id": uuid_param(request, "productId")},
        )
        return self.paginated_response(queryset, lambda rows: PlanSerializer(rows, many=True).data)

    @api_errors(
        {
            404: f"{PRODUCT_NOT_FOUND}; prices[i] names no price of this merchant in this mode",
            409: "PLAN_CODE_TAKEN: another plan of this merchant has this code",
            422: PLAN_PRICES_UNFIT,
        }
    )
    @extend_schema(operation_id="plans_create", request=PlanInput, responses={201: PlanSerializer}, tags=["catalog"])
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        plan = services.plan_create(merchant=request.merchant, **_plan_kwargs(request, data.validated_data))
        return Response(PlanSerializer(plan).data, status=201)


class PlanDetailApi(ApiView):
    InputSerializer = PlanInput

    @extend_schema(operation_id="plans_retrieve", responses=PlanSerializer, tags=["catalog"])
    def get(self, request, plan_id):
        return Response(PlanSerializer(selectors.plan_get(merchant=request.merchant, id=plan_id)).data)

    @api_errors(
        {
            404: f"{PRODUCT_NOT_FOUND}; prices[i] names no price of this merchant in this mode",
            409: "PLAN_CODE_TAKEN: another plan of this merchant has this code; PLAN_HAS_SUBSCRIPTIONS: currency or "
            "billingInterval of a plan with subscriptions that are not terminated",
            422: PLAN_PRICES_UNFIT,
        }
    )
    @extend_schema(operation_id="plans_update", request=PlanInput, responses=PlanSerializer, tags=["catalog"])
    def patch(self, request, plan_id):
        plan = selectors.plan_get(merchant=request.merchant, id=plan_id)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        plan = services.plan_update(plan=plan, **_plan_kwargs(request, data.validated_data))
        return Response(PlanSerializer(plan).data)
