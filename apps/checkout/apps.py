from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    """The hosted checkout: a face, like the portal. It reads sessions and calls the payments
    service; no domain app imports it."""

    name = "apps.checkout"
    label = "checkout"
