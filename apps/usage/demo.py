"""Demo usage for `make run`: in the sandbox, a customer on the pay-as-you-go plan with a
prefunded wallet, so that a newcomer can report usage at once. Idempotent."""

from decimal import Decimal

from apps.catalog.models import BillableMetric, Plan
from apps.customers.services import customer_create
from apps.payments.models import PaymentSession
from apps.payments.services import payment_session_pay_test
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_create

DEMO_CUSTOMER_EMAIL = "ada@demo-customer.example"
PREFUND = Decimal("10")


def seed(*, live, sandbox) -> list[str]:
    plan = Plan.objects.filter(merchant=sandbox, code="payg").first()
    metric = BillableMetric.objects.filter(merchant=sandbox, name="API calls").first()
    if plan is None or metric is None:
        return []
    customer, _ = customer_create(merchant=sandbox, email=DEMO_CUSTOMER_EMAIL, name="Ada (demo customer)")
    subscription = Subscription.objects.filter(merchant=sandbox, customer=customer, plan=plan).first()
    if subscription is None:
        subscription = subscription_create(merchant=sandbox, customer=customer, plan=plan, prefund_amount=PREFUND)
        session = PaymentSession.objects.get(subscription=subscription)
        payment_session_pay_test(merchant=sandbox, session_id=session.id)
    body = (
        f'{{"idempotencyKey": "demo-1", "customerId": "{customer.id}", '
        f'"properties": [{{"billableMetricId": "{metric.id}", "quantity": 1}}]}}'
    )
    return [
        f"  Sandbox customer:          {customer.id} ({DEMO_CUSTOMER_EMAIL}, {PREFUND} USDC prefunded, plan payg)",
        f"  Sandbox plan payg:         {plan.id} (billable metric 'API calls': {metric.id})",
        "  Report usage (again with the same idempotencyKey: the same response, charged once):",
        "    curl -X POST <BASE_URL>/v0/usage -H 'Authorization: Bearer <SANDBOX_KEY>' \\",
        f"         -H 'Content-Type: application/json' -d '{body}'",
    ]
