from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "apps.subscriptions"
    label = "subscriptions"

    def ready(self):
        from apps.catalog import hooks as catalog_hooks
        from apps.customers import hooks as customer_hooks
        from apps.subscriptions.purposes import register_purposes
        from apps.subscriptions.selectors import plan_live_subscription_count, refuse_archiving_a_billed_customer

        register_purposes()
        catalog_hooks.register_plan_subscription_count(plan_live_subscription_count)
        customer_hooks.register_archive_guard(refuse_archiving_a_billed_customer)
