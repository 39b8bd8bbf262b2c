from django.urls import path

from apps.webhooks.apis import (
    WebhookDeliveryListApi,
    WebhookEndpointDetailApi,
    WebhookEndpointListApi,
    WebhookEndpointTestApi,
)

urlpatterns = [
    path("webhookEndpoints", WebhookEndpointListApi.as_view(), name="webhook-endpoints"),
    path("webhookEndpoints/<uuid:endpoint_id>", WebhookEndpointDetailApi.as_view(), name="webhook-endpoint"),
    path(
        "webhookEndpoints/<uuid:endpoint_id>/deliveries",
        WebhookDeliveryListApi.as_view(),
        name="webhook-endpoint-deliveries",
    ),
    path("webhookEndpoints/<uuid:endpoint_id>/test", WebhookEndpointTestApi.as_view(), name="webhook-endpoint-test"),
]
