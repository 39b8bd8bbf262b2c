from django.apps import AppConfig


class EntitlementsConfig(AppConfig):
    name = "apps.entitlements"
    label = "entitlements"
