"""/v0/webhookEndpoints as the contract lists them, and the url rule."""

import socket

import pytest

from apps.webhooks.addresses import UrlNotAllowed, check_url
from apps.webhooks.delivery import dispatch_due
from apps.webhooks.models import Delivery, WebhookEndpoint
from tests.webhooks.receiver import Receiver

URL = "/v0/webhookEndpoints"


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def create(api, **body):
    return api.post(URL, {"url": "https://hooks.example.com/in", "events": ["*"], **body})


def test_create_shows_the_secret_once_and_never_again(api):
    response = create(api, events=["customer.created", "dispute.opened"], description="ops")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 30
    assert body["object"] == "webhook_endpoint" and body["livemode"] is True
    assert (body["events"], body["enabled"], body["description"]) == (
        ["customer.created", "dispute.opened"],
        True,
        "ops",
    )
    got = api.get(f"{URL}/{body['id']}").json()
    assert "secret" not in got and got["id"] == body["id"]
    listed = api.get(URL).json()
    assert [e["id"] for e in listed["data"]] == [body["id"]] and "secret" not in listed["data"][0]


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"events": []}, "events", "INVALID_EVENTS"),
        ({"events": ["customer.made"]}, "events[0]", "UNKNOWN_EVENT_TYPE"),
        ({"url": "ftp://x.example.com"}, "url", "URL_NOT_ALLOWED"),
        ({"url": "not a url"}, "url", "URL_NOT_ALLOWED"),
        ({"url": "https://user:pw@hooks.example.com/"}, "url", "URL_NOT_ALLOWED"),
    ],
)
def test_bad_endpoints_are_400_naming_the_field(api, body, field, code):
    response = create(api, **body)
    assert response.status_code == 400, response.json()
    error = response.json()["errors"][0]
    assert (error["field"], error["code"]) == (field, code)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/in",  # not https
        "https://127.0.0.1/in",
        "https://10.1.2.3/in",
        "https://169.254.169.254/latest",
        "https://[::1]/in",
        "https://localhost/in",
        "https://192.168.0.10:8443/in",
    ],
)
def test_without_the_operators_leave_private_and_plain_http_urls_are_refused(api, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = "false"
    response = create(api, url=url)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "URL_NOT_ALLOWED"


def test_a_name_resolving_to_a_private_address_is_refused(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = "false"

    def resolves_inside(host, port, **_):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    with pytest.raises(UrlNotAllowed, match="10.0.0.7"):
        check_url("https://innocent.example.com/hook", livemode=True, resolve=resolves_inside)


def test_sandbox_leave_opens_private_urls_to_sandbox_endpoints_only(api, test_api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = "sandbox"
    assert create(test_api, url="http://127.0.0.1:9/hook").status_code == 201
    assert create(api, url="http://127.0.0.1:9/hook").status_code == 400


def test_patch_changes_and_re_enables_a_disabled_endpoint(api):
    endpoint = create(api).json()
    WebhookEndpoint.objects.filter(pk=endpoint["id"]).update(enabled=False, disabled_reason="410 Gone")
    response = api.patch(f"{URL}/{endpoint['id']}", {"enabled": True, "events": ["dispute.opened"]})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["enabled"], body["disabledReason"], body["disabledAt"], body["events"]) == (
        True,
        "",
        None,
        ["dispute.opened"],
    )
    assert api.patch(f"{URL}/{endpoint['id']}", {"url": "ftp://x"}).status_code == 400
    assert api.patch(f"{URL}/{endpoint['id']}", {"secret": "mine"}).status_code == 400


def test_delete_removes_the_endpoint(api):
    endpoint = create(api).json()
    response = api.delete(f"{URL}/{endpoint['id']}")
    assert response.status_code == 200 and response.json()["id"] == endpoint["id"]
    assert not WebhookEndpoint.objects.exists()
    assert api.get(f"{URL}/{endpoint['id']}").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_test_call_queues_a_signed_test_event_for_that_endpoint_alone(api, receiver):
    endpoint = create(api, url=receiver.url).json()
    create(api, url=receiver.url + "/other")
    response = api.post(f"{URL}/{endpoint['id']}/test")
    assert response.status_code == 201, response.json()
    queued = response.json()
    assert (queued["eventType"], queued["status"], queued["attempt"]) == ("webhook.test", "pending", 0)
    assert dispatch_due() == 1
    (request,) = receiver.wait_for(1)
    assert request.path == "/hook" and request.headers["webhook-id"] == queued["eventId"]
    log = api.get(f"{URL}/{endpoint['id']}/deliveries").json()["data"]
    assert [(d["id"], d["status"], d["attempt"], d["responseStatus"]) for d in log] == [
        (queued["id"], "succeeded", 1, 200)
    ]
    assert log[0]["nextAttemptAt"] is None and log[0]["latencyMs"] >= 0


def test_another_merchants_endpoints_are_404(api, other_api):
    endpoint = create(api).json()
    for method, path in (
        ("get", f"{URL}/{endpoint['id']}"),
        ("patch", f"{URL}/{endpoint['id']}"),
        ("delete", f"{URL}/{endpoint['id']}"),
        ("get", f"{URL}/{endpoint['id']}/deliveries"),
        ("post", f"{URL}/{endpoint['id']}/test"),
    ):
        assert getattr(other_api, method)(path).status_code == 404, (method, path)
    assert other_api.get(URL).json()["data"] == []
    assert not Delivery.objects.exists()
