"""A single-threaded model of what the money must be, the way TigerBeetle and Jepsen check a
ledger: each wallet's available and held balances, its holds and its charged events, and what the
merchant's revenue and the platform's commission must hold, per mode.

Every operation the harness sends is first asked of the model (`expect_*`), which says what the
server must answer, and is applied to the model only when the server acknowledged it. A wallet
is driven by one thread at a time, so its sequence is exact; revenue and commission are sums,
whatever the order of the threads."""

from dataclasses import dataclass, field
from decimal import Decimal

from apps.core.money import round_to_minor_unit, split_commission

ZERO = Decimal("0")


@dataclass
class Hold:
    unit_price: Decimal
    remaining: int
    live: bool = True

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.remaining if self.live else ZERO


@dataclass
class Charged:
    id: str
    body: dict
    amount: Decimal
    commission: Decimal
    quantity: int
    hold: str | None = None
    refunded: bool = False
    disputed: bool = False


@dataclass
class WalletModel:
    customer_id: str
    mode: str
    available: Decimal = ZERO
    holds: dict[str, Hold] = field(default_factory=dict)
    events: dict[str, Charged] = field(default_factory=dict)  # by idempotency key

    @property
    def held(self) -> Decimal:
        return sum((hold.amount for hold in self.holds.values()), ZERO)


@dataclass
class ModeTotals:
    revenue: Decimal = ZERO  # the merchant's revenue account
    commission: Decimal = ZERO  # the platform's commission account
    cleared: Decimal = ZERO  # what arrived through the test clearing account (top-ups)


class MoneyModel:
    def __init__(self, *, unit_price: Decimal, token_price: Decimal, rate: Decimal, currency: str):
        self.unit_price = unit_price
        self.token_price = token_price
        self.rate = rate
        self.currency = currency
        self.wallets: dict[str, WalletModel] = {}
        self.totals: dict[str, ModeTotals] = {"live": ModeTotals(), "sandbox": ModeTotals()}
        # daily customers: the tokens acknowledged in their first period, by customer
        self.period_tokens: dict[str, int] = {}

    def wallet(self, customer_id: str, mode: str) -> WalletModel:
        return self.wallets.setdefault(customer_id, WalletModel(customer_id=customer_id, mode=mode))

    # ------------------------------------------------------------------ credits and debits

    def credit(self, wallet: WalletModel, amount: Decimal, *, topup: bool) -> None:
        """A top-up (from clearing) or an adjustment (from the merchant's revenue)."""
        wallet.available += amount
        if topup:
            self.totals[wallet.mode].cleared += amount
        else:
            self.totals[wallet.mode].revenue -= amount

    def adjustment_allowed(self, wallet: WalletModel, amount: Decimal) -> bool:
        return wallet.available + amount >= ZERO

    # ------------------------------------------------------------------ usage

    def charge_of(self, quantity: int) -> tuple[Decimal, Decimal]:
        amount = self.unit_price * quantity
        commission, _ = split_commission(amount, self.rate)
        return amount, commission

    def expect_usage(self, wallet: WalletModel, body: dict) -> tuple[int, str | None]:
        """(status, error code) the server must answer for this usage body now."""
        key = body["idempotencyKey"]
        if key in wallet.events:
            return (201, None) if wallet.events[key].body == body else (409, "IDEMPOTENCY_KEY_REUSED")
        quantity = int(body["properties"][0]["quantity"])
        hold_id = body.get("entitlementId")
        if hold_id:
            hold = wallet.holds[hold_id]
            if not hold.live or quantity > hold.remaining:
                return 402, "ENTITLEMENT_EXHAUSTED"
            return 201, None
        amount, _ = self.charge_of(quantity)
        return (201, None) if wallet.available >= amount else (402, "INSUFFICIENT_BALANCE")

    def apply_usage(self, wallet: WalletModel, body: dict, event_id: str) -> Charged:
        key = body["idempotencyKey"]
        if key in wallet.events:
            return wallet.events[key]
        quantity = int(body["properties"][0]["quantity"])
        amount, commission = self.charge_of(quantity)
        hold_id = body.get("entitlementId")
        if hold_id:
            hold = wallet.holds[hold_id]
            hold.remaining -= quantity
            if hold.remaining == 0:
                hold.live = False  # exhausted: nothing left on it
        else:
            wallet.available -= amount
        totals = self.totals[wallet.mode]
        totals.revenue += amount - commission
        totals.commission += commission
        charged = Charged(id=event_id, body=body, amount=amount, commission=commission, quantity=quantity, hold=hold_id)
        wallet.events[key] = charged
        return charged

    def refund(self, wallet: WalletModel, charged: Charged) -> None:
        """A refund (PATCH or an accepted dispute): back to a live hold, else to available."""
        charged.refunded = True
        hold = wallet.holds.get(charged.hold) if charged.hold else None
        if hold is not None and hold.live:
            hold.remaining += charged.quantity
        else:
            wallet.available += charged.amount
        totals = self.totals[wallet.mode]
        totals.revenue -= charged.amount - charged.commission
        totals.commission -= charged.commission

    # ------------------------------------------------------------------ holds

    def expect_hold(self, wallet: WalletModel, quantity: int) -> int:
        return 201 if wallet.available >= self.unit_price * quantity else 402

    def apply_hold(self, wallet: WalletModel, hold_id: str, quantity: int) -> None:
        wallet.available -= self.unit_price * quantity
        wallet.holds[hold_id] = Hold(unit_price=self.unit_price, remaining=quantity)

    def release(self, wallet: WalletModel, hold_id: str) -> None:
        hold = wallet.holds[hold_id]
        wallet.available += hold.amount
        hold.live = False

    # ------------------------------------------------------------------ invoices

    def invoice_total(self, customer_id: str) -> Decimal:
        return round_to_minor_unit(self.token_price * self.period_tokens.get(customer_id, 0), self.currency)

    def invoice_paid(self, wallet: WalletModel, total: Decimal) -> None:
        commission, owner = split_commission(total, self.rate)
        wallet.available -= total
        totals = self.totals[wallet.mode]
        totals.revenue += owner
        totals.commission += commission
