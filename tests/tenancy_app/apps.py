from django.apps import AppConfig


class TenancyAppConfig(AppConfig):
    name = "tests.tenancy_app"
    label = "tenancy_app"
