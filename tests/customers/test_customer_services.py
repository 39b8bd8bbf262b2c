"""The services and selectors that other apps call."""

import pytest

from apps.core.errors import Conflict, NotFound
from apps.customers.inputs import normalize_email
from apps.customers.models import Customer
from apps.customers.selectors import customer_get, customer_list, customer_wallets
from apps.customers.services import customer_archive, customer_create, customer_update
from tests.factories import MerchantFactory, sandbox_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        (" Ada@Example.COM ", "Ada@example.com"),
        ("plain@example.com", "plain@example.com"),
        ("no-at-sign", "no-at-sign"),
        ("", ""),
    ],
)
def test_normalize_email(raw, normalized):
    assert normalize_email(raw) == normalized


def test_customer_create_is_idempotent_per_merchant_and_email(merchant):
    first, created = customer_create(merchant=merchant, email="ada@example.com", name="Ada")
    again, created_again = customer_create(merchant=merchant, email="ADA@example.com", name="Other")
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert Customer.objects.get().name == "Ada"
    in_sandbox, created_in_sandbox = customer_create(merchant=sandbox_of(merchant), email="ada@example.com")
    assert created_in_sandbox and in_sandbox.pk != first.pk


def test_customer_get_refuses_other_tenants(merchant):
    customer, _ = customer_create(merchant=merchant, email="ada@example.com")
    assert customer_get(merchant=merchant, customer_id=customer.pk) == customer
    for other in (sandbox_of(merchant), MerchantFactory()):
        with pytest.raises(NotFound) as error:
            customer_get(merchant=other, customer_id=customer.pk)
        assert str(customer.pk) in error.value.message


def test_customer_list_leaves_out_archived(merchant):
    ada, _ = customer_create(merchant=merchant, email="ada@example.com")
    grace, _ = customer_create(merchant=merchant, email="grace@example.com")
    customer_archive(merchant=merchant, customer=ada)
    assert list(customer_list(merchant=merchant, filters={})) == [grace]
    assert list(customer_list(merchant=merchant, filters={"email": "GRACE@example.com"})) == [grace]


def test_customer_update_refuses_a_taken_email_and_keeps_the_row(merchant):
    customer_create(merchant=merchant, email="ada@example.com")
    grace, _ = customer_create(merchant=merchant, email="grace@example.com")
    with pytest.raises(Conflict) as error:
        customer_update(merchant=merchant, customer=grace, email=" Ada@Example.com")
    assert error.value.code == "CUSTOMER_EMAIL_TAKEN"
    grace.refresh_from_db()
    assert grace.email == "grace@example.com"


def test_customer_update_merges_the_address(merchant):
    customer, _ = customer_create(merchant=merchant, email="a@example.com", address={"line1": "1 Road", "city": "Oslo"})
    updated = customer_update(merchant=merchant, customer=customer, address={"city": "Bergen", "line1": ""})
    assert updated.address == {"city": "Bergen"}
    assert customer_update(merchant=merchant, customer=customer, address=None).address == {}


def test_customer_archive_keeps_the_first_archive_time(merchant):
    customer, _ = customer_create(merchant=merchant, email="a@example.com")
    first = customer_archive(merchant=merchant, customer=customer).archived_at
    assert first is not None
    assert customer_archive(merchant=merchant, customer=customer).archived_at == first


def test_customer_wallets_is_empty_until_the_ledger_exists(merchant):
    customer, _ = customer_create(merchant=merchant, email="a@example.com")
    assert customer_wallets(customer) == []
