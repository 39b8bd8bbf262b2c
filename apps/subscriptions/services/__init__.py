from apps.subscriptions.services.subscriptions import subscription_create, subscription_terminate

__all__ = ["subscription_create", "subscription_terminate"]
