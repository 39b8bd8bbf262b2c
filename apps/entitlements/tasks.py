from celery import shared_task

from apps.entitlements.services import entitlement_release_expired


@shared_task
def release_expired_entitlements() -> int:
    return entitlement_release_expired()
