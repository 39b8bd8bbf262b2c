from celery import shared_task

from apps.cards.services.inbox import stripe_event_process, stripe_events_stuck
from apps.core.jobs import job_lock


@shared_task
def process_stripe_event(event_id: str) -> str:
    return stripe_event_process(event_id=event_id)


@shared_task
def retry_stuck_stripe_events() -> int:
    """Beat: process again the events still received a while after they arrived."""
    with job_lock("stripe-inbox-retry") as acquired:
        if not acquired:
            return 0
        stuck = stripe_events_stuck()
    for event_id in stuck:
        process_stripe_event.delay(str(event_id))
    return len(stuck)


@shared_task
def resolve_card_attempts() -> int:
    """Beat: settle card attempts a crash left in flight, from their PaymentIntents."""
    from apps.cards.services.charges import card_attempts_resolve

    with job_lock("card-attempts-resolve") as acquired:
        if not acquired:
            return 0
        return card_attempts_resolve()


@shared_task
def resume_auto_recharges() -> int:
    """Beat: enqueue again the auto-recharges a lost message or a stopped worker left behind."""
    from apps.cards.services.auto_recharge import auto_recharges_left_behind

    with job_lock("auto-recharges-resume") as acquired:
        if not acquired:
            return 0
        left = auto_recharges_left_behind()
    for settings_id in left:
        auto_recharge.delay(str(settings_id))
    return len(left)


@shared_task
def auto_recharge(settings_id: str) -> str:
    """After a posting took a wallet below its auto-recharge threshold: charge the saved card once."""
    from apps.cards.services.auto_recharge import auto_recharge_run

    charge = auto_recharge_run(settings_id=settings_id)
    if charge is None:
        return "nothing to charge"
    return f"{charge.attempt.status}: {charge.reason}" if charge.reason else charge.attempt.status
