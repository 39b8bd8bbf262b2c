from django.urls import path

from apps.portal import payment_methods, views

urlpatterns = [
    path("open/<str:token>", views.portal_open, name="portal-open"),
    path("", views.overview, name="portal"),
    path("usage", views.usage, name="portal-usage"),
    path("usage.csv", views.usage_csv, name="portal-usage-csv"),
    path("usage/chart.svg", views.usage_chart, name="portal-usage-chart"),
    path("invoices", views.invoices, name="portal-invoices"),
    path("invoices/<uuid:invoice_id>/pdf", views.invoice_pdf, name="portal-invoice-pdf"),
    path("invoices/<uuid:invoice_id>/pay", views.invoice_pay, name="portal-invoice-pay"),
    path("top-up", views.topup, name="portal-topup"),
    path("payment-methods", payment_methods.payment_methods, name="portal-payment-methods"),
    path("payment-methods/new", payment_methods.payment_method_add, name="portal-payment-method-add"),
    path(
        "payment-methods/<uuid:card_id>/default",
        payment_methods.payment_method_make_default,
        name="portal-payment-method-default",
    ),
    path(
        "payment-methods/<uuid:card_id>/remove",
        payment_methods.payment_method_remove_view,
        name="portal-payment-method-remove",
    ),
    path("keys", views.keys, name="portal-keys"),
    path("keys/upgrade", views.keys_upgrade, name="portal-keys-upgrade"),
    path("keys/<uuid:key_id>/revoke", views.key_revoke, name="portal-key-revoke"),
    path("disputes", views.disputes, name="portal-disputes"),
    path("sign-out", views.portal_sign_out, name="portal-sign-out"),
]
