"""The change feed (PostgreSQL LISTEN/NOTIFY) behind the API's in-memory answers and token checks: hot reads
served from memory touch no database, yet a change made by another process shows at once (within the
notification's delivery), a change made by this process shows at the next read, and a feed that is down
means reading the database, never stale answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from nas.db.change_feed import ChangeFeed
from nas.db.storage import Storage, open_storage
from nas.service import issue_token, submit_job
from nas.spec import parse_spec
from tests.nas.conftest import Service, auth, tiny_spec

@pytest.fixture()
def other_process(service: Service) -> Iterator[Storage]:
    """Another process's storage: its own engine and connections, so nothing it writes is seen locally."""
    other = open_storage(service.settings.database_url)
    yield other
    other.engine.dispose()


def statements(storage: Storage) -> list[str]:
    seen: list[str] = []
    event.listen(storage.engine, "before_cursor_execute", lambda _c, _k, sql, *_: seen.append(sql))
    return seen


def eventually(check: Callable[[], bool], *, within_s: float = 5.0) -> float:
    """Seconds until `check()` held (fails after `within_s`)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within_s, "the change never showed"
        time.sleep(0.005)
    return time.monotonic() - started


def test_a_hot_read_from_memory_touches_no_database_and_sees_another_process_s_change(
        service: Service, api: Any, other_process: Storage) -> None:
    assert api.app.state.change_feed.wait_live(5)
    read = auth(service, "read")
    job_id = submit_job(other_process, parse_spec(tiny_spec(service.corpus)))
    eventually(lambda: api.get(f"/api/v1/jobs/{job_id}", headers=read).json()["state"] == "queued")
    for path in (f"/api/v1/jobs/{job_id}", "/api/v1/jobs"):
        assert api.get(path, headers=read).status_code == 200  # rendered and kept
    seen = statements(service.storage)
    hits = api.app.state.answers.hits
    for _ in range(5):
        for path in (f"/api/v1/jobs/{job_id}", "/api/v1/jobs"):
            assert api.get(path, headers=read).status_code == 200
    assert seen == [] and api.app.state.answers.hits == hits + 10

    other_process.request_cancel(job_id)  # a queued job is cancelled at once, by "another process"
    waited_s = eventually(lambda: api.get(f"/api/v1/jobs/{job_id}", headers=read).json()["state"] == "cancelled")
    assert waited_s < 2.0
    listed = api.get("/api/v1/jobs", headers=read).json()["items"]
    assert [j["state"] for j in listed if j["job_id"] == job_id] == ["cancelled"]


def test_a_revocation_by_another_process_takes_effect_within_its_notification(
        service: Service, api: Any, other_process: Storage) -> None:
    assert api.app.state.change_feed.wait_live(5)
    read = auth(service, "read")
    for _ in range(2):  # the first use records the token's last use, a local write: the second reads again
        assert api.get("/api/v1/jobs", headers=read).status_code == 200
    (row,) = [t for t in other_process.list_tokens() if t.scope == "read"]
    seen = statements(service.storage)
    assert api.get("/api/v1/jobs", headers=read).status_code == 200 and seen == []  # checked from memory
    other_process.revoke_token(row.id)
    waited_s = eventually(lambda: api.get("/api/v1/jobs", headers=read).status_code == 401)
    assert waited_s < 2.0
    assert api.get("/api/v1/jobs", headers=read).status_code == 401


def test_this_process_s_own_write_shows_at_the_next_read(service: Service, api: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    feed: ChangeFeed = api.app.state.change_feed
    assert feed.wait_live(5)
    monkeypatch.setattr(feed, "_received", lambda payload: None)  # notifications late: only the local count
    read = auth(service, "read")
    assert api.get("/api/v1/jobs", headers=read).json()["total"] == 0
    submit_job(service.storage, parse_spec(tiny_spec(service.corpus)))  # the app's own engine: no waiting
    assert api.get("/api/v1/jobs", headers=read).json()["total"] == 1
    (row,) = [t for t in service.storage.list_tokens() if t.scope == "read"]
    service.storage.revoke_token(row.id)
    assert api.get("/api/v1/jobs", headers=read).status_code == 401


def test_while_the_feed_is_down_every_read_goes_to_the_database(
        service: Service, api: Any, other_process: Storage) -> None:
    feed: ChangeFeed = api.app.state.change_feed
    if service.storage.engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL's feed has a connection to lose")
    assert feed.wait_live(5)
    read = auth(service, "read")
    job_id = submit_job(other_process, parse_spec(tiny_spec(service.corpus)))
    eventually(lambda: api.get(f"/api/v1/jobs/{job_id}", headers=read).status_code == 200)
    feed.reconnect_s = 3600.0  # once down, it stays down while we look (stop() still ends it at once)
    with other_process.engine.connect() as conn:  # the listening connection dies (a failover, a restart)
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE query = 'LISTEN hwnas_changes' AND datname = current_database()"))
    eventually(lambda: not feed.live)
    other_process.request_cancel(job_id)
    assert api.get(f"/api/v1/jobs/{job_id}", headers=read).json()["state"] == "cancelled"  # no waiting


def test_an_in_memory_sqlite_has_no_feed_and_keeps_the_database_path() -> None:
    from sqlalchemy import create_engine

    feed = ChangeFeed(create_engine("sqlite://"))
    feed.start()
    assert not feed.supported and feed.version("jobs") is None and not feed.wait_live(0.05)
    feed.stop()


def test_a_sqlite_file_s_version_moves_at_once_with_any_connection_s_commit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hwnas.db'}"
    storage, other = open_storage(url), open_storage(url)
    feed = ChangeFeed(storage.engine)
    feed.start()
    try:
        before = feed.version("tokens")
        assert before is not None and feed.version("tokens") == before  # reading moves nothing
        issue_token(other, name="x", scope="read")  # another connection (another process) commits
        assert feed.version("tokens") != before  # no waiting: the file says so
    finally:
        feed.stop()
        assert feed.version("tokens") is None


def test_watchers_of_an_idle_job_cost_no_reads_until_it_changes(
        service: Service, api: Any, other_process: Storage) -> None:
    from concurrent.futures import ThreadPoolExecutor

    assert api.app.state.change_feed.wait_live(5)
    read = auth(service, "read")
    job_id = submit_job(other_process, parse_spec(tiny_spec(service.corpus)))
    events = api.app.state.job_events
    with ThreadPoolExecutor(max_workers=10) as pool:
        streams = [pool.submit(lambda: api.get(f"/api/v1/jobs/{job_id}/events?max_wait_s=30", headers=read).text)
                   for _ in range(10)]
        time.sleep(20 * service.settings.events_interval_s)
        assert events.polls <= 1  # at most the first look; the feed says nothing changed since
        other_process.request_cancel(job_id)
        texts = [stream.result(timeout=30) for stream in streams]
    assert all(text.count("event: end") == 1 and '"cancelled"' in text for text in texts)
