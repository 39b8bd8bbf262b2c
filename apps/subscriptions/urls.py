from django.urls import path

from apps.subscriptions.apis import (
    CustomerTopupApi,
    SubscriptionDetailApi,
    SubscriptionListApi,
    SubscriptionTerminationApi,
    TestHelperPaySessionApi,
)

urlpatterns = [
    path("subscriptions", SubscriptionListApi.as_view(), name="subscriptions"),
    path("subscriptions/<uuid:subscription_id>", SubscriptionDetailApi.as_view(), name="subscription"),
    path(
        "subscriptions/<uuid:subscription_id>/termination",
        SubscriptionTerminationApi.as_view(),
        name="subscription-termination",
    ),
    path("customers/<uuid:customer_id>/topups", CustomerTopupApi.as_view(), name="customer-topups"),
    path(
        "testHelpers/paymentSessions/<uuid:session_id>/pay",
        TestHelperPaySessionApi.as_view(),
        name="test-helpers-pay-session",
    ),
]
