from apps.usage.services.charging import MAX_BATCH_EVENTS, usage_record, usage_record_batch
from apps.usage.services.combining import usage_record_combined
from apps.usage.services.refunds import dispute_accept, dispute_decline, dispute_open, usage_refund

__all__ = [
    "MAX_BATCH_EVENTS",
    "dispute_accept",
    "dispute_decline",
    "dispute_open",
    "usage_record",
    "usage_record_batch",
    "usage_record_combined",
    "usage_refund",
]
