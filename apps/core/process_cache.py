"""Small in-process caches for the hot path (API keys, ledger accounts).

Each process keeps its own; entries expire after their TTL, and
`clear_process_caches()` empties them all (the tests call it between tests, since
their database is rolled back under the cached rows).
"""

import threading
import time
from collections.abc import Callable

_registry: list["ProcessCache"] = []


class ProcessCache:
    def __init__(self, ttl_seconds: "float | None | Callable[[], float]", max_entries: int | None = None):
        # a number, None (for good), or a callable read at each set (a setting that tests override)
        self.ttl = ttl_seconds
        # beyond it the cache starts again empty (a bound on memory, not an LRU)
        self.max_entries = max_entries
        self._data: dict = {}
        self._lock = threading.Lock()
        _registry.append(self)

    def get(self, key):
        entry = self._data.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires is not None and expires < time.monotonic():
            self._data.pop(key, None)
            return None
        return value

    def set(self, key, value) -> None:
        ttl = self.ttl() if callable(self.ttl) else self.ttl
        expires = None if ttl is None else time.monotonic() + ttl
        with self._lock:
            if self.max_entries is not None and len(self._data) >= self.max_entries:
                self._data.clear()
            self._data[key] = (expires, value)

    def discard(self, key) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def clear_process_caches() -> None:
    for cache in _registry:
        cache.clear()
