"""The customer admin: scoped to the staff member's merchant, creating through the service."""

import pytest
from django.urls import reverse

from apps.customers.models import Customer
from apps.customers.services import customer_create
from apps.merchants.models import User
from apps.merchants.services import merchant_staff_create
from tests.factories import MerchantFactory, sandbox_of

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:customers_customer_add")
LIST_URL = reverse("admin:customers_customer_changelist")


@pytest.fixture
def alpha():
    return MerchantFactory(name="Alpha")


@pytest.fixture
def staff(client, alpha):
    user = merchant_staff_create(merchant=alpha, username="alice", email="alice@alpha.example", password="pw-123456789")
    client.force_login(user)
    return client


def listed_emails(client, params=None):
    response = client.get(LIST_URL, params or {})
    assert response.status_code == 200
    return sorted(c.email for c in response.context["cl"].result_list)


def add_form(**fields):
    return {"email": "", "name": "", "phone": "", "address": "{}", "external_id": "", "metadata": "{}", **fields}


def test_staff_sees_only_their_merchants_customers(staff, alpha):
    customer_create(merchant=alpha, email="mine@example.com")
    customer_create(merchant=sandbox_of(alpha), email="sandbox@example.com")
    customer_create(merchant=MerchantFactory(), email="theirs@example.com")
    assert listed_emails(staff) == ["mine@example.com"]
    assert listed_emails(staff, {"q": "theirs"}) == []
    other = Customer.objects.get(email="theirs@example.com")
    response = staff.get(reverse("admin:customers_customer_change", args=[other.pk]))
    assert response.status_code in (302, 404)


def test_search_and_archived_filter(staff, alpha):
    customer_create(merchant=alpha, email="ada@example.com", name="Ada", external_id="crm-7")
    gone, _ = customer_create(merchant=alpha, email="old@example.com")
    staff.post(LIST_URL, {"action": "archive_customers", "_selected_action": [str(gone.pk)]})
    gone.refresh_from_db()
    assert gone.archived_at is not None
    assert listed_emails(staff, {"q": "crm-7"}) == ["ada@example.com"]
    assert listed_emails(staff, {"archived": "yes"}) == ["old@example.com"]
    assert listed_emails(staff, {"archived": "no"}) == ["ada@example.com"]


def test_staff_creates_a_customer_for_their_merchant(staff, alpha):
    response = staff.post(
        ADD_URL, add_form(email="New@Example.COM", name="New", address='{"city": "Oslo", "country": "no"}')
    )
    assert response.status_code == 302
    customer = Customer.objects.get()
    assert customer.merchant == alpha
    assert customer.email == "New@example.com"
    assert customer.address == {"city": "Oslo", "country": "NO"}


def test_duplicate_email_in_the_add_form_is_a_form_error(staff, alpha):
    customer_create(merchant=alpha, email="taken@example.com")
    response = staff.post(ADD_URL, add_form(email="TAKEN@example.com", name="Dup"))
    assert response.status_code == 200
    assert "email" in response.context["adminform"].form.errors
    assert Customer.objects.count() == 1


def test_bad_address_in_the_add_form_is_a_form_error(staff):
    response = staff.post(ADD_URL, add_form(email="a@example.com", address='{"country": "Atlantis"}'))
    assert response.status_code == 200
    assert "address" in response.context["adminform"].form.errors
    assert not Customer.objects.exists()


def test_superuser_gets_the_same_duplicate_email_error(client, alpha):
    root = User.objects.create_superuser(username="root", email="root@platform.example", password="pw-123456789")
    client.force_login(root)
    customer_create(merchant=alpha, email="taken@example.com")
    response = client.post(ADD_URL, add_form(merchant=str(alpha.pk), email="taken@example.com"))
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["email"]
    assert Customer.objects.count() == 1


def test_staff_edits_a_customer_through_the_service(staff, alpha):
    customer, _ = customer_create(merchant=alpha, email="ada@example.com", metadata={"a": "1"})
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    response = staff.post(
        url,
        add_form(name="Ada L", phone="+1 555", address='{"line1": "2 Way"}', external_id="x", metadata='{"b": "2"}'),
    )
    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.name, customer.phone, customer.external_id) == ("Ada L", "+1 555", "x")
    assert customer.address == {"line1": "2 Way"}
    assert customer.metadata == {"b": "2"}
    assert customer.email == "ada@example.com"


def test_customers_cannot_be_deleted_in_the_admin(staff, alpha):
    customer, _ = customer_create(merchant=alpha, email="ada@example.com")
    response = staff.get(reverse("admin:customers_customer_delete", args=[customer.pk]))
    assert response.status_code == 403
    assert Customer.objects.filter(pk=customer.pk).exists()
