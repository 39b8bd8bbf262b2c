"""Model-based test of the money (issue 19): random sequences of top-ups, usage (single and batch,
replays of a key, concurrent replays, a key reused with another body), holds and their release,
refunds, disputes accepted and declined, adjustments, and daily periods that come due during the
run (closed by the close task, invoiced, collected from the wallet, or left open until a credit
pays them), sent by threads at once to real gunicorn processes in both modes, each answer checked
against tests/proof/model.py, then every balance, the merchant's revenue, the platform's
commission and the test clearing account compared with the model, the ledger's zero-sum check per
mode, and the usage events acknowledged against those stored.

Seeded and reproducible: PROOF_SEED=<n> replays a run's operations (the seed is printed, and named
in every failure); PROOF_OPS=<n> sets the operations per thread (default 40, about a minute with
the server's start), PROOF_THREADS the threads per mode (default 2). A wallet belongs to one thread,
so the model of each wallet is exact whatever the interleaving; what threads share (revenue,
commission) are sums."""

import json
import os
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.client import HTTPConnection, HTTPException

import pytest
from django.db import connection

from apps.catalog.models import PaymentTerm
from apps.catalog.services import billable_metric_create, plan_create, price_create, product_create
from apps.customers.models import Customer
from apps.customers.services import customer_create
from apps.invoices.models import Invoice
from apps.ledger.models import Wallet
from apps.ledger.selectors import account_balance, ledger_check, wallet_balances
from apps.ledger.services import clearing_account, merchant_revenue_account, platform_commission_account
from apps.payments.services import adjustment_create
from apps.subscriptions.services import subscription_create
from apps.subscriptions.tasks import advance_due_periods
from apps.usage.models import UsageEvent
from apps.usage.selectors import usage_check
from tests.factories import MerchantFactory, issue_key, sandbox_of
from tests.integration.test_stalled_clients import DEADLINE, Gunicorn
from tests.proof.model import MoneyModel

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
UNIT_PRICE = D("0.01")  # per call, instant
TOKEN_PRICE = D("0.001")  # per token, in arrears (daily plans)
CURRENCY = "USD"
SEED = int(os.environ.get("PROOF_SEED") or random.SystemRandom().randrange(1, 10**9))
OPS = int(os.environ.get("PROOF_OPS") or 40)
THREADS = int(os.environ.get("PROOF_THREADS") or 2)
CUSTOMERS_PER_THREAD = 3
PERIOD_DUE_IN = 25  # seconds from the start until the daily periods end


class Http:
    """One keep-alive connection per thread, the key of its mode on each request."""

    def __init__(self, port: int, secret: str):
        self.port, self.secret = port, secret
        self.conn = None

    def __call__(self, method: str, path: str, body=None) -> tuple[int, dict | None]:
        if self.conn is None:
            self.conn = HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        headers = {"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"}
        try:
            self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, HTTPException):
            self.close()
            raise
        return response.status, json.loads(data) if data else None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def seed_mode(merchant, *, customers: int, daily: int) -> dict:
    """A merchant's catalog in one mode: a monthly plan with an instant price on calls, a daily plan
    with an in_arrears price on tokens whose first period ends PERIOD_DUE_IN seconds from now."""
    product = product_create(merchant=merchant, name="Proof API")
    calls = billable_metric_create(merchant=merchant, product=product, name="calls", aggregation="COUNT", unit="call")
    tokens = billable_metric_create(merchant=merchant, product=product, name="tokens", aggregation="SUM", unit="token")
    instant = plan_create(
        merchant=merchant,
        name="Calls",
        code="calls",
        product=product,
        currency=CURRENCY,
        billing_interval="monthly",
        prices=[
            price_create(
                merchant=merchant,
                billable_metric=calls,
                model="standard",
                payment_term=PaymentTerm.INSTANT,
                currency=CURRENCY,
                properties={"unitPrice": str(UNIT_PRICE)},
            )
        ],
    )
    daily_plan = plan_create(
        merchant=merchant,
        name="Tokens daily",
        code="tokens-daily",
        product=product,
        currency=CURRENCY,
        billing_interval="daily",
        prices=[
            price_create(
                merchant=merchant,
                billable_metric=tokens,
                model="standard",
                payment_term=PaymentTerm.IN_ARREARS,
                currency=CURRENCY,
                properties={"unitPrice": str(TOKEN_PRICE)},
            )
        ],
    )
    mode = "live" if merchant.livemode else "sandbox"
    instant_ids, daily_subs = [], []
    for i in range(customers):
        customer, _ = customer_create(merchant=merchant, email=f"proof-{mode}-{i}@example.com", name=f"P{i}")
        subscription_create(merchant=merchant, customer=customer, plan=instant)
        instant_ids.append(str(customer.id))
    period_end = datetime.now(UTC) + timedelta(seconds=PERIOD_DUE_IN)
    for i in range(daily):
        customer, _ = customer_create(merchant=merchant, email=f"proof-daily-{mode}-{i}@example.com", name=f"D{i}")
        subscription = subscription_create(
            merchant=merchant, customer=customer, plan=daily_plan, started_at=period_end - timedelta(days=1)
        )
        daily_subs.append((str(customer.id), str(subscription.id)))
    return {
        "mode": mode,
        "merchant": merchant,
        "calls": str(calls.id),
        "tokens": str(tokens.id),
        "instant": instant_ids,
        "daily": daily_subs,
        "period_end": period_end,
    }


class Run:
    """The threads of one run: each owns some wallets and checks every answer against the model."""

    def __init__(self, model: MoneyModel, port: int):
        self.model = model
        self.port = port
        self.lock = threading.Lock()  # around the model's shared totals and the notes
        self.discrepancies: list[str] = []
        self.acknowledged: set[str] = set()
        self.requests = 0

    def note(self, message: str) -> None:
        with self.lock:
            self.discrepancies.append(message)

    def ack(self, key: str) -> None:
        with self.lock:
            self.acknowledged.add(key)

    # ------------------------------------------------------------------ one thread's sequence

    def drive(self, name: str, world: dict, secret: str, customer_ids: list[str], rng: random.Random) -> None:
        http = Http(self.port, secret)
        wallets = [self.model.wallet(c, world["mode"]) for c in customer_ids]
        try:
            for step in range(OPS):
                wallet = rng.choice(wallets)
                operation = rng.choices(
                    [
                        self.usage,
                        self.replay,
                        self.concurrent_replay,
                        self.reused_key,
                        self.batch,
                        self.hold,
                        self.release,
                        self.refund,
                        self.dispute,
                        self.adjustment,
                        self.topup,
                    ],
                    weights=[24, 6, 4, 3, 8, 8, 5, 6, 5, 5, 6],
                )[0]
                try:
                    operation(http, world, wallet, wallets, rng, f"{name}-{step}")
                except (OSError, HTTPException) as error:
                    self.note(f"{name} step {step} {operation.__name__}: transport error {error!r}")
        finally:
            http.close()

    def _locked(self, action):
        with self.lock:
            return action()

    def usage_body(self, world, wallet, rng, key, *, hold=None) -> dict:
        body = {
            "idempotencyKey": key,
            "customerId": wallet.customer_id,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "properties": [{"billableMetricId": world["calls"], "quantity": str(rng.randint(1, 8))}],
        }
        if hold:
            body["entitlementId"] = hold
        return body

    def send_usage(self, http, wallet, body, label) -> None:
        expected, code = self._locked(lambda: self.model.expect_usage(wallet, body))
        status, answer = http("POST", "/v0/usage", body)
        self.check_usage_answer(wallet, body, expected, code, status, answer, label)

    def check_usage_answer(self, wallet, body, expected, code, status, answer, label) -> None:
        key = body["idempotencyKey"]
        if status != expected or (code and (answer or {}).get("code") != code):
            self.note(f"{label}: usage {key} answered {status} {answer}, the model says {expected} {code}")
            return
        if status != 201:
            return
        replay = key in wallet.events
        charged = self._locked(lambda: self.model.apply_usage(wallet, body, answer["id"]))
        self.ack(key)
        if answer["id"] != charged.id:
            self.note(f"{label}: usage {key} replayed as another event {answer['id']} (first {charged.id})")
        if D(answer["billing"]["price"]) != charged.amount:
            self.note(f"{label}: usage {key} charged {answer['billing']['price']}, the model {charged.amount}")
        if D(answer["settlement"]["commissionAmount"]) != charged.commission:
            self.note(f"{label}: usage {key} commission {answer['settlement']['commissionAmount']}")
        if not replay and D(answer["settlement"]["balanceAfter"]) != wallet.available:
            self.note(
                f"{label}: usage {key} balanceAfter {answer['settlement']['balanceAfter']}, the model {wallet.available}"
            )

    # ------------------------------------------------------------------ operations

    def usage(self, http, world, wallet, wallets, rng, label):
        live_holds = [hid for hid, hold in wallet.holds.items() if hold.live]
        hold = rng.choice(live_holds) if live_holds and rng.random() < 0.4 else None
        self.send_usage(
            http, wallet, self.usage_body(world, wallet, rng, f"{label}-{uuid.uuid4().hex[:8]}", hold=hold), label
        )

    def replay(self, http, world, wallet, wallets, rng, label):
        if wallet.events:
            charged = wallet.events[rng.choice(sorted(wallet.events))]
            self.send_usage(http, wallet, charged.body, f"{label} replay")

    def concurrent_replay(self, http, world, wallet, wallets, rng, label):
        """The same new event sent by three connections at once: one charge, one event id."""
        body = self.usage_body(world, wallet, rng, f"{label}-{uuid.uuid4().hex[:8]}")
        expected, code = self._locked(lambda: self.model.expect_usage(wallet, body))
        answers = [None] * 3
        barrier = threading.Barrier(3)

        def send(i):
            own = Http(self.port, http.secret)
            try:
                barrier.wait()
                answers[i] = own("POST", "/v0/usage", body)
            finally:
                own.close()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
        statuses = sorted(status for status, _ in answers)
        if statuses != [expected] * 3:
            self.note(f"{label}: concurrent replays of {body['idempotencyKey']} answered {answers}, model {expected}")
            return
        if expected == 201:
            ids = {answer["id"] for _, answer in answers}
            if len(ids) != 1:
                self.note(f"{label}: concurrent replays made {len(ids)} events: {ids}")
            self.check_usage_answer(wallet, body, expected, code, *answers[0], label)

    def reused_key(self, http, world, wallet, wallets, rng, label):
        if wallet.events:
            charged = wallet.events[rng.choice(sorted(wallet.events))]
            body = {**charged.body, "properties": [{**charged.body["properties"][0], "quantity": "99"}]}
            self.send_usage(http, wallet, body, f"{label} reused")

    def batch(self, http, world, wallet, wallets, rng, label):
        events = []
        for i in range(rng.randint(2, 6)):
            owner = rng.choice(wallets)
            if owner.events and rng.random() < 0.2:
                events.append((owner, owner.events[rng.choice(sorted(owner.events))].body))
            else:
                events.append((owner, self.usage_body(world, owner, rng, f"{label}-b{i}-{uuid.uuid4().hex[:6]}")))
        # the model, in the batch's order (a key twice in one batch: the second is a replay)
        expected = []
        with self.lock:
            shadow = {}
            for owner, body in events:
                key = body["idempotencyKey"]
                if key in shadow:
                    expected.append(shadow[key])
                    continue
                outcome = self.model.expect_usage(owner, body)
                if outcome[0] == 201 and key not in owner.events:
                    # charged now, so that the next events of the batch see the balance after it
                    self.model.apply_usage(owner, body, "pending")
                shadow[key] = outcome
                expected.append(outcome)
        status, answer = http("POST", "/v0/usage/batch", {"events": [body for _, body in events]})
        successful = {item["idempotencyKey"]: item for item in (answer or {}).get("successful", [])}
        failed = {item["index"]: item for item in (answer or {}).get("failed", [])}
        want_status = 201 if all(outcome[0] == 201 for outcome in expected) else 207
        if status != want_status:
            self.note(f"{label}: batch answered {status} {answer}, the model says {want_status} {expected}")
        for index, ((owner, body), (outcome, code)) in enumerate(zip(events, expected, strict=True)):
            key = body["idempotencyKey"]
            if outcome == 201:
                item = successful.get(key)
                if item is None:
                    self.note(f"{label}: batch event {index} ({key}) not successful: {failed.get(index)}")
                    continue
                charged = owner.events[key]
                if charged.id == "pending":
                    charged.id = item["id"]
                elif charged.id != item["id"]:
                    self.note(f"{label}: batch replay of {key} answered event {item['id']}, first {charged.id}")
                self.ack(key)
            elif index not in failed or failed[index]["error"].get("code") != code:
                self.note(f"{label}: batch event {index} ({key}) should fail {code}: {failed.get(index)}")

    def hold(self, http, world, wallet, wallets, rng, label):
        quantity = rng.randint(2, 6)
        expected = self._locked(lambda: self.model.expect_hold(wallet, quantity))
        body = {
            "customerId": wallet.customer_id,
            "entitlementData": [{"billableMetricId": world["calls"], "quantity": str(quantity)}],
            "expiresIn": 3600,
        }
        status, answer = http("POST", "/v0/entitlements", body)
        if status != expected:
            self.note(f"{label}: hold of {quantity} answered {status} {answer}, the model says {expected}")
        elif status == 201:
            self._locked(lambda: self.model.apply_hold(wallet, answer["id"], quantity))
            if D(answer["reservedAmount"]) != UNIT_PRICE * quantity:
                self.note(f"{label}: hold reserved {answer['reservedAmount']} for {quantity}")

    def release(self, http, world, wallet, wallets, rng, label):
        live = [hid for hid, hold in wallet.holds.items() if hold.live]
        if not live:
            return
        hold_id = rng.choice(live)
        status, answer = http("DELETE", f"/v0/entitlements/{hold_id}")
        if status != 200:
            self.note(f"{label}: release of {hold_id} answered {status} {answer}")
            return
        self._locked(lambda: self.model.release(wallet, hold_id))

    def _refundable(self, wallet, rng):
        open_ = [charged for charged in wallet.events.values() if not charged.refunded and not charged.disputed]
        return rng.choice(open_) if open_ else None

    def refund(self, http, world, wallet, wallets, rng, label):
        charged = self._refundable(wallet, rng)
        if charged is None:
            return
        status, answer = http("PATCH", f"/v0/usage/{charged.id}", {"refund": True, "reason": "model"})
        if status != 200:
            self.note(f"{label}: refund of {charged.id} answered {status} {answer}")
            return
        self._locked(lambda: self.model.refund(wallet, charged))
        again, answer = http("PATCH", f"/v0/usage/{charged.id}", {"refund": True, "reason": "again"})
        if again != 409 or answer.get("code") != "USAGE_ALREADY_REFUNDED":
            self.note(f"{label}: a second refund of {charged.id} answered {again} {answer}")

    def dispute(self, http, world, wallet, wallets, rng, label):
        charged = self._refundable(wallet, rng)
        if charged is None:
            return
        status, opened = http("POST", "/v0/disputes", {"usageEventId": charged.id, "message": "model"})
        if status != 201:
            self.note(f"{label}: dispute of {charged.id} answered {status} {opened}")
            return
        charged.disputed = True
        if rng.random() < 0.5:
            status, answer = http("POST", f"/v0/disputes/{opened['id']}/accept")
            if status != 200:
                self.note(f"{label}: accept of {opened['id']} answered {status} {answer}")
                return
            self._locked(lambda: self.model.refund(wallet, charged))
        else:
            status, answer = http("POST", f"/v0/disputes/{opened['id']}/decline", {"reason": "model"})
            if status != 200:
                self.note(f"{label}: decline of {opened['id']} answered {status} {answer}")

    def adjustment(self, http, world, wallet, wallets, rng, label):
        amount = D(rng.choice(["0.05", "0.20", "-0.03", "-0.40"]))
        allowed = self._locked(lambda: self.model.adjustment_allowed(wallet, amount))
        body = {"amount": str(amount), "currency": CURRENCY, "reason": "model"}
        status, answer = http("POST", f"/v0/customers/{wallet.customer_id}/adjustments", body)
        if status != (201 if allowed else 402):
            self.note(f"{label}: adjustment {amount} answered {status} {answer}, available {wallet.available}")
        elif status == 201:
            self._locked(lambda: self.model.credit(wallet, amount, topup=False))

    def topup(self, http, world, wallet, wallets, rng, label):
        amount = D(rng.choice(["0.10", "0.25", "1.00"]))
        if world["mode"] == "live":  # (no test payment in live mode: the merchant credits instead)
            self.adjustment(http, world, wallet, wallets, rng, label)
            return
        status, session = http(
            "POST", f"/v0/customers/{wallet.customer_id}/topups", {"amount": str(amount), "currency": CURRENCY}
        )
        if status != 201:
            self.note(f"{label}: top-up answered {status} {session}")
            return
        status, paid = http("POST", f"/v0/testHelpers/paymentSessions/{session['id']}/pay")
        if status != 200:
            self.note(f"{label}: test payment of {session['id']} answered {status} {paid}")
            return
        self._locked(lambda: self.model.credit(wallet, amount, topup=True))

    # ------------------------------------------------------------------ the daily customers

    def tokens(self, world: dict, secret: str, rng: random.Random) -> None:
        """Tokens for the daily customers until their first period has ended (usage then lands in
        the next period); each acknowledged event of the first period must be on its invoice."""
        http = Http(self.port, secret)
        try:
            step = 0
            while datetime.now(UTC) < world["period_end"] + timedelta(seconds=3):
                customer_id, _ = rng.choice(world["daily"])
                now = datetime.now(UTC)
                quantity = rng.randint(1, 400)
                key = f"tokens-{world['mode']}-{step}-{uuid.uuid4().hex[:6]}"
                body = {
                    "idempotencyKey": key,
                    "customerId": customer_id,
                    "timestamp": now.isoformat().replace("+00:00", "Z"),
                    "properties": [{"billableMetricId": world["tokens"], "quantity": str(quantity)}],
                }
                status, answer = http("POST", "/v0/usage", body)
                step += 1
                if status == 201:
                    self.ack(key)
                    if now < world["period_end"]:
                        with self.lock:
                            self.model.period_tokens[customer_id] = (
                                self.model.period_tokens.get(customer_id, 0) + quantity
                            )
                elif not (
                    status == 422 and answer.get("code") == "USAGE_OUTSIDE_OPEN_PERIOD" and now < world["period_end"]
                ):
                    # (a first-period event that arrives once the period is closed is refused, never lost)
                    self.note(f"tokens {key} at {now} answered {status} {answer}")
                time.sleep(0.2)
        finally:
            http.close()


def closer(stop: threading.Event, errors: list) -> None:
    """The close task, as beat runs it, until the run is over."""
    try:
        while not stop.is_set():
            advance_due_periods()
            stop.wait(1)
    except Exception as error:  # noqa: BLE001 -- asserted on by the test
        errors.append(error)
    finally:
        connection.close()


def fund(world: dict, model: MoneyModel, customer_id: str, amount: D) -> None:
    customer = Customer.objects.get(pk=customer_id)
    adjustment_create(
        merchant=world["merchant"], customer=customer, amount=amount, currency=CURRENCY, reason="proof funding"
    )
    model.credit(model.wallet(customer_id, world["mode"]), amount, topup=False)


def test_the_money_matches_a_single_threaded_model_under_concurrent_random_operations(tmp_path, settings):
    print(f"money model: PROOF_SEED={SEED} PROOF_OPS={OPS} PROOF_THREADS={THREADS}")
    settings.USAGE_GRACE_PERIOD_SECONDS = 0
    settings.PERIOD_CLOSE_SETTLE_SECONDS = 0
    rng = random.Random(SEED)
    live = MerchantFactory()
    sandbox = sandbox_of(live)
    model = MoneyModel(unit_price=UNIT_PRICE, token_price=TOKEN_PRICE, rate=live.commission_rate, currency=CURRENCY)
    worlds = [seed_mode(merchant, customers=THREADS * CUSTOMERS_PER_THREAD, daily=2) for merchant in (live, sandbox)]
    secrets = {"live": issue_key(live), "sandbox": issue_key(sandbox)}
    for world in worlds:
        for customer_id in world["instant"]:
            fund(world, model, customer_id, D(rng.choice(["0.20", "0.50", "1.00"])))
        (rich, _), (poor, _) = world["daily"]
        fund(world, model, rich, D("50"))  # pays its invoice at the close
        fund(world, model, poor, D("0.01"))  # cannot: paid once credited after the close
    server = Gunicorn(
        tmp_path,
        secrets["sandbox"],
        WEB_CONCURRENCY="2",
        USAGE_GRACE_PERIOD_SECONDS="0",
        PERIOD_CLOSE_SETTLE_SECONDS="0",
        API_DEFAULT_RATE_LIMIT="0",
    )
    run = Run(model, server.port)
    stop = threading.Event()
    close_errors: list = []
    try:
        threads = [threading.Thread(target=closer, args=(stop, close_errors))]
        for world in worlds:
            secret = secrets[world["mode"]]
            for t in range(THREADS):
                owned = world["instant"][t * CUSTOMERS_PER_THREAD : (t + 1) * CUSTOMERS_PER_THREAD]
                name = f"{world['mode']}{t}"
                threads.append(
                    threading.Thread(
                        target=run.drive,
                        args=(name, world, secret, owned, random.Random(f"{SEED}:{name}")),
                    )
                )
            threads.append(
                threading.Thread(
                    target=run.tokens, args=(world, secret, random.Random(f"{SEED}:tokens:{world['mode']}"))
                )
            )
        for thread in threads[1:]:
            thread.start()
        threads[0].start()
        for thread in threads[1:]:
            thread.join(DEADLINE * 5)
        # every first period closed, invoiced and, where the wallet covers it, paid
        check_invoices(run, worlds, secrets, server.port)
    finally:
        stop.set()
        threads[0].join(DEADLINE)
        server.stop()
    seed_note = f"(PROOF_SEED={SEED} reproduces this run's operations)"
    assert not close_errors, f"{seed_note} the close task failed: {close_errors}"
    assert not run.discrepancies, f"{seed_note} {len(run.discrepancies)} answers differ from the model:\n" + "\n".join(
        run.discrepancies[:30]
    )
    compare_stored_state(model, worlds, run, seed_note)


def check_invoices(run: Run, worlds: list, secrets: dict, port: int) -> None:
    deadline = time.monotonic() + DEADLINE
    for world in worlds:
        for _customer, subscription_id in world["daily"]:
            while not Invoice.objects.filter(
                subscription_id=subscription_id, kind="period", status__in=["open", "paid"]
            ).exists():
                assert time.monotonic() < deadline, f"the first period of {subscription_id} was not invoiced"
                time.sleep(0.5)
        (rich, _), (poor, poor_subscription) = world["daily"]
        # the poor customer's invoice stays open until a credit pays it (the wallet sweep)
        invoice = Invoice.objects.get(subscription_id=poor_subscription, kind="period")
        total = run.model.invoice_total(poor)
        if invoice.total > D("0.01"):
            if invoice.status != "open":
                run.note(f"{world['mode']}: an invoice of {invoice.total} was {invoice.status} from a wallet of 0.01")
            http = Http(port, secrets[world["mode"]])
            credit = {"amount": str(total), "currency": CURRENCY, "reason": "pays the open invoice"}
            status, answer = http("POST", f"/v0/customers/{poor}/adjustments", credit)
            http.close()
            if status != 201:
                run.note(f"{world['mode']}: the credit for the open invoice answered {status} {answer}")
            else:
                run.model.credit(run.model.wallet(poor, world["mode"]), total, topup=False)
        for customer_id in (rich, poor):
            wallet = run.model.wallet(customer_id, world["mode"])
            total = run.model.invoice_total(customer_id)
            invoice = Invoice.objects.get(customer_id=customer_id, kind="period")
            if invoice.total != total or invoice.status != "paid":
                run.note(
                    f"{world['mode']}: the period invoice of {customer_id} is {invoice.status} {invoice.total}, "
                    f"the model says paid {total}"
                )
            elif total > 0:
                run.model.invoice_paid(wallet, total)


def compare_stored_state(model: MoneyModel, worlds: list, run: Run, seed_note: str) -> None:
    differences = []
    for world in worlds:
        merchant = world["merchant"]
        mode = world["mode"]
        for wallet_model in (w for w in model.wallets.values() if w.mode == mode):
            wallet = Wallet.objects.get(merchant=merchant, customer_id=wallet_model.customer_id, currency=CURRENCY)
            stored = wallet_balances(wallet=wallet)
            if (stored.available, stored.held) != (wallet_model.available, wallet_model.held):
                differences.append(
                    f"{mode} wallet of {wallet_model.customer_id}: stored {stored.available}/{stored.held}, "
                    f"model {wallet_model.available}/{wallet_model.held} (available/held)"
                )
        totals = model.totals[mode]
        revenue = account_balance(account=merchant_revenue_account(merchant=merchant, currency=CURRENCY))
        commission = account_balance(account=platform_commission_account(currency=CURRENCY, livemode=merchant.livemode))
        cleared = -account_balance(
            account=clearing_account(source="test", currency=CURRENCY, livemode=merchant.livemode)
        )
        for name, stored, expected in (
            ("revenue", revenue, totals.revenue),
            ("commission", commission, totals.commission),
            ("test clearing", cleared, totals.cleared),
        ):
            if stored != expected:
                differences.append(f"{mode} {name}: stored {stored}, model {expected}")
    all_stored = set(
        UsageEvent.objects.filter(merchant__in=[w["merchant"] for w in worlds]).values_list(
            "idempotency_key", flat=True
        )
    )
    if all_stored != run.acknowledged:
        differences.append(
            f"acknowledged {len(run.acknowledged)} events, stored {len(all_stored)}: "
            f"not stored {sorted(run.acknowledged - all_stored)[:5]}, never acknowledged {sorted(all_stored - run.acknowledged)[:5]}"
        )
    problems = ledger_check() + usage_check()
    assert not differences and not problems, f"{seed_note}\n" + "\n".join(differences + problems)
