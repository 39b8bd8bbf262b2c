from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "apps.subscriptions"
    label = "subscriptions"

    def ready(self):
        from apps.subscriptions.purposes import register_purposes

        register_purposes()
