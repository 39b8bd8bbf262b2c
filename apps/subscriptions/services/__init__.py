from apps.subscriptions.services.periods import due_subscription_ids, periods_advance, periods_advance_many
from apps.subscriptions.services.subscriptions import (
    subscription_change_plan,
    subscription_create,
    subscription_terminate,
)

__all__ = [
    "due_subscription_ids",
    "periods_advance",
    "periods_advance_many",
    "subscription_change_plan",
    "subscription_create",
    "subscription_terminate",
]
