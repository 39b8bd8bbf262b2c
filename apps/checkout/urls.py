from django.urls import path

from apps.checkout.card import checkout_card_confirm, checkout_card_pay, checkout_card_setup
from apps.checkout.views import checkout_page, checkout_test_payment

urlpatterns = [
    path("<uuid:session_id>", checkout_page, name="checkout"),
    path("<uuid:session_id>/test-payment", checkout_test_payment, name="checkout-test-payment"),
    path("<uuid:session_id>/card/setup", checkout_card_setup, name="checkout-card-setup"),
    path("<uuid:session_id>/card/pay", checkout_card_pay, name="checkout-card-pay"),
    path("<uuid:session_id>/card/confirm", checkout_card_confirm, name="checkout-card-confirm"),
]
