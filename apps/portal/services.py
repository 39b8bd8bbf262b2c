"""Portal links: issued to a merchant for one subscription's customer, opened once."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.secrets import hash_secret, random_token
from apps.portal.models import PortalLink

TOKEN_PREFIX = "pt_"


@dataclass(frozen=True)
class IssuedLink:
    link: PortalLink
    url: str


def portal_url(token: str) -> str:
    return f"{settings.PUBLIC_BASE_URL}/portal/open/{token}"


def portal_link_create(*, merchant, subscription, expires_in: timedelta) -> IssuedLink:
    token = TOKEN_PREFIX + random_token()
    link = PortalLink.objects.create(
        merchant=merchant,
        subscription=subscription,
        customer_id=subscription.customer_id,
        token_hash=hash_secret(token),
        expires_at=timezone.now() + expires_in,
    )
    return IssuedLink(link=link, url=portal_url(token))


class LinkRefused(Exception):
    """Why a link does not open: `reason` is unknown, used or expired."""

    def __init__(self, reason: str, link: PortalLink | None = None):
        super().__init__(reason)
        self.reason = reason
        self.link = link


def portal_link_open(*, token: str) -> PortalLink:
    """Consume the link of `token`: the first open of a link not yet expired wins (the row is
    locked, so two opens at once cannot both succeed); any later open is refused."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        raise LinkRefused("unknown")
    # (looked up by its keyed hash, a unique column: no secret is compared outside HMAC)
    with transaction.atomic():
        link = (
            PortalLink.objects.select_for_update(of=("self",))
            .select_related("merchant", "customer", "subscription")
            .filter(token_hash=hash_secret(token))
            .first()
        )
        if link is None:
            raise LinkRefused("unknown")
        if link.used_at is not None:
            raise LinkRefused("used", link)
        now = timezone.now()
        if link.expires_at <= now:
            raise LinkRefused("expired", link)
        link.used_at = now
        link.save(update_fields=["used_at", "updated_at"])
        return link
