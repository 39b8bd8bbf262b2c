"""Outbound webhooks end to end against real HTTP receivers on 127.0.0.1: signed as Standard
Webhooks say, retried on the contract's schedule, in event order, each endpoint on its own."""

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from apps.webhooks.delivery import RETRY_SCHEDULE, dispatch_due, relay_events
from apps.webhooks.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint
from apps.webhooks.outbox import publish
from apps.webhooks.services import webhook_endpoint_create
from tests.factories import MerchantFactory, sandbox_of
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receivers():
    made = []

    def make(**options):
        receiver = Receiver(**options)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


def eventually(condition, timeout=20.0):
    """Wait for `condition()` to hold (checked every 20 ms), up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def emit(merchant, type="customer.created", **data):
    with transaction.atomic():
        return publish(merchant=merchant, type=type, data={"object": "customer", "id": "c1", **data})


def pump(now=None):
    relay_events()
    return dispatch_due(now=now)


def verify_by_hand(secret: str, headers: dict, body: bytes) -> bool:
    """The documented scheme: v1,<base64 HMAC-SHA256 of "id.timestamp.body"> under the
    base64-decoded part of the secret after `whsec_`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        part.split(",", 1)[0] == "v1" and hmac.compare_digest(part.split(",", 1)[1], expected)
        for part in headers["webhook-signature"].split(" ")
    )


def test_a_delivery_is_signed_so_the_library_and_a_hand_rolled_check_both_verify_it(receivers):
    merchant = MerchantFactory()
    receiver = receivers()
    endpoint = webhook_endpoint_create(merchant=merchant, url=receiver.url, events=["customer.created"])
    event = emit(merchant, name="Ada")
    assert pump() == 1
    (request,) = receiver.wait_for(1)
    assert Webhook(endpoint.secret).verify(request.body, request.headers) is not None
    assert verify_by_hand(endpoint.secret, request.headers, request.body)
    assert not verify_by_hand(endpoint.secret, request.headers, request.body + b" ")
    body = json.loads(request.body)
    assert body == {
        "eventType": "customer.created",
        "eventId": str(event.id),
        "timestamp": body["timestamp"],
        "livemode": True,
        "data": {"object": "customer", "id": "c1", "name": "Ada"},
    }
    assert request.headers["webhook-id"] == str(event.id)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_response_status) == ("succeeded", 1, 200)
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.succeeded, attempt.response_status, attempt.response_body) == (True, 200, "answer 200")


def test_a_receiver_failing_twice_then_answering_gets_one_success_after_two_failures_on_schedule(receivers):
    merchant = MerchantFactory()
    receiver = receivers(answers=[500, 503])
    webhook_endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        emit(merchant)
        pump(now=start)
        first = Delivery.objects.get()
        assert (first.status, first.attempts) == ("pending", 1)
        wait = first.next_attempt_at - start
        assert RETRY_SCHEDULE[0] * 0.9 <= wait <= RETRY_SCHEDULE[0] * 1.1
        assert pump(now=start + wait - timedelta(milliseconds=1)) == 0  # not yet due
    second_at = first.next_attempt_at
    with time_machine.travel(second_at, tick=False):
        assert pump(now=second_at) == 1
    second = Delivery.objects.get()
    wait = second.next_attempt_at - second_at
    assert RETRY_SCHEDULE[1] * 0.9 <= wait <= RETRY_SCHEDULE[1] * 1.1
    third_at = second.next_attempt_at
    with time_machine.travel(third_at, tick=False):
        assert pump(now=third_at) == 1
    done = Delivery.objects.get()
    assert (done.status, done.attempts, done.next_attempt_at) == ("succeeded", 3, None)
    log = list(DeliveryAttempt.objects.order_by("number").values_list("number", "succeeded", "response_status"))
    assert log == [(1, False, 500), (2, False, 503), (3, True, 200)]
    ids = {request.headers["webhook-id"] for request in receiver.wait_for(3)}
    assert len(ids) == 1  # the same event id every time: the receiver drops what it has seen
    assert WebhookEndpoint.objects.get().failing_since is None


def test_the_schedule_runs_out_after_the_contracts_eight_attempts(receivers):
    merchant = MerchantFactory()
    receiver = receivers(default=500)
    webhook_endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
    emit(merchant)
    relay_events()
    at = Delivery.objects.get().next_attempt_at
    for _ in range(len(RETRY_SCHEDULE) + 1):
        with time_machine.travel(at, tick=False):
            assert dispatch_due(now=at) == 1
        delivery = Delivery.objects.get()
        at = delivery.next_attempt_at or at
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 8, None)


def test_a_transaction_that_rolls_back_publishes_nothing(receivers):
    merchant = MerchantFactory()
    receiver = receivers()
    webhook_endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        publish(merchant=merchant, type="customer.created", data={"id": "c1"})
        1 / 0  # noqa: B018 -- the change fails after its event was written
    assert pump() == 0
    assert not Event.objects.exists() and not Delivery.objects.exists() and receiver.requests == []


def test_publish_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError, match="inside the transaction"):
        publish(merchant=MerchantFactory(), type="customer.created", data={})


def test_first_attempts_go_in_event_order_and_a_failing_one_holds_back_none(receivers):
    merchant = MerchantFactory()
    receiver = receivers(answers=[500])  # the first event's first attempt fails
    webhook_endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
    events = [emit(merchant, id=f"c{i}") for i in range(5)]
    assert pump() == 5
    got = [request.headers["webhook-id"] for request in receiver.wait_for(5)]
    assert got == [str(event.id) for event in events]
    statuses = dict(Delivery.objects.values_list("event_id", "status"))
    assert statuses[events[0].id] == "pending"
    assert [statuses[event.id] for event in events[1:]] == ["succeeded"] * 4


def test_an_endpoint_answering_410_is_disabled_with_the_reason(receivers):
    merchant = MerchantFactory()
    receiver = receivers(default=410)
    webhook_endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
    emit(merchant)
    emit(merchant)
    assert pump() == 1  # disabled after the first answer: the second event waits
    endpoint = WebhookEndpoint.objects.get()
    assert not endpoint.enabled and "410" in endpoint.disabled_reason
    emit(merchant)
    relay_events()
    assert Delivery.objects.count() == 2  # a disabled endpoint gets no new deliveries


def test_five_days_of_failures_disable_the_endpoint(receivers):
    merchant = MerchantFactory()
    receiver = receivers(default=500)
    webhook_endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        emit(merchant)
        pump(now=start)
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.enabled and endpoint.failing_since == start
    later = start + timedelta(days=5)
    with time_machine.travel(later, tick=False):
        emit(merchant)
        pump(now=later)
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "5 days" in endpoint.disabled_reason and "500" in endpoint.disabled_reason


def test_a_slow_endpoint_never_delays_another_merchants_deliveries(receivers):
    slow_merchant, quick_merchant = MerchantFactory(), MerchantFactory()
    slow = receivers(hold=True)
    quick = receivers()
    webhook_endpoint_create(merchant=slow_merchant, url=slow.url, events=["*"])
    webhook_endpoint_create(merchant=quick_merchant, url=quick.url, events=["*"])
    emit(slow_merchant)
    emit(quick_merchant)
    relay_events()

    def dispatch():
        try:
            dispatch_due()
        finally:
            connection.close()

    runner = threading.Thread(target=dispatch)
    runner.start()
    try:
        assert len(slow.wait_for(1)) == 1  # the slow one is being answered...
        assert len(quick.wait_for(1)) == 1  # ...and the quick one was delivered meanwhile,
        quick_delivery = Delivery.objects.filter(endpoint__url=quick.url, status="succeeded")
        assert eventually(quick_delivery.exists)  # and logged, while the slow one still waits
        assert Delivery.objects.get(endpoint__url=slow.url).status == "pending"
    finally:
        slow.release.set()
        runner.join(30)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_sandbox_events_never_reach_live_endpoints_and_back(receivers):
    live = MerchantFactory()
    sandbox = sandbox_of(live)
    live_receiver, sandbox_receiver = receivers(), receivers()
    webhook_endpoint_create(merchant=live, url=live_receiver.url, events=["*"])
    webhook_endpoint_create(merchant=sandbox, url=sandbox_receiver.url, events=["*"])
    sandbox_event = emit(sandbox)
    live_event = emit(live)
    assert pump() == 2
    assert [r.headers["webhook-id"] for r in sandbox_receiver.wait_for(1)] == [str(sandbox_event.id)]
    assert [r.headers["webhook-id"] for r in live_receiver.wait_for(1)] == [str(live_event.id)]
    assert json.loads(sandbox_receiver.requests[0].body)["livemode"] is False


def test_an_endpoint_only_gets_the_types_it_subscribed_to(receivers):
    merchant = MerchantFactory()
    receiver = receivers()
    webhook_endpoint_create(merchant=merchant, url=receiver.url, events=["dispute.opened"])
    emit(merchant, type="customer.created")
    wanted = emit(merchant, type="dispute.opened")
    assert pump() == 1
    assert [r.headers["webhook-id"] for r in receiver.wait_for(1)] == [str(wanted.id)]


def test_the_address_rule_is_checked_again_at_delivery(receivers, settings):
    merchant = MerchantFactory()
    receiver = receivers()
    webhook_endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = "false"  # the operator closes private addresses later
    emit(merchant)
    assert pump() == 1
    attempt = DeliveryAttempt.objects.get()
    assert not attempt.succeeded and attempt.error.startswith("url not allowed")
    assert receiver.requests == []
