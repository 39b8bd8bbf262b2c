from django.urls import path

from apps.ledger.apis import CustomerAdjustmentListApi

urlpatterns = [
    path("customers/<uuid:customer_id>/adjustments", CustomerAdjustmentListApi.as_view(), name="customer-adjustments"),
]
