"""Customer API keys and tier changes in the admin: merchant staff see their merchant's keys only
(in the mode they picked), filter and search them, read a key's usage against its quota this
month (or why Redis cannot tell), and revoke through the service, after which the next verify
answers REVOKED. Nothing is added, edited or deleted, and the secret's hash is never shown."""

import socket
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from apps.apikeys import usage as apikeys_usage
from apps.apikeys import verify as apikeys_verify
from apps.apikeys.models import CustomerApiKey, TierChange
from apps.apikeys.services import api_key_create, api_key_revoke
from apps.apikeys.verify import verify
from apps.catalog.demo import seed_catalog
from apps.catalog.models import Plan
from apps.merchants.models import User
from apps.merchants.services import merchant_staff_create
from tests.factories import MerchantFactory, make_customer, sandbox_of

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:apikeys_customerapikey_changelist"
TIER_CHANGES = "admin:apikeys_tierchange_changelist"


def staff_client(merchant, username="sam") -> Client:
    user = merchant_staff_create(
        merchant=merchant, username=username, email=f"{username}@m.example", password="pw-123456789"
    )
    client = Client()
    client.force_login(user)
    return client


def operator_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(username="op", email="op@p.example", password="pw-1234567"))
    return client


def new_key(merchant, email="dev@acme.example", tier="free"):
    return api_key_create(merchant=merchant, organization_name="Acme", contact_email=email, tier_code=tier)


def listed(client, **params) -> list[CustomerApiKey]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def act(client, action: str, *keys) -> list[tuple[str, str]]:
    response = client.post(
        reverse(CHANGELIST),
        {"action": action, "index": 0, "_selected_action": [str(key.pk) for key in keys]},
        follow=True,
    )
    assert response.status_code == 200
    return [(message.level_tag, message.message) for message in get_messages(response.wsgi_request)]


def detail(client, key) -> str:
    response = client.get(reverse("admin:apikeys_customerapikey_change", args=[key.pk]))
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def alpha(time_machine):
    time_machine.move_to(datetime(2026, 1, 10, 8, tzinfo=UTC), tick=False)
    merchant = MerchantFactory(name="Alpha")
    seed_catalog(merchant=merchant)
    seed_catalog(merchant=sandbox_of(merchant))
    return merchant


@pytest.fixture
def beta():
    merchant = MerchantFactory(name="Beta")
    seed_catalog(merchant=merchant)
    return merchant


def test_staff_see_only_their_merchants_keys_in_the_mode_they_picked(alpha, beta):
    mine = new_key(alpha, email="mine@example.com").key
    theirs = new_key(beta, email="theirs@example.com").key
    my_sandbox = new_key(sandbox_of(alpha), email="test@example.com").key
    client = staff_client(alpha)
    assert listed(client) == [mine]
    assert listed(client, q="theirs@example.com") == [] and listed(client, q=theirs.prefix) == []
    assert client.get(reverse("admin:apikeys_customerapikey_change", args=[theirs.pk])).status_code in (302, 404)
    client.post(reverse("admin-switch-mode"), {"mode": "sandbox", "next": "/admin/"})
    assert listed(client) == [my_sandbox]
    assert my_sandbox.prefix.startswith("ak_test_")
    # the operator sees every merchant's, in both modes
    assert {key.pk for key in listed(operator_client())} == {mine.pk, theirs.pk, my_sandbox.pk}


def test_the_list_shows_each_key_and_filters_by_revoked_and_tier_and_searches(alpha, beta, time_machine):
    free = new_key(alpha, email="free@example.com").key
    time_machine.shift(timedelta(seconds=1))
    big = new_key(alpha, email="big@example.com", tier="enterprise").key  # (no fee: on it at once)
    time_machine.shift(timedelta(seconds=1))
    gone = api_key_revoke(key=new_key(alpha, email="gone@example.com").key)
    Plan.objects.filter(merchant=beta, code="enterprise").update(code="platinum")
    new_key(beta, email="other@example.com", tier="platinum")
    client = staff_client(alpha)
    assert listed(client) == [gone, big, free]
    assert listed(client, revoked="yes") == [gone]
    assert listed(client, revoked="no") == [big, free]
    assert listed(client, tier="enterprise") == [big]
    assert listed(client, tier="free") == [gone, free]
    assert listed(client, q=big.prefix) == [big]
    assert listed(client, q="free@example.com") == [free]
    page = client.get(reverse(CHANGELIST))
    # the tier filter offers this merchant's tiers that keys are on, not another merchant's
    (tier_filter,) = [spec for spec in page.context["cl"].filter_specs if spec.parameter_name == "tier"]
    assert [code for code, _ in tier_filter.lookup_choices] == ["enterprise", "free"]
    html = page.content.decode()
    for shown in (free.prefix, "big@example.com", "enterprise", "Acme"):
        assert shown in html
    assert "platinum" not in html and "other@example.com" not in html


def test_revoke_through_the_action_answers_revoked_at_the_next_verify(alpha, beta):
    mine = new_key(alpha, email="mine@example.com")
    theirs = new_key(beta, email="theirs@example.com")
    assert verify(merchant=alpha, secret=mine.secret, cost=1).code == "VALID"
    client = staff_client(alpha)
    assert act(client, "revoke_keys", mine.key, theirs.key) == [("success", "Revoked 1 key(s).")]
    assert verify(merchant=alpha, secret=mine.secret, cost=1).code == "REVOKED"
    assert verify(merchant=beta, secret=theirs.secret, cost=1).code == "VALID"  # (not in the staff's queryset)
    mine.key.refresh_from_db()
    theirs.key.refresh_from_db()
    assert mine.key.revoked_at is not None and theirs.key.revoked_at is None
    # once more: nothing to do, and said so
    at = f"{mine.key.revoked_at:%Y-%m-%d %H:%M}"
    assert act(client, "revoke_keys", mine.key) == [
        ("info", "Revoked 0 key(s)."),
        ("info", f"Already revoked: Key {mine.key.prefix}… at {at} UTC"),
    ]


def test_a_revoke_while_redis_cannot_be_reached_is_refused_and_leaves_the_key_as_it_was(alpha, monkeypatch):
    created = new_key(alpha)
    client = staff_client(alpha)
    unreachable = unreachable_redis()
    monkeypatch.setattr(apikeys_verify, "get_redis", lambda: unreachable)
    assert act(client, "revoke_keys", created.key) == [
        (
            "error",
            f"Key {created.key.prefix}…: not revoked: Redis, which verify reads, cannot be reached "
            "(ConnectionError). Try again.",
        ),
        ("info", "Revoked 0 key(s)."),
    ]
    monkeypatch.undo()
    created.key.refresh_from_db()
    assert created.key.revoked_at is None
    assert verify(merchant=alpha, secret=created.secret, cost=1).code == "VALID"
    assert act(client, "revoke_keys", created.key) == [("success", "Revoked 1 key(s).")]
    assert verify(merchant=alpha, secret=created.secret, cost=1).code == "REVOKED"


def test_revoking_needs_the_change_permission(alpha):
    created = new_key(alpha)
    user = User.objects.create_user(username="viewer", password="pw-123456789", is_staff=True, merchant=alpha)
    user.user_permissions.add(Permission.objects.get(codename="view_customerapikey"))
    client = Client()
    client.force_login(user)
    actions = client.get(reverse(CHANGELIST)).context["action_form"]
    assert actions is None or "revoke_keys" not in {name for name, _ in actions.fields["action"].choices}
    client.post(reverse(CHANGELIST), {"action": "revoke_keys", "index": 0, "_selected_action": [str(created.key.pk)]})
    assert verify(merchant=alpha, secret=created.secret, cost=0).code == "VALID"


def test_the_detail_shows_the_keys_usage_against_its_quota_this_month(alpha):
    free = new_key(alpha, email="free@example.com")
    for cost in (1, 2, 0):
        assert verify(merchant=alpha, secret=free.secret, cost=cost).code == "VALID"
    client = staff_client(alpha)
    assert "3 / 100 queries this month (97 left)" in detail(client, free.key)
    # a second key of the same customer draws on the same subscription's quota
    second = new_key(alpha, email="free@example.com")
    assert verify(merchant=alpha, secret=second.secret, cost=5).code == "VALID"
    assert "8 / 100 queries this month (92 left)" in detail(client, free.key)
    big = new_key(alpha, email="big@example.com", tier="enterprise")
    verify(merchant=alpha, secret=big.secret, cost=7)
    assert "7 queries this month (no monthly limit)" in detail(client, big.key)


def unreachable_redis() -> redis.Redis:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=1)


def test_the_detail_says_so_when_redis_cannot_be_reached(alpha, monkeypatch):
    created = new_key(alpha)
    unreachable = unreachable_redis()
    monkeypatch.setattr(apikeys_usage, "get_redis", lambda: unreachable)
    html = detail(staff_client(alpha), created.key)
    assert "Unavailable: Redis, which keeps the counts, cannot be reached (ConnectionError)" in html
    assert created.key.prefix in html


def test_the_detail_is_read_only_never_shows_the_secret_hash_and_nothing_is_added_or_deleted(alpha):
    created = new_key(alpha)
    key = created.key
    client = staff_client(alpha)
    page = client.get(reverse("admin:apikeys_customerapikey_change", args=[key.pk]))
    html = page.content.decode()
    assert 'name="_save"' not in html
    assert key.secret_hash not in html and created.secret not in html and "secret_hash" not in html
    ((_, fieldset),) = page.context["adminform"].fieldsets
    assert set(fieldset["fields"]) == {
        "id",
        "prefix",
        "customer_link",
        "organization_name",
        "subscription_link",
        "tier",
        "usage_this_month",
        "created_at",
        "last_used_at",
        "revoked_at",
    }
    client.post(
        reverse("admin:apikeys_customerapikey_change", args=[key.pk]),
        {"prefix": "ak_live_hijack", "organization_name": "Evil", "revoked_at": "2026-01-01 00:00:00"},
    )
    key.refresh_from_db()
    assert (key.prefix, key.organization_name, key.revoked_at) == (created.key.prefix, "Acme", None)
    operator = operator_client()
    delete = reverse("admin:apikeys_customerapikey_delete", args=[key.pk])
    for who in (client, operator):
        assert who.get(reverse("admin:apikeys_customerapikey_add")).status_code == 403
        assert who.post(delete, {"post": "yes"}).status_code == 403
    assert CustomerApiKey.objects.filter(pk=key.pk).exists()
    actions = client.get(reverse(CHANGELIST)).context["action_form"].fields["action"].choices
    assert {name for name, _ in actions if name} == {"revoke_keys"}


def test_tier_changes_are_listed_read_only_for_their_merchant(alpha, beta):
    waiting = new_key(alpha, email="poor@example.com", tier="starter")  # no money: free, and a session
    new_key(beta, email="poor@example.com", tier="starter")
    change = TierChange.objects.get(merchant=alpha)
    assert change.session_id == waiting.payment.id
    client = staff_client(alpha)
    page = client.get(reverse(TIER_CHANGES))
    assert list(page.context["cl"].result_list) == [change]
    assert list(client.get(reverse(TIER_CHANGES), {"applied": "yes"}).context["cl"].result_list) == []
    assert list(client.get(reverse(TIER_CHANGES), {"applied": "no"}).context["cl"].result_list) == [change]
    html = client.get(reverse("admin:apikeys_tierchange_change", args=[change.pk])).content.decode()
    assert reverse("admin:payments_paymentsession_change", args=[change.session_id]) in html
    assert reverse("admin:subscriptions_subscription_change", args=[change.subscription_id]) in html
    assert "Starter" in html and 'name="_save"' not in html
    other = TierChange.objects.get(merchant=beta)
    assert client.get(reverse("admin:apikeys_tierchange_change", args=[other.pk])).status_code in (302, 404)
    assert client.get(reverse("admin:apikeys_tierchange_add")).status_code == 403
    delete = reverse("admin:apikeys_tierchange_delete", args=[change.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert TierChange.objects.filter(pk=change.pk).exists()


def test_the_customers_page_links_to_its_keys(alpha, beta, time_machine):
    first = new_key(alpha, email="ada@example.com").key
    time_machine.shift(timedelta(seconds=1))
    second = api_key_revoke(key=new_key(alpha, email="ada@example.com").key)
    new_key(alpha, email="bob@example.com")
    new_key(beta, email="ada@example.com")
    client = staff_client(alpha)
    html = client.get(reverse("admin:customers_customer_change", args=[first.customer_id])).content.decode()
    url = f"{reverse(CHANGELIST)}?customer__id__exact={first.customer_id}"
    assert f'<a href="{url}">API keys: 2 (1 active)</a>' in html
    response = client.get(url)
    assert response.status_code == 200 and list(response.context["cl"].result_list) == [second, first]
    # another merchant's customer id in the link shows none of its keys
    theirs = CustomerApiKey.objects.get(merchant=beta)
    assert listed(client, customer__id__exact=str(theirs.customer_id)) == []
    keyless = make_customer(alpha, email="carl@example.com")
    assert "No API keys" in client.get(reverse("admin:customers_customer_change", args=[keyless.pk])).content.decode()
