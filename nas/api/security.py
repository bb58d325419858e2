"""Bearer-token checks for the API: 401 without a valid token, 403 when its scope is too weak.

The token is hashed before it is looked up; neither the token nor its hash is ever logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nas.auth import Scope, hash_token, scope_allows
from nas.db.models import ApiTokenRow
from nas.db.storage import Storage
from nas.errors import AuthError, ForbiddenError

_bearer = HTTPBearer(auto_error=False, description="a token from `hwnas token create --scope read|submit|admin`")


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def require(scope: Scope) -> Callable[..., ApiTokenRow]:
    """A dependency that lets a request through with a live token of at least `scope`."""

    def check(storage: Annotated[Storage, Depends(get_storage)],
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiTokenRow:
        if credentials is None or not credentials.credentials:
            raise AuthError("no bearer token: send the header 'Authorization: Bearer <token>'; "
                            f"create a token with `hwnas token create --scope {scope}`")
        row = storage.token_by_hash(hash_token(credentials.credentials))
        if row is None:
            raise AuthError("the bearer token is unknown or revoked; create one with "
                            f"`hwnas token create --scope {scope}`")
        if not scope_allows(row.scope, scope):
            raise ForbiddenError(f"this needs a token of scope {scope!r} (or above); this token's scope is "
                                 f"{row.scope!r}; create one with `hwnas token create --scope {scope}`")
        return row

    return check


ReadToken = Annotated[ApiTokenRow, Depends(require("read"))]
SubmitToken = Annotated[ApiTokenRow, Depends(require("submit"))]
AdminToken = Annotated[ApiTokenRow, Depends(require("admin"))]
StorageDep = Annotated[Storage, Depends(get_storage)]
