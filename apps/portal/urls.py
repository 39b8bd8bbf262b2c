from django.urls import path

from apps.portal.apis import SubscriptionPortalApi

urlpatterns = [
    path("subscriptions/<uuid:subscription_id>/portal", SubscriptionPortalApi.as_view(), name="subscription-portal"),
]
