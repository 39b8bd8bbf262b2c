from django.db.models import Prefetch, QuerySet

from apps.core.errors import NotFound
from apps.usage.models import Dispute, UsageEvent, UsageLine


def usage_events(*, merchant) -> QuerySet[UsageEvent]:
    return (
        UsageEvent.objects.filter(merchant=merchant)
        .select_related("merchant")
        .prefetch_related(Prefetch("lines", queryset=UsageLine.objects.order_by("position")))
    )


def usage_event_get(*, merchant, event_id) -> UsageEvent:
    event = usage_events(merchant=merchant).select_related("subscription__wallet").filter(pk=event_id).first()
    if event is None:
        raise NotFound(f"No usage event {event_id}.", code="USAGE_EVENT_NOT_FOUND")
    return event


def dispute_get(*, merchant, dispute_id) -> Dispute:
    dispute = (
        Dispute.objects.filter(merchant=merchant, pk=dispute_id)
        .select_related("merchant", "usage_event__subscription__wallet")
        .first()
    )
    if dispute is None:
        raise NotFound(f"No dispute {dispute_id}.", code="DISPUTE_NOT_FOUND")
    return dispute
