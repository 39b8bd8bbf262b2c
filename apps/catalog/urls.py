from django.urls import path

from apps.catalog.apis import (
    BillableMetricDetailApi,
    BillableMetricListApi,
    PlanDetailApi,
    PlanListApi,
    PriceDetailApi,
    PriceListApi,
    ProductDetailApi,
    ProductListApi,
)

urlpatterns = [
    path("products", ProductListApi.as_view(), name="products"),
    path("products/<str:product_id>", ProductDetailApi.as_view(), name="product-detail"),
    path("billableMetrics", BillableMetricListApi.as_view(), name="billable-metrics"),
    path("billableMetrics/<str:metric_id>", BillableMetricDetailApi.as_view(), name="billable-metric-detail"),
    path("prices", PriceListApi.as_view(), name="prices"),
    path("prices/<str:price_id>", PriceDetailApi.as_view(), name="price-detail"),
    path("plans", PlanListApi.as_view(), name="plans"),
    path("plans/<str:plan_id>", PlanDetailApi.as_view(), name="plan-detail"),
]
