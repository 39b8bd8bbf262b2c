from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict, Unprocessable
from apps.customers.models import Customer
from apps.ledger.services import wallet_get_or_create
from apps.payments.models import PaymentSession
from apps.payments.services import payment_session_create, payment_sessions_expire
from apps.subscriptions.hooks import subscription_created, termination_handled
from apps.subscriptions.models import BillingPeriod, Subscription
from apps.subscriptions.services.events import subscription_publish
from apps.subscriptions.services.periods import period_cut, period_first


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
            period_anchor=started_at,
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


def _lock(merchant, subscription: Subscription) -> Subscription:
    return (
        Subscription.objects.select_for_update(no_key=True, of=("self",))
        .select_related("merchant", "wallet", "plan", "customer")
        .get(pk=subscription.pk, merchant=merchant)
    )


def _already_terminated(subscription: Subscription) -> Conflict:
    return Conflict(
        f"Subscription {subscription.id} was already terminated at {subscription.terminated_at.isoformat()}.",
        code="SUBSCRIPTION_ALREADY_TERMINATED",
    )


def subscription_terminate(*, merchant, subscription: Subscription, reason: str = "") -> Subscription:
    """End the subscription now (unless a capability handles it instead: the `on_termination_requested`
    hook; the API-keys app moves a paid tier to free): its open period closes here, as at its end but prorated (its
    usage to now invoiced; the unused share of a paid in-advance fee returned to the wallet, an
    unpaid one issued again for the share used; no next period), and its pending payment
    sessions can no longer be paid. Publishes subscription.terminated."""
    with transaction.atomic():
        locked = _lock(merchant, subscription)
        if locked.status == Subscription.Status.TERMINATED:
            raise _already_terminated(locked)
        if termination_handled(locked):
            return _lock(merchant, locked)
        now = timezone.now()
        locked.status = Subscription.Status.TERMINATED
        locked.terminated_at = now
        locked.termination_reason = reason
        locked.save(update_fields=["status", "terminated_at", "termination_reason", "updated_at"])
        try:
            with transaction.atomic():
                period_cut(subscription=locked, at=now, reason=BillingPeriod.EndReason.TERMINATION)
        except Conflict:
            # its period ended a moment ago and the close is about to move it: that close
            # invoices the whole period and, the subscription terminated, begins no next one
            pass
        payment_sessions_expire(sessions=PaymentSession.objects.filter(subscription=locked))
        subscription_publish(subscription=locked, type="subscription.terminated")
    return locked


def subscription_change_plan(*, merchant, subscription: Subscription, plan, effective: str = "now") -> Subscription:
    """Move the subscription to `plan` (design.md: plan changes return only what was paid).

    `now`: the current period closes at this instant (its usage to now invoiced, kind change;
    the unused share of what was paid for its in-advance fees returned to the wallet, an unpaid
    fee invoice issued again for the share used) and a period on the new plan begins, its
    in-advance fees prorated to what is left of it; it ends at the old anchor's boundary when the
    interval is the same, else the change is the new anchor. `period_end`: scheduled, applied
    when the current period ends (a second request replaces the schedule; the current plan
    again cancels it). Publishes subscription.updated."""
    if plan.currency != subscription.plan.currency:
        raise Unprocessable(
            f"Plan {plan.id} is in {plan.currency} and subscription {subscription.id} in "
            f"{subscription.plan.currency}; a plan change keeps the currency.",
            code="CURRENCY_MISMATCH",
        )
    with transaction.atomic():
        locked = _lock(merchant, subscription)
        if locked.status == Subscription.Status.TERMINATED:
            raise _already_terminated(locked)
        if locked.status == Subscription.Status.PENDING_PAYMENT:
            raise Conflict(
                f"Subscription {locked.id} is waiting for its activation payment; change its plan once it is active "
                "(or terminate it and subscribe again).",
                code="SUBSCRIPTION_NOT_ACTIVE",
            )
        if effective == "period_end":
            scheduled = None if plan.pk == locked.plan_id else plan
            if scheduled is None and locked.scheduled_plan_id is None:
                raise _unchanged(locked)
            locked.scheduled_plan = scheduled
            locked.save(update_fields=["scheduled_plan", "updated_at"])
        else:
            if plan.pk == locked.plan_id:
                raise _unchanged(locked)
            period_cut(subscription=locked, at=timezone.now(), reason=BillingPeriod.EndReason.CHANGE, plan=plan)
        subscription_publish(subscription=locked, type="subscription.updated")
    return locked


def _unchanged(subscription: Subscription) -> Unprocessable:
    return Unprocessable(
        f"Subscription {subscription.id} is already on plan {subscription.plan_id}.", code="PLAN_UNCHANGED"
    )
