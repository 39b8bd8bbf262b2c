from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.inputs import StrictCharField, StrictInputSerializer
from apps.core.metadata import MetadataField
from apps.core.schema import api_errors
from apps.customers.inputs import (
    ADDRESS_KEYS,
    BillingSettingsInput,
    ConsumerInputSerializer,
    customer_fields_from_input,
)
from apps.customers.selectors import customer_get, customer_list
from apps.customers.serializers import CustomerSerializer
from apps.customers.services import customer_archive, customer_create, customer_update

TAGS = ["customers"]


def _external_id_field() -> StrictCharField:
    return StrictCharField(max_length=255, required=False, allow_blank=True, allow_null=True)


# The input serializers are named at module level (and bound as each view's InputSerializer) so that
# the OpenAPI components get distinct names, also for subclasses in other apps.
class CustomerCreateInput(StrictInputSerializer):
    """The body of POST /v0/customers."""

    merchantId = StrictCharField(required=False, help_text="Where given, the key's merchant.")
    consumer = ConsumerInputSerializer()
    externalId = _external_id_field()
    metadata = MetadataField(required=False)
    billingSettings = BillingSettingsInput(
        required=False,
        help_text=(
            'Per wallet currency: {"USDC": {"lowBalanceThreshold": "5", "autoRecharge": {"enabled": true, '
            '"threshold": "10", "amount": "50"}}}.'
        ),
    )


class CustomerUpdateInput(StrictInputSerializer):
    """Only the fields given change. `consumer.address` is merged key by key (null or "" clears a
    key; null for the whole address clears it); `metadata` replaces the stored object;
    `billingSettings` is merged currency by currency (a currency's settings given replace them,
    null removes them; null for the whole removes every currency's)."""

    consumer = ConsumerInputSerializer(required=False)
    externalId = _external_id_field()
    metadata = MetadataField(required=False, allow_null=True)
    billingSettings = BillingSettingsInput(
        required=False,
        allow_null=True,
        help_text="Merged currency by currency: a currency's settings replace its settings; null removes them.",
    )


class CustomerListApi(ApiView):
    InputSerializer = CustomerCreateInput

    @api_errors({409: "CUSTOMER_EMAIL_CONTENDED: a customer with this email was created and archived concurrently"})
    @extend_schema(
        operation_id="customers_create",
        description=(
            "Create a customer. Idempotent by email: when a customer of this merchant (in this mode) that is "
            "not archived already has the email, compared without case, it is returned unchanged with 200. "
            "A customer created is announced by the webhook event customer.created."
        ),
        request=InputSerializer,
        responses={
            201: OpenApiResponse(CustomerSerializer, description="Created."),
            200: OpenApiResponse(
                CustomerSerializer,
                description="A customer of this merchant already has this email (without case); returned unchanged.",
            ),
        },
        tags=TAGS,
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        customer, created = customer_create(merchant=request.merchant, **customer_fields_from_input(data))
        return Response(CustomerSerializer(customer).data, status=201 if created else 200)

    @extend_schema(
        operation_id="customers_list",
        description="The customers that are not archived, newest first.",
        parameters=[
            OpenApiParameter("email", str, description="Exact email, compared without case."),
            OpenApiParameter("externalId", str, description="Exact external id."),
        ],
        responses=CustomerSerializer(many=True),
        tags=TAGS,
    )
    def get(self, request):
        filters = {
            "email": request.query_params.get("email", "").strip(),
            "external_id": request.query_params.get("externalId", ""),
        }
        queryset = customer_list(merchant=request.merchant, filters=filters)
        return self.paginated_response(queryset, lambda rows: CustomerSerializer(rows, many=True).data)


class CustomerDetailApi(ApiView):
    InputSerializer = CustomerUpdateInput

    @extend_schema(
        operation_id="customers_retrieve",
        description="One customer, archived ones included (with archivedAt set).",
        responses=CustomerSerializer,
        tags=TAGS,
    )
    def get(self, request, customer_id):
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        return Response(CustomerSerializer(customer).data)

    @api_errors(
        {
            409: "CUSTOMER_EMAIL_TAKEN: another customer of this merchant has this email; CUSTOMER_ARCHIVED: an "
            "archived customer cannot change"
        }
    )
    @extend_schema(
        operation_id="customers_update",
        description=(
            "Change the given fields. Only the fields given change; consumer.address is merged key by key "
            "(null or an empty string clears a key; null for the whole address clears it); metadata is replaced; "
            "billingSettings is merged currency by currency (a currency's settings given replace its settings, "
            "null removes them; null for the whole removes them all)."
        ),
        request=InputSerializer,
        responses=CustomerSerializer,
        tags=TAGS,
    )
    def patch(self, request, customer_id):
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        changes = {}
        consumer = data.get("consumer") or {}
        for field in ("email", "name", "phone"):
            if field in consumer:
                changes[field] = consumer[field]
        if "address" in consumer:
            address = consumer["address"]
            changes["address"] = None if address is None else {k: v for k, v in address.items() if k in ADDRESS_KEYS}
        if "externalId" in data:
            changes["external_id"] = data["externalId"]
        if "metadata" in data:
            changes["metadata"] = data["metadata"]
        if "billingSettings" in data:
            changes["billing_settings"] = data["billingSettings"]
        customer = customer_update(merchant=request.merchant, customer=customer, **changes)
        return Response(CustomerSerializer(customer).data)

    @api_errors({409: "CUSTOMER_HAS_ACTIVE_SUBSCRIPTION: terminate its subscriptions first"})
    @extend_schema(
        operation_id="customers_archive",
        description=(
            "Archive the customer: it leaves the lists, stays readable by id, and its email can be used by a new "
            "customer. Archiving again returns the archived customer unchanged."
        ),
        request=None,
        responses={200: OpenApiResponse(CustomerSerializer, description="The archived customer.")},
        tags=TAGS,
    )
    def delete(self, request, customer_id):
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        customer = customer_archive(merchant=request.merchant, customer=customer)
        return Response(CustomerSerializer(customer).data)
