"""Paging is exact: every list's order ends in the id, so rows that share every other sort key
(the events of one batch share a timestamp) come back each exactly once."""

import pytest
from django.utils import timezone

from tests.concurrency import run_at_once
from tests.conftest import Api
from tests.factories import MerchantFactory, issue_key
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db(transaction=True)

BATCHES = 12
PER_BATCH = 1000


def test_12000_events_from_12_concurrent_batches_page_back_each_exactly_once():
    merchant = MerchantFactory()
    secret = issue_key(merchant)
    billing = Billing(merchant)
    metric = billing.metric(properties={"unitPrice": "0.000001"})
    billing.fund("1")
    # one timestamp for all: only the id can break the ties
    at = timezone.now().isoformat()

    def send(batch):
        events = [billing.event(f"b{batch}-{i}", metric, timestamp=at) for i in range(PER_BATCH)]
        response = Api(secret, merchant).post("/v0/usage/batch", {"events": events})
        return response.status_code, len(response.json().get("successful", []))

    assert run_at_once(BATCHES, send) == [(201, PER_BATCH)] * BATCHES

    api = Api(secret, merchant)
    seen, offset = [], 0
    while True:
        body = api.get(f"/v0/usage?customerId={billing.customer.pk}&limit=100&offset={offset}").json()
        assert body["pagination"]["total"] == BATCHES * PER_BATCH
        if not body["data"]:
            break
        seen += [event["idempotencyKey"] for event in body["data"]]
        offset += 100
    expected = {f"b{batch}-{i}" for batch in range(BATCHES) for i in range(PER_BATCH)}
    assert len(seen) == len(expected)
    assert set(seen) == expected
