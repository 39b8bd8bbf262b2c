from django.apps import AppConfig
from django.db.models.signals import post_migrate


class MerchantsConfig(AppConfig):
    name = "apps.merchants"
    label = "merchants"

    def ready(self):
        from apps.merchants import schema  # noqa: F401  registers the OpenAPI security scheme
        from apps.merchants.permissions import sync_after_migrate

        # Django's own mechanism for permissions (it creates them on post_migrate too).
        post_migrate.connect(sync_after_migrate, sender=self, dispatch_uid="merchant-staff-group")
