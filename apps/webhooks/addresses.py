"""The contract's rule for endpoint urls: a live endpoint's url is https and does not resolve
to a private, loopback or link-local address, unless the operator allows it
(`WEBHOOK_ALLOW_PRIVATE_URLS`: `sandbox` for sandbox endpoints, `true` for all). Checked when an
endpoint is saved and again before each delivery (a name can resolve elsewhere later)."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UrlNotAllowed(ValueError):
    pass


def _allows_private(livemode: bool) -> bool:
    allowed = str(settings.WEBHOOK_ALLOW_PRIVATE_URLS).lower()
    return allowed in ("true", "1", "yes", "all") or (allowed == "sandbox" and not livemode)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


def check_url(url: str, *, livemode: bool, resolve=socket.getaddrinfo) -> None:
    """Raise UrlNotAllowed, with a reason a person can act on, when `url` may not be delivered to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlNotAllowed("must be an absolute http(s) url, such as https://example.com/webhooks")
    if parts.username or parts.password:
        raise UrlNotAllowed("must not carry a user name or password")
    private_ok = _allows_private(livemode)
    if parts.scheme != "https" and not private_ok:
        raise UrlNotAllowed("must use https")
    if private_ok:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UrlNotAllowed("has an invalid port") from None
    try:
        infos = resolve(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlNotAllowed(f"host {parts.hostname!r} does not resolve ({exc})") from None
    for info in infos:
        address = info[4][0]
        if not _public(address):
            raise UrlNotAllowed(
                f"host {parts.hostname!r} resolves to {address}, a private, loopback or link-local address"
            )
