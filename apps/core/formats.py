"""How times and quantities are written in every answer (API, webhooks, portal)."""

from datetime import UTC

from apps.core.money import format_decimal

_last_iso: tuple = (None, None)


def iso(value) -> str | None:
    """A time as RFC 3339 in UTC ("...Z"). The last one is remembered: the events of a batch
    share their creation time, and usually their timestamp."""
    global _last_iso
    if value is None:
        return None
    last = _last_iso
    if last[0] == value:
        return last[1]
    text = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    _last_iso = (value, text)
    return text


def quantity_str(value) -> str:
    """A quantity exactly, without padding: 1, 1.5, 100."""
    return format_decimal(value)
