"""Tokens: expiry and revocation take effect at once, last use recorded without a write per request, the
admin API (the secret shown once), the job and dataset record who created them, failed authentication
rate-limited per client address without slowing valid requests."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import event

from nas.auth import hash_token, parse_duration_s
from nas.errors import SpecError
from nas.service import issue_token
from tests.nas.conftest import Service, auth, tiny_spec


def test_an_expired_token_is_refused_at_once(service: Service, api: Any) -> None:
    _, token = issue_token(service.storage, name="short", scope="read", expires_in_s=0.5)
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/jobs", headers=headers).status_code == 200
    time.sleep(0.6)
    answer = api.get("/api/v1/jobs", headers=headers)
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("12h", 43_200), ("30d", 2_592_000)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "00m", "15", "1w", "-3d", "1000000d", "1.5h"])
def test_bad_durations_name_the_rule(text: str) -> None:
    with pytest.raises(SpecError, match="--expires-in"):
        parse_duration_s(text)


def test_admin_api_creates_lists_and_revokes_tokens(service: Service, api: Any) -> None:
    admin = auth(service, "admin")
    created = api.post("/api/v1/tokens", json={"name": "ci", "scope": "read", "expires_in": "12h"}, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["token"].startswith("hwnas_") and body["expires_at"] is not None and body["scope"] == "read"
    listed = api.get("/api/v1/tokens", headers=admin).json()
    assert body["token"] not in str(listed) and hash_token(body["token"]) not in str(listed)
    assert any(t["id"] == body["id"] and t["name"] == "ci" for t in listed)
    mine = {"Authorization": f"Bearer {body['token']}"}
    assert api.get("/api/v1/jobs", headers=mine).status_code == 200
    assert api.get("/api/v1/tokens", headers=mine).status_code == 403
    assert api.post("/api/v1/tokens", json={"name": "x", "scope": "read"}, headers=auth(service, "submit")) \
        .status_code == 403
    revoked = api.delete(f"/api/v1/tokens/{body['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert api.get("/api/v1/jobs", headers=mine).status_code == 401  # at once
    bad = api.post("/api/v1/tokens", json={"name": "x", "scope": "root", "expires_in": "1w"}, headers=admin)
    assert bad.status_code == 422 and {p.split(":")[0] for p in bad.json()["problems"]} == {"scope", "expires_in"}
    assert api.delete("/api/v1/tokens/9999", headers=admin).status_code == 404


def test_last_use_is_recorded_without_a_write_per_request(service: Service, api: Any) -> None:
    token_updates: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE NAS_API_TOKENS"):
            token_updates.append(statement)

    event.listen(service.storage.engine, "before_cursor_execute", count)
    try:
        for _ in range(20):
            assert api.get("/api/v1/jobs", headers=auth(service, "read")).status_code == 200
    finally:
        event.remove(service.storage.engine, "before_cursor_execute", count)
    assert len(token_updates) == 1
    (row,) = [t for t in service.storage.list_tokens() if t.name == "test read"]
    assert row.last_used_at is not None


def test_jobs_and_datasets_record_the_token_that_created_them(service: Service, api: Any) -> None:
    job = api.post("/api/v1/jobs", json=tiny_spec(service.corpus), headers=auth(service, "submit")).json()
    assert job["created_by"] == "test submit"
    assert service.storage.get_job(job["job_id"]).created_by == "test submit"
    dataset = api.post("/api/v1/datasets", files={"file": ("a.txt", b"some text", "text/plain")},
                       data={"name": "a", "format": "text"}, headers=auth(service, "admin")).json()
    assert dataset["created_by"] == "test admin"


def test_failed_authentication_is_rate_limited_per_address(service: Service) -> None:
    from fastapi.testclient import TestClient

    app = service.app()
    limit = service.settings.auth_failures_per_minute
    with TestClient(app, client=("10.9.9.9", 1000)) as attacker, TestClient(app, client=("10.1.1.1", 1000)) as user:
        for _ in range(limit):
            assert attacker.get("/api/v1/jobs", headers={"Authorization": "Bearer hwnas_guess"}).status_code == 401
        blocked = attacker.get("/api/v1/jobs", headers={"Authorization": "Bearer hwnas_guess"})
        assert blocked.status_code == 429 and 1 <= int(blocked.headers["retry-after"]) <= 60
        assert "too many failed authentications" in blocked.json()["detail"]
        # another address with a valid token goes through at once
        started = time.monotonic()
        assert user.get("/api/v1/jobs", headers=auth(service, "read")).status_code == 200
        assert time.monotonic() - started < 5
        assert attacker.get("/api/v1/health").status_code == 200  # the limit guards authentication only
        # a client whose token worked from the blocked address goes on; a new guess from there is refused unread
        shared = TestClient(app, client=("10.2.2.2", 1000))
        assert shared.get("/api/v1/jobs", headers=auth(service, "read")).status_code == 200
        for _ in range(limit):
            shared.get("/api/v1/jobs", headers={"Authorization": "Bearer hwnas_guess"})
        assert shared.get("/api/v1/jobs", headers={"Authorization": "Bearer hwnas_guess2"}).status_code == 429
        assert shared.get("/api/v1/jobs", headers=auth(service, "read")).status_code == 200
        assert shared.get("/api/v1/jobs", headers=auth(service, "submit")).status_code == 429


def test_a_stale_last_use_is_recorded_on_every_kind_of_route(service: Service, api: Any) -> None:
    """The last use is written inside a read's unit of work too (the token's row is in that session)."""
    from datetime import UTC, datetime, timedelta

    from nas.db.models import ApiTokenRow

    job_id = service.finished_job()
    for path in (f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/front", "/api/v1/jobs", "/api/v1/devices"):
        with service.storage.session() as s:
            row = s.query(ApiTokenRow).filter_by(name="test read").one()
            row.last_used_at = datetime.now(UTC) - timedelta(hours=2)
        answer = api.get(path, headers=auth(service, "read"))
        assert answer.status_code == 200, (path, answer.text)
        (row,) = [t for t in service.storage.list_tokens() if t.name == "test read"]
        last = row.last_used_at if row.last_used_at.tzinfo else row.last_used_at.replace(tzinfo=UTC)
        assert datetime.now(UTC) - last < timedelta(minutes=1), path
