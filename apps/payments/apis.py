from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.inputs import AmountInputField, CurrencyInputField, StrictCharField, StrictInputSerializer
from apps.core.schema import api_errors
from apps.customers.selectors import customer_get
from apps.payments.selectors import adjustment_list
from apps.payments.serializers import AdjustmentSerializer, PaymentSessionSerializer
from apps.payments.services import adjustment_create, payment_session_pay_test, topup_session_create


class CustomerTopupApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        amount = AmountInputField(positive=True)
        currency = CurrencyInputField()

    @api_errors({422: "CUSTOMER_ARCHIVED: an archived customer's wallet takes no top-up"})
    @extend_schema(
        operation_id="customers_topups_create",
        request=InputSerializer,
        responses={201: PaymentSessionSerializer},
        tags=["customers"],
    )
    def post(self, request, customer_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        session = topup_session_create(
            merchant=request.merchant,
            customer=customer,
            amount=serializer.validated_data["amount"],
            currency=serializer.validated_data["currency"],
        )
        return Response(PaymentSessionSerializer(session).data, status=201)


class CustomerAdjustmentListApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        amount = AmountInputField(help_text="Positive credits the wallet; negative debits it.")
        currency = CurrencyInputField()
        reason = StrictCharField(max_length=500)

    @api_errors(
        {
            402: "INSUFFICIENT_BALANCE: a debit beyond the wallet's available balance",
            400: "ZERO_ADJUSTMENT: an amount of 0",
            422: "CUSTOMER_ARCHIVED: an archived customer's wallet; AMOUNT_TOO_LARGE: "
            "a balance beyond what the ledger holds",
        }
    )
    @extend_schema(
        operation_id="customers_adjustments_create",
        request=InputSerializer,
        responses={201: AdjustmentSerializer},
        tags=["customers"],
    )
    def post(self, request, customer_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        adjustment = adjustment_create(
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
        tags=["customers"],
    )
    def get(self, request, customer_id):
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        queryset = adjustment_list(merchant=request.merchant, customer=customer)
        return self.paginated_response(queryset, lambda rows: AdjustmentSerializer(rows, many=True).data)


class TestHelperPaySessionApi(ApiView):
    """Sandbox only: pay a session as if the customer had paid (live keys get 404)."""

    @api_errors(
        {
            404: "A live key (test payments exist only in the sandbox), or no such session",
            409: "PAYMENT_SESSION_EXPIRED, PAYMENT_SESSION_IS_SETUP (a setup session takes no payment), "
            "PAYMENT_TARGET_CLOSED (its subscription or invoice no longer takes it), PAYMENT_IN_FLIGHT (another "
            "payment of it is running), NOTHING_DUE",
            422: "AMOUNT_TOO_LARGE: a balance beyond what the ledger holds",
        }
    )
    @extend_schema(
        operation_id="test_helpers_payment_sessions_pay",
        request=None,
        responses={200: PaymentSessionSerializer},
        tags=["testHelpers"],
    )
    def post(self, request, session_id):
        session, _ = payment_session_pay_test(merchant=request.merchant, session_id=session_id)
        return Response(PaymentSessionSerializer(session).data)
