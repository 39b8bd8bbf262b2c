"""`make run`'s demo logins work at once: the staff login has the merchant staff's permissions,
and a lockout of an earlier run is lifted with the new password."""

import re
from io import StringIO

from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from apps.merchants.models import User
from apps.merchants.permissions import MERCHANT_STAFF_GROUP


def seed() -> dict[str, str]:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return dict(re.findall(r"user (\w+)\s+password (\S+)", out.getvalue()))


def sign_in(client, username, password):
    return client.post(reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"})


def test_the_demo_staff_login_has_the_staff_permissions_and_is_unlocked_by_a_new_seed(db, settings):
    passwords = seed()
    demo = User.objects.get(username="demo")
    assert demo.groups.filter(name=MERCHANT_STAFF_GROUP).exists() and demo.has_perm("catalog.view_product")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(Client(), "demo", "wrong")
    assert sign_in(Client(), "demo", passwords["demo"]).status_code == 429
    passwords = seed()
    client = Client()
    assert sign_in(client, "demo", passwords["demo"]).status_code == 302
    assert client.get(reverse("admin:catalog_product_changelist")).status_code == 200
