from django.apps import AppConfig


class SettlementsConfig(AppConfig):
    name = "apps.settlements"
    label = "settlements"
