from django.urls import path

from apps.customers.apis import CustomerDetailApi, CustomerListApi

urlpatterns = [
    path("customers", CustomerListApi.as_view(), name="customers"),
    path("customers/<str:customer_id>", CustomerDetailApi.as_view(), name="customer-detail"),
]
