"""JSON bodies as PostgreSQL can store them: no NaN or Infinity, no NUL character and no
unpaired surrogate in any string (text and jsonb columns refuse them). A body breaking
these rules is 400 MALFORMED_JSON, not a database error later."""

import json
import math
import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _reject_constant(name):
    raise ValueError(f"{name} is not a number JSON allows")


class JsonNumber(float):
    """A JSON number with a fraction or exponent, as a float that keeps the digits it was
    written with: `text` ("1234567890.123456789"), which a float cannot hold. Quantities are
    read from it exactly (apps.usage.inputs.parse_number); everything else sees a float."""

    __slots__ = ("text",)


def _finite_float(text):
    value = JsonNumber(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large")
    value.text = text
    return value


def _check_strings(value, path="body"):
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{path} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{path} contains an unpaired UTF-16 surrogate") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, f"{path} key")
            _check_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(item, f"{path}[{index}]")


# What can put a NUL or an unpaired surrogate into a parsed string: the escapes \u0000 and
# \uD800-\uDFFF, and a surrogate written raw (json.loads decodes bytes with surrogatepass).
# A body without any is walked no further; a false match (an escaped backslash before
# "u0000") only costs the walk.
_SUSPECT_BYTES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")
_SUSPECT_TEXT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])|[\ud800-\udfff]")


def loads_strict(body: bytes | str):
    """json.loads that raises ValueError for what PostgreSQL could not store."""
    try:
        data = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
        suspect = _SUSPECT_BYTES if isinstance(body, bytes | bytearray) else _SUSPECT_TEXT
        if suspect.search(body):
            _check_strings(data)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    return data


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            return loads_strict(raw.decode((parser_context or {}).get("encoding") or "utf-8")) if raw else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
