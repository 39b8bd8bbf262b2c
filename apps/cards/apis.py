"""A customer's saved cards through the /v0 API:

POST   /v0/customers/{id}/paymentMethods         -> a payment session (purpose and mode setup)
GET    /v0/customers/{id}/paymentMethods         -> the saved cards
DELETE /v0/customers/{id}/paymentMethods/{pmId}  -> removed (detached in Stripe)
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.cards.serializers import SavedCardSerializer
from apps.cards.services.payment_methods import payment_method_remove, setup_session_create
from apps.cards.services.saved_cards import saved_card_list
from apps.core.api import ApiView
from apps.core.inputs import StrictInputSerializer
from apps.core.schema import api_errors
from apps.customers.selectors import customer_get
from apps.payments.serializers import PaymentSessionSerializer

TAGS = ["customers"]


class PaymentMethodSetupInput(StrictInputSerializer):
    """The body of POST /v0/customers/{id}/paymentMethods (optional)."""

    successUrl = serializers.URLField(
        max_length=2000, required=False, allow_blank=True, help_text="Where the checkout leads once the card is saved."
    )
    cancelUrl = serializers.URLField(
        max_length=2000, required=False, allow_blank=True, help_text="Where the checkout's cancel link leads."
    )


class CustomerPaymentMethodListApi(ApiView):
    InputSerializer = PaymentMethodSetupInput

    @api_errors({422: "CUSTOMER_ARCHIVED: an archived customer takes no new payment method"})
    @extend_schema(
        operation_id="customers_payment_methods_create",
        request=PaymentMethodSetupInput,
        responses={201: PaymentSessionSerializer},
        tags=TAGS,
    )
    def post(self, request, customer_id):
        """A payment session with purpose and mode `setup` (USD): its checkoutUrl collects a card and saves it
        for the customer, charging nothing. The first card saved is the default."""
        serializer = self.InputSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        session = setup_session_create(
            merchant=request.merchant,
            customer=customer,
            success_url=serializer.validated_data.get("successUrl") or "",
            cancel_url=serializer.validated_data.get("cancelUrl") or "",
        )
        return Response(PaymentSessionSerializer(session).data, status=201)

    @extend_schema(
        operation_id="customers_payment_methods_list",
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses=SavedCardSerializer(many=True),
        tags=TAGS,
    )
    def get(self, request, customer_id):
        """The customer's saved cards, newest first (`default` marks the one charged off-session)."""
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        # (the order of every list: newest first, then id; the portal shows the default first)
        queryset = saved_card_list(customer=customer).select_related("merchant").order_by("-created_at", "-id")
        return self.paginated_response(queryset, lambda rows: SavedCardSerializer(rows, many=True).data)


class CustomerPaymentMethodDetailApi(ApiView):
    @api_errors({404: "PAYMENT_METHOD_NOT_FOUND: no saved card of this customer has that id"})
    @extend_schema(
        operation_id="customers_payment_methods_delete",
        request=None,
        responses={200: SavedCardSerializer},
        tags=TAGS,
    )
    def delete(self, request, customer_id, payment_method_id):
        """Remove a saved card: never charged again, and detached from the customer in Stripe. When it was the
        default, the newest card left becomes the default (or none)."""
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        card = payment_method_remove(customer=customer, card_id=payment_method_id)
        return Response(SavedCardSerializer(card).data)
