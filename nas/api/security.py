"""Bearer-token checks for the API: 401 without a valid token, 403 when its scope is too weak.

The token is hashed before it is looked up; neither the token nor its hash is ever logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nas.auth import Scope, hash_token, last_use_due, scope_allows
from nas.db.records import TokenRecord
from nas.db.storage import Storage
from nas.errors import AuthError, ForbiddenError, TooManyRequestsError

_bearer = HTTPBearer(auto_error=False, description="a token from `hwnas token create --scope read|submit|admin`")


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def _authenticate(request: Request, storage: Storage, credentials: HTTPAuthorizationCredentials | None,
                  scope: Scope) -> TokenRecord:
    limiter = request.app.state.auth_limiter
    address = request.client.host if request.client else "unknown"
    token_hash = hash_token(credentials.credentials) if credentials and credentials.credentials else None
    wait_s = limiter.retry_after_s(address, token_hash)
    if wait_s > 0:
        raise TooManyRequestsError(f"too many failed authentications from {address}; retry in {wait_s:.0f} s "
                                   "with a valid token", retry_after_s=wait_s)
    if credentials is None or not credentials.credentials or token_hash is None:
        limiter.record_failure(address)
        raise AuthError("no bearer token: send the header 'Authorization: Bearer <token>'; "
                        f"create a token with `hwnas token create --scope {scope}`")
    checks = request.app.state.token_checks
    version = checks.version()  # read before the database: a change after it moves it
    row = storage.token_by_hash(token_hash)
    if row is None:
        limiter.record_failure(address)
        raise AuthError("the bearer token is unknown, expired or revoked; create one with "
                        f"`hwnas token create --scope {scope}`")
    limiter.record_success(address, token_hash)
    touch_s = request.app.state.settings.token_touch_interval_s
    if last_use_due(row.last_used_at, interval_s=touch_s):
        storage.touch_token(row.id, stale_after_s=touch_s)
    checks.put(version, row)
    if not scope_allows(row.scope, scope):
        raise ForbiddenError(f"this needs a token of scope {scope!r} (or above); this token's scope is "
                             f"{row.scope!r}; create one with `hwnas token create --scope {scope}`")
    return row


def require(scope: Scope) -> Callable[..., TokenRecord]:
    """A dependency that lets a request through with a live token of at least `scope`."""

    def check(request: Request, storage: Annotated[Storage, Depends(get_storage)],
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> TokenRecord:
        return _authenticate(request, storage, credentials, scope)

    return check


@dataclass(frozen=True)
class TokenCheck:
    """The check, handed to a hot read: `from_memory()` on the event loop first (a live token the change
    feed vouches for), else calling it in the route's own database thread and unit of work (one thread hop
    and one connection, not two of each). The route must do one of the two before anything else."""

    request: Request
    storage: Storage
    credentials: HTTPAuthorizationCredentials | None
    scope: Scope

    def __call__(self) -> TokenRecord:
        return _authenticate(self.request, self.storage, self.credentials, self.scope)

    def from_memory(self) -> TokenRecord | None:
        """The token when memory alone can let it through, else None (then call the check: it decides)."""
        if self.credentials is None or not self.credentials.credentials:
            return None
        state = self.request.app.state
        address = self.request.client.host if self.request.client else "unknown"
        token_hash = hash_token(self.credentials.credentials)
        if state.auth_limiter.retry_after_s(address, token_hash) > 0:
            return None
        token = state.token_checks.get(token_hash, touch_interval_s=state.settings.token_touch_interval_s)
        if token is None or not scope_allows(token.scope, self.scope):
            return None
        state.auth_limiter.record_success(address, token_hash)
        return token


def require_in_route(scope: Scope) -> Callable[..., TokenCheck]:
    """The same check, handed to the route (see `TokenCheck`)."""

    async def deferred(request: Request, storage: Annotated[Storage, Depends(get_storage)],
                       credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                       ) -> TokenCheck:
        return TokenCheck(request, storage, credentials, scope)

    return deferred


ReadToken = Annotated[TokenRecord, Depends(require("read"))]
SubmitToken = Annotated[TokenRecord, Depends(require("submit"))]
AdminToken = Annotated[TokenRecord, Depends(require("admin"))]
StorageDep = Annotated[Storage, Depends(get_storage)]
ReadCheck = Annotated[TokenCheck, Depends(require_in_route("read"))]
