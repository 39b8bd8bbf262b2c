"""An outage is not an answer: a request with an Idempotency-Key that met Redis or the database
unavailable (503 with Retry-After: nothing of it was done) does not store that 503 as the key's
answer, so the same request sent again after the outage runs. And a view that calls a network
service (`calls_out`) runs outside any transaction, its key held by an advisory lock."""

import threading
import uuid

import pytest
from django.db import connection

from apps.core.models import IdempotencyRecord
from tests.tenancy_app.models import Widget, WidgetCall

pytestmark = pytest.mark.django_db(transaction=True)


def post(api, body, key, path="/v0/widgets"):
    return api.post(path, body, HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.parametrize(("fail", "code"), [("redis", "SERVICE_UNAVAILABLE"), ("database", "DATABASE_UNAVAILABLE")])
def test_an_outage_is_not_stored_and_the_retry_after_it_runs_the_request(api, fail, code):
    body = {"name": f"outage-{fail}-{uuid.uuid4().hex}", "fail": fail}  # (the outage happens once per name)
    refused = post(api, body, "key-1")
    assert refused.status_code == 503, refused.content
    assert refused.json()["code"] == code
    assert refused["Retry-After"] == "1"
    assert "Idempotent-Replayed" not in refused
    connection.close()  # (the test's own connection, dropped with the request's in this process)
    # nothing of it was written, and the key holds no answer
    assert not Widget.objects.exists() and not WidgetCall.objects.exists()
    assert not IdempotencyRecord.objects.filter(status=IdempotencyRecord.Status.COMPLETED).exists()

    # the outage is over: the same request with the same key runs
    ran = post(api, body, "key-1")
    assert ran.status_code == 201, ran.content
    assert "Idempotent-Replayed" not in ran
    replayed = post(api, body, "key-1")
    assert (replayed.status_code, replayed.json(), replayed["Idempotent-Replayed"]) == (201, ran.json(), "true")
    assert Widget.objects.count() == 1


def test_a_500_is_still_stored(api):
    first = post(api, {"name": "a", "fail": "500"}, "key-1")
    again = post(api, {"name": "a", "fail": "500"}, "key-1")
    assert (first.status_code, again.status_code, again["Idempotent-Replayed"]) == (500, 500, "true")


def test_a_view_that_calls_out_runs_outside_any_transaction_and_answers_once(api):
    first = post(api, {"name": "a"}, "key-1", path="/v0/widgets/outside")
    assert first.status_code == 201, first.content
    assert WidgetCall.objects.filter(idempotency_label="in_atomic_block=False").count() == 1
    replayed = post(api, {"name": "a"}, "key-1", path="/v0/widgets/outside")
    assert (replayed.json(), replayed["Idempotent-Replayed"]) == (first.json(), "true")
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().response_status == 201
    # a 4xx releases the key there too
    assert post(api, {"name": "b", "fail": "422"}, "key-2", path="/v0/widgets/outside").status_code == 422
    assert not IdempotencyRecord.objects.filter(key="key-2").exists()


def test_a_request_with_the_key_of_one_running_outside_a_transaction_is_409_in_use(api):
    answers = {}

    def slow():
        answers["first"] = post(api, {"name": "a", "sleep": 2}, "key-1", path="/v0/widgets/outside")
        connection.close()

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        # wait until the first request runs (its call recorded), then send the same key again
        for _ in range(200):
            if WidgetCall.objects.filter(idempotency_label="a").exists():
                break
            threading.Event().wait(0.02)
        else:
            raise AssertionError("the first request never ran")
        second = post(api, {"name": "a", "sleep": 2}, "key-1", path="/v0/widgets/outside")
    finally:
        thread.join(30)
    assert second.status_code == 409, second.content
    assert second.json()["code"] == "IDEMPOTENCY_KEY_IN_USE"
    assert answers["first"].status_code == 201
    assert Widget.objects.count() == 1
    # once it answered, the key replays its answer
    replayed = post(api, {"name": "a", "sleep": 2}, "key-1", path="/v0/widgets/outside")
    assert replayed.json() == answers["first"].json()
