from django.urls import path

from apps.apikeys.apis import ApiKeyDetailApi, ApiKeyListApi, BillingCheckoutApi, BillingUsageApi, VerifyApi

urlpatterns: list = [
    path("apiKeys/verify", VerifyApi.as_view(), name="api-keys-verify"),  # (first: the hot path)
    path("billing/apiKeys", ApiKeyListApi.as_view(), name="api-keys"),
    path("billing/apiKeys/<uuid:key_id>", ApiKeyDetailApi.as_view(), name="api-key"),
    path("billing/usage", BillingUsageApi.as_view(), name="billing-usage"),
    path("billing/checkout", BillingCheckoutApi.as_view(), name="billing-checkout"),
]
