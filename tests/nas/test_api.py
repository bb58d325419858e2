"""The REST API: tokens and scopes, submitting and browsing jobs, fronts, downloads, bad input (nothing stored)."""

from __future__ import annotations

import hashlib
import os
import json
import logging
from typing import Any

import pytest

from nas.engine.pareto import Point, best_under
from tests.nas.conftest import Service, auth, tiny_spec
from tests.nas.engine.test_pareto import brute_force_front


def job_count(service: Service) -> int:
    return service.storage.count_jobs()


# ---- tokens -------------------------------------------------------------------------------------
def test_no_or_bad_token_is_401_and_a_weak_scope_is_403_with_nothing_stored(service: Service, api: Any) -> None:
    spec = tiny_spec(service.corpus)
    missing = api.post("/api/v1/jobs", json=spec)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"] == "AuthError" and "hwnas token create" in missing.json()["detail"]
    bad = api.get("/api/v1/jobs", headers={"Authorization": "Bearer hwnas_not-a-token"})
    assert bad.status_code == 401 and "unknown, expired or revoked" in bad.json()["detail"]
    assert api.get("/api/v1/jobs", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    weak = api.post("/api/v1/jobs", json=spec, headers=auth(service, "read"))
    assert weak.status_code == 403 and "scope 'submit'" in weak.json()["detail"]
    device = {"name": "cpu-9t", "threads": 9}
    assert api.post("/api/v1/devices", json=device, headers=auth(service, "submit")).status_code == 403
    assert job_count(service) == 0 and "cpu-9t" not in {d.name for d in service.storage.list_devices()}
    # each scope includes the ones below it
    assert api.get("/api/v1/jobs", headers=auth(service, "read")).status_code == 200
    assert api.post("/api/v1/jobs", json=spec, headers=auth(service, "admin")).status_code == 201
    assert api.post("/api/v1/devices", json=device, headers=auth(service, "admin")).status_code == 201


def test_tokens_are_stored_hashed_and_revocation_takes_effect(service: Service, api: Any) -> None:
    token = service.tokens["read"]
    stored = {row.token_hash for row in service.storage.list_tokens()}
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert not any(token in value for row in service.storage.list_tokens() for value in (row.token_hash, row.prefix))
    assert api.get("/api/v1/jobs", headers=auth(service, "read")).status_code == 200
    (row,) = [r for r in service.storage.list_tokens() if r.scope == "read"]
    service.storage.revoke_token(row.id)
    assert api.get("/api/v1/jobs", headers=auth(service, "read")).status_code == 401


def test_a_token_never_reaches_the_logs(service: Service, api: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    job_id = service.finished_job()
    for scope in ("read", "submit", "admin"):
        api.get(f"/api/v1/jobs/{job_id}", headers=auth(service, scope))
        api.get("/api/v1/jobs/999", headers=auth(service, scope))
        api.post("/api/v1/jobs", content=b"{not json", headers={**auth(service, scope), "Content-Type": "application/json"})
    api.post("/api/v1/devices", json={"name": "x"}, headers=auth(service, "read"))
    logged = "\n".join(r.getMessage() + str(r.args) + (r.exc_text or "") for r in caplog.records)
    assert caplog.records, "the requests above should have logged something"
    for token in service.tokens.values():
        assert token not in logged and token[len("hwnas_"):] not in logged


# ---- submitting ---------------------------------------------------------------------------------
def test_submit_stores_a_queued_job_the_same_as_the_cli(service: Service, api: Any) -> None:
    answer = api.post("/api/v1/jobs", json=tiny_spec(service.corpus, name="api job"), headers=auth(service, "submit"))
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["state"] == "queued" and job["name"] == "api job" and job["trials"] == 0 and job["progress"] == 0.0
    assert job["metric_name"] == "bits_per_char" and job["maximize_metric"] is False
    stored = service.storage.get_job(job["job_id"])
    assert stored.state == "queued" and stored.spec["task"]["train"] == str(service.corpus)


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"{not json", 400, "body: not valid JSON"),
    (b"[1, 2]", 422, "body: Input should be a valid dictionary (got a JSON array)"),
    (b'"text"', 422, "body: Input should be a valid dictionary (got 'text')"),
    (json.dumps({"space": "nope"}).encode(), 422, "space: unknown space 'nope'"),
])
def test_malformed_specs_get_a_clear_4xx_and_nothing_is_stored(service: Service, api: Any, body: bytes, status: int,
                                                               says: str) -> None:
    answer = api.post("/api/v1/jobs", content=body,
                      headers={**auth(service, "submit"), "Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]
    assert job_count(service) == 0


def test_spec_field_errors_name_field_rule_value(service: Service, api: Any) -> None:
    spec = tiny_spec(service.corpus, latency_target_ms=-1, budget={"trials": 0}, colour="blue")
    answer = api.post("/api/v1/jobs", json=spec, headers=auth(service, "submit"))
    assert answer.status_code == 422
    problems = answer.json()["problems"]
    assert any(p.startswith("latency_target_ms: ") and "greater than 0" in p and "(got -1)" in p for p in problems)
    assert any(p.startswith("budget.trials: ") and "(got 0)" in p for p in problems)
    assert any(p.startswith("colour: unknown field") for p in problems)
    relative = api.post("/api/v1/jobs", json=tiny_spec(service.corpus, task={
        "kind": "language-modeling", "train": os.path.relpath(service.corpus)}), headers=auth(service, "submit"))
    assert relative.status_code == 422 and ("task.train: a spec sent to the server needs a dataset:NAME, a "
                                            "builtin: corpus or an absolute path") in relative.json()["detail"]
    device = api.post("/api/v1/jobs", json=tiny_spec(service.corpus, device="tpu-v9"), headers=auth(service, "submit"))
    assert device.status_code == 422 and "device: no device profile named 'tpu-v9'" in device.json()["detail"]
    assert job_count(service) == 0


def test_oversized_bodies_are_refused_with_413_before_parsing(service: Service, api: Any) -> None:
    spec = tiny_spec(service.corpus, name="x" * 100, space_options={"padding": "y" * 100_000})
    sized = api.post("/api/v1/jobs", json=spec, headers=auth(service, "submit"))
    assert sized.status_code == 413 and "over the limit of 65536 bytes" in sized.json()["detail"]

    def chunks() -> Any:  # no Content-Length: the limit must hold for a streamed body too
        yield b'{"name": "'
        for _ in range(100):
            yield b"z" * 1000
        yield b'"}'

    streamed = api.post("/api/v1/jobs", content=chunks(), headers={**auth(service, "submit"),
                                                                   "Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert job_count(service) == 0


# ---- browsing -----------------------------------------------------------------------------------
def test_jobs_list_pages_and_filters(service: Service, api: Any) -> None:
    ids = [api.post("/api/v1/jobs", json=tiny_spec(service.corpus, name=f"j{i}"), headers=auth(service, "submit"))
           .json()["job_id"] for i in range(3)]
    api.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=auth(service, "submit"))
    page = api.get("/api/v1/jobs?limit=2", headers=auth(service, "read")).json()
    assert page["total"] == 3 and [j["job_id"] for j in page["items"]] == [ids[2], ids[1]]
    rest = api.get("/api/v1/jobs?limit=2&offset=2", headers=auth(service, "read")).json()
    assert [j["job_id"] for j in rest["items"]] == [ids[0]]
    cancelled = api.get("/api/v1/jobs?state=cancelled", headers=auth(service, "read")).json()
    assert [j["job_id"] for j in cancelled["items"]] == [ids[0]] and cancelled["items"][0]["state"] == "cancelled"
    assert api.get("/api/v1/jobs?state=sleeping", headers=auth(service, "read")).status_code == 422


def test_unknown_ids_and_routes_are_404_and_bad_ids_422(service: Service, api: Any) -> None:
    read = auth(service, "read")
    for path in ("/api/v1/jobs/12345", "/api/v1/jobs/12345/front", "/api/v1/jobs/12345/trials",
                 "/api/v1/latency-models/77", "/api/v1/devices/no-such-device", "/api/v1/nothing-here"):
        answer = api.get(path, headers=read)
        assert answer.status_code == 404, path
        assert answer.json()["detail"]
    for path in ("/api/v1/jobs/0", "/api/v1/jobs/abc", "/api/v1/jobs/99999999999999999999",
                 "/api/v1/jobs/1/trials?limit=0", "/api/v1/jobs/1/best?max_latency_ms=nan"):
        assert api.get(path, headers=read).status_code == 422, path


def test_trials_front_and_best_under_a_tighter_latency(service: Service, api: Any) -> None:
    job_id = service.finished_job()
    read = auth(service, "read")
    trials = service.storage.trials(job_id)
    everything = api.get(f"/api/v1/jobs/{job_id}/trials?limit=3", headers=read).json()
    assert everything["total"] == len(trials) and [t["trial"] for t in everything["items"]] == [0, 1, 2]
    complete = api.get(f"/api/v1/jobs/{job_id}/trials?state=complete&limit=1000", headers=read).json()
    assert {t["trial"] for t in complete["items"]} == {t.number for t in trials if t.state == "complete"}
    limit_ms = sorted(t.latency_ms for t in trials)[len(trials) // 2]
    fast = api.get(f"/api/v1/jobs/{job_id}/trials?max_latency_ms={limit_ms}&limit=1000", headers=read).json()
    assert {t["trial"] for t in fast["items"]} == {t.number for t in trials if t.latency_ms <= limit_ms}

    front = api.get(f"/api/v1/jobs/{job_id}/front", headers=read).json()
    points = [Point(t.number, t.metric, t.latency_ms) for t in trials if t.state == "complete"]
    assert {m["trial"] for m in front["members"]} == brute_force_front(points, maximize=False)
    latencies = [m["latency_ms"] for m in front["members"]]
    assert latencies == sorted(latencies)
    (exported,) = [m for m in front["members"] if m["checkpoint"]]
    assert exported["checkpoint"]["download_url"].startswith(f"/api/v1/jobs/{job_id}/checkpoints/")

    for limit in sorted({p.latency_ms for p in points}):  # each limit, against the brute-force best
        expected = best_under(points, max_latency_ms=limit, maximize_metric=False)
        best = api.get(f"/api/v1/jobs/{job_id}/best?max_latency_ms={limit}", headers=read)
        assert best.status_code == 200 and best.json()["trial"] == expected.key
    too_tight = api.get(f"/api/v1/jobs/{job_id}/best?max_latency_ms=0.0001", headers=read)
    assert too_tight.status_code == 409 and "no trained trial at or under 0.0001 ms" in too_tight.json()["detail"]


def test_cancel_queued_then_finished(service: Service, api: Any) -> None:
    job_id = api.post("/api/v1/jobs", json=tiny_spec(service.corpus), headers=auth(service, "submit")).json()["job_id"]
    assert api.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth(service, "read")).status_code == 403
    answer = api.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth(service, "submit"))
    assert answer.status_code == 200 and answer.json()["state"] == "cancelled"
    again = api.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth(service, "submit"))
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


# ---- checkpoints --------------------------------------------------------------------------------
def test_download_streams_the_archive_with_its_sha256(service: Service, api: Any) -> None:
    job_id = service.finished_job()
    checkpoint = api.get(f"/api/v1/jobs/{job_id}", headers=auth(service, "read")).json()["checkpoint"]
    answer = api.get(checkpoint["download_url"], headers=auth(service, "read"))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/gzip"
    assert answer.headers["x-checkpoint-sha256"] == hashlib.sha256(answer.content).hexdigest() == checkpoint["sha256"]
    assert f'filename="{checkpoint["archive_name"]}"' in answer.headers["content-disposition"]
    assert len(answer.content) == checkpoint["size_bytes"]
    assert api.get(checkpoint["download_url"]).status_code == 401


@pytest.mark.parametrize("name", ["..%2F..%2F..%2Fetc%2Fpasswd", "..%2Fhwnas.db", ".hidden.tar.gz",
                                  "%2Fetc%2Fpasswd", "checkpoint-trial-1.tar.gz%00.txt", "%2E%2E", "a%5C..%5Cb.tar.gz",
                                  "checkpoint-trial-999.tar.gz"])
def test_path_tricks_in_download_names_get_4xx_and_no_file(service: Service, api: Any, name: str) -> None:
    job_id = service.finished_job()
    answer = api.get(f"/api/v1/jobs/{job_id}/checkpoints/{name}", headers=auth(service, "read"))
    assert 400 <= answer.status_code < 500, answer.status_code
    assert answer.headers["content-type"].startswith("application/json")
    assert "root:" not in answer.text


def test_export_on_request_then_reuse(service: Service, api: Any) -> None:
    job_id = service.finished_job()
    trials = service.storage.trials(job_id)
    exported = {c.trial_id for c in service.storage.checkpoints(job_id)}
    other = next(t for t in trials if t.state == "complete" and t.id not in exported)
    submit = auth(service, "submit")
    assert api.post(f"/api/v1/jobs/{job_id}/checkpoints", json={"trial": other.number},
                    headers=auth(service, "read")).status_code == 403
    first = api.post(f"/api/v1/jobs/{job_id}/checkpoints", json={"trial": other.number}, headers=submit)
    assert first.status_code == 201 and first.json()["trial"] == other.number
    again = api.post(f"/api/v1/jobs/{job_id}/checkpoints", json={"trial": other.number}, headers=submit)
    assert again.status_code == 200 and again.json()["sha256"] == first.json()["sha256"]
    infeasible = next(t for t in trials if t.state == "infeasible")
    refused = api.post(f"/api/v1/jobs/{job_id}/checkpoints", json={"trial": infeasible.number}, headers=submit)
    assert refused.status_code == 409 and "no trained weights" in refused.json()["detail"]
    assert api.post(f"/api/v1/jobs/{job_id}/checkpoints", json={"trial": "x"}, headers=submit).status_code == 422
    unknown = api.post(f"/api/v1/jobs/{job_id}/checkpoints", json={"trial": 99_999}, headers=submit)
    assert unknown.status_code == 422 and unknown.json()["detail"].startswith(f"trial: job {job_id} has no trial 99999")
    assert api.post("/api/v1/jobs/4242/checkpoints", json={"trial": 1}, headers=submit).status_code == 404
    assert len(service.storage.checkpoints(job_id)) == 2


# ---- progress -----------------------------------------------------------------------------------
def events_of(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_events_stream_progress_until_the_job_ends(service: Service, api: Any) -> None:
    job_id = api.post("/api/v1/jobs", json=tiny_spec(service.corpus), headers=auth(service, "submit")).json()["job_id"]
    runner = service.runner()
    runner.start()
    try:
        answer = api.get(f"/api/v1/jobs/{job_id}/events", headers=auth(service, "read"))
    finally:
        runner.stop(timeout_s=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    events = events_of(answer.text)
    kinds = [k for k, _ in events]
    assert kinds[-1] == "end" and set(kinds[:-1]) == {"progress"}
    trials = [d["trials"] for k, d in events if k == "progress"]
    assert trials == sorted(trials) and trials[-1] == 10 and events[-1][1]["state"] == "completed"
    assert api.get(f"/api/v1/jobs/{job_id}/events", headers=auth(service, "read")).text.count("event: end") == 1
    assert api.get("/api/v1/jobs/4242/events", headers=auth(service, "read")).status_code == 404


# ---- devices and latency models -----------------------------------------------------------------
def test_devices_and_latency_model_reports(service: Service, api: Any) -> None:
    admin, read = auth(service, "admin"), auth(service, "read")
    added = api.post("/api/v1/devices", json={"name": "cpu-4t", "threads": 4, "seq_len": 128}, headers=admin)
    assert added.status_code == 201 and added.json()["threads"] == 4 and added.json()["builtin"] is False
    assert api.post("/api/v1/devices", json={"name": "cpu-4t"}, headers=admin).status_code == 409
    reserved = api.post("/api/v1/devices", json={"name": "GPU"}, headers=admin)
    assert reserved.status_code == 422 and "Ray reserves" in reserved.json()["detail"]
    report = {"kind": "lookup-table", "mape": 3.0, "within_10pct": 98.0, "kendall_tau": 0.95, "n_holdout": 2,
              "holdout": [{"predicted_ms": 1.0, "predicted_std_ms": 0.1, "measured_ms": 1.1},
                          {"predicted_ms": 2.0, "predicted_std_ms": 0.1, "measured_ms": 1.9}]}
    model_id = service.storage.add_latency_model(device="cpu-4t", space="sparse-transformer", space_version=1,
                                                 space_key="k", space_signature={}, kind="lookup-table",
                                                 payload=b"\x80binary", report=report)
    device = api.get("/api/v1/devices/cpu-4t", headers=read).json()
    assert [m["id"] for m in device["latency_models"]] == [model_id]
    one = api.get(f"/api/v1/latency-models/{model_id}", headers=read).json()
    assert one["report"] == report and "payload" not in one
    listed = api.get("/api/v1/latency-models?device=cpu-4t", headers=read).json()
    assert [m["id"] for m in listed] == [model_id]
    assert {d["name"] for d in api.get("/api/v1/devices", headers=read).json()} >= {"cpu-1t", "cpu-4t"}


def test_openapi_schema_and_web_page_are_served(service: Service, api: Any) -> None:
    schema = api.get("/api/v1/openapi.json").json()
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}/front", "/api/v1/jobs/{job_id}/best",
            "/api/v1/jobs/{job_id}/checkpoints/{archive_name}", "/api/v1/jobs/{job_id}/events"} <= set(schema["paths"])
    page = api.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "cdn" not in page.text.lower() and "http" not in page.text.replace("http-equiv", "")
    assert api.get("/static/vendor/chart.umd.min.js").status_code == 200


def test_two_concurrent_exports_of_a_trial_make_one_checkpoint(service: Service, api: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    job_id = service.finished_job()
    exported = {c.trial_id for c in service.storage.checkpoints(job_id)}
    other = next(t for t in service.storage.trials(job_id) if t.state == "complete" and t.id not in exported)
    before = len(service.storage.checkpoints(job_id))

    def export(_: int) -> Any:
        return api.post(f"/api/v1/jobs/{job_id}/checkpoints", json={"trial": other.number},
                        headers=auth(service, "submit"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(export, range(4)))
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert len({a.json()["id"] for a in answers}) == 1 and len({a.json()["sha256"] for a in answers}) == 1
    assert len(service.storage.checkpoints(job_id)) == before + 1
    archive = answers[0].json()["archive_name"]
    download = api.get(f"/api/v1/jobs/{job_id}/checkpoints/{archive}", headers=auth(service, "read"))
    assert hashlib.sha256(download.content).hexdigest() == answers[0].json()["sha256"]


def test_every_answer_carries_the_security_headers(service: Service, api: Any) -> None:
    for answer in (api.get("/"), api.get("/api/v1/health"), api.get("/api/v1/jobs"),
                   api.get("/api/v1/nothing"), api.get("/static/app.js"),
                   api.post("/api/v1/jobs", content=b"{", headers={**auth(service, "submit"),
                                                                     "Content-Type": "application/json"})):
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in api.get("/").text  # the page has no inline script for the policy to block


def test_many_watchers_share_one_poller(service: Service) -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    app = service.app()
    watchers = 50
    with TestClient(app) as client:
        job_id = client.post("/api/v1/jobs", json=tiny_spec(service.corpus),
                             headers=auth(service, "submit")).json()["job_id"]
        runner = service.runner()
        runner.start()
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=watchers) as pool:
                texts = list(pool.map(lambda _: client.get(f"/api/v1/jobs/{job_id}/events",
                                                           headers=auth(service, "read")).text, range(watchers)))
        finally:
            runner.stop(timeout_s=10)
        elapsed_s = time.monotonic() - started
    for text in texts:
        events = events_of(text)
        assert events[-1][0] == "end" and events[-1][1]["state"] == "completed"
        assert [d["trials"] for k, d in events if k == "progress"][-1] == 10
    # one poller for all the watchers: its reads follow the clock, not the number of watchers
    polls = app.state.job_events.polls
    assert 0 < polls <= elapsed_s / service.settings.events_interval_s + 5, (polls, elapsed_s)


def test_listing_jobs_costs_a_fixed_number_of_queries(service: Service, api: Any) -> None:
    from sqlalchemy import event

    def count_listing(jobs: int) -> int:
        while service.storage.count_jobs() < jobs:
            service.finished_job() if service.storage.count_jobs() % 10 == 0 else api.post(
                "/api/v1/jobs", json=tiny_spec(service.corpus), headers=auth(service, "submit"))
        statements: list[str] = []
        api.get("/api/v1/health", headers=auth(service, "read"))
        api.get("/api/v1/jobs?limit=1", headers=auth(service, "read"))  # the token's last use is recorded here

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(service.storage.engine, "before_cursor_execute", count)
        try:
            answer = api.get("/api/v1/jobs?limit=500", headers=auth(service, "read"))
        finally:
            event.remove(service.storage.engine, "before_cursor_execute", count)
        assert answer.status_code == 200 and len(answer.json()["items"]) == jobs
        return len(statements)

    assert count_listing(2) == count_listing(50) <= 10


def test_exporting_a_checkpoint_costs_a_fixed_number_of_queries(service: Service, api: Any) -> None:
    from sqlalchemy import event

    submit = auth(service, "submit")

    def count_export(trials: int) -> int:
        job_id = service.finished_job(budget={"trials": trials, "train_steps": 2})
        exported = {c.trial_id for c in service.storage.checkpoints(job_id)}
        trial = next(t for t in service.storage.trials(job_id) if t.state == "complete" and t.id not in exported)
        api.get("/api/v1/jobs?limit=1", headers=submit)  # the token's last use is recorded here
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(service.storage.engine, "before_cursor_execute", count)
        try:
            answer = api.post(f"/api/v1/jobs/{job_id}/checkpoints", json={"trial": trial.number}, headers=submit)
        finally:
            event.remove(service.storage.engine, "before_cursor_execute", count)
        assert answer.status_code == 201, answer.text
        return len(statements)

    assert count_export(6) == count_export(40) <= 20


def test_a_jobs_answers_are_reused_until_a_change_moves_them(service: Service) -> None:
    from fastapi.testclient import TestClient

    app = service.app()
    job_id = service.finished_job()
    read, submit = auth(service, "read"), auth(service, "submit")
    with TestClient(app) as api:
        for headers in (read, submit):  # a token's first use is recorded: a write, which moves every version
            api.get("/api/v1/jobs", headers=headers)
        first = api.get(f"/api/v1/jobs/{job_id}", headers=read).json()
        assert api.get(f"/api/v1/jobs/{job_id}", headers=read).json() == first
        assert app.state.answers.hits == 1
        exported = {c.trial_id for c in service.storage.checkpoints(job_id)}
        other = next(t for t in service.storage.trials(job_id) if t.state == "complete" and t.id not in exported)
        api.post(f"/api/v1/jobs/{job_id}/checkpoints", json={"trial": other.number}, headers=submit)
        after = api.get(f"/api/v1/jobs/{job_id}", headers=read).json()
        assert after["checkpoint"]["trial"] == other.number != first["checkpoint"]["trial"]  # a new version
        # a queued job's answers follow the database at once
        queued = api.post("/api/v1/jobs", json=tiny_spec(service.corpus), headers=submit).json()["job_id"]
        for _ in range(2):
            assert api.get(f"/api/v1/jobs/{queued}", headers=read).json()["state"] == "queued"
        api.post(f"/api/v1/jobs/{queued}/cancel", headers=submit)
        assert api.get(f"/api/v1/jobs/{queued}", headers=read).json()["state"] == "cancelled"
        assert api.get("/api/v1/jobs/999/front", headers=read).status_code == 404


def test_concurrent_reads_reuse_the_pools_connections(database_url: str, tmp_path: Any) -> None:
    """Each API database thread keeps its connection: a full pool would make a thread open (and close) one of
    its own per request, a new server process each time on PostgreSQL."""
    import threading

    from sqlalchemy import event

    from nas.service import storage_for
    from nas.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, api_threads=8)
    storage = storage_for(settings)
    opened: list[int] = []
    event.listen(storage.engine, "connect", lambda *args: opened.append(1))
    together = threading.Barrier(settings.api_threads, timeout=60)

    def read() -> None:
        for _ in range(20):
            with storage.unit_of_work(autocommit=True):
                storage.count_jobs()
                together.wait()  # every thread holds its connection at once
                storage.list_jobs(limit=5)
            together.wait()  # and every thread has given it back

    threads = [threading.Thread(target=read) for _ in range(settings.api_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    storage.engine.dispose()
    assert 0 < len(opened) <= settings.api_threads, opened


def test_the_api_the_cli_and_the_client_share_one_job_model(service: Service, api: Any) -> None:
    """One output model per job, trial and front member (`nas.views`): the API answers it, the client reads
    answers through it, the CLI prints it for its own database with the checkpoint's paths added; the
    server's paths never leave it (not in answers, not in the event stream)."""
    from nas.client import _checked
    from nas.service import front_view, job_summary
    from nas.views import FrontOut, JobOut, dump_with_paths

    job_id = service.finished_job()
    read = auth(service, "read")
    answer = api.get(f"/api/v1/jobs/{job_id}", headers=read).json()
    assert set(answer) == set(JobOut.model_fields) and answer == job_summary(service.storage, job_id).model_dump(
        mode="json")
    assert answer["checkpoint"] and not {"path", "archive"} & set(answer["checkpoint"])
    assert _checked(JobOut, answer) == answer
    front = api.get(f"/api/v1/jobs/{job_id}/front", headers=read).json()
    assert front == front_view(service.storage, job_id).model_dump(mode="json") == _checked(FrontOut, front)
    local = dump_with_paths(job_summary(service.storage, job_id))
    (checkpoint,) = service.storage.checkpoints(job_id)
    assert local["checkpoint"]["path"] == checkpoint.path and local["checkpoint"]["archive"] == checkpoint.archive_path
    assert {k: v for k, v in local.items() if k != "checkpoint"} == {k: v for k, v in answer.items() if k != "checkpoint"}
    stream = api.get(f"/api/v1/jobs/{job_id}/events", headers=read).text
    assert checkpoint.path not in stream and checkpoint.archive_path not in stream
