from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.inputs import StrictCharField, StrictInputSerializer
from apps.webhooks.selectors import webhook_delivery_list, webhook_endpoint_get, webhook_endpoint_list
from apps.webhooks.serializers import DeliverySerializer, WebhookEndpointCreatedSerializer, WebhookEndpointSerializer
from apps.webhooks.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_test,
    webhook_endpoint_update,
)

TAGS = ["webhooks"]


class _EventsField(serializers.ListField):
    child = serializers.CharField()


class WebhookEndpointListApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        url = StrictCharField(max_length=2000)
        events = _EventsField(help_text='Event types, or ["*"] for all.')
        description = StrictCharField(max_length=500, required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=InputSerializer,
        responses={201: WebhookEndpointCreatedSerializer},
        tags=TAGS,
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        endpoint = webhook_endpoint_create(
            merchant=request.merchant, url=data["url"], events=data["events"], description=data["description"]
        )
        return Response(WebhookEndpointCreatedSerializer(endpoint).data, status=201)

    @extend_schema(
        operation_id="webhook_endpoints_list",
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses=WebhookEndpointSerializer(many=True),
        tags=TAGS,
    )
    def get(self, request):
        queryset = webhook_endpoint_list(merchant=request.merchant)
        return self.paginated_response(queryset, lambda rows: WebhookEndpointSerializer(rows, many=True).data)


class WebhookEndpointDetailApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        url = StrictCharField(max_length=2000, required=False)
        events = _EventsField(required=False)
        description = StrictCharField(max_length=500, required=False, allow_blank=True)
        enabled = serializers.BooleanField(required=False, help_text="true re-enables a disabled endpoint.")

    @extend_schema(operation_id="webhook_endpoints_get", responses=WebhookEndpointSerializer, tags=TAGS)
    def get(self, request, endpoint_id):
        endpoint = webhook_endpoint_get(merchant=request.merchant, endpoint_id=endpoint_id)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhook_endpoints_update",
        request=InputSerializer,
        responses=WebhookEndpointSerializer,
        tags=TAGS,
    )
    def patch(self, request, endpoint_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_get(merchant=request.merchant, endpoint_id=endpoint_id)
        endpoint = webhook_endpoint_update(endpoint=endpoint, **serializer.validated_data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(operation_id="webhook_endpoints_delete", responses=WebhookEndpointSerializer, tags=TAGS)
    def delete(self, request, endpoint_id):
        endpoint = webhook_endpoint_get(merchant=request.merchant, endpoint_id=endpoint_id)
        answer = WebhookEndpointSerializer(endpoint).data
        webhook_endpoint_delete(endpoint=endpoint)
        return Response(answer)


class WebhookDeliveryListApi(ApiView):
    @extend_schema(
        operation_id="webhook_endpoints_deliveries",
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses=DeliverySerializer(many=True),
        tags=TAGS,
    )
    def get(self, request, endpoint_id):
        endpoint = webhook_endpoint_get(merchant=request.merchant, endpoint_id=endpoint_id)
        queryset = webhook_delivery_list(merchant=request.merchant, endpoint=endpoint)
        return self.paginated_response(queryset, lambda rows: DeliverySerializer(rows, many=True).data)


class WebhookEndpointTestApi(ApiView):
    @extend_schema(
        operation_id="webhook_endpoints_test",
        request=None,
        responses={201: DeliverySerializer},
        tags=TAGS,
        description="Queues a signed `webhook.test` event for this endpoint alone, sent within a second; "
        "its outcome is in the endpoint's deliveries.",
    )
    def post(self, request, endpoint_id):
        endpoint = webhook_endpoint_get(merchant=request.merchant, endpoint_id=endpoint_id)
        delivery = webhook_endpoint_test(endpoint=endpoint)
        return Response(DeliverySerializer(delivery).data, status=201)
