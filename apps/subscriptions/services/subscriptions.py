from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict, Unprocessable
from apps.customers.models import Customer
from apps.ledger.services import wallet_get_or_create
from apps.payments.models import PaymentSession
from apps.payments.services import payment_session_create, payment_sessions_expire
from apps.subscriptions.hooks import subscription_created
from apps.subscriptions.models import Subscription
from apps.subscriptions.services.events import subscription_publish
from apps.subscriptions.services.periods import period_first


def subscription_create(
    *,
    merchant,
    customer,
    plan,
    name: str = "",
    started_at=None,
    prefund_amount: Decimal | None = None,
    minimum_account_balance: Decimal = Decimal("0"),
    success_url: str = "",
    failure_url: str = "",
) -> Subscription:
    """Subscribe the customer to the plan. What is due at the start (the prefund, and what the
    capabilities ask through the "created" hook: the invoices app's start invoice for the plan's
    in_advance fees, unless the wallet paid it at once) is asked by its activation session, and
    the subscription waits for it (pending_payment); with nothing due it is active at once.
    Publishes subscription.created, and subscription.activated when it is active at once."""
    if customer.archived_at is not None:
        raise Unprocessable(f"Customer {customer.id} is archived; it cannot subscribe.", code="CUSTOMER_ARCHIVED")
    now = timezone.now()
    started_at = started_at or now
    prefund = prefund_amount if prefund_amount is not None and prefund_amount > 0 else Decimal(0)
    with transaction.atomic():
        # Locked, so that archiving the customer (which refuses live subscriptions) waits.
        customer = Customer.objects.select_for_update(no_key=True).get(pk=customer.pk, merchant=merchant)
        if customer.archived_at is not None:
            raise Unprocessable(f"Customer {customer.id} is archived; it cannot subscribe.", code="CUSTOMER_ARCHIVED")
        wallet = wallet_get_or_create(merchant=merchant, customer=customer, currency=plan.currency)
        subscription = Subscription.objects.create(
            merchant=merchant,
            customer=customer,
            plan=plan,
            wallet=wallet,
            name=name or plan.name,
            status=Subscription.Status.PENDING_PAYMENT,
            started_at=started_at,
            prefund_amount=prefund_amount,
            minimum_account_balance=minimum_account_balance,
            success_url=success_url,
            failure_url=failure_url,
        )
        period_first(subscription=subscription)
        charges = subscription_created(subscription)
        due = prefund + sum((charge.amount for charge in charges), Decimal(0))
        if due > 0:
            payment_session_create(
                merchant=merchant,
                purpose=PaymentSession.Purpose.ACTIVATION,
                amount=due,
                currency=plan.currency,
                customer=customer,
                wallet=wallet,
                subscription=subscription,
                invoice_id=charges[0].invoice_id if charges else None,
                success_url=success_url,
                cancel_url=failure_url,
            )
        else:
            subscription.status = Subscription.Status.ACTIVE
            subscription.activated_at = now
            subscription.save(update_fields=["status", "activated_at", "updated_at"])
        subscription_publish(subscription=subscription, type="subscription.created")
        if subscription.status == Subscription.Status.ACTIVE:
            subscription_publish(subscription=subscription, type="subscription.activated")
    return subscription


def subscription_terminate(*, merchant, subscription: Subscription, reason: str = "") -> Subscription:
    """End the subscription now; its pending payment sessions can no longer be paid.
    Publishes subscription.terminated."""
    with transaction.atomic():
        locked = (
            Subscription.objects.select_for_update(no_key=True, of=("self",))
            .select_related("merchant", "wallet", "plan")
            .get(pk=subscription.pk, merchant=merchant)
        )
        if locked.status == Subscription.Status.TERMINATED:
            raise Conflict(
                f"Subscription {locked.id} was already terminated at {locked.terminated_at.isoformat()}.",
                code="SUBSCRIPTION_ALREADY_TERMINATED",
            )
        now = timezone.now()
        locked.status = Subscription.Status.TERMINATED
        locked.terminated_at = now
        locked.termination_reason = reason
        locked.save(update_fields=["status", "terminated_at", "termination_reason", "updated_at"])
        payment_sessions_expire(sessions=PaymentSession.objects.filter(subscription=locked))
        subscription_publish(subscription=locked, type="subscription.terminated")
    return locked
