"""Money: the precision constants and the one rounding function.

Amounts are Decimal, stored as NUMERIC(38, 12). A charge keeps 12 fractional
digits, rounded half-even where it has more; invoice lines and settlements are
rounded once, half-even, to the currency's minor unit.
"""

from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext

AMOUNT_MAX_DIGITS = 38
AMOUNT_DECIMAL_PLACES = 12
AMOUNT_INTEGER_DIGITS = AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES
RATE_MAX_DIGITS = 7
RATE_DECIMAL_PLACES = 6

ZERO = Decimal("0")

# Arithmetic context for money: far more digits than NUMERIC(38, 12) can hold, so
# that no intermediate product (a 26-digit quantity times a 12-place price) is
# silently rounded by Decimal's default 28-digit context.
MONEY_CONTEXT = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])


def money_context():
    """`with money_context(): ...` runs Decimal arithmetic in MONEY_CONTEXT."""
    return localcontext(MONEY_CONTEXT)


# Minor units of each currency the platform bills in.
CURRENCY_DECIMALS = {
    "USDC": 6,
    "USD": 2,
}


def round_half_even(value: Decimal, places: int = AMOUNT_DECIMAL_PLACES) -> Decimal:
    """The one rounding function: half-even to `places` fractional digits."""
    if not isinstance(value, Decimal):
        raise TypeError(f"round_half_even takes a Decimal, not {type(value).__name__}")
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN, context=MONEY_CONTEXT)


def round_amount(value: Decimal) -> Decimal:
    """Round a ledger amount to the 12 places that ledger columns keep."""
    return round_half_even(value, AMOUNT_DECIMAL_PLACES)


def currency_decimals(currency: str) -> int:
    try:
        return CURRENCY_DECIMALS[currency]
    except KeyError:
        raise ValueError(f"unknown currency {currency!r}") from None


def round_to_minor_unit(value: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit (USDC 6, USD 2): invoice lines, settlements."""
    return round_half_even(value, currency_decimals(currency))


def split_commission(charge: Decimal, rate: Decimal) -> tuple[Decimal, Decimal]:
    """Return (commission, owner_revenue); they sum to `charge` exactly."""
    commission = round_amount(MONEY_CONTEXT.multiply(charge, rate))
    return commission, charge - commission


def amount_digits_problem(value: Decimal) -> str | None:
    """Why `value` does not fit an amount column, NUMERIC(38, 12): "places" (more than 12
    fractional digits), "digits" (more than 26 integer digits), or None when it fits."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -AMOUNT_DECIMAL_PLACES:
        return "places"
    if value.adjusted() >= AMOUNT_INTEGER_DIGITS:
        return "digits"
    return None


def parse_amount(raw, *, field: str = "amount") -> Decimal:
    """Parse an amount from a string or int (never a float). Raises ValueError with a message."""
    if isinstance(raw, (bool, float)):
        raise ValueError(f'{field} must be a string of decimal digits, such as "10.50", not a JSON number')
    if isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, (int, str)):
        try:
            value = Decimal(str(raw).strip())
        except InvalidOperation:
            raise ValueError(f'{field} must be a decimal number such as "10.50"; got {raw!r}') from None
    else:
        raise ValueError(f"{field} must be a string of decimal digits")
    if not value.is_finite():
        raise ValueError(f"{field} must be a finite decimal number")
    return value


def format_amount(value: Decimal | None, currency: str | None = None) -> str | None:
    """Render an amount exactly, padded to at least the currency's minor unit.

    0.001 USDC -> "0.001000"; 0.0000015 USDC -> "0.0000015"; 5 USD -> "5.00".
    """
    if value is None:
        return None
    if isinstance(value, int):
        value = Decimal(value)
    return format_decimal(value, CURRENCY_DECIMALS.get(currency, 2) if currency else 2)


def format_decimal(value: Decimal, minimum_places: int = 0) -> str:
    """`value` exactly, in positional notation, without trailing zeros beyond `minimum_places`
    fractional digits: (1.50, 0) -> "1.5", (5, 2) -> "5.00". String work, exact at any length
    (normalize() rounds beyond the context's 28 digits), and cheap: it runs several times per
    usage event of a batch."""
    whole, _, fraction = format(value, "f").partition(".")
    fraction = fraction.rstrip("0")
    if len(fraction) < minimum_places:
        fraction += "0" * (minimum_places - len(fraction))
    return f"{whole}.{fraction}" if fraction else whole
