from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "apps.payments"
    label = "payments"

    def ready(self):
        from apps.payments.purposes import register_own_purposes

        register_own_purposes()
