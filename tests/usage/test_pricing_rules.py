"""needs_counter: which prices charge from the period's running total (and are therefore
priced under the wallet's lock, and un-counted by refunds)."""

from decimal import Decimal
from types import SimpleNamespace

import pytest

from apps.usage.pricing import needs_counter


@pytest.mark.parametrize(
    ("model", "term", "free_units", "expected"),
    [
        ("standard", "instant", "0", False),
        ("standard", "instant", "1", True),
        ("graduated", "instant", "0", True),
        ("package", "instant", "0", True),
        ("package", "in_arrears", "0", False),
        ("graduated", "in_arrears", "5", False),
        ("percentage", "instant", "0", False),
        ("percentage", "instant", "0.5", True),
    ],
)
def test_needs_counter(model, term, free_units, expected):
    price = SimpleNamespace(model=model, payment_term=term, free_units=Decimal(free_units))

    assert needs_counter(price) is expected
