"""API access tokens: scopes, generation and hashing. Only a token's sha256 is ever stored.

Tokens are 256-bit random strings, so a plain sha256 (no salt, no slow hash) is enough to make the stored
value useless to whoever reads the database, and lets a request find its token by an indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

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
