"""The partial unique index decides between concurrent writers of one email."""

import pytest

from apps.customers.models import Customer
from tests.concurrency import run_at_once
from tests.conftest import Api
from tests.factories import issue_key

THREADS = 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_one_email_make_one_customer(merchant):
    secret = issue_key(merchant)

    def post(index):
        # Each thread varies the case, so the index (on lower(email)) is what must catch them.
        email = "Race@Example.com" if index % 2 else "race@example.com"
        response = Api(secret, merchant).post("/v0/customers", {"consumer": {"email": email, "name": f"t{index}"}})
        return response.status_code, response.json()

    results = run_at_once(THREADS, post)
    assert all(isinstance(r, tuple) for r in results), results
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * (THREADS - 1) + [201]
    assert len({body["customerId"] for _, body in results}) == 1
    assert Customer.objects.filter(merchant=merchant).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_email_changes_to_one_address_let_exactly_one_win(merchant):
    secret = issue_key(merchant)
    api = Api(secret, merchant)
    ids = [api.post("/v0/customers", {"consumer": {"email": f"c{i}@example.com"}}).json()["id"] for i in range(THREADS)]

    def patch(index):
        response = Api(secret, merchant).patch(
            f"/v0/customers/{ids[index]}", {"consumer": {"email": "one@example.com"}}
        )
        return response.status_code, response.json()

    results = run_at_once(THREADS, patch)
    assert all(isinstance(r, tuple) for r in results), results
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [409] * (THREADS - 1)
    assert {body["code"] for status, body in results if status == 409} == {"CUSTOMER_EMAIL_TAKEN"}
    assert Customer.objects.filter(merchant=merchant, email="one@example.com").count() == 1
