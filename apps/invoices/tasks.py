from celery import shared_task

from apps.core.jobs import job_lock
from apps.invoices.services.collection import invoice_collect_by_card
from apps.invoices.services.dunning import dun_due


@shared_task
def dun_invoices() -> int:
    """Beat: the dunning steps due now (apps.invoices.services.dunning). One run at a time: a
    step may charge a saved card outside the invoice's transaction."""
    with job_lock("invoices-dunning") as acquired:
        if not acquired:
            return 0
        return dun_due()


@shared_task
def collect_invoice_by_card(invoice_id: str) -> str:
    """After a finalize: charge the open invoice the wallet did not cover to the saved card."""
    charge = invoice_collect_by_card(invoice_id=invoice_id)
    if charge is None:
        return "not open"
    if charge.succeeded:
        return "paid"
    return charge.reason or (charge.attempt.status if charge.attempt else "")
