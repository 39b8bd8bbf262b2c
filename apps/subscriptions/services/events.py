"""The subscription's webhook events, each published in the transaction of its change with the
subscription in its API shape:

- subscription.created: by subscription_create;
- subscription.activated: when it becomes active, at creation when nothing is due, or when its
  activation session is paid in full (apps.subscriptions.purposes);
- subscription.updated: a change of what the API shows other than those above and the end (a
  plan change publishes it; nothing else changes a subscription yet);
- subscription.terminated: by subscription_terminate.
"""

from apps.subscriptions.models import Subscription
from apps.subscriptions.serializers import SubscriptionSerializer
from apps.webhooks.outbox import publish

SUBSCRIPTION_EVENTS = (
    "subscription.created",
    "subscription.activated",
    "subscription.updated",
    "subscription.terminated",
)


def subscription_publish(*, subscription: Subscription, type: str) -> None:
    """Publish `type` for the subscription as it now is (inside the transaction of the change)."""
    if type not in SUBSCRIPTION_EVENTS:
        raise ValueError(f"not a subscription event: {type!r}")
    publish(merchant=subscription.merchant, type=type, data=SubscriptionSerializer(subscription).data)
