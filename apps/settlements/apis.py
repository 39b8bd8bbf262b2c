from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from apps.core.api import ApiView, uuid_param
from apps.core.inputs import StrictCharField, StrictInputSerializer
from apps.core.schema import api_errors
from apps.customers.selectors import customer_get
from apps.payments.chains import chain_data, chains
from apps.settlements.models import Settlement, WalletAddress
from apps.settlements.selectors import settlement_get, settlement_list
from apps.settlements.serializers import (
    ChainSchema,
    SettlementSchema,
    WalletAddressSchema,
    settlement_data,
    wallet_address_data,
)
from apps.settlements.services import settlement_create, wallet_address_add, wallet_address_remove


class ChainListApi(ApiView):
    @extend_schema(operation_id="chains_list", responses=ChainSchema(many=True), tags=["settlements"])
    def get(self, request):
        # a handful from the configuration, all in one page (the list envelope of every list)
        configured = [chain_data(chain) for chain in chains(livemode=request.merchant.livemode)]
        return Response(
            {
                "object": "list",
                "data": configured,
                "pagination": {"limit": len(configured), "offset": 0, "total": len(configured)},
            }
        )


class WalletAddressListApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        address = StrictCharField(max_length=42)
        signature = StrictCharField(max_length=200, help_text="EIP-191 personal_sign of the contract's message.")

    @api_errors(
        {
            409: "WALLET_ADDRESS_TAKEN: the address belongs to another customer of this mode",
            422: "SIGNATURE_MISMATCH: the signature is by another key",
        }
    )
    @extend_schema(
        operation_id="customers_wallet_addresses_create",
        request=InputSerializer,
        responses={201: WalletAddressSchema, 200: WalletAddressSchema},
        tags=["customers"],
    )
    def post(self, request, customer_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        row, created = wallet_address_add(
            merchant=request.merchant,
            customer=customer,
            address=serializer.validated_data["address"],
            signature=serializer.validated_data["signature"],
        )
        return Response(wallet_address_data(row), status=201 if created else 200)

    @extend_schema(
        operation_id="customers_wallet_addresses_list",
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses=WalletAddressSchema(many=True),
        tags=["customers"],
    )
    def get(self, request, customer_id):
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        # newest first, then id (the order of every list)
        queryset = (
            WalletAddress.objects.filter(merchant=request.merchant, customer=customer)
            .select_related("merchant")
            .order_by("-created_at", "-id")
        )
        return self.paginated_response(queryset, lambda rows: [wallet_address_data(row) for row in rows])


class WalletAddressDetailApi(ApiView):
    @api_errors({404: "WALLET_ADDRESS_NOT_FOUND"})
    @extend_schema(
        operation_id="customers_wallet_addresses_delete", responses={200: WalletAddressSchema}, tags=["customers"]
    )
    def delete(self, request, customer_id, address):
        # as every DELETE of the API: 200 with the object removed
        customer = customer_get(merchant=request.merchant, customer_id=customer_id)
        removed = wallet_address_remove(merchant=request.merchant, customer=customer, address=address)
        return Response(wallet_address_data(removed))


class SettlementListApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        invoiceId = StrictCharField(required=False, allow_null=True, max_length=64)
        paymentSessionId = StrictCharField(required=False, allow_null=True, max_length=64)
        chain = StrictCharField(max_length=64)
        transactionHash = StrictCharField(max_length=66)
        referenceHash = StrictCharField(max_length=66)
        payerAddress = StrictCharField(max_length=42)
        merchantAddress = StrictCharField(max_length=42)

    @api_errors(
        {
            404: "INVOICE_NOT_FOUND, PAYMENT_SESSION_NOT_FOUND",
            409: "TRANSACTION_ALREADY_USED: the hash was claimed for another target; INVOICE_NOT_OPEN",
            422: "REFERENCE_MISMATCH, PAYER_NOT_PROVEN, UNKNOWN_CHAIN, MERCHANT_ADDRESS_MISMATCH, NOT_USDC",
        }
    )
    @extend_schema(
        operation_id="settlements_create",
        request=InputSerializer,
        responses={201: SettlementSchema, 200: SettlementSchema},
        tags=["settlements"],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        settlement, created = settlement_create(
            merchant=request.merchant,
            chain_name=data["chain"],
            transaction_hash=data["transactionHash"],
            reference=data["referenceHash"],
            payer_address=data["payerAddress"],
            merchant_address=data["merchantAddress"],
            invoice_id=_uuid_field(data.get("invoiceId"), "invoiceId"),
            session_id=_uuid_field(data.get("paymentSessionId"), "paymentSessionId"),
        )
        settlement = Settlement.objects.select_related("merchant").get(pk=settlement.pk)
        return Response(settlement_data(settlement), status=201 if created else 200)

    @extend_schema(
        operation_id="settlements_list",
        parameters=[
            OpenApiParameter("invoiceId", str),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses=SettlementSchema(many=True),
        tags=["settlements"],
    )
    def get(self, request):
        queryset = settlement_list(merchant=request.merchant, invoice_id=uuid_param(request, "invoiceId"))
        return self.paginated_response(queryset, lambda rows: [settlement_data(row) for row in rows])


def _uuid_field(value, field: str):
    import uuid

    from apps.core.errors import FieldError

    if value in (None, ""):
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise FieldError(field, "must be a UUID", code="INVALID_UUID") from None


class SettlementDetailApi(ApiView):
    @api_errors({404: "SETTLEMENT_NOT_FOUND"})
    @extend_schema(operation_id="settlements_retrieve", responses=SettlementSchema, tags=["settlements"])
    def get(self, request, settlement_id):
        return Response(settlement_data(settlement_get(merchant=request.merchant, settlement_id=settlement_id)))
