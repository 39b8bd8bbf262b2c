"""Writes of customers. One customer per merchant row and email (without case) among those not
archived: the partial unique index `customer_unique_merchant_email` decides under concurrency.
A customer created publishes customer.created in the same transaction."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import Conflict
from apps.core.models import violated_constraint
from apps.customers import hooks
from apps.customers.billing import CurrencyBillingSettings
from apps.customers.inputs import ADDRESS_KEYS, normalize_email
from apps.customers.models import BillingSettings, Customer
from apps.customers.selectors import customer_find_active_by_email
from apps.customers.serializers import CustomerSerializer
from apps.ledger.lock_objects import lock_wallet_balances, locked_rows
from apps.ledger.models import Wallet
from apps.merchants.models import Merchant
from apps.webhooks.outbox import publish

# {currency: the currency's settings, or None to remove them}; currencies not named stay.
BillingSettingsChanges = dict[str, CurrencyBillingSettings | None]

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
    billing_settings: BillingSettingsChanges | None = None,
) -> tuple[Customer, bool]:
    """The merchant's customer with this email: (customer, True) when created, with
    customer.created published, or (the existing customer, False), unchanged, when one that is
    not archived already has it.

    Inputs are validated by the caller (see apps.customers.inputs); `address` is the stored form
    (only the keys that are set); `billing_settings` by currency (see BillingSettingsInput).
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
                _set_billing_settings(customer, billing_settings or {})
                _publish_created(customer)
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


def _publish_created(customer: Customer) -> None:
    publish(merchant=customer.merchant, type="customer.created", data=CustomerSerializer(customer).data)


def _set_billing_settings(customer: Customer, changes: BillingSettingsChanges) -> bool:
    """Apply `changes` to the customer's billing settings; whether anything changed."""
    if not changes:
        return False
    for currency, settings in changes.items():
        if settings is not None:
            settings.check(currency)
    # Postings flip the settings' low_balance_alerted and auto_recharge_triggered in their
    # follow-up statement (apps.customers.low_balance), under the wallet's balance locks and
    # after them. Taking the same locks first, in the ledger's order (wallet balance rows, then
    # the settings rows in primary-key order), serializes this read-modify-write with every
    # posting of those wallets: a posting either committed before the read, or runs after the
    # commit and reads the new thresholds (never a flag computed from the old ones written over
    # the new), and neither can deadlock with the other.
    lock_wallet_balances(
        Wallet.objects.filter(customer=customer, merchant=customer.merchant, currency__in=list(changes)).order_by("pk")
    )
    stored = {
        row.currency: row
        for row in locked_rows(BillingSettings.objects.filter(customer=customer, merchant=customer.merchant))
    }
    changed = False
    for currency, settings in changes.items():
        row = stored.get(currency)
        if settings is None:
            if row is not None:
                row.delete()
                changed = True
            continue
        values = {
            "low_balance_threshold": settings.low_balance_threshold,
            "auto_recharge_enabled": settings.auto_recharge_enabled,
            "auto_recharge_threshold": settings.auto_recharge_threshold,
            "auto_recharge_amount": settings.auto_recharge_amount,
        }
        if row is None:
            BillingSettings.objects.create(merchant=customer.merchant, customer=customer, currency=currency, **values)
            changed = True
        elif any(getattr(row, field) != value for field, value in values.items()):
            if row.low_balance_threshold != values["low_balance_threshold"]:
                # a new threshold: the next movement of the balance below it is heard
                values["low_balance_alerted"] = False
            if (row.auto_recharge_enabled, row.auto_recharge_threshold) != (
                values["auto_recharge_enabled"],
                values["auto_recharge_threshold"],
            ):
                # auto-recharge turned on, off, or a new threshold: the next movement of the
                # balance below it charges the card
                values["auto_recharge_triggered"] = False
                values["auto_recharge_session_id"] = None
            for field, value in values.items():
                setattr(row, field, value)
            row.save(update_fields=[*values, "updated_at"])
            changed = True
    return changed


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
    billing_settings: BillingSettingsChanges | None | _Unset = UNSET,
) -> Customer:
    """Change the given fields; the others stay. None (or "") clears a text field.

    `address` is merged key by key (a key set to None or "" is removed); None clears the whole
    address. `metadata` replaces the stored object (None clears it). `billing_settings` is
    merged currency by currency: a currency's settings given replace its settings, None removes
    them; None for the whole removes every currency's.
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
            settings_changed = False
            if billing_settings is not UNSET:
                if billing_settings is None:
                    stored = BillingSettings.objects.filter(customer=locked, merchant=merchant)
                    billing_settings = dict.fromkeys(stored.values_list("currency", flat=True))
                settings_changed = _set_billing_settings(locked, billing_settings)
            # (the settings live in rows of their own; the customer's updatedAt moves with them too)
            if changed or settings_changed:
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
