from django.urls import path

from apps.settlements.apis import (
    ChainListApi,
    SettlementDetailApi,
    SettlementListApi,
    WalletAddressDetailApi,
    WalletAddressListApi,
)

urlpatterns = [
    path("chains", ChainListApi.as_view(), name="chains"),
    path("settlements", SettlementListApi.as_view(), name="settlements"),
    path("settlements/<uuid:settlement_id>", SettlementDetailApi.as_view(), name="settlement"),
    path(
        "customers/<uuid:customer_id>/walletAddresses", WalletAddressListApi.as_view(), name="customer-wallet-addresses"
    ),
    path(
        "customers/<uuid:customer_id>/walletAddresses/<str:address>",
        WalletAddressDetailApi.as_view(),
        name="customer-wallet-address",
    ),
]
