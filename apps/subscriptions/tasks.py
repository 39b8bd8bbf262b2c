"""Period close on Celery: beat finds the subscriptions with a period move due and enqueues one
task per subscription (its id only); each task makes that subscription's due moves
(apps.subscriptions.services.periods), safe to run twice or at once."""

from celery import shared_task

from apps.subscriptions.services import due_subscription_ids, periods_advance


@shared_task
def advance_due_periods() -> int:
    """Beat: enqueue `advance_periods` for every subscription with a period move due."""
    ids = due_subscription_ids()
    for subscription_id in ids:
        advance_periods.delay(str(subscription_id))
    return len(ids)


@shared_task
def advance_periods(subscription_id: str) -> int:
    return periods_advance(subscription_id=subscription_id)
