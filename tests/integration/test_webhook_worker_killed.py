"""A Celery worker killed with SIGKILL while it delivers a webhook loses nothing: the task comes
back (late acks, the broker's visibility timeout) and the event is delivered again under the same
`webhook-id`, so the merchant, deduplicating by it, sees one event."""

import json
import os
import signal
import uuid

import pytest
from django.conf import settings
from django.db import transaction

from apps.webhooks.delivery import relay_events
from apps.webhooks.models import Delivery
from apps.webhooks.outbox import publish
from apps.webhooks.services import webhook_endpoint_create
from apps.webhooks.tasks import dispatch_webhooks
from billing_platform.celery import app as celery_app
from tests.factories import MerchantFactory
from tests.integration.test_celery_worker import Worker, _forget_queue, database_url, poll
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def worker_env() -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "DATABASE_CONN_MAX_AGE": "0",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        # short, as in any test: a killed worker's task returns in seconds
        "CELERY_VISIBILITY_TIMEOUT": "2",
        "WEBHOOK_LEASE_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }


def test_a_worker_killed_mid_delivery_redelivers_and_the_merchant_sees_one_event_id():
    merchant = MerchantFactory()
    receiver = Receiver(hold=True)  # the first request is held until the worker is dead
    queue = f"webhooks-killed-{uuid.uuid4().hex[:12]}"
    first = second = None
    try:
        webhook_endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
        with transaction.atomic():
            event = publish(merchant=merchant, type="customer.created", data={"object": "customer", "id": "c1"})
        assert relay_events() == 1

        first = Worker(queue=queue, env=worker_env())
        first.wait_until_ready()
        eager = celery_app.conf.task_always_eager
        celery_app.conf.task_always_eager = False
        try:
            dispatch_webhooks.apply_async(queue=queue)
        finally:
            celery_app.conf.task_always_eager = eager
        assert len(receiver.wait_for(1)) == 1  # the worker is inside the delivery...
        os.kill(first.process.pid, signal.SIGKILL)  # ...and dies there
        first.process.wait(10)
        receiver.hold = False
        receiver.release.set()
        assert Delivery.objects.get().attempts == 0  # nothing was recorded: the attempt died with it

        second = Worker(queue=queue, env=worker_env())
        second.wait_until_ready()
        # no new task is sent: the killed one comes back by itself
        requests = receiver.wait_for(2, timeout=60)
        assert len(requests) >= 2
        poll(lambda: Delivery.objects.get().status == "succeeded", timeout=30, what="delivery succeeded")
        ids = {request.headers["webhook-id"] for request in requests}
        assert ids == {str(event.id)}
        assert {json.loads(request.body)["eventId"] for request in requests} == {str(event.id)}
        delivery = Delivery.objects.get()
        assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    finally:
        receiver.close()
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        _forget_queue(queue)
