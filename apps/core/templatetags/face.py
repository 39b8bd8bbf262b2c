"""Template tags of the pages customers see (checkout, portal)."""

from datetime import UTC, datetime

from django import template
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def moment(value: datetime | None, kind: str = "datetime"):
    """A <time> in UTC, that static/js/local-time.js shows in the browser's zone (UTC kept in
    its title); without JavaScript the UTC text stays. `kind` "date" shows the day only."""
    if value is None:
        return "—"
    utc = value.astimezone(UTC)
    text = utc.strftime("%-d %b %Y") if kind == "date" else utc.strftime("%-d %b %Y, %H:%M UTC")
    return format_html(
        '<time datetime="{}" data-local="{}" title="{}">{}</time>',
        utc.isoformat().replace("+00:00", "Z"),
        kind,
        utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
        text,
    )
