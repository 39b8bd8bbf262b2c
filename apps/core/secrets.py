"""Random secrets that are shown once and stored as HMAC-SHA256 under a server key.

Not a slow password hash: these are checked on every request, and 190 random bits
need no stretching. Comparison is constant-time.
"""

import hashlib
import hmac
import secrets
import string

from django.conf import settings

_ALPHABET = string.ascii_letters + string.digits
SECRET_RANDOM_LENGTH = 32  # 32 base62 characters: about 190 bits
PREFIX_RANDOM_LENGTH = 8


def random_token(length: int = SECRET_RANDOM_LENGTH) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def hash_secret(secret: str) -> str:
    key = settings.API_KEY_HMAC_SECRET.encode()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
