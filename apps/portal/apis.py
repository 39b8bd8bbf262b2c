"""POST /v0/subscriptions/{id}/portal: a single-use link to the customer's hosted portal."""

from datetime import timedelta

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.inputs import DurationInputField, StrictInputSerializer
from apps.core.schema import api_errors
from apps.portal.services import portal_link_create
from apps.subscriptions.selectors import subscription_get

DEFAULT_EXPIRES_IN = timedelta(minutes=15)
MAX_EXPIRES_IN = timedelta(hours=24)

PORTAL_RESPONSE = inline_serializer(
    "SubscriptionPortal",
    fields={
        "object": serializers.CharField(help_text="subscriptionPortal"),
        "url": serializers.URLField(help_text="Opens the hosted portal once."),
        "expiresAt": serializers.DateTimeField(),
    },
)


class SubscriptionPortalApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        expiresIn = DurationInputField(
            required=False, allow_null=True, minimum=timedelta(seconds=1), maximum=MAX_EXPIRES_IN
        )

    @api_errors({404: "the subscription is not one of this merchant's in this mode"})
    @extend_schema(
        operation_id="subscriptions_portal",
        request=InputSerializer,
        responses={201: PORTAL_RESPONSE},
        tags=["subscriptions"],
        description="A link that opens the subscription's customer's hosted portal once, until `expiresAt` "
        "(`expiresIn`: seconds or an ISO 8601 duration; absent or null: 15 minutes; at most 24 hours).",
    )
    def post(self, request, subscription_id):
        subscription = subscription_get(merchant=request.merchant, subscription_id=subscription_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = portal_link_create(
            merchant=request.merchant,
            subscription=subscription,
            expires_in=serializer.validated_data.get("expiresIn") or DEFAULT_EXPIRES_IN,
        )
        return Response(
            {
                "object": "subscriptionPortal",
                "url": issued.url,
                "expiresAt": serializers.DateTimeField().to_representation(issued.link.expires_at),
            },
            status=201,
        )
