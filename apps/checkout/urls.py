from django.urls import path

from apps.checkout.views import checkout_page, checkout_test_payment

urlpatterns = [
    path("<uuid:session_id>", checkout_page, name="checkout"),
    path("<uuid:session_id>/test-payment", checkout_test_payment, name="checkout-test-payment"),
]
