from django.apps import AppConfig


class CardsConfig(AppConfig):
    """Stripe as the card processor: its configuration per mode, its client, the inbound
    webhook inbox. What Stripe captured reaches the ledger through the payments service."""

    name = "apps.cards"
    label = "cards"

    def ready(self):
        from apps.cards.services.payment_methods import register_setup_purpose

        register_setup_purpose()
