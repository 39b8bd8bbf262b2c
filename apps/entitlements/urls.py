from django.urls import path

from apps.entitlements.apis import ActiveEntitlementsApi, EntitlementDetailApi, EntitlementListApi

urlpatterns = [
    path("entitlements", EntitlementListApi.as_view(), name="entitlements"),
    path("entitlements/activeEntitlements", ActiveEntitlementsApi.as_view(), name="entitlements-active"),
    path("entitlements/<uuid:entitlement_id>", EntitlementDetailApi.as_view(), name="entitlement"),
]
