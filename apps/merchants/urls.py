from django.urls import path

from apps.merchants.apis import MerchantMeApi

urlpatterns = [
    path("merchants/me", MerchantMeApi.as_view(), name="merchants-me"),
]
