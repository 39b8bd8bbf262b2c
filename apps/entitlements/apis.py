from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from apps.core.api import ApiView, uuid_param
from apps.core.errors import FieldError
from apps.core.inputs import AmountInputField, StrictCharField, StrictInputSerializer, parse_number
from apps.core.schema import api_errors
from apps.customers.selectors import customer_get
from apps.entitlements.models import Entitlement
from apps.entitlements.selectors import entitlement_get, entitlements
from apps.entitlements.serializers import EntitlementSchema, entitlement_data
from apps.entitlements.services import MAX_EXPIRES_IN, EntitlementRequest, entitlement_create, entitlement_release

TAGS = ["entitlements"]


@extend_schema_field(OpenApiTypes.STR)
class QuantityField(serializers.Field):
    def to_internal_value(self, data):
        return parse_number(data, self.field_name)


class EntitlementDataInput(StrictInputSerializer):
    billableMetricId = serializers.UUIDField()
    quantity = QuantityField()
    price = AmountInputField(required=False, allow_null=True, minimum=0)

    def validate_quantity(self, value):
        if value <= 0:
            raise serializers.ValidationError("must be greater than 0")
        return value


class EntitlementListApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        merchantId = StrictCharField(required=False)
        customerId = serializers.UUIDField()
        entitlementData = EntitlementDataInput(many=True, allow_empty=False)
        maxUses = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2_147_483_647)
        expiresIn = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_EXPIRES_IN)

        def validate_entitlementData(self, value):
            ids = [item["billableMetricId"] for item in value]
            if len(ids) != len(set(ids)):
                raise serializers.ValidationError("names a billable metric twice")
            return value

    @api_errors(
        {
            402: "INSUFFICIENT_BALANCE: the wallet cannot hold the reserved amount",
            404: "customerId names no customer; BILLABLE_METRIC_NOT_FOUND: entitlementData[i].billableMetricId names "
            "no billable metric",
            409: "NO_ACTIVE_SUBSCRIPTION: the customer has no active subscription to reserve on; "
            "AMBIGUOUS_SUBSCRIPTION: several of its active subscriptions price these metrics",
            422: "CUSTOMER_ARCHIVED; METRIC_NOT_PRICED: no active subscription prices the metric; PRICE_NOT_INSTANT: "
            "only instant prices can be reserved; PRICE_OVERRIDE_NOT_ALLOWED: a price sent for a price that does not "
            "allow it",
        }
    )
    @extend_schema(
        operation_id="entitlements_create", request=InputSerializer, responses={201: EntitlementSchema}, tags=TAGS
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        customer = customer_get(merchant=request.merchant, customer_id=data["customerId"])
        entitlement = entitlement_create(
            merchant=request.merchant,
            customer=customer,
            requests=[
                EntitlementRequest(item["billableMetricId"], item["quantity"], item.get("price"))
                for item in data["entitlementData"]
            ],
            max_uses=data.get("maxUses"),
            expires_in=data.get("expiresIn"),
        )
        entitlement = entitlement_get(merchant=request.merchant, entitlement_id=entitlement.id)
        return Response(entitlement_data(entitlement), status=201)


class ActiveEntitlementsApi(ApiView):
    @extend_schema(
        operation_id="entitlements_active",
        parameters=[
            OpenApiParameter("customerId", str, required=True),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses=EntitlementSchema(many=True),
        tags=TAGS,
    )
    def get(self, request):
        customer_id = uuid_param(request, "customerId")
        if customer_id is None:
            raise FieldError("customerId", "is required", code="REQUIRED")
        queryset = (
            entitlements(merchant=request.merchant)
            .filter(customer_id=customer_id, status=Entitlement.Status.ACTIVE, expires_at__gt=timezone.now())
            .order_by("-created_at", "-id")
        )
        return self.paginated_response(queryset, lambda rows: [entitlement_data(e) for e in rows])


class EntitlementDetailApi(ApiView):
    @extend_schema(operation_id="entitlements_get", responses=EntitlementSchema, tags=TAGS)
    def get(self, request, entitlement_id):
        return Response(entitlement_data(entitlement_get(merchant=request.merchant, entitlement_id=entitlement_id)))

    @extend_schema(operation_id="entitlements_release", responses=EntitlementSchema, tags=TAGS)
    def delete(self, request, entitlement_id):
        entitlement = entitlement_get(merchant=request.merchant, entitlement_id=entitlement_id)
        entitlement_release(entitlement=entitlement)
        return Response(entitlement_data(entitlement_get(merchant=request.merchant, entitlement_id=entitlement_id)))
