from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "apps.customers"
    label = "customers"

    def ready(self):
        from apps.customers.low_balance import low_balance_follow_up
        from apps.ledger import hooks as ledger_hooks

        ledger_hooks.register_posting_follow_up(low_balance_follow_up)
