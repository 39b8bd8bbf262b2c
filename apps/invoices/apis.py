"""The invoice endpoints of /v0."""

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.core.api import ApiView, choice_param, uuid_param
from apps.core.errors import Unprocessable
from apps.core.inputs import (
    AmountInputField,
    CurrencyInputField,
    StrictBooleanField,
    StrictCharField,
    StrictInputSerializer,
)
from apps.core.schema import api_errors
from apps.customers.selectors import customer_get
from apps.invoices.models import Invoice
from apps.invoices.selectors import invoice_get, invoice_list
from apps.invoices.serializers import InvoiceSchema, invoice_data
from apps.invoices.services.collection import invoice_pay_now
from apps.invoices.services.invoices import invoice_create_one_off, invoice_void
from apps.subscriptions.selectors import subscription_get

TAGS = ["invoices"]
MAX_LINES = 100


class OneOffLineInput(StrictInputSerializer):
    description = StrictCharField(max_length=500)
    amount = AmountInputField(minimum=Decimal(0))

    class Meta:
        ref_name = "OneOffInvoiceLineInput"


class OneOffInvoiceInput(StrictInputSerializer):
    subscriptionId = serializers.UUIDField(required=False, error_messages={"invalid": "must be an id (a UUID)."})
    customerId = serializers.UUIDField(required=False, error_messages={"invalid": "must be an id (a UUID)."})
    currency = CurrencyInputField(required=False)
    lines = OneOffLineInput(many=True, required=False, allow_empty=False, max_length=MAX_LINES)
    amount = AmountInputField(minimum=Decimal(0), required=False)
    description = StrictCharField(max_length=500, required=False)
    dueAt = serializers.DateTimeField(required=False)
    autoCollect = StrictBooleanField(required=False, default=True)

    class Meta:
        ref_name = "OneOffInvoiceInput"

    def validate(self, attrs):
        if ("subscriptionId" in attrs) == ("customerId" in attrs):
            raise serializers.ValidationError({"customerId": "send subscriptionId or customerId (one of them)."})
        if "lines" in attrs and ("amount" in attrs or "description" in attrs):
            raise serializers.ValidationError({"lines": "send lines, or amount and description, not both."})
        if "lines" not in attrs and not ("amount" in attrs and "description" in attrs):
            raise serializers.ValidationError({"lines": "send lines, or amount and description."})
        if "customerId" in attrs and "currency" not in attrs:
            raise serializers.ValidationError(
                {"currency": "is required with customerId (a subscription gives its own)."}
            )
        return attrs


class InvoiceListApi(ApiView):
    @api_errors(
        {
            404: "SUBSCRIPTION_NOT_FOUND, CUSTOMER_NOT_FOUND",
            422: "CURRENCY_MISMATCH: the currency is not the subscription's; CUSTOMER_ARCHIVED",
        }
    )
    @extend_schema(
        operation_id="invoices_create",
        request=OneOffInvoiceInput,
        responses={201: InvoiceSchema},
        tags=TAGS,
    )
    def post(self, request):
        """A one-off invoice the merchant computed itself: open and numbered at once."""
        serializer = OneOffInvoiceInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        subscription = None
        if "subscriptionId" in data:
            subscription = subscription_get(merchant=request.merchant, subscription_id=data["subscriptionId"])
            customer = subscription.customer
            currency = data.get("currency", subscription.plan.currency)
            if currency != subscription.plan.currency:
                raise Unprocessable(
                    f"currency: subscription {subscription.id} bills in {subscription.plan.currency}, not {currency}.",
                    code="CURRENCY_MISMATCH",
                )
        else:
            customer = customer_get(merchant=request.merchant, customer_id=data["customerId"])
            currency = data["currency"]
        if "lines" in data:
            lines = [(line["description"], line["amount"]) for line in data["lines"]]
        else:
            lines = [(data["description"], data["amount"])]
        invoice = invoice_create_one_off(
            merchant=request.merchant,
            customer=customer,
            subscription=subscription,
            currency=currency,
            lines=lines,
            due_at=data.get("dueAt"),
            auto_collect=data["autoCollect"],
        )
        return Response(invoice_data(invoice_get(merchant=request.merchant, invoice_id=invoice.id)), status=201)

    @extend_schema(
        operation_id="invoices_list",
        parameters=[
            OpenApiParameter("customerId", OpenApiTypes.UUID),
            OpenApiParameter("subscriptionId", OpenApiTypes.UUID),
            OpenApiParameter("status", OpenApiTypes.STR, enum=Invoice.Status.values),
        ],
        responses=InvoiceSchema(many=True),
        tags=TAGS,
    )
    def get(self, request):
        queryset = invoice_list(
            merchant=request.merchant,
            customer_id=uuid_param(request, "customerId"),
            subscription_id=uuid_param(request, "subscriptionId"),
            status=choice_param(request, "status", Invoice.Status.values),
        )
        return self.paginated_response(queryset, lambda rows: [invoice_data(row) for row in rows])


class InvoiceDetailApi(ApiView):
    @extend_schema(operation_id="invoices_retrieve", responses=InvoiceSchema, tags=TAGS)
    def get(self, request, invoice_id):
        return Response(invoice_data(invoice_get(merchant=request.merchant, invoice_id=invoice_id)))


class InvoicePayApi(ApiView):
    # (may charge the saved card: Stripe is called outside any transaction)
    calls_out = True

    @api_errors(
        {
            402: "INSUFFICIENT_BALANCE: the wallet (less the highest minimum balance) does not cover the amount due "
            "and the customer has no saved card (USD); CARD_DECLINED: the saved card was declined; "
            "CARD_AUTHENTICATION_REQUIRED: the card needs the customer's authentication (the invoice's paymentUrl "
            "asks for it); CARD_UNAVAILABLE: Stripe is not configured for this mode; the details hold the wallet's "
            "and the card's reasons",
            409: "INVOICE_NOT_OPEN: the invoice is a draft, paid or void; PAYMENT_IN_FLIGHT: another payment of it "
            "is being confirmed (a card payment whose outcome Stripe has not told yet included: it is settled "
            "from Stripe once Stripe answers, and the invoice is paid if it succeeded)",
            503: "STRIPE_UNAVAILABLE: Stripe did not answer or failed on its side before the card was charged; "
            "nothing was charged and the invoice stays open: send the request again after Retry-After seconds",
        }
    )
    @extend_schema(operation_id="invoices_pay", request=None, responses=InvoiceSchema, tags=TAGS)
    def post(self, request, invoice_id):
        """Collect the invoice now, whole: from the customer's wallet, else off-session from its default saved
        card (USD invoices). A card that fails leaves the invoice open with its paymentUrl and publishes
        invoice.payment_failed and payment.failed."""
        invoice_pay_now(merchant=request.merchant, invoice_id=invoice_id)
        return Response(invoice_data(invoice_get(merchant=request.merchant, invoice_id=invoice_id)))


class InvoiceVoidApi(ApiView):
    @api_errors({409: "INVOICE_VOID: already void; INVOICE_DRAFT: a draft is voided once it is final"})
    @extend_schema(operation_id="invoices_void", request=None, responses=InvoiceSchema, tags=TAGS)
    def post(self, request, invoice_id):
        """Void the invoice: what was paid on it goes back to the wallet."""
        invoice_void(merchant=request.merchant, invoice_id=invoice_id)
        return Response(invoice_data(invoice_get(merchant=request.merchant, invoice_id=invoice_id)))
