"""API tokens (only their hashes), as `TokenRecord`s."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from nas.db.base_storage import StorageBase
from nas.db.models import ApiTokenRow, utcnow
from nas.db.records import TokenRecord, from_row
from search_spaces.errors import NotFoundError


class TokenStore(StorageBase):
    def add_token(self, *, name: str, scope: str, token_hash: str, prefix: str,
                  expires_at: datetime | None = None) -> int:
        with self.session() as s:
            row = ApiTokenRow(name=name, scope=scope, token_hash=token_hash, prefix=prefix, expires_at=expires_at)
            s.add(row)
            s.flush()
            return row.id

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        """The live token with this hash (not revoked, not expired), if any."""
        with self.session() as s:
            row = s.scalar(select(ApiTokenRow).where(
                ApiTokenRow.token_hash == token_hash, ApiTokenRow.revoked_at.is_(None),
                ApiTokenRow.expires_at.is_(None) | (ApiTokenRow.expires_at > utcnow())))
            return from_row(TokenRecord, row) if row is not None else None

    def touch_token(self, token_id: int, *, stale_after_s: float) -> None:
        """Record a token's use unless it was recorded in the last `stale_after_s` (one conditional UPDATE,
        so that several API processes write it at most about once per interval)."""
        now = utcnow()
        cutoff = datetime.fromtimestamp(now.timestamp() - stale_after_s, tz=now.tzinfo)
        with self.session() as s:
            # synchronize_session=False: inside a unit of work the token's row is in this session already,
            # and evaluating the criteria on it in Python would compare SQLite's naive datetimes with aware ones.
            s.execute(update(ApiTokenRow).where(ApiTokenRow.id == token_id,
                                                ApiTokenRow.last_used_at.is_(None)
                                                | (ApiTokenRow.last_used_at < cutoff))
                      .values(last_used_at=now).execution_options(synchronize_session=False))

    def list_tokens(self) -> list[TokenRecord]:
        with self.session() as s:
            return [from_row(TokenRecord, row) for row in s.scalars(select(ApiTokenRow).order_by(ApiTokenRow.id))]

    def revoke_token(self, token_id: int) -> TokenRecord:
        with self.session() as s:
            row = s.get(ApiTokenRow, token_id)
            if row is None:
                raise NotFoundError(f"token {token_id} does not exist", resource="token")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return from_row(TokenRecord, row)
