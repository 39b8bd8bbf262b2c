"""Idempotency-Key on POST, with Stripe's semantics."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.idempotency import idempotency_purge_expired, request_fingerprint
from apps.core.models import IdempotencyRecord
from tests.concurrency import run_at_once
from tests.conftest import Api
from tests.tenancy_app.models import Widget, WidgetCall


def post(api, body, key):
    return api.post("/v0/widgets", body, HTTP_IDEMPOTENCY_KEY=key)


def test_replay_returns_the_first_response_and_runs_once(api):
    first = post(api, {"name": "a"}, "key-1")
    second = post(api, {"name": "a"}, "key-1")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1
    assert WidgetCall.objects.count() == 1


def test_same_json_with_other_spacing_or_order_is_a_replay(api):
    first = api.client.post(
        "/v0/widgets", data='{"name": "a", "sleep": 0}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    second = api.client.post(
        "/v0/widgets", data='{"sleep":0,"name":"a"}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert second.json() == first.json()


def test_another_body_with_the_same_key_is_409(api):
    post(api, {"name": "a"}, "key-1")
    response = post(api, {"name": "b"}, "key-1")
    assert response.status_code == 409
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert Widget.objects.count() == 1


def test_a_4xx_is_not_stored_so_the_key_can_be_retried(api):
    refused = post(api, {"name": "a", "fail": "422"}, "key-1")
    assert refused.status_code == 422
    assert not IdempotencyRecord.objects.exists()
    fixed = post(api, {"name": "a"}, "key-1")
    assert fixed.status_code == 201
    invalid = post(api, {"name": ""}, "key-2")
    assert invalid.status_code == 400
    assert post(api, {"name": "ok"}, "key-2").status_code == 201


def test_a_5xx_is_stored_and_replayed_and_its_work_rolled_back(api):
    first = post(api, {"name": "a", "fail": "500"}, "key-1")
    assert first.status_code == 500
    again = post(api, {"name": "a", "fail": "500"}, "key-1")
    assert again.status_code == 500
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    # what the handler wrote before failing rolled back with it, and the replay ran nothing
    assert WidgetCall.objects.count() == 0
    assert IdempotencyRecord.objects.get().response_status == 500


def test_the_answer_is_stored_with_the_work(api):
    response = post(api, {"name": "a"}, "key-1")
    record = IdempotencyRecord.objects.get()
    assert record.status == IdempotencyRecord.Status.COMPLETED
    assert record.response_status == 201
    assert bytes(record.response_body) == response.content


def test_a_claim_left_by_a_dead_request_is_taken_over_at_once(api):
    """A claim in progress that no transaction holds (its request died after claiming) is
    taken over by the next request at once, not after a timeout."""
    IdempotencyRecord.objects.create(
        merchant=api.merchant,
        key="key-1",
        request_method="POST",
        request_path="/v0/widgets",
        request_hash=request_fingerprint(method="POST", path="/v0/widgets", body=b'{"name":"a"}'),
    )
    response = post(api, {"name": "a"}, "key-1")
    assert response.status_code == 201
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().status == IdempotencyRecord.Status.COMPLETED


def test_keys_are_per_merchant_and_mode(api, test_api, other_api):
    assert post(api, {"name": "live"}, "shared").status_code == 201
    assert post(test_api, {"name": "sandbox"}, "shared").status_code == 201
    assert post(other_api, {"name": "other"}, "shared").status_code == 201
    assert Widget.objects.count() == 3


def test_key_expires_after_the_ttl(api):
    post(api, {"name": "a"}, "key-1")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert post(api, {"name": "b"}, "key-1").status_code == 201
    assert Widget.objects.count() == 2


def test_purge_removes_only_expired_records(api):
    post(api, {"name": "a"}, "old")
    post(api, {"name": "b"}, "new")
    IdempotencyRecord.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency_purge_expired() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


def test_key_longer_than_255_is_400(api):
    response = post(api, {"name": "a"}, "k" * 256)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


def test_get_ignores_the_header(api):
    assert api.get("/v0/widgets", HTTP_IDEMPOTENCY_KEY="x").status_code == 200
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_requests_with_one_key_run_the_endpoint_once(merchant):
    from tests.factories import issue_key

    secret = issue_key(merchant)

    def worker(_):
        response = post(Api(secret, merchant), {"name": "once", "sleep": 0.5}, "concurrent-key")
        return (response.status_code, response.json())

    results = run_at_once(10, worker)

    assert WidgetCall.objects.count() == 1
    assert Widget.objects.count() == 1
    statuses = sorted(status for status, _ in results)
    assert len(results) == 10
    assert statuses.count(201) >= 1
    assert all(status in (201, 409) for status in statuses)
    assert {body["code"] for status, body in results if status == 409} <= {"IDEMPOTENCY_KEY_IN_USE"}
    created = {body["id"] for status, body in results if status == 201}
    assert len(created) == 1
