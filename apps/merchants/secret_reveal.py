"""A new API key's secret, carried from the admin's POST to the page that shows it once.

The secret is never put in a message (messages go into a cookie or the session, where it
could leak and stay) nor stored as it is: Redis holds it XORed with a random pad of its own
length (a one-time pad) for REVEAL_SECONDS at most, and only the URL of the reveal page
carries the pad. Showing the page takes the Redis entry out (GETDEL): a reload or a second
visit finds nothing, and neither the URL alone nor the Redis entry alone tells the secret.
"""

import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass

from apps.core.redis import get_redis

REVEAL_SECONDS = 600
_PREFIX = "admin:secret-reveal:"


@dataclass(frozen=True)
class Revealed:
    key_id: str
    secret: str


def _redis_key(pad: bytes) -> str:
    return _PREFIX + hashlib.sha256(pad).hexdigest()


def _xor(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))


def secret_hold(*, secret: str, key_id, user_id) -> str:
    """Keep `secret` for one showing to `user_id`; returns the token for the reveal page's URL."""
    plain = secret.encode()
    pad = secrets.token_bytes(len(plain))
    entry = {"key": str(key_id), "user": str(user_id), "sealed": _xor(plain, pad).hex()}
    get_redis().set(_redis_key(pad), json.dumps(entry), ex=REVEAL_SECONDS)
    return base64.urlsafe_b64encode(pad).decode().rstrip("=")


def secret_take(*, token: str, user_id) -> Revealed | None:
    """The secret held under `token`, once; None when it was shown already, expired, or the
    token is not one (a token taken by another user is gone too: it is never shown to them)."""
    try:
        pad = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if not pad:
        return None
    raw = get_redis().getdel(_redis_key(pad))
    if raw is None:
        return None
    entry = json.loads(raw)
    sealed = bytes.fromhex(entry["sealed"])
    if entry["user"] != str(user_id) or len(sealed) != len(pad):
        return None
    return Revealed(key_id=entry["key"], secret=_xor(sealed, pad).decode())
