"""The admin's sign-in is locked for a username from an address after repeated wrong passwords
(django-axes); other users and addresses are unaffected, and so is the API (keys, not sign-ins)."""

from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.merchants.services import merchant_staff_create

PASSWORD = "a-good-pass-phrase-1"


@pytest.fixture
def sam(merchant):
    return merchant_staff_create(merchant=merchant, username="sam", email="sam@m.example", password=PASSWORD)


def sign_in(client, username, password, address="127.0.0.1"):
    return client.post(
        reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=address
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def lock_out(client, username="sam", address="127.0.0.1"):
    responses = [sign_in(client, username, "wrong", address) for _ in range(settings.AXES_FAILURE_LIMIT)]
    assert [r.status_code for r in responses[:-1]] == [200] * (settings.AXES_FAILURE_LIMIT - 1)
    return responses[-1]


def test_axes_refuses_before_any_password_is_checked():
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"


def test_wrong_passwords_lock_the_sign_in_and_then_the_right_one_is_refused(sam):
    client = Client()
    locked = lock_out(client)
    assert locked.status_code == 429
    page = locked.content.decode()
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)  # AXES_COOLOFF_MINUTES, 15 by default
    assert "Too many failed sign-in attempts" in page and f"Try again in {minutes} minutes" in page
    refused = sign_in(client, "sam", PASSWORD)
    assert refused.status_code == 429
    assert not signed_in(client)
    assert client.get(reverse("admin:index")).status_code == 302  # to the sign-in page


def test_other_users_and_other_addresses_sign_in(sam, merchant):
    merchant_staff_create(merchant=merchant, username="kim", email="kim@m.example", password=PASSWORD)
    lock_out(Client())
    other_user = Client()
    assert sign_in(other_user, "kim", PASSWORD).status_code == 302 and signed_in(other_user)
    other_address = Client()
    assert sign_in(other_address, "sam", PASSWORD, address="10.1.2.3").status_code == 302
    assert signed_in(other_address)


def test_fewer_failures_than_the_limit_do_not_lock_and_a_sign_in_clears_them(sam):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "sam", "wrong")
    assert sign_in(client, "sam", PASSWORD).status_code == 302
    assert not AccessAttempt.objects.filter(username="sam").exists()


def test_the_lock_ends_after_the_cooloff(sam):
    lock_out(Client())
    with time_machine.travel(timezone.now() + settings.AXES_COOLOFF_TIME + timedelta(seconds=1)):
        client = Client()
        assert sign_in(client, "sam", PASSWORD).status_code == 302 and signed_in(client)


def test_an_operator_unlocks_with_axes_command(sam):
    lock_out(Client())
    call_command("axes_reset_username", "sam")
    client = Client()
    assert sign_in(client, "sam", PASSWORD).status_code == 302 and signed_in(client)


def test_the_api_is_unaffected(api, sam):
    lock_out(Client())  # from the API client's address too
    assert api.get("/v0/merchants/me").status_code == 200
    attempts = AccessAttempt.objects.count()
    bad = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT + 2):
        assert bad.get("/v0/merchants/me", HTTP_AUTHORIZATION="Bearer sk_live_wrongwrongwrong").status_code == 401
    assert AccessAttempt.objects.count() == attempts
    assert api.get("/v0/merchants/me").status_code == 200
