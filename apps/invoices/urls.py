from django.urls import path

from apps.invoices.apis import InvoiceDetailApi, InvoiceListApi, InvoicePayApi, InvoiceVoidApi
from apps.invoices.pdf_apis import InvoicePdfApi

urlpatterns = [
    path("invoices", InvoiceListApi.as_view(), name="invoices"),
    path("invoices/<uuid:invoice_id>", InvoiceDetailApi.as_view(), name="invoice"),
    path("invoices/<uuid:invoice_id>/pay", InvoicePayApi.as_view(), name="invoice-pay"),
    path("invoices/<uuid:invoice_id>/void", InvoiceVoidApi.as_view(), name="invoice-void"),
    path("invoices/<uuid:invoice_id>/pdf", InvoicePdfApi.as_view(), name="invoice-pdf"),
]
