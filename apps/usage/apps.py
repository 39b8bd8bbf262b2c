from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "apps.usage"
    label = "usage"

    def ready(self):
        from apps.catalog import hooks
        from apps.usage.selectors import metric_has_usage, price_has_usage

        hooks.register_price_usage_check(price_has_usage)
        hooks.register_metric_usage_check(metric_has_usage)
