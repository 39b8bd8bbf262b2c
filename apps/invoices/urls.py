from django.urls import path

from apps.invoices.apis import InvoiceDetailApi, InvoiceListApi, InvoicePayApi, InvoiceVoidApi

urlpatterns = [
    path("invoices", InvoiceListApi.as_view(), name="invoices"),
    path("invoices/<uuid:invoice_id>", InvoiceDetailApi.as_view(), name="invoice"),
    path("invoices/<uuid:invoice_id>/pay", InvoicePayApi.as_view(), name="invoice-pay"),
    path("invoices/<uuid:invoice_id>/void", InvoiceVoidApi.as_view(), name="invoice-void"),
]
