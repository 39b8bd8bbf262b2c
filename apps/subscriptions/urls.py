from django.urls import path

from apps.subscriptions.apis import SubscriptionDetailApi, SubscriptionListApi, SubscriptionTerminationApi

urlpatterns = [
    path("subscriptions", SubscriptionListApi.as_view(), name="subscriptions"),
    path("subscriptions/<uuid:subscription_id>", SubscriptionDetailApi.as_view(), name="subscription"),
    path(
        "subscriptions/<uuid:subscription_id>/termination",
        SubscriptionTerminationApi.as_view(),
        name="subscription-termination",
    ),
]
