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
from datetime import UTC, datetime
from typing import Literal

from search_spaces.errors import SpecError

Scope = Literal["read", "submit", "admin"]
# Each scope includes those before it: submit can read, admin can submit and read.
SCOPES: tuple[Scope, ...] = ("read", "submit", "admin")
TOKEN_PREFIX = "hwnas_"


def age_s(when: datetime) -> float:
    """Seconds since `when` (SQLite hands back naive datetimes; they are UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (datetime.now(UTC) - when).total_seconds()


def last_use_due(last_used_at: datetime | None, *, interval_s: float) -> bool:
    """Whether a token's last use should be recorded again (at most once per `interval_s`)."""
    return last_used_at is None or age_s(last_used_at) >= interval_s


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


DURATION_PATTERN = r"^\s*0*[1-9]\d{0,5}\s*[smhd]\s*$"  # 1 to 999999 units: every match is accepted
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration_s(text: str, *, field: str = "--expires-in") -> float:
    """'90s', '15m', '12h' or '30d' in seconds; SpecError naming `field` otherwise."""
    match = _DURATION.match(text or "")
    if not match or not re.match(DURATION_PATTERN, text):
        raise SpecError(f"{field}: a whole number from 1 to 999999 followed by s, m, h or d (90s, 15m, 12h, 30d), "
                        f"got {text!r}")
    return float(int(match.group(1)) * _UNIT_S[match.group(2)])


class FailedAuthLimiter:
    """Counts failed authentications per client address over a sliding minute (in this process).

    An address over `per_minute` failures is answered 429 until its oldest failure is a minute old, for
    every token except those that authenticated from it within `trusted_s` (so a client whose valid
    token works goes on at once while guesses from its address are refused unread); an address under the
    limit goes through at once (nothing sleeps).
    """

    def __init__(self, *, per_minute: int, window_s: float = 60.0, trusted_s: float = 3600.0,
                 max_addresses: int = 100_000) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.trusted_s = trusted_s
        self.max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}
        self._trusted: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def record_success(self, address: str, token_hash: str) -> None:
        with self._lock:
            if len(self._trusted) >= self.max_addresses:
                self._trusted.pop(next(iter(self._trusted)))
            self._trusted[(address, token_hash)] = time.monotonic()

    def retry_after_s(self, address: str, token_hash: str | None = None) -> float:
        """0 when `address` may try (with `token_hash`); else the seconds until it may."""
        with self._lock:
            if token_hash is not None:
                seen = self._trusted.get((address, token_hash))
                if seen is not None and time.monotonic() - seen < self.trusted_s:
                    return 0.0
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
