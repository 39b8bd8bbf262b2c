from django.apps import AppConfig


class InvoicesConfig(AppConfig):
    name = "apps.invoices"
    label = "invoices"

    def ready(self):
        from apps.invoices.hooks import register

        register()
