from django.urls import path

from apps.checkout.card import checkout_card_confirm, checkout_card_pay, checkout_card_setup
from apps.checkout.usdc import checkout_usdc_proof, checkout_usdc_settle, checkout_usdc_status
from apps.checkout.views import checkout_page, checkout_test_payment

urlpatterns = [
    path("<uuid:session_id>", checkout_page, name="checkout"),
    path("<uuid:session_id>/test-payment", checkout_test_payment, name="checkout-test-payment"),
    path("<uuid:session_id>/card/setup", checkout_card_setup, name="checkout-card-setup"),
    path("<uuid:session_id>/card/pay", checkout_card_pay, name="checkout-card-pay"),
    path("<uuid:session_id>/card/confirm", checkout_card_confirm, name="checkout-card-confirm"),
    path("<uuid:session_id>/usdc/proof", checkout_usdc_proof, name="checkout-usdc-proof"),
    path("<uuid:session_id>/usdc/settlement", checkout_usdc_settle, name="checkout-usdc-settle"),
    path(
        "<uuid:session_id>/usdc/settlements/<uuid:settlement_id>",
        checkout_usdc_status,
        name="checkout-usdc-status",
    ),
]
