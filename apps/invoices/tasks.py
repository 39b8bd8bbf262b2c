from celery import shared_task

from apps.invoices.services.dunning import dun_due


@shared_task
def dun_invoices() -> int:
    """Beat: the dunning steps due now (apps.invoices.services.dunning)."""
    return dun_due()
