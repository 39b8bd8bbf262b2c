"""JSON bodies as PostgreSQL can store them (apps.core.parsers.loads_strict)."""

import pytest

from apps.core.parsers import JsonNumber, loads_strict

HOSTILE = [
    (b'{"a": "x\\u0000y"}', "NUL"),
    (b'{"a": ["ok", {"b": "\\u0000"}]}', "NUL"),
    (b'{"a": "\\ud800"}', "surrogate"),
    (b'{"a": "\\uDFFF tail"}', "surrogate"),
    (b'{"\\udc00": 1}', "surrogate"),
    ('{"a": "\ud800"}'.encode("utf-8", "surrogatepass"), "surrogate"),  # written raw
]


@pytest.mark.parametrize(("body", "problem"), HOSTILE)
def test_what_postgresql_cannot_store_is_refused_as_bytes_and_as_text(body, problem):
    with pytest.raises(ValueError, match=problem):
        loads_strict(body)
    with pytest.raises(ValueError, match=problem):
        loads_strict(body.decode("utf-8", "surrogatepass"))


def test_ordinary_escapes_and_surrogate_pairs_pass():
    assert loads_strict(b'{"a": "caf\\u00e9 \\ud83d\\ude00", "b": "\\\\u0000 is text"}') == {
        "a": "café 😀",
        "b": "\\u0000 is text",
    }


def test_numbers_keep_their_digits_and_must_be_finite():
    value = loads_strict(b'{"q": 1234567890.123456789}')["q"]
    assert isinstance(value, JsonNumber) and value.text == "1234567890.123456789"
    assert value == 1234567890.123456789
    for body in (b'{"q": 1e400}', b'{"q": NaN}', b'{"q": Infinity}'):
        with pytest.raises(ValueError):
            loads_strict(body)
