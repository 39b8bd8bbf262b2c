from apps.core.errors import NotFound
from apps.entitlements.models import Entitlement


def entitlements(*, merchant):
    return Entitlement.objects.filter(merchant=merchant).select_related("merchant", "wallet").prefetch_related("items")


def entitlement_get(*, merchant, entitlement_id) -> Entitlement:
    entitlement = entitlements(merchant=merchant).filter(pk=entitlement_id).first()
    if entitlement is None:
        raise NotFound(f"No entitlement {entitlement_id}.", code="ENTITLEMENT_NOT_FOUND")
    return entitlement
