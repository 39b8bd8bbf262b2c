from datetime import UTC, datetime

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.apikeys.authentication import CustomerKeyAuthentication, require_customer_key
from apps.apikeys.selectors import api_key_get, api_key_list
from apps.apikeys.serializers import (
    ApiKeySerializer,
    BillingUsageSerializer,
    CheckoutSerializer,
    CreatedApiKeySerializer,
    VerifySerializer,
)
from apps.apikeys.services import KEY_NOTE, api_key_create, api_key_revoke, tier_checkout
from apps.apikeys.tiers import tier_get
from apps.apikeys.usage import queries_this_month
from apps.apikeys.verify import reset_at, verify
from apps.core.api import ApiView, plain_json_post, uuid_param
from apps.core.errors import FieldError
from apps.core.inputs import StrictCharField, StrictInputSerializer
from apps.core.schema import api_errors
from apps.customers.selectors import customer_get
from apps.merchants.authentication import merchant_for_request
from apps.payments.serializers import payment_session_short

TAGS = ["apiKeys"]
MAX_COST = 1_000_000
ETHEREUM_ADDRESS = r"^0x[0-9a-fA-F]{40}$"


class ApiKeyListApi(ApiView):
    # The secret is stored nowhere, not even in an idempotency record for a replay to return:
    # a retried creation issues another key (the customer and its subscription are found by
    # email, so nothing else is made twice; a key not received can be revoked from the list).
    idempotent = False

    class InputSerializer(StrictInputSerializer):
        merchantId = StrictCharField(required=False)
        customerId = serializers.UUIDField(required=False)
        organizationName = StrictCharField(
            required=False,
            min_length=2,
            max_length=200,
            error_messages={
                "min_length": "must be 2 to 200 characters",
                "max_length": "must be 2 to 200 characters",
            },
        )
        contactEmail = serializers.EmailField(
            required=False,
            max_length=320,
            error_messages={"invalid": "must be a valid email address", "max_length": "must be at most 320 characters"},
        )
        tier = StrictCharField(
            required=False,
            max_length=100,
            help_text="A tier's code (default free for a new subscription; a customer with one keeps its tier "
            "unless a higher one is asked for)",
        )

        def validate(self, attrs):
            if attrs.get("customerId"):
                if "organizationName" in attrs or "contactEmail" in attrs:
                    raise serializers.ValidationError(
                        {"customerId": "Give either customerId or organizationName and contactEmail, not both."}
                    )
                return attrs
            missing = {
                name: "is required (or give customerId)"
                for name in ("organizationName", "contactEmail")
                if not attrs.get(name)
            }
            if missing:
                raise serializers.ValidationError(missing)
            return attrs

    @api_errors(
        {
            404: "customerId names no customer of this merchant in this mode",
            422: "UNKNOWN_TIER (the tiers are named), NO_FREE_TIER, TIER_WITHOUT_QUERY_METRIC, CUSTOMER_ARCHIVED",
        }
    )
    @extend_schema(
        operation_id="api_keys_create",
        request=InputSerializer,
        responses={201: CreatedApiKeySerializer},
        tags=TAGS,
        description="A key for the customer (created, idempotently by email, when new) on its tier subscription "
        "(created when it has none). A paid tier's fee is taken from the wallet when it covers it; otherwise the "
        "key works at once on free and `payment` is the session that buys the tier. The secret is shown once.",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        customer = None
        if data.get("customerId"):
            customer = customer_get(merchant=request.merchant, customer_id=data["customerId"])
        created = api_key_create(
            merchant=request.merchant,
            customer=customer,
            organization_name=data.get("organizationName", ""),
            contact_email=data.get("contactEmail", ""),
            tier_code=data.get("tier") or None,
        )
        body = ApiKeySerializer(created.key).data
        body["apiKey"] = created.secret
        body["note"] = KEY_NOTE
        if created.payment is not None:
            body["payment"] = {k: v for k, v in payment_session_short(created.payment).items() if k != "invoiceId"}
        return Response(body, status=201)

    @extend_schema(
        operation_id="api_keys_list",
        parameters=[
            OpenApiParameter("customerId", str),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses=ApiKeySerializer(many=True),
        tags=TAGS,
    )
    def get(self, request):
        keys = api_key_list(merchant=request.merchant, customer_id=uuid_param(request, "customerId"))
        return self.paginated_response(keys, lambda rows: ApiKeySerializer(rows, many=True).data)


class ApiKeyDetailApi(ApiView):
    @api_errors({404: "API_KEY_NOT_FOUND"})
    @extend_schema(operation_id="api_keys_revoke", responses=ApiKeySerializer, tags=TAGS)
    def delete(self, request, key_id):
        key = api_key_revoke(key=api_key_get(merchant=request.merchant, key_id=key_id))
        return Response(ApiKeySerializer(key).data)


def _verify_input(data) -> tuple[str, int]:
    if not isinstance(data, dict):
        raise FieldError("body", "must be a JSON object with apiKey and cost", code="INVALID_BODY")
    unknown = [name for name in data if name not in ("apiKey", "cost", "merchantId")]
    if unknown:
        raise FieldError(unknown[0], "is not a field of this request; it takes apiKey, cost", code="UNKNOWN_FIELD")
    secret = data.get("apiKey")
    if not isinstance(secret, str) or not secret.strip():
        raise FieldError("apiKey", "is required: the key the customer sent (its X-API-Key header)", code="REQUIRED")
    if len(secret) > 200:
        raise FieldError("apiKey", "must be at most 200 characters", code="INVALID_API_KEY")
    cost = data.get("cost", 1)
    if isinstance(cost, bool) or not isinstance(cost, int) or not 0 <= cost <= MAX_COST:
        raise FieldError("cost", f"must be a whole number from 0 to {MAX_COST}", code="INVALID_COST")
    return secret.strip(), cost


def verify_body(merchant, data) -> tuple[int, dict]:
    secret, cost = _verify_input(data)
    now = datetime.now(UTC)
    answer = verify(merchant=merchant, secret=secret, cost=cost, now=now)
    remaining = None
    if answer.monthly_limit is not None and answer.used is not None:
        remaining = max(answer.monthly_limit - answer.used, 0)
    return 200, {
        "valid": answer.valid,
        "code": answer.code,
        "customerId": answer.customer_id if answer.code != "NOT_FOUND" else None,
        "subscriptionId": answer.subscription_id if answer.code != "NOT_FOUND" else None,
        "tier": answer.tier,
        "rateLimit": answer.rate_limit,
        "monthlyQueryLimit": answer.monthly_limit,
        "remaining": remaining,
        "resetAt": reset_at(answer, now),
    }


class VerifyApi(ApiView):
    """Served by plain_json_post: one Redis round trip, no database query on the common path."""

    idempotent = False
    plain_post = True

    def dispatch(self, request, *args, **kwargs):
        if request.method == "POST":
            return plain_json_post(request, verify_body, authenticate=merchant_for_request)
        return super().dispatch(request, *args, **kwargs)

    class InputSerializer(serializers.Serializer):
        apiKey = serializers.CharField(max_length=200)
        cost = serializers.IntegerField(min_value=0, max_value=MAX_COST, default=1)

    @api_errors({400: "apiKey missing, or cost not a whole number from 0 to 1,000,000"})
    @extend_schema(
        operation_id="api_keys_verify",
        request=InputSerializer,
        responses=VerifySerializer,
        tags=TAGS,
        description="May this key make this call? Always 200 for a well-formed call: the answer is in `valid` and "
        "`code`. A VALID call counts `cost` queries (0 checks without counting).",
    )
    def post(self, request):  # pragma: no cover (dispatch serves POST)
        raise AssertionError("served by plain_json_post")


class BillingUsageApi(ApiView):
    authentication_classes = [CustomerKeyAuthentication]
    throttle_classes: list = []  # (the merchant's per-key rate limit applies to merchant keys)

    @extend_schema(operation_id="billing_usage", responses=BillingUsageSerializer, tags=TAGS)
    def get(self, request):
        key = require_customer_key(request)
        used, limit = queries_this_month(key)
        return Response(
            {
                "queriesThisMonth": used,
                "monthlyLimit": limit,
                "remaining": None if limit is None else max(limit - used, 0),
            }
        )


class BillingCheckoutApi(ApiView):
    authentication_classes = [CustomerKeyAuthentication]
    throttle_classes: list = []

    class InputSerializer(StrictInputSerializer):
        planId = StrictCharField(max_length=100, help_text="A tier's code: starter, growth, ...")
        walletAddress = serializers.RegexField(
            ETHEREUM_ADDRESS,
            required=False,
            allow_blank=True,
            error_messages={"invalid": "must be an Ethereum address: 0x and 40 hexadecimal digits"},
        )
        successUrl = serializers.URLField(max_length=2000, required=False, allow_blank=True)
        cancelUrl = serializers.URLField(max_length=2000, required=False, allow_blank=True)

    @api_errors(
        {
            422: "UNKNOWN_TIER (the tiers are named), ALREADY_ON_TIER, CURRENCY_MISMATCH",
            409: "SUBSCRIPTION_ALREADY_TERMINATED, PERIOD_CLOSING (try again shortly)",
        }
    )
    @extend_schema(
        operation_id="billing_checkout",
        request=InputSerializer,
        responses=CheckoutSerializer,
        tags=TAGS,
        description="A payment session (purpose tier_change) for the prorated difference, and its hosted checkout "
        "page; paying it moves the key's subscription to the tier at once. A downgrade (nothing to pay) applies at "
        "once and answers sessionId and url null.",
    )
    def post(self, request):
        key = require_customer_key(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        tier = tier_get(merchant=request.merchant, code=data["planId"], field="planId")
        if data.get("walletAddress"):
            from apps.apikeys.services import customer_wallet_hint

            customer_wallet_hint(customer=key.customer, address=data["walletAddress"])
        checkout = tier_checkout(
            subscription=key.subscription,
            tier=tier,
            success_url=data.get("successUrl") or "",
            cancel_url=data.get("cancelUrl") or "",
        )
        session = checkout.session
        if session is None:
            return Response({"sessionId": None, "url": None, "tier": tier.code})
        return Response(
            {"sessionId": str(session.id), "url": payment_session_short(session)["checkoutUrl"], "tier": tier.code}
        )
