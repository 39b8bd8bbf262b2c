"""Plan changes and terminations with frozen time (issue 14): the current period closes at the
switch and is invoiced to that instant; the unused share of a paid in-advance fee goes back to
the wallet (revenue and commission in proportion), an unpaid fee invoice is issued again for the
share used; the new plan's fee is invoiced for what is left of the period; the same interval
keeps the anchor, another one moves it; period_end is applied by the close; every ledger
transaction stays balanced per mode.

February 2026 has 28 days: its period [02-01 00:00, 03-01 00:00) lasts 672 hours, and a switch
at 02-15 02:00 leaves 338 hours served and 334 unused.
"""

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from apps.catalog.models import PaymentTerm, Price
from apps.invoices.models import Invoice
from apps.invoices.services.lines import prorate
from apps.ledger.selectors import ledger_check
from apps.subscriptions.models import BillingPeriod, Subscription
from apps.subscriptions.periods import fee_share, period_at, running_period_at
from apps.subscriptions.services import periods_advance
from apps.webhooks.models import Event
from tests.factories import make_plan
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db

D = Decimal


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fee(merchant, amount, name, term=PaymentTerm.IN_ADVANCE):
    return Price.objects.create(
        merchant=merchant, payment_term=term, currency="USDC", amount=D(amount), invoice_display_name=name
    )


def usage_price(merchant, metric, unit_price):
    return Price.objects.create(
        merchant=merchant,
        billable_metric=metric,
        payment_term=PaymentTerm.IN_ARREARS,
        currency="USDC",
        properties={"unitPrice": unit_price},
    )


def lines(invoice):
    return [(line.description, line.amount) for line in invoice.lines.order_by("position")]


def report(api, billing, key, metric, quantity, timestamp):
    return api.post("/v0/usage", billing.event(key, metric, quantity, timestamp=timestamp))


@pytest.fixture
def world(api, time_machine):
    """Plan A (monthly: calls at 1 in arrears, Base 30 in advance) since 01-01; 40 calls in
    January; plans B (monthly: calls at 0.5, Pro 90), Lite (monthly: calls at 2, Lite 12) and
    Weekly (calls at 1, 7 a week)."""
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    billing = Billing(api.merchant)
    calls = billing.metric(term=PaymentTerm.IN_ARREARS, properties={"unitPrice": "1"})
    billing.plan.prices.add(fee(api.merchant, "30", "Base"))
    plans = {
        "pro": make_plan(
            api.merchant, code="pro", prices=[usage_price(api.merchant, calls, "0.5"), fee(api.merchant, "90", "Pro")]
        ),
        "lite": make_plan(
            api.merchant, code="lite", prices=[usage_price(api.merchant, calls, "2"), fee(api.merchant, "12", "Lite")]
        ),
        "weekly": make_plan(
            api.merchant,
            code="weekly",
            interval="weekly",
            prices=[usage_price(api.merchant, calls, "1"), fee(api.merchant, "7", "Weekly")],
        ),
    }
    time_machine.move_to(at("2026-01-10T00:00"), tick=False)
    assert report(api, billing, "jan", calls, 40, "2026-01-10T00:00:00Z").status_code == 201
    return billing, calls, plans


def renew(billing, time_machine):
    """February begins: January's invoice (40 calls + February's Base 30 = 70)."""
    time_machine.move_to(at("2026-02-01T02:00"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    renewal = Invoice.objects.get(kind="period", period__start=at("2026-01-01T00:00"))
    assert renewal.total == D("70")
    return renewal


def change(api, billing, plan, effective="now"):
    return api.patch(f"/v0/subscriptions/{billing.subscription.id}", {"planId": str(plan.id), "effective": effective})


def test_an_upgrade_now_returns_the_unused_fee_invoices_the_period_to_the_switch_and_the_new_fee_for_the_rest(
    api, world, time_machine
):
    billing, calls, plans = world
    billing.fund("300")
    renewal = renew(billing, time_machine)
    assert renewal.status == "paid" and billing.available() == D("230")
    time_machine.move_to(at("2026-02-10T00:00"), tick=False)
    february = report(api, billing, "feb", calls, 10, "2026-02-10T00:00:00Z").json()
    revenue, commission = billing.revenue(), billing.commission()

    time_machine.move_to(at("2026-02-15T02:00"), tick=False)
    response = change(api, billing, plans["pro"])
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["planId"] == str(plans["pro"].id) and body["scheduledPlanId"] is None
    assert (body["currentPeriodStart"], body["currentPeriodEnd"]) == ("2026-02-15T02:00:00Z", "2026-03-01T00:00:00Z")

    # Base's unused 334 of 672 hours: 30 x 334 / 672 = 14.9107142... -> 14.910714, back to the
    # wallet; revenue and commission give back 95 % and 5 % of it, as the renewal's payment split
    assert billing.available() == D("244.910714")
    assert billing.commission() == commission - D("0.7455357")
    assert billing.revenue() == revenue - D("14.1651783")

    closing = Invoice.objects.get(kind="change")
    assert closing.status == "draft" and closing.period.end_reason == BillingPeriod.EndReason.CHANGE
    assert (closing.period_start, closing.period_end) == (at("2026-02-01T00:00"), at("2026-02-15T02:00"))
    # 10 calls at A's 1; Pro for the 334 hours left: 90 x 334 / 672 = 44.7321428... -> 44.732143
    assert lines(closing) == [
        (calls.name, D("10")),
        ("Pro (prorated: 2026-02-15 02:00:00 - 2026-03-01 00:00:00 UTC)", D("44.732143")),
    ]
    assert closing.total == D("54.732143")
    assert api.get(f"/v0/usage/{february['id']}").json()["billing"]["invoiceId"] == str(closing.id)

    # usage before the switch belongs to the closed period: refused; after it, priced by Pro
    late = report(api, billing, "before-switch", calls, 1, "2026-02-15T01:00:00Z")
    assert late.status_code == 422 and late.json()["code"] == "USAGE_OUTSIDE_OPEN_PERIOD"
    time_machine.move_to(at("2026-02-20T00:00"), tick=False)
    assert report(api, billing, "pro", calls, 4, "2026-02-20T00:00:00Z").status_code == 201

    time_machine.move_to(at("2026-02-15T03:01:01"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    closing.refresh_from_db()
    assert (closing.status, closing.number) == ("paid", "INV-000002")
    assert billing.available() == D("190.178571")

    # March: the switch's period [02-15 02:00, 03-01) closes on Pro: 4 calls at 0.5, March's Pro whole
    time_machine.move_to(at("2026-03-01T02:00"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    march = Invoice.objects.get(kind="period", period__start=at("2026-02-15T02:00"))
    assert lines(march) == [(calls.name, D("2")), ("Pro", D("90"))]
    assert march.status == "paid" and billing.available() == D("98.178571")
    assert BillingPeriod.objects.filter(subscription=billing.subscription, status="open").get().start == at(
        "2026-03-01T00:00"
    )
    updated = Event.objects.get(type="subscription.updated")
    assert updated.data["planId"] == str(plans["pro"].id)
    assert ledger_check() == []


def test_a_downgrade_now_issues_an_unpaid_renewal_again_for_the_share_of_the_fee_used(api, world, time_machine):
    billing, calls, plans = world
    billing.fund("45")
    renewal = renew(billing, time_machine)
    assert renewal.status == "open"  # 45 cannot pay 70

    time_machine.move_to(at("2026-02-15T02:00"), tick=False)
    assert change(api, billing, plans["lite"]).status_code == 200
    renewal.refresh_from_db()
    assert renewal.status == "void"
    again = Invoice.objects.get(kind="period", status="open")
    # Base served 338 of 672 hours: 30 x 338 / 672 = 15.0892857... -> 15.089286
    assert lines(again) == [(calls.name, D("40")), ("Base (served until 2026-02-15 02:00:00 UTC)", D("15.089286"))]
    assert again.total == D("55.089286") and again.number == "INV-000002"
    assert billing.available() == D("45")  # nothing was paid, nothing returned
    closing = Invoice.objects.get(kind="change")
    # no usage in February; Lite for the 334 hours left: 12 x 334 / 672 = 5.9642857... -> 5.964286
    assert lines(closing) == [("Lite (prorated: 2026-02-15 02:00:00 - 2026-03-01 00:00:00 UTC)", D("5.964286"))]

    billing.fund("20")  # 65: the oldest whole invoice first
    assert Invoice.objects.get(pk=again.pk).status == "paid"
    assert billing.available() == D("9.910714")
    time_machine.move_to(at("2026-02-15T03:01:01"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    assert Invoice.objects.get(pk=closing.pk).status == "paid"
    assert billing.available() == D("3.946428")
    assert ledger_check() == []


def test_a_change_to_another_interval_makes_the_switch_the_new_anchor(api, world, time_machine):
    billing, calls, plans = world
    billing.fund("300")
    renew(billing, time_machine)
    time_machine.move_to(at("2026-02-15T02:00"), tick=False)
    body = change(api, billing, plans["weekly"]).json()
    assert (body["currentPeriodStart"], body["currentPeriodEnd"]) == ("2026-02-15T02:00:00Z", "2026-02-22T02:00:00Z")
    closing = Invoice.objects.get(kind="change")
    assert lines(closing) == [("Weekly", D("7"))]  # a whole week: not prorated
    assert billing.available() == D("244.910714")  # Base's unused share back

    time_machine.move_to(at("2026-02-18T00:00"), tick=False)
    assert report(api, billing, "w", calls, 3, "2026-02-18T00:00:00Z").status_code == 201
    time_machine.move_to(at("2026-02-22T03:01:01"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    week = Invoice.objects.get(kind="period", period__start=at("2026-02-15T02:00"))
    assert lines(week) == [(calls.name, D("3")), ("Weekly", D("7"))]
    assert week.status == "paid"
    assert BillingPeriod.objects.get(subscription=billing.subscription, status="open").start == at("2026-02-22T02:00")
    assert api.get(f"/v0/subscriptions/{billing.subscription.id}").json()["currentPeriodEnd"] == "2026-03-01T02:00:00Z"
    assert ledger_check() == []


def test_a_change_at_period_end_is_scheduled_and_applied_by_the_close(api, world, time_machine):
    billing, calls, plans = world
    billing.fund("300")
    renew(billing, time_machine)
    time_machine.move_to(at("2026-02-10T00:00"), tick=False)
    body = change(api, billing, plans["pro"], "period_end").json()
    assert body["planId"] == str(billing.plan.id) and body["scheduledPlanId"] == str(plans["pro"].id)
    # the current plan again cancels the schedule; asking again sets it
    assert change(api, billing, billing.plan, "period_end").json()["scheduledPlanId"] is None
    again = change(api, billing, billing.plan, "period_end")
    assert again.status_code == 422 and again.json()["code"] == "PLAN_UNCHANGED"
    assert change(api, billing, plans["pro"], "period_end").status_code == 200
    assert report(api, billing, "feb", calls, 10, "2026-02-10T00:00:00Z").status_code == 201
    assert billing.available() == D("230")  # nothing moved yet
    assert not Invoice.objects.filter(kind="change").exists()

    time_machine.move_to(at("2026-03-01T02:00"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    february = Invoice.objects.get(kind="period", period__start=at("2026-02-01T00:00"))
    # February's calls on A; March's fee on Pro, whole
    assert lines(february) == [(calls.name, D("10")), ("Pro", D("90"))]
    subscription = Subscription.objects.get(pk=billing.subscription.pk)
    assert subscription.plan_id == plans["pro"].id and subscription.scheduled_plan_id is None
    assert subscription.period_anchor == at("2026-01-01T00:00")
    march = BillingPeriod.objects.get(subscription=subscription, status="open")
    assert (march.start, march.end, march.plan_id) == (at("2026-03-01T00:00"), at("2026-04-01T00:00"), plans["pro"].id)
    assert [
        e.data["scheduledPlanId"] for e in Event.objects.filter(type="subscription.updated").order_by("created_at")
    ][-1] is None
    assert ledger_check() == []


def test_termination_closes_the_period_at_its_moment_and_returns_the_unused_fee(api, world, time_machine):
    billing, calls, plans = world
    billing.fund("300")
    renew(billing, time_machine)
    time_machine.move_to(at("2026-02-10T00:00"), tick=False)
    assert report(api, billing, "feb", calls, 10, "2026-02-10T00:00:00Z").status_code == 201
    time_machine.move_to(at("2026-02-15T02:00"), tick=False)
    response = api.post(f"/v0/subscriptions/{billing.subscription.id}/termination", {"reason": "moving on"})
    assert response.status_code == 200 and response.json()["status"] == "terminated"
    assert billing.available() == D("244.910714")
    last = Invoice.objects.get(kind="period", period__start=at("2026-02-01T00:00"))
    assert last.period.end_reason == BillingPeriod.EndReason.TERMINATION
    assert lines(last) == [(calls.name, D("10"))]  # no next period, no fee
    time_machine.move_to(at("2026-02-15T03:01:01"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    last.refresh_from_db()
    assert last.status == "paid" and billing.available() == D("234.910714")
    assert not BillingPeriod.objects.filter(subscription=billing.subscription, status="open").exists()
    assert ledger_check() == []


def test_a_second_change_in_one_period_returns_the_unused_share_of_the_first_changes_fee(api, world, time_machine):
    billing, calls, plans = world
    billing.fund("300")
    renew(billing, time_machine)
    time_machine.move_to(at("2026-02-15T02:00"), tick=False)
    change(api, billing, plans["pro"])
    time_machine.move_to(at("2026-02-15T03:01:01"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    assert billing.available() == D("200.178571")  # 244.910714 - 44.732143 (Pro's share, paid)

    time_machine.move_to(at("2026-02-20T00:00"), tick=False)
    assert change(api, billing, billing.plan).status_code == 200  # back to A
    # Pro paid 44.732143 for [02-15 02:00, 03-01); 216 of its 334 hours unused:
    # 44.732143 x 216 / 334 = 28.9285715... -> 28.928572
    assert billing.available() == D("229.107143")
    second = Invoice.objects.get(kind="change", period__start=at("2026-02-15T02:00"))
    # Base again for the 216 hours left: 30 x 216 / 672 = 9.6428571... -> 9.642857
    assert lines(second) == [("Base (prorated: 2026-02-20 00:00:00 - 2026-03-01 00:00:00 UTC)", D("9.642857"))]
    assert ledger_check() == []


def test_refused_changes_say_why(api, world, time_machine):
    billing, calls, plans = world
    usd = make_plan(api.merchant, code="usd", currency="USD")
    response = change(api, billing, usd)
    assert response.status_code == 422 and response.json()["code"] == "CURRENCY_MISMATCH"
    response = change(api, billing, billing.plan)
    assert response.status_code == 422 and response.json()["code"] == "PLAN_UNCHANGED"
    response = api.patch(
        f"/v0/subscriptions/{billing.subscription.id}", {"planId": str(plans["pro"].id), "effective": "later"}
    )
    assert response.status_code == 400
    response = api.patch(
        f"/v0/subscriptions/{billing.subscription.id}", {"planId": "0b7e9a4c-0000-4000-8000-000000000000"}
    )
    assert response.status_code == 404
    # a period whose end has passed is being closed: try again shortly
    time_machine.move_to(at("2026-02-01T00:00:30"), tick=False)
    response = change(api, billing, plans["pro"])
    assert response.status_code == 409 and response.json()["code"] == "PERIOD_CLOSING"
    assert Subscription.objects.get(pk=billing.subscription.pk).plan_id == billing.plan.id
    api.post(f"/v0/subscriptions/{billing.subscription.id}/termination", {})
    response = change(api, billing, plans["pro"])
    assert response.status_code == 409 and response.json()["code"] == "SUBSCRIPTION_ALREADY_TERMINATED"


def test_a_subscription_waiting_for_its_activation_cannot_change_plan(api, world):
    billing, calls, plans = world
    waiting = api.post(
        "/v0/subscriptions",
        {"customer": {"consumer": {"email": "w@example.com", "name": "W"}}, "planId": str(billing.plan.id)},
    ).json()
    assert waiting["status"] == "pending_payment"
    response = api.patch(f"/v0/subscriptions/{waiting['id']}", {"planId": str(plans["pro"].id)})
    assert response.status_code == 409 and response.json()["code"] == "SUBSCRIPTION_NOT_ACTIVE"


# --- proration tables: exact to the microsecond, each share rounded once half-even ---------------


@pytest.mark.parametrize(
    ("anchor", "interval", "switch", "period", "unused", "amount", "currency", "returned"),
    [
        # February of a leap year: an anchor on the 31st is clamped to the 29th; 18.5 of 29 days
        (
            "2028-01-31T00:00",
            "monthly",
            "2028-02-10T12:00",
            ("2028-01-31", "2028-02-29"),
            Fraction(37, 58),
            "100",
            "USD",
            "63.79",
        ),
        # the same in a common year: 28 days, 17.5 left
        (
            "2027-01-31T00:00",
            "monthly",
            "2027-02-10T12:00",
            ("2027-01-31", "2027-02-28"),
            Fraction(35, 56),
            "100",
            "USD",
            "62.50",
        ),
        # a 31-day month
        (
            "2026-03-01T00:00",
            "monthly",
            "2026-03-11T00:00",
            ("2026-03-01", "2026-04-01"),
            Fraction(21, 31),
            "31",
            "USDC",
            "21.000000",
        ),
        # a year across a leap day: 366 days, 182 left
        (
            "2027-03-01T00:00",
            "yearly",
            "2027-09-01T00:00",
            ("2027-03-01", "2028-03-01"),
            Fraction(182, 366),
            "366",
            "USDC",
            "182.000000",
        ),
        # a quarter from the 30th of November: 30 Nov -> 28 Feb, 90 days
        (
            "2026-11-30T00:00",
            "quarterly",
            "2027-01-14T00:00",
            ("2026-11-30", "2027-02-28"),
            Fraction(45, 90),
            "0.03",
            "USD",
            "0.02",
        ),  # 0.015 -> 0.02 (half to even)
        (
            "2026-11-30T00:00",
            "quarterly",
            "2027-01-14T00:00",
            ("2026-11-30", "2027-02-28"),
            Fraction(45, 90),
            "0.01",
            "USD",
            "0.00",
        ),  # 0.005 -> 0.00 (half to even)
        # a day, to the second: 1 second left of 86,400
        (
            "2026-05-05T00:00",
            "daily",
            "2026-05-05T23:59:59",
            ("2026-05-05", "2026-05-06"),
            Fraction(1, 86400),
            "86.4",
            "USDC",
            "0.001000",
        ),
        # a week, to the microsecond
        (
            "2026-05-04T00:00",
            "weekly",
            "2026-05-10T23:59:59.999999",
            ("2026-05-04", "2026-05-11"),
            Fraction(1, 604_800_000_000),
            "604800",
            "USDC",
            "0.000001",
        ),
    ],
)
def test_the_unused_share_of_a_fee(anchor, interval, switch, period, unused, amount, currency, returned):
    start, end = period_at(at(anchor), interval, at(switch))
    assert (start, end) == (at(period[0] + "T00:00"), at(period[1] + "T00:00"))
    share = fee_share(at(switch), end, start, end)
    assert share == unused
    assert prorate(D(amount), share, currency) == D(returned)
    # used and unused each rounded once: together within one minor unit of the fee
    used = prorate(D(amount), fee_share(start, at(switch), start, end), currency)
    assert abs(used + D(returned) - D(amount)) <= D("0.01")


def test_the_period_running_at_a_switch_begins_there_and_keeps_the_anchors_end():
    anchor, switch = at("2026-01-31T00:00"), at("2026-02-15T02:00")
    assert running_period_at(anchor, "monthly", at("2026-02-20T00:00"), switch) == (switch, at("2026-02-28T00:00"))
    assert running_period_at(anchor, "monthly", at("2026-02-10T00:00"), None) == (anchor, at("2026-02-28T00:00"))
    # a later period is whole again
    assert running_period_at(anchor, "monthly", at("2026-03-05T00:00"), switch) == (
        at("2026-02-28T00:00"),
        at("2026-03-31T00:00"),
    )


def test_two_months_with_an_unpaid_renewal_an_upgrade_in_the_middle_and_the_money_to_the_last_digit(
    api, world, time_machine
):
    """January's usage renews unpaid (dunned: past_due); the customer upgrades on 02-15 02:00
    while past_due; the renewal is issued again for Base's share used; a top-up pays the oldest
    whole invoice first and the subscription is active again; the change invoice and March's
    renewal on Pro follow; the webhooks tell each step once."""
    from apps.invoices.services.dunning import dun_due

    billing, calls, plans = world
    instant = billing.metric(properties={"unitPrice": "0.1"})
    billing.fund("50")
    time_machine.move_to(at("2026-01-20T00:00"), tick=False)
    assert report(api, billing, "instant-jan", instant, 50, "2026-01-20T00:00:00Z").status_code == 201  # 5 now
    renewal = renew(billing, time_machine)
    assert renewal.status == "open" and billing.available() == D("45")
    time_machine.move_to(at("2026-02-08T02:00"), tick=False)
    dun_due()
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "past_due"

    time_machine.move_to(at("2026-02-10T00:00"), tick=False)
    assert report(api, billing, "feb", calls, 10, "2026-02-10T00:00:00Z").status_code == 201
    assert report(api, billing, "instant-feb", instant, 20, "2026-02-10T00:00:00Z").status_code == 201  # 2 now
    time_machine.move_to(at("2026-02-15T02:00"), tick=False)
    assert change(api, billing, plans["pro"]).status_code == 200
    again = Invoice.objects.get(kind="period", status="open")
    assert lines(again) == [
        (calls.name, D("40")),
        (f"{instant.name} (charged as used)", D("5")),
        ("Base (served until 2026-02-15 02:00:00 UTC)", D("15.089286")),
    ]
    assert again.payment_failed_at == at("2026-02-08T02:00")  # still overdue: still past_due
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "past_due"
    closing = Invoice.objects.get(kind="change")
    assert lines(closing) == [
        (calls.name, D("10")),
        (f"{instant.name} (charged as used)", D("2")),
        ("Pro (prorated: 2026-02-15 02:00:00 - 2026-03-01 00:00:00 UTC)", D("44.732143")),
    ]

    billing.fund("100")  # 143: pays the reissued renewal (55.089286), the oldest
    assert Invoice.objects.get(pk=again.pk).status == "paid"
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "active"
    assert billing.available() == D("87.910714")
    time_machine.move_to(at("2026-02-15T03:01:01"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    assert Invoice.objects.get(pk=closing.pk).status == "paid"  # 54.732143
    assert billing.available() == D("33.178571")
    time_machine.move_to(at("2026-02-25T00:00"), tick=False)
    assert report(api, billing, "pro", calls, 7, "2026-02-25T00:00:00Z").status_code == 201
    billing.fund("70")  # 103.178571
    time_machine.move_to(at("2026-03-01T02:00"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    march = Invoice.objects.get(kind="period", period__start=at("2026-02-15T02:00"))
    assert lines(march) == [(calls.name, D("3.5")), ("Pro", D("90"))]
    assert march.status == "paid" and billing.available() == D("9.678571")
    assert ledger_check() == []
    counted = {}
    for event in Event.objects.filter(type__startswith="subscription."):
        counted[event.type] = counted.get(event.type, 0) + 1
    assert counted == {
        "subscription.created": 1,
        "subscription.activated": 1,
        "subscription.past_due": 1,
        "subscription.updated": 2,  # the upgrade, then active again
    }
    voided = Event.objects.get(type="invoice.voided")
    assert voided.data["id"] == str(renewal.id)


def test_a_change_in_the_grace_window_prorates_the_fee_on_the_previous_periods_draft(api, world, time_machine):
    billing, calls, plans = world
    billing.fund("300")
    time_machine.move_to(at("2026-02-01T00:01:01"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    draft = Invoice.objects.get(kind="period")
    assert draft.status == "draft" and lines(draft) == [(calls.name, D("40")), ("Base", D("30"))]

    time_machine.move_to(at("2026-02-01T00:30"), tick=False)
    assert change(api, billing, plans["pro"]).status_code == 200
    draft.refresh_from_db()
    # February's Base for the half hour served: 30 x 0.5 / 672 = 0.0223214... -> 0.022321
    assert lines(draft) == [
        (calls.name, D("40")),
        ("Base (prorated: 2026-02-01 00:00:00 - 2026-02-01 00:30:00 UTC)", D("0.022321")),
    ]
    assert draft.total == D("40.022321")
    assert billing.available() == D("300")  # nothing was paid for it: nothing to return
    closing = Invoice.objects.get(kind="change")
    # Pro for 671.5 of 672 hours: 90 x 671.5 / 672 = 89.9330357... -> 89.933036
    assert lines(closing) == [("Pro (prorated: 2026-02-01 00:30:00 - 2026-03-01 00:00:00 UTC)", D("89.933036"))]

    time_machine.move_to(at("2026-02-01T01:31:01"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    assert Invoice.objects.get(pk=draft.pk).status == "paid"
    assert Invoice.objects.get(pk=closing.pk).status == "paid"
    assert billing.available() == D("170.044643")  # 300 - 40.022321 - 89.933036
    assert ledger_check() == []


def test_the_batch_close_applies_a_scheduled_change_beside_subscriptions_without_one(api, world, time_machine):
    from apps.subscriptions.services import periods_advance_many, subscription_create

    billing, calls, plans = world
    billing.fund("300")
    renew(billing, time_machine)
    other = subscription_create(merchant=api.merchant, customer=billing.customer, plan=plans["lite"])
    time_machine.move_to(at("2026-02-10T00:00"), tick=False)
    assert change(api, billing, plans["pro"], "period_end").status_code == 200
    time_machine.move_to(at("2026-03-01T02:00"), tick=False)
    periods_advance_many(subscription_ids=[billing.subscription.id, other.id])
    february = Invoice.objects.get(
        kind="period", period__subscription=billing.subscription, period__start=at("2026-02-01T00:00")
    )
    assert lines(february) == [("Pro", D("90"))]
    assert Subscription.objects.get(pk=billing.subscription.pk).plan_id == plans["pro"].id
    assert Subscription.objects.get(pk=other.pk).plan_id == plans["lite"].id
    assert BillingPeriod.objects.get(subscription=billing.subscription, status="open").plan_id == plans["pro"].id
    assert ledger_check() == []
