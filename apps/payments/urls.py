from django.urls import path

from apps.payments.apis import CustomerAdjustmentListApi, CustomerTopupApi, TestHelperPaySessionApi

urlpatterns = [
    path("customers/<uuid:customer_id>/topups", CustomerTopupApi.as_view(), name="customer-topups"),
    path("customers/<uuid:customer_id>/adjustments", CustomerAdjustmentListApi.as_view(), name="customer-adjustments"),
    path(
        "testHelpers/paymentSessions/<uuid:session_id>/pay",
        TestHelperPaySessionApi.as_view(),
        name="test-helpers-pay-session",
    ),
]
