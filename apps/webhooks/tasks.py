from celery import shared_task

from apps.core.jobs import job_lock
from apps.webhooks.delivery import RELAY_BATCH, dispatch_due, relay_events


@shared_task
def relay_webhook_events() -> int:
    """Relay what is committed (rows are claimed with SKIP LOCKED: runs may overlap), then send."""
    relayed = 0
    while True:
        count = relay_events()
        relayed += count
        if count < RELAY_BATCH:
            break
    if relayed:
        dispatch_webhooks.delay()
    return relayed


@shared_task
def dispatch_webhooks() -> int:
    """Send due deliveries (endpoints are leased: runs may overlap without sending twice)."""
    return dispatch_due()


@shared_task
def relay_and_dispatch_webhooks() -> int:
    """Beat's every-second sweep: what a lost wake-up left behind, and retries come due."""
    with job_lock("webhooks-sweep") as acquired:
        if not acquired:
            return 0
        while relay_events() == RELAY_BATCH:
            pass
    return dispatch_due()
