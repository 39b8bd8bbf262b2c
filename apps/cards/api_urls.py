from django.urls import path

from apps.cards.apis import CustomerPaymentMethodDetailApi, CustomerPaymentMethodListApi

urlpatterns = [
    path(
        "customers/<uuid:customer_id>/paymentMethods",
        CustomerPaymentMethodListApi.as_view(),
        name="customer-payment-methods",
    ),
    path(
        "customers/<uuid:customer_id>/paymentMethods/<str:payment_method_id>",
        CustomerPaymentMethodDetailApi.as_view(),
        name="customer-payment-method",
    ),
]
