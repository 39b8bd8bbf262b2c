from celery import shared_task

from apps.payments.services import payment_session_expire_due


@shared_task
def expire_payment_sessions() -> int:
    return payment_session_expire_due()
