"""API tokens (admin): create (the secret shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from nas.api.routes.jobs import ERRORS
from nas.api.schemas import TokenCreatedOut, TokenIn, TokenOut
from nas.api.security import AdminToken, StorageDep
from nas.auth import parse_duration_s
from nas.service import issue_token, token_view

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenCreatedOut, responses=ERRORS,
             summary="Create a token (admin); the answer holds the secret, shown this once")
def create_token(body: TokenIn, storage: StorageDep, _: AdminToken) -> TokenCreatedOut:
    expires_in_s = parse_duration_s(body.expires_in, field="expires_in") if body.expires_in else None
    token_id, token = issue_token(storage, name=body.name, scope=body.scope, expires_in_s=expires_in_s)
    row = next(t for t in storage.list_tokens() if t.id == token_id)
    return TokenCreatedOut(**token_view(row).model_dump(), token=token)


@router.get("", response_model=list[TokenOut], responses=ERRORS, summary="List tokens (admin; never the secrets)")
def list_tokens(storage: StorageDep, _: AdminToken) -> list[TokenOut]:
    return [token_view(t) for t in storage.list_tokens()]


@router.delete("/{token_id}", response_model=TokenOut, responses=ERRORS,
               summary="Revoke a token (admin): requests with it get 401 from now on")
def revoke_token(token_id: Annotated[int, Path(ge=1, le=2**31 - 1)], storage: StorageDep,
                 _: AdminToken) -> TokenOut:
    return token_view(storage.revoke_token(token_id))
