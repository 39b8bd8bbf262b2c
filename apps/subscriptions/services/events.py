"""The subscription's webhook events, each published in the transaction of its change with the
subscription in its API shape:

- subscription.created: by subscription_create;
- subscription.activated: when it becomes active, at creation when nothing is due, or when its
  activation session is paid in full (apps.subscriptions.purposes);
- subscription.updated: a change of what the API shows other than those above and the end (a
  past_due subscription whose overdue invoices are paid, back to active; later a plan change);
- subscription.past_due: an invoice of it went unpaid past its due date (apps.invoices dunning);
- subscription.terminated: by subscription_terminate.
"""

from apps.subscriptions.hooks import subscription_changed
from apps.subscriptions.models import Subscription
from apps.subscriptions.serializers import SubscriptionSerializer
from apps.webhooks.outbox import publish

SUBSCRIPTION_EVENTS = (
    "subscription.created",
    "subscription.activated",
    "subscription.updated",
    "subscription.past_due",
    "subscription.terminated",
)


def subscription_publish(*, subscription: Subscription, type: str) -> None:
    """Publish `type` for the subscription as it now is (inside the transaction of the change)."""
    if type not in SUBSCRIPTION_EVENTS:
        raise ValueError(f"not a subscription event: {type!r}")
    publish(merchant=subscription.merchant, type=type, data=SubscriptionSerializer(subscription).data)
    subscription_changed(subscription)


def subscription_mark_past_due(*, subscription_id) -> Subscription | None:
    """An invoice of the (active) subscription went unpaid past its due date: past_due
    (subscription.past_due). Usage is still charged to it within its minimum balance."""
    subscription = _locked(subscription_id)
    if subscription.status != Subscription.Status.ACTIVE:
        return None
    subscription.status = Subscription.Status.PAST_DUE
    subscription.save(update_fields=["status", "updated_at"])
    subscription_publish(subscription=subscription, type="subscription.past_due")
    return subscription


def subscription_mark_current(*, subscription_id) -> Subscription | None:
    """What made the subscription past_due is paid: active again (subscription.updated)."""
    subscription = _locked(subscription_id)
    if subscription.status != Subscription.Status.PAST_DUE:
        return None
    subscription.status = Subscription.Status.ACTIVE
    subscription.save(update_fields=["status", "updated_at"])
    subscription_publish(subscription=subscription, type="subscription.updated")
    return subscription


def _locked(subscription_id) -> Subscription:
    return (
        Subscription.objects.select_for_update(no_key=True, of=("self",))
        .select_related("merchant", "wallet", "plan")
        .get(pk=subscription_id)
    )
