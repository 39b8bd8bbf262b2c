from celery import shared_task

from apps.settlements.services import settlement_check, settlements_due


@shared_task
def check_settlement(settlement_id: str) -> None:
    """Read one settlement's transaction from its chain (idempotent: a confirmed one is left alone)."""
    settlement_check(settlement_id=settlement_id)


@shared_task
def recheck_pending_settlements() -> int:
    """Beat: queue a check of each pending settlement whose next check (backoff) is due."""
    due = settlements_due()
    for settlement_id in due:
        check_settlement.delay(str(settlement_id))
    return len(due)
