from django.apps import AppConfig


class CardsConfig(AppConfig):
    """Stripe as the card processor: its configuration per mode, its client, the inbound
    webhook inbox. What Stripe captured reaches the ledger through the payments service."""

    name = "apps.cards"
    label = "cards"

    def ready(self):
        from apps.cards.services.auto_recharge import auto_recharge_enqueue
        from apps.cards.services.payment_methods import register_setup_purpose
        from apps.customers import hooks as customer_hooks

        register_setup_purpose()
        customer_hooks.on_auto_recharge_due(auto_recharge_enqueue)
