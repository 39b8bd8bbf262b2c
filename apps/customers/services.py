"""Writes of customers. One customer per merchant row and email (without case) among those not
archived: the partial unique index `customer_unique_merchant_email` decides under concurrency."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import Conflict
from apps.core.models import violated_constraint
from apps.customers import hooks
from apps.customers.inputs import ADDRESS_KEYS, normalize_email
from apps.customers.models import Customer
from apps.customers.selectors import customer_find_active_by_email
from apps.merchants.models import Merchant

EMAIL_CONSTRAINT = "customer_unique_merchant_email"
# How often a create retries when the customer that beat it to the index was archived meanwhile.
CREATE_ATTEMPTS = 3


class _Unset:
    def __repr__(self):
        return "UNSET"


UNSET = _Unset()


def customer_create(
    *,
    merchant: Merchant,
    email: str,
    name: str = "",
    phone: str = "",
    address: dict | None = None,
    external_id: str = "",
    metadata: dict | None = None,
) -> tuple[Customer, bool]:
    """The merchant's customer with this email: (customer, True) when created, or
    (the existing customer, False), unchanged, when one that is not archived already has it.

    Inputs are validated by the caller (see apps.customers.inputs); `address` is the stored form
    (only the keys that are set).
    """
    email = normalize_email(email)
    for _ in range(CREATE_ATTEMPTS):
        existing = customer_find_active_by_email(merchant=merchant, email=email)
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():
                customer = Customer.objects.create(
                    merchant=merchant,
                    email=email,
                    name=name or "",
                    phone=phone or "",
                    address=dict(address or {}),
                    external_id=external_id or "",
                    metadata=dict(metadata or {}),
                )
        except IntegrityError as error:
            if violated_constraint(error) != EMAIL_CONSTRAINT:
                raise
            # A concurrent request created this customer first; its row is committed now.
            continue
        return customer, True
    raise Conflict(
        f"A customer with email {email} was being created and archived concurrently; retry the request.",
        code="CUSTOMER_EMAIL_CONTENDED",
    )


def _email_taken(email: str) -> Conflict:
    return Conflict(
        f"Another customer of this merchant already has the email {email}.",
        code="CUSTOMER_EMAIL_TAKEN",
        details={"email": email},
    )


def customer_update(
    *,
    merchant: Merchant,
    customer: Customer,
    email: str | _Unset = UNSET,
    name: str | None | _Unset = UNSET,
    phone: str | None | _Unset = UNSET,
    address: dict | None | _Unset = UNSET,
    external_id: str | None | _Unset = UNSET,
    metadata: dict | None | _Unset = UNSET,
) -> Customer:
    """Change the given fields; the others stay. None (or "") clears a text field.

    `address` is merged key by key (a key set to None or "" is removed); None clears the whole
    address. `metadata` replaces the stored object (None clears it).
    Conflict CUSTOMER_EMAIL_TAKEN when another customer that is not archived has the new email;
    Conflict CUSTOMER_ARCHIVED for an archived customer.
    """
    try:
        with transaction.atomic():
            locked = (
                Customer.objects.select_for_update(no_key=True, of=("self",))
                .select_related("merchant")
                .get(pk=customer.pk, merchant=merchant)
            )
            if locked.archived_at is not None:
                raise Conflict(
                    f"Customer {locked.pk} is archived and cannot be changed.",
                    code="CUSTOMER_ARCHIVED",
                    details={"customerId": str(locked.pk)},
                )
            changed: list[str] = []

            def assign(field: str, value) -> None:
                if getattr(locked, field) != value:
                    setattr(locked, field, value)
                    changed.append(field)

            if email is not UNSET:
                email = normalize_email(email)
                if email.lower() != locked.email.lower():
                    other = customer_find_active_by_email(merchant=merchant, email=email)
                    if other is not None and other.pk != locked.pk:
                        raise _email_taken(email)
                assign("email", email)
            for field, value in (("name", name), ("phone", phone), ("external_id", external_id)):
                if value is not UNSET:
                    assign(field, value or "")
            if address is not UNSET:
                merged = {} if address is None else dict(locked.address or {})
                for key, value in (address or {}).items():
                    if key not in ADDRESS_KEYS:
                        raise ValueError(f"unknown address key {key!r}")
                    if value in (None, ""):
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                assign("address", merged)
            if metadata is not UNSET:
                assign("metadata", dict(metadata or {}))
            if changed:
                locked.save(update_fields=[*changed, "updated_at"])
    except IntegrityError as error:
        if violated_constraint(error) != EMAIL_CONSTRAINT:
            raise
        # Another customer took the email between the check and the write.
        raise _email_taken(email) from None
    return locked


def customer_archive(*, merchant: Merchant, customer: Customer) -> Customer:
    """Archive the customer: it leaves the lists, keeps its history and frees its email for a new
    customer. Archiving an archived customer changes nothing."""
    with transaction.atomic():
        locked = (
            Customer.objects.select_for_update(no_key=True, of=("self",))
            .select_related("merchant")
            .get(pk=customer.pk, merchant=merchant)
        )
        if locked.archived_at is None:
            hooks.check_archive(locked)
            locked.archived_at = timezone.now()
            locked.save(update_fields=["archived_at", "updated_at"])
    return locked
