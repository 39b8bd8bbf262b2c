from django.apps import AppConfig


class CardsConfig(AppConfig):
    """Stripe as the card processor: its configuration per mode, its client, the inbound
    webhook inbox. What Stripe captured reaches the ledger through the payments service."""

    name = "apps.cards"
    label = "cards"
