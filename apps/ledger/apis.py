from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.inputs import AmountInputField, CurrencyInputField, StrictCharField, StrictInputSerializer
from apps.customers.selectors import customer_get
from apps.ledger.selectors import adjustment_list
from apps.ledger.serializers import AdjustmentSerializer
from apps.ledger.services import wallet_adjust

TAGS = ["customers"]


class CustomerAdjustmentListApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        amount = AmountInputField(help_text="Positive credits the wallet; negative debits it.")
        currency = CurrencyInputField()
        reason = StrictCharField(max_length=500)

    @extend_schema(
        operation_id="customers_adjustments_create",
        request=InputSerializer,
        responses={201: AdjustmentSerializer},
        tags=TAGS,
    )
    def post(self, request, customer_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        adjustment = wallet_adjust(
            merchant=request.merchant,
            customer=customer,
            amount=data["amount"],
            currency=data["currency"],
            reason=data["reason"],
            actor=f"api key {request.api_key.prefix}",
        )
        return Response(AdjustmentSerializer(adjustment).data, status=201)

    @extend_schema(
        operation_id="customers_adjustments_list",
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses=AdjustmentSerializer(many=True),
        tags=TAGS,
    )
    def get(self, request, customer_id):
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        queryset = adjustment_list(merchant=request.merchant, customer=customer)
        return self.paginated_response(queryset, lambda rows: AdjustmentSerializer(rows, many=True).data)
