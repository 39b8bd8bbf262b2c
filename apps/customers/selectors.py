import uuid

from django.db.models import QuerySet, Value
from django.db.models.functions import Lower

from apps.core.errors import NotFound
from apps.customers.inputs import normalize_email
from apps.customers.models import BillingSettings, Customer
from apps.merchants.models import Merchant


def customer_list(*, merchant: Merchant, filters: dict | None = None) -> QuerySet[Customer]:
    """The merchant's customers that are not archived, newest first.

    filters: `email` (exact, without case), `external_id` (exact).
    """
    filters = filters or {}
    queryset = Customer.objects.select_related("merchant").filter(merchant=merchant, archived_at__isnull=True)
    if filters.get("email"):
        queryset = _with_email(queryset, filters["email"])
    if filters.get("external_id"):
        queryset = queryset.filter(external_id=filters["external_id"])
    return queryset.order_by("-created_at", "-id")


def customer_get(*, merchant: Merchant, customer_id) -> Customer:
    """One customer of this merchant row (archived ones too); NotFound for any other tenant's id,
    the other mode's, or an id that is not a UUID."""
    try:
        pk = uuid.UUID(str(customer_id))
    except ValueError:
        pk = None
    customer = Customer.objects.select_related("merchant").filter(merchant=merchant, pk=pk).first() if pk else None
    if customer is None:
        raise NotFound(f"No customer {customer_id}.", details={"customerId": str(customer_id)})
    return customer


def customer_find_active_by_email(*, merchant: Merchant, email: str) -> Customer | None:
    """The customer that is not archived with this email (compared without case), if any."""
    active = Customer.objects.select_related("merchant").filter(merchant=merchant, archived_at__isnull=True)
    return _with_email(active, email).first()


def _with_email(queryset: QuerySet[Customer], email: str) -> QuerySet[Customer]:
    """Rows whose email equals `email` without case: lower(email) = lower(%s), the expression of
    the unique index, so that the lookup uses it and agrees with it."""
    return queryset.alias(email_lower=Lower("email")).filter(email_lower=Lower(Value(normalize_email(email))))


def customers_wallets(*, customers) -> dict[uuid.UUID, list[dict]]:
    """The wallets of these customers as the API shows them, by customer id: `[{"id", "object",
    "livemode", "currency", "balance", "held"}]` in currency order, where `balance` is the available amount
    and `held` the amount reserved by entitlements. Two queries (none for no customers),
    whatever their number. CustomerSerializer (and with it every API response, webhook and
    portal view of a customer) takes the wallets only from here."""
    from apps.ledger.models import Wallet
    from apps.ledger.selectors import wallets_balances
    from apps.ledger.serializers import wallet_data

    result: dict[uuid.UUID, list[dict]] = {customer.id: [] for customer in customers}
    if not result:
        return result
    wallets = list(Wallet.objects.filter(customer_id__in=list(result)).select_related("merchant").order_by("currency"))
    balances = wallets_balances(wallets=wallets)
    for wallet in wallets:
        result[wallet.customer_id].append(wallet_data(wallet, balances[wallet.id]))
    return result


def customer_wallets(customer: Customer) -> list[dict]:
    """One customer's wallets (see customers_wallets)."""
    return customers_wallets(customers=[customer])[customer.id]


def customers_billing_settings(*, customers) -> dict[uuid.UUID, dict[str, BillingSettings]]:
    """The billing settings of these customers, by customer id and currency. One query (none for
    no customers), whatever their number; CustomerSerializer reads them only from here."""
    result: dict[uuid.UUID, dict[str, BillingSettings]] = {customer.id: {} for customer in customers}
    if result:
        for row in BillingSettings.objects.filter(customer_id__in=list(result)):
            result[row.customer_id][row.currency] = row
    return result
