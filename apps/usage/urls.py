from django.urls import path

from apps.usage.apis import (
    BillableMetricMeterApi,
    DisputeAcceptApi,
    DisputeDeclineApi,
    DisputeDetailApi,
    DisputeListApi,
    UsageApi,
    UsageBatchApi,
    UsageDetailApi,
)

urlpatterns: list = [
    path("billableMetrics/<uuid:metric_id>/meter", BillableMetricMeterApi.as_view(), name="billable-metric-meter"),
    path("usage", UsageApi.as_view(), name="usage"),
    path("usage/batch", UsageBatchApi.as_view(), name="usage-batch"),
    path("usage/<uuid:event_id>", UsageDetailApi.as_view(), name="usage-event"),
    path("disputes", DisputeListApi.as_view(), name="disputes"),
    path("disputes/<uuid:dispute_id>", DisputeDetailApi.as_view(), name="dispute"),
    path("disputes/<uuid:dispute_id>/accept", DisputeAcceptApi.as_view(), name="dispute-accept"),
    path("disputes/<uuid:dispute_id>/decline", DisputeDeclineApi.as_view(), name="dispute-decline"),
]
