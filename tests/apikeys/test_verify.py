"""Customer API keys on tiers (issue 15): each verify code, the quota month, tier changes, the
counted calls recorded as usage and invoiced, and the tenant boundary."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.apikeys.models import CustomerApiKey
from apps.apikeys.tasks import drain_counted_calls
from apps.apikeys.verify import verify
from apps.catalog.demo import seed_catalog
from apps.catalog.models import Plan
from apps.invoices.models import Invoice
from apps.ledger.selectors import ledger_check
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import periods_advance
from apps.usage.models import UsageEvent
from tests.factories import pay_session

pytestmark = pytest.mark.django_db

D = Decimal


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def tiers(api, time_machine):
    time_machine.move_to(at("2026-01-10T08:00"), tick=False)
    seed_catalog(merchant=api.merchant)
    return api


def create_key(api, tier="free", email="dev@acme.example", **extra):
    body = {"organizationName": "Acme DeFi", "contactEmail": email, "tier": tier, **extra}
    response = api.post("/v0/billing/apiKeys", body)
    assert response.status_code == 201, response.json()
    return response.json()


def check(api, key, cost=1):
    response = api.post("/v0/apiKeys/verify", {"apiKey": key, "cost": cost})
    assert response.status_code == 200, response.content
    return response.json()


def test_a_free_key_is_created_shown_once_and_listed_without_its_secret(tiers):
    api = tiers
    created = create_key(api, tier="Free")  # without case
    assert created["apiKey"].startswith("ak_live_") and len(created["apiKey"]) >= 8 + 22  # >= 128 bits
    assert (created["tier"], created["rateLimit"], created["monthlyQueryLimit"]) == ("free", 10, 100)
    assert created["note"] == "API key created. Use X-API-Key header to authenticate requests."
    assert "payment" not in created
    stored = CustomerApiKey.objects.get(pk=created["id"])
    assert created["apiKey"] not in (stored.secret_hash, stored.prefix) and created["apiKey"].startswith(stored.prefix)
    listed = api.get("/v0/billing/apiKeys", {"customerId": created["customerId"]}).json()["data"]
    assert [k["id"] for k in listed] == [created["id"]] and "apiKey" not in listed[0]
    # the same email again: the same customer and subscription, a second key
    again = create_key(api, tier="free")
    assert again["customerId"] == created["customerId"] and again["subscriptionId"] == created["subscriptionId"]
    assert again["apiKey"] != created["apiKey"]


def test_validation_says_what_to_fix(tiers):
    api = tiers
    cases = [
        ({"organizationName": "A", "contactEmail": "a@b.example"}, "organizationName"),
        ({"organizationName": "A" * 201, "contactEmail": "a@b.example"}, "organizationName"),
        ({"organizationName": "Acme", "contactEmail": "not-an-email"}, "contactEmail"),
        ({"organizationName": "Acme", "contactEmail": "a" * 311 + "@b.example"}, "contactEmail"),
        ({"organizationName": "Acme"}, "contactEmail"),
    ]
    for body, field in cases:
        response = api.post("/v0/billing/apiKeys", body)
        assert response.status_code == 400, (body, response.json())
        assert field in str(response.json()), response.json()
    unknown = api.post(
        "/v0/billing/apiKeys", {"organizationName": "Acme", "contactEmail": "a@b.example", "tier": "gold"}
    )
    assert unknown.status_code == 422 and unknown.json()["code"] == "UNKNOWN_TIER"
    assert "starter" in unknown.json()["message"]
    for body in (
        {"apiKey": ""},
        {"apiKey": "x", "cost": -1},
        {"apiKey": "x", "cost": 1.5},
        {"apiKey": "x", "cost": True},
    ):
        assert api.post("/v0/apiKeys/verify", body).status_code == 400, body


def test_no_free_tier_is_refused_where_a_key_would_fall_back_to_it(api):
    response = api.post("/v0/billing/apiKeys", {"organizationName": "Acme", "contactEmail": "a@b.example"})
    assert response.status_code == 422 and response.json()["code"] == "NO_FREE_TIER"


def test_without_a_free_tier_a_paid_tier_the_wallet_covers_is_bought_and_one_it_does_not_is_refused(tiers):
    """NO_FREE_TIER only where the key would fall back to free: a customer whose wallet covers
    the tier's fee gets its key; one whose wallet does not is refused, and no customer is left
    behind by the refusal."""
    from apps.customers.models import Customer
    from apps.payments.services import topup_session_create
    from tests.factories import make_customer

    api = tiers
    Plan.objects.filter(merchant=api.merchant, code="free").update(code="trial")  # no free tier now
    funded = make_customer(api.merchant, email="funded@acme.example")
    pay_session(topup_session_create(merchant=api.merchant, customer=funded, amount=Decimal("250"), currency="USD"))

    created = create_key(api, tier="starter", email="funded@acme.example")
    assert (created["customerId"], created["tier"], created.get("payment")) == (str(funded.id), "starter", None)

    refused = api.post(
        "/v0/billing/apiKeys", {"organizationName": "Poor", "contactEmail": "poor@acme.example", "tier": "starter"}
    )
    assert refused.status_code == 422 and refused.json()["code"] == "NO_FREE_TIER"
    assert not Customer.objects.filter(email="poor@acme.example").exists()
    assert ledger_check() == []


def test_valid_rate_limited_in_one_second_and_the_next_second_valid_again(tiers, time_machine):
    api = tiers
    key = create_key(api)["apiKey"]
    answers = [check(api, key) for _ in range(11)]
    assert [a["code"] for a in answers] == ["VALID"] * 10 + ["RATE_LIMITED"]
    assert answers[0]["remaining"] == 99 and answers[9]["remaining"] == 90
    assert answers[10]["valid"] is False and answers[10]["resetAt"] == "2026-01-10T08:00:01Z"
    assert answers[0]["resetAt"] == "2026-02-10T08:00:00Z"  # the quota month's end
    time_machine.move_to(at("2026-01-10T08:00:01"), tick=False)
    assert check(api, key)["code"] == "VALID"


def test_the_101st_call_of_a_quota_month_is_refused_and_the_month_boundary_resets_it(tiers, time_machine):
    api = tiers
    key = create_key(api)["apiKey"]
    moment = at("2026-01-10T08:00")
    for second in range(10):
        time_machine.move_to(moment + timedelta(seconds=second), tick=False)
        assert all(check(api, key)["code"] == "VALID" for _ in range(10))
    time_machine.move_to(moment + timedelta(seconds=10), tick=False)
    refused = check(api, key)
    assert (refused["code"], refused["remaining"]) == ("QUOTA_EXCEEDED", 0)
    probe = check(api, key, cost=0)  # a check without counting
    assert probe["code"] == "QUOTA_EXCEEDED"
    time_machine.move_to(at("2026-02-10T08:00"), tick=False)  # the next quota month
    fresh = check(api, key)
    assert (fresh["code"], fresh["remaining"]) == ("VALID", 99)


def test_cost_zero_checks_without_counting(tiers):
    api = tiers
    key = create_key(api)["apiKey"]
    assert check(api, key, cost=0)["remaining"] == 100
    assert check(api, key, cost=3)["remaining"] == 97
    assert check(api, key, cost=0)["remaining"] == 97


def test_revoked_at_the_very_next_call_and_not_found_across_merchants_and_modes(tiers, other_api, test_api):
    api = tiers
    created = create_key(api)
    key = created["apiKey"]
    assert check(api, key)["code"] == "VALID"
    revoked = api.delete(f"/v0/billing/apiKeys/{created['id']}")
    assert revoked.status_code == 200 and revoked.json()["revokedAt"] is not None
    answer = check(api, key)
    assert (answer["valid"], answer["code"]) == (False, "REVOKED")
    assert check(api, "ak_live_" + "x" * 32)["code"] == "NOT_FOUND"
    other = create_key(api, email="b@acme.example")["apiKey"]
    seed_catalog(merchant=other_api.merchant)
    assert check(other_api, other)["code"] == "NOT_FOUND"  # merchant B's secret key
    nobody = check(test_api, other)  # the same merchant's sandbox
    assert nobody["code"] == "NOT_FOUND" and nobody["customerId"] is None
    assert check(api, other)["code"] == "VALID"


def test_a_paid_tier_the_wallet_covers_is_taken_from_it_else_the_key_starts_on_free_with_a_payment(tiers, time_machine):
    api = tiers
    waiting = create_key(api, tier="starter", email="poor@acme.example")
    assert waiting["tier"] == "free" and waiting["rateLimit"] == 10
    assert waiting["payment"]["status"] == "pending" and waiting["payment"]["amount"] == "49.00"
    assert waiting["payment"]["checkoutUrl"].endswith(f"/checkout/{waiting['payment']['paymentSessionId']}")
    from apps.payments.models import PaymentSession

    session = PaymentSession.objects.get(pk=waiting["payment"]["paymentSessionId"])
    assert session.purpose == "tier_change"
    time_machine.move_to(at("2026-01-10T08:05"), tick=False)
    pay_session(session)
    answer = check(api, waiting["apiKey"])
    assert (answer["tier"], answer["rateLimit"], answer["monthlyQueryLimit"]) == ("starter", 100, 10_000)
    assert ledger_check() == []


def test_200_concurrent_verifies_with_100_left_give_exactly_100_valid(tiers, merchant):
    api = tiers
    enterprise = Plan.objects.get(merchant=merchant, code="enterprise")
    enterprise.features = {**enterprise.features, "rateLimit": 1000, "monthlyQueryLimit": 100}
    enterprise.save(update_fields=["features"])
    created = create_key(api, tier="enterprise", email="big@acme.example")
    secret = created["apiKey"]
    # (one check without counting loads the records into Redis from this test's transaction,
    # which the threads' own connections cannot see; from then on they need only Redis)
    assert verify(merchant=merchant, secret=secret, cost=0).code == "VALID"
    codes = []
    barrier = threading.Barrier(20)

    def worker():
        barrier.wait()
        for _ in range(10):
            codes.append(verify(merchant=merchant, secret=secret, cost=1).code)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes.count("VALID") == 100 and codes.count("QUOTA_EXCEEDED") == 100


def test_counted_calls_become_usage_at_their_own_time_once_and_show_on_the_invoice(tiers, time_machine, merchant):
    api = tiers
    created = create_key(api)
    for second in range(3):
        time_machine.move_to(at("2026-01-10T08:00") + timedelta(seconds=second), tick=False)
        for _ in range(4):
            check(api, created["apiKey"])
    assert drain_counted_calls() == 12
    assert drain_counted_calls() == 0
    events = UsageEvent.objects.filter(subscription_id=created["subscriptionId"])
    assert events.count() == 12
    assert {e.timestamp for e in events} == {at(f"2026-01-10T08:00:0{s}") for s in range(3)}
    assert CustomerApiKey.objects.get(pk=created["id"]).last_used_at == at("2026-01-10T08:00:02")
    # the quota, from the recorded usage when Redis lost its count
    from apps.core.redis import get_redis

    for name in get_redis().scan_iter("apiquota:*"):
        get_redis().delete(name)
    get_redis().delete(f"apisub:{created['subscriptionId']}")
    assert check(api, created["apiKey"])["remaining"] == 87
    drain_counted_calls()
    # a month later, the period's invoice shows the counted calls (priced 0: included)
    time_machine.move_to(at("2026-02-10T09:02"), tick=False)
    periods_advance(subscription_id=created["subscriptionId"])
    invoice = Invoice.objects.get(subscription_id=created["subscriptionId"], kind="period")
    (line,) = invoice.lines.all()
    assert (line.quantity, line.amount) == (D("13"), D("0"))


def test_a_counted_call_drained_after_a_tier_change_is_still_recorded_at_its_time(tiers, time_machine, merchant):
    api = tiers
    created = create_key(api, email="up@acme.example")
    check(api, created["apiKey"])
    time_machine.move_to(at("2026-01-12T08:00"), tick=False)
    api_customer = api  # the customer's own calls use its key
    checkout = api_customer.client.post(
        "/v0/billing/checkout", {"planId": "growth"}, format="json", HTTP_X_API_KEY=created["apiKey"]
    ).json()
    from apps.payments.models import PaymentSession

    pay_session(PaymentSession.objects.get(pk=checkout["sessionId"]))
    assert drain_counted_calls() == 1
    (event,) = UsageEvent.objects.filter(subscription_id=created["subscriptionId"])
    assert event.timestamp == at("2026-01-10T08:00")


def test_the_quota_is_not_reset_by_an_upgrade_and_the_next_verify_applies_the_tier(tiers, time_machine):
    api = tiers
    created = create_key(api, email="grow@acme.example")
    key = created["apiKey"]
    for second in range(3):
        time_machine.move_to(at("2026-01-10T08:00") + timedelta(seconds=second), tick=False)
        for _ in range(10):
            check(api, key)
    time_machine.move_to(at("2026-01-20T00:00"), tick=False)
    usage = api.client.get("/v0/billing/usage", HTTP_X_API_KEY=key).json()
    assert usage == {"queriesThisMonth": 30, "monthlyLimit": 100, "remaining": 70}
    response = api.client.post(
        "/v0/billing/checkout",
        {"planId": "Starter", "successUrl": "https://acme.example/ok", "walletAddress": "0x" + "ab" * 20},
        format="json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    from apps.payments.models import PaymentSession

    session = PaymentSession.objects.get(pk=body["sessionId"])
    # Starter's 49.00 for what is left of [01-10 08:00, 02-10 08:00): 21 days 8 h of 31 days,
    # 49 x 512 / 744 = 33.7204... rounded up to the cent (free paid nothing to return)
    assert session.amount == D("33.73") and session.purpose == "tier_change"
    assert session.expires_at == at("2026-02-10T08:00")
    assert body["url"].endswith(f"/checkout/{session.id}")
    assert check(api, key)["tier"] == "free"  # not paid yet
    pay_session(session)
    answer = check(api, key)
    assert (answer["tier"], answer["remaining"]) == ("starter", 10_000 - 32)
    updated = Subscription.objects.get(pk=created["subscriptionId"])
    assert updated.plan.code == "starter"
    # a downgrade has nothing to pay and applies at once
    time_machine.move_to(at("2026-01-21T00:00"), tick=False)
    down = api.client.post("/v0/billing/checkout", {"planId": "free"}, format="json", HTTP_X_API_KEY=key).json()
    assert down == {"sessionId": None, "url": None, "tier": "free"}
    assert check(api, key)["tier"] == "free"
    assert ledger_check() == []


def test_customer_endpoints_need_the_customers_key(tiers):
    api = tiers
    assert api.client.get("/v0/billing/usage").status_code == 401
    assert api.client.get("/v0/billing/usage", HTTP_X_API_KEY="ak_live_nope").status_code == 401
    key = create_key(api)["apiKey"]
    bad = api.client.post(
        "/v0/billing/checkout", {"planId": "starter", "walletAddress": "0x12"}, format="json", HTTP_X_API_KEY=key
    )
    assert bad.status_code == 400 and "walletAddress" in str(bad.json())


def test_terminating_a_paid_tier_moves_it_to_free_and_its_keys_keep_working(tiers, merchant, time_machine):
    api = tiers
    from apps.customers.models import Customer
    from apps.payments.services import topup_session_create
    from tests.usage.world import Billing  # noqa: F401 (funding through a top-up)

    customer = Customer.objects.create(merchant=merchant, email="rich@acme.example")
    pay_session(topup_session_create(merchant=merchant, customer=customer, amount=D("250"), currency="USD"))
    created = create_key(api, tier="growth", email="rich@acme.example")
    assert created["tier"] == "growth" and "payment" not in created  # paid from the wallet
    assert check(api, created["apiKey"])["tier"] == "growth"
    time_machine.move_to(at("2026-01-15T08:00"), tick=False)
    ended = api.post(f"/v0/subscriptions/{created['subscriptionId']}/termination", {"reason": "contract over"})
    assert ended.status_code == 200 and ended.json()["status"] == "active"
    assert check(api, created["apiKey"])["tier"] == "free"
    assert ledger_check() == []


def test_a_second_key_never_moves_a_paying_customer_down_and_a_higher_tier_is_bought(tiers, merchant, time_machine):
    api = tiers
    from apps.customers.models import Customer
    from apps.payments.services import topup_session_create

    customer = Customer.objects.create(merchant=merchant, email="pay@acme.example")
    pay_session(topup_session_create(merchant=merchant, customer=customer, amount=D("400"), currency="USD"))
    first = create_key(api, tier="starter", email="pay@acme.example")
    assert first["tier"] == "starter" and "payment" not in first
    time_machine.move_to(at("2026-01-15T08:00"), tick=False)
    body = {"organizationName": "Acme DeFi", "contactEmail": "pay@acme.example"}
    second = api.post("/v0/billing/apiKeys", body).json()  # no tier: the subscription's
    assert second["tier"] == "starter" and second["subscriptionId"] == first["subscriptionId"]
    third = api.post("/v0/billing/apiKeys", {**body, "tier": "free"}).json()
    assert third["tier"] == "starter"  # never down through a key
    fourth = api.post("/v0/billing/apiKeys", {**body, "tier": "growth"}).json()
    assert fourth["tier"] == "growth" and "payment" not in fourth  # the wallet covers the difference
    assert ledger_check() == []


def test_checks_without_cost_count_against_the_second_and_a_lost_count_is_read_again(tiers, time_machine):
    from apps.core.redis import get_redis

    api = tiers
    created = create_key(api, email="probe@acme.example")
    key = created["apiKey"]
    codes = [check(api, key, cost=0)["code"] for _ in range(10)] + [check(api, key)["code"]]
    assert codes == ["VALID"] * 10 + ["RATE_LIMITED"]  # never more VALID than rateLimit in a second
    time_machine.move_to(at("2026-01-10T08:00:01"), tick=False)
    assert check(api, key, cost=5)["remaining"] == 95
    drain_counted_calls()
    for name in get_redis().scan_iter("apiquota:*"):  # the count alone lost (an eviction, say)
        get_redis().delete(name)
    time_machine.move_to(at("2026-01-10T08:00:02"), tick=False)
    assert check(api, key)["remaining"] == 94  # read again from the recorded usage, not 0


def test_a_plan_without_a_whole_rate_limit_is_not_a_tier(tiers, merchant):
    api = tiers
    payg = Plan.objects.get(merchant=merchant, code="payg")
    payg.features = {"rateLimit": None, "monthlyQueryLimit": None}
    payg.save(update_fields=["features"])
    response = api.post(
        "/v0/billing/apiKeys", {"organizationName": "Acme", "contactEmail": "p@acme.example", "tier": "payg"}
    )
    assert response.status_code == 422 and response.json()["code"] == "UNKNOWN_TIER"


def test_a_key_whose_redis_record_could_not_be_written_after_its_commit_is_created_and_valid(
    tiers, monkeypatch, django_capture_on_commit_callbacks
):
    """Redis out of reach just after the key committed: the answer is still 201 with the secret
    (shown only there), and the first verify loads the record from the database."""
    import redis

    from apps.apikeys import services

    def out_of_reach(key, *, overwrite):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(services, "key_record_write", out_of_reach)
    with django_capture_on_commit_callbacks(execute=True):
        created = create_key(tiers)
    monkeypatch.undo()
    assert check(tiers, created["apiKey"])["code"] == "VALID"
