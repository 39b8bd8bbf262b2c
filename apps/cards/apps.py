from django.apps import AppConfig


class CardsConfig(AppConfig):
    """Stripe as the card processor: its configuration per mode, its client, the inbound
    webhook inbox. What Stripe captured reaches the ledger through the payments service."""

    name = "apps.cards"
    label = "cards"

    def ready(self):
        from apps.cards.services.auto_recharge import auto_recharge_follow_up
        from apps.cards.services.payment_methods import register_setup_purpose
        from apps.ledger import hooks as ledger_hooks

        register_setup_purpose()
        ledger_hooks.register_posting_follow_up(auto_recharge_follow_up)
