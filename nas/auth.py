"""API access tokens: scopes, generation and hashing. Only a token's sha256 is ever stored.

Tokens are 256-bit random strings, so a plain sha256 (no salt, no slow hash) is enough to make the stored
value useless to whoever reads the database, and lets a request find its token by an indexed lookup.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import deque
from typing import Literal

from search_spaces.errors import SpecError

Scope = Literal["read", "submit", "admin"]
# Each scope includes those before it: submit can read, admin can submit and read.
SCOPES: tuple[Scope, ...] = ("read", "submit", "admin")
TOKEN_PREFIX = "hwnas_"


def new_token() -> str:
    """A fresh bearer token (shown to the user once)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def scope_allows(granted: str, needed: Scope) -> bool:
    """Whether a token of scope `granted` may do what needs `needed`."""
    if granted not in SCOPES:
        return False
    return SCOPES.index(granted) >= SCOPES.index(needed)  # type: ignore[arg-type]


_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_TOKEN_LIFE_S = 10 * 365 * 86_400


def parse_duration_s(text: str, *, field: str = "--expires-in") -> float:
    """'90s', '15m', '12h' or '30d' in seconds; SpecError naming `field` otherwise."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise SpecError(f"{field}: a positive whole number followed by s, m, h or d (90s, 15m, 12h, 30d), "
                        f"got {text!r}")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds > MAX_TOKEN_LIFE_S:
        raise SpecError(f"{field}: at most 3650d, got {text!r}; leave it out for a token that does not expire")
    return float(seconds)


class FailedAuthLimiter:
    """Counts failed authentications per client address over a sliding minute (in this process).

    An address over `per_minute` failures is answered 429 until its oldest failure is a minute old; an
    address under it, and every valid request from it, goes through at once (nothing sleeps).
    """

    def __init__(self, *, per_minute: int, window_s: float = 60.0, max_addresses: int = 100_000) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after_s(self, address: str) -> float:
        """0 when `address` may try; else the seconds until it may."""
        with self._lock:
            times = self._failures.get(address)
            if not times:
                return 0.0
            now = time.monotonic()
            while times and now - times[0] >= self.window_s:
                times.popleft()
            if not times:
                del self._failures[address]
                return 0.0
            return self.window_s - (now - times[0]) if len(times) >= self.per_minute else 0.0

    def record_failure(self, address: str) -> None:
        with self._lock:
            if address not in self._failures and len(self._failures) >= self.max_addresses:
                self._failures.pop(next(iter(self._failures)))  # forget the oldest address: bounded memory
            self._failures.setdefault(address, deque(maxlen=self.per_minute)).append(time.monotonic())
