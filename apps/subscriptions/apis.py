from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.catalog.selectors import plan_get
from apps.core.api import ApiView, check_merchant_id, choice_param, uuid_param
from apps.core.inputs import AmountInputField, StrictCharField, StrictInputSerializer
from apps.core.schema import api_errors
from apps.customers.apis import CustomerListApi
from apps.customers.inputs import customer_fields_from_input
from apps.customers.selectors import customer_get
from apps.customers.services import customer_create
from apps.subscriptions.models import Subscription
from apps.subscriptions.selectors import subscription_get, subscription_list
from apps.subscriptions.serializers import SubscriptionSerializer
from apps.subscriptions.services import subscription_change_plan, subscription_create, subscription_terminate

TAGS = ["subscriptions"]


class RedirectUrlsInput(StrictInputSerializer):
    onSuccess = serializers.URLField(max_length=2000, required=False, allow_blank=True)
    onFailure = serializers.URLField(max_length=2000, required=False, allow_blank=True)


class InlineCustomerInput(CustomerListApi.InputSerializer):
    """The body of POST /v0/customers, to create (or find by email) the customer inline."""


class SubscriptionListApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        merchantId = StrictCharField(required=False)
        customerId = serializers.UUIDField(required=False)
        customer = InlineCustomerInput(required=False)
        planId = serializers.UUIDField()
        name = StrictCharField(max_length=200, required=False, allow_blank=True)
        startedAt = serializers.DateTimeField(required=False)
        prefundAmount = AmountInputField(required=False, allow_null=True, minimum=0)
        minimumAccountBalance = AmountInputField(required=False)
        redirectUrls = RedirectUrlsInput(required=False)

        def validate(self, attrs):
            if bool(attrs.get("customerId")) == bool(attrs.get("customer")):
                raise serializers.ValidationError(
                    {"customerId": "Give either customerId or an inline customer, not both and not neither."}
                )
            started = attrs.get("startedAt")
            if started and started > timezone.now():
                raise serializers.ValidationError({"startedAt": "must not be in the future"})
            return attrs

    @api_errors(
        {
            404: "customerId or planId names no customer or plan of this merchant in this mode",
            409: "CUSTOMER_EMAIL_CONTENDED: the inline customer's email was created and archived concurrently",
            422: "CUSTOMER_ARCHIVED: an archived customer cannot subscribe",
        }
    )
    @extend_schema(
        operation_id="subscriptions_create",
        request=InputSerializer,
        responses={201: SubscriptionSerializer},
        tags=TAGS,
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        plan = plan_get(merchant=request.merchant, id=data["planId"], field="planId")
        if data.get("customerId"):
            customer = customer_get(merchant=request.merchant, customer_id=data["customerId"])
        else:
            inline = data["customer"]
            check_merchant_id(request.merchant, inline.get("merchantId"))
            customer, _ = customer_create(merchant=request.merchant, **customer_fields_from_input(inline))
        redirects = data.get("redirectUrls") or {}
        subscription = subscription_create(
            merchant=request.merchant,
            customer=customer,
            plan=plan,
            name=data.get("name") or "",
            started_at=data.get("startedAt"),
            prefund_amount=data.get("prefundAmount"),
            minimum_account_balance=data.get("minimumAccountBalance") or Decimal("0"),
            success_url=redirects.get("onSuccess") or "",
            failure_url=redirects.get("onFailure") or "",
        )
        return Response(SubscriptionSerializer(subscription).data, status=201)

    @extend_schema(
        operation_id="subscriptions_list",
        parameters=[
            OpenApiParameter("customerId", str),
            OpenApiParameter("planId", str),
            OpenApiParameter("status", str, enum=[s for s, _ in Subscription.Status.choices]),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses=SubscriptionSerializer(many=True),
        tags=TAGS,
    )
    def get(self, request):
        filters = {
            "customer_id": uuid_param(request, "customerId"),
            "plan_id": uuid_param(request, "planId"),
            "status": choice_param(request, "status", Subscription.Status.values),
        }
        queryset = subscription_list(merchant=request.merchant, filters=filters)
        return self.paginated_response(queryset, lambda rows: SubscriptionSerializer(rows, many=True).data)


class SubscriptionDetailApi(ApiView):
    class ChangeInput(StrictInputSerializer):
        planId = serializers.UUIDField()
        effective = serializers.ChoiceField(choices=["now", "period_end"], default="now")

    @extend_schema(operation_id="subscriptions_get", responses=SubscriptionSerializer, tags=TAGS)
    def get(self, request, subscription_id):
        subscription = subscription_get(merchant=request.merchant, subscription_id=subscription_id)
        return Response(SubscriptionSerializer(subscription).data)

    @api_errors(
        {
            404: "the subscription, or planId, names none of this merchant in this mode",
            409: "SUBSCRIPTION_ALREADY_TERMINATED, SUBSCRIPTION_NOT_ACTIVE (waiting for its activation payment), "
            "PERIOD_CLOSING (its period ended a moment ago and is being closed: try again shortly)",
            422: "CURRENCY_MISMATCH: the plan is in another currency; PLAN_UNCHANGED: already on that plan",
        }
    )
    @extend_schema(
        operation_id="subscriptions_change_plan",
        request=ChangeInput,
        responses=SubscriptionSerializer,
        tags=TAGS,
        description="A plan change. `now`: the current period closes at this instant and is invoiced (kind "
        "change), the unused share of its paid in-advance fees goes back to the wallet, and the new plan's "
        "in-advance fees are invoiced for what is left of the period (shares exact to the second, rounded "
        "half-even). `period_end`: the change is scheduled for the current period's end (`scheduledPlanId`).",
    )
    def patch(self, request, subscription_id):
        subscription = subscription_get(merchant=request.merchant, subscription_id=subscription_id)
        serializer = self.ChangeInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        plan = plan_get(merchant=request.merchant, id=data["planId"], field="planId")
        subscription = subscription_change_plan(
            merchant=request.merchant, subscription=subscription, plan=plan, effective=data["effective"]
        )
        return Response(SubscriptionSerializer(subscription).data)


class SubscriptionTerminationApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        reason = StrictCharField(max_length=500, required=False, allow_blank=True)

    @api_errors({409: "SUBSCRIPTION_ALREADY_TERMINATED"})
    @extend_schema(
        operation_id="subscriptions_terminate", request=InputSerializer, responses=SubscriptionSerializer, tags=TAGS
    )
    def post(self, request, subscription_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription = subscription_get(merchant=request.merchant, subscription_id=subscription_id)
        subscription = subscription_terminate(
            merchant=request.merchant, subscription=subscription, reason=serializer.validated_data.get("reason", "")
        )
        return Response(SubscriptionSerializer(subscription).data)
