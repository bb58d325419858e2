"""Jobs: submit, list, get, cancel; their trials, Pareto front, best trial under a latency, and live progress."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from nas.api.events import summary_key
from nas.api.schemas import CancelOut, FrontMemberOut, FrontOut, JobOut, JobPage, Problem, TrialOut, TrialPage
from nas.api.security import ReadCheck, ReadToken, StorageDep, SubmitToken, TokenCheck
from nas.data_roots import check_server_paths
from nas.db.storage import FINISHED_JOB_STATES, Storage
from nas.errors import NotFoundError, SpecError
from nas.service import best_front_member, front_view, job_summaries, job_summary, submit_job, trial_view
from nas.spec import parse_spec

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[int, Path(ge=1, le=2**31 - 1, description="job id")]
TrialNumber = Annotated[int, Path(ge=0, le=2**31 - 1, description="trial number within the job")]
JobState = Literal["queued", "running", "completed", "failed", "cancelled"]
TrialState = Literal["pending", "running", "complete", "infeasible", "failed"]
LatencyMs = Annotated[float | None, Query(gt=0, le=3_600_000, allow_inf_nan=False,
                                          description="keep what is at most this latency (ms)")]
# Every error an operation can answer: 400 (a body that is not JSON), 401 and 403 (tokens), 404, 409
# (state), 413 (size), 422 (fields), 429 (failed authentications from the address).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 413, 422, 429)}

SPEC_EXAMPLE = {
    "name": "demo", "space": "sparse-transformer",
    "space_options": {"max_layers": 2, "d_model_choices": [64, 96]},
    "task": {"kind": "language-modeling", "train": "builtin:python-stdlib", "seq_len": 64, "batch_size": 16},
    "device": "cpu-1t", "latency_target_ms": 1.0, "strategy": "nsga2",
    "budget": {"trials": 8, "train_steps": 50}, "seed": 0,
}


async def _answer(request: Request, storage: Storage, authenticate: TokenCheck, key: Hashable,
                  model: type[BaseModel], render: Callable[[], Any], *, job_id: int | None) -> Response:
    """A hot read (of job `job_id`, or of the job list when None), through `nas.api.read_cache`: from memory
    on the event loop when the change feed vouches for the token and the answer; else the token check and
    the reads in one database thread and one unit of work."""
    answers = request.app.state.answers
    if authenticate.from_memory() is not None and (hit := answers.cached(key, job_id=job_id)) is not None:
        return hit

    def answer() -> Response:
        # Autocommit: the version is read first, so a render can only be newer than the version it is kept
        # under, and the next read (seeing the newer version) renders again.
        with storage.unit_of_work(autocommit=True):
            authenticate()
            return answers.answer(storage, key, model, render, job_id=job_id)

    return await run_in_threadpool(answer)


@router.post("", status_code=201, response_model=JobOut, responses=ERRORS,
             summary="Submit a search job (the same spec as `hwnas search --spec`)")
def submit(body: Annotated[dict[str, Any], Body(openapi_examples={"demo": {"value": SPEC_EXAMPLE}})],
           request: Request, storage: StorageDep, token: SubmitToken) -> JobOut:
    # Paths are checked against the data roots before the spec's own validators touch the disk.
    settings = request.app.state.settings
    body = check_server_paths(body, roots=settings.data_roots, private=(settings.data_dir,))
    spec = parse_spec(body)
    try:
        job_id = submit_job(storage, spec, created_by=token.name)
    except NotFoundError:
        raise SpecError(f"device: no device profile named {spec.device!r}; list them with GET /api/v1/devices "
                        "or add one with POST /api/v1/devices") from None
    return job_summary(storage, job_id)


@router.get("", response_model=JobPage, responses=ERRORS, summary="List jobs, newest first")
async def list_jobs(request: Request, storage: StorageDep, authenticate: ReadCheck,
                    state: Annotated[list[JobState] | None, Query(description="keep jobs in these states")] = None,
                    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> Response:
    def render() -> dict[str, Any]:
        rows = storage.list_jobs(limit=limit, offset=offset, states=state)
        return {"total": storage.count_jobs(states=state), "offset": offset, "limit": limit,
                "items": job_summaries(storage, rows)}

    key = ("jobs", tuple(state or ()), offset, limit)
    return await _answer(request, storage, authenticate, key, JobPage, render, job_id=None)


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS, summary="A job's state and progress (polling)")
async def get_job(job_id: JobId, request: Request, storage: StorageDep, authenticate: ReadCheck) -> Response:
    return await _answer(request, storage, authenticate, ("job", job_id), JobOut, lambda: job_summary(storage, job_id),
                         job_id=job_id)


@router.post("/{job_id}/cancel", response_model=CancelOut, responses=ERRORS,
             summary="Cancel a queued job, or stop a running one after its current trial")
def cancel_job(job_id: JobId, storage: StorageDep, _: SubmitToken) -> dict[str, Any]:
    state = storage.request_cancel(job_id)
    detail = "cancelled" if state == "cancelled" else "cancel requested; the job stops after its current trial"
    return {"job_id": job_id, "state": state, "detail": detail}


@router.get("/{job_id}/trials", response_model=TrialPage, responses=ERRORS,
            summary="A page of the job's trials, by number, with filters")
async def list_trials(job_id: JobId, request: Request, storage: StorageDep, authenticate: ReadCheck,
                      state: Annotated[list[TrialState] | None,
                                       Query(description="keep trials in these states")] = None,
                      max_latency_ms: LatencyMs = None,
                      offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
                      limit: Annotated[int, Query(ge=1, le=5000)] = 100) -> Response:
    from search_spaces.base import space_class

    def render() -> dict[str, Any]:
        describe = space_class(storage.get_job(job_id).space).describe
        total, rows = storage.trial_page(job_id, states=state, max_latency_ms=max_latency_ms, offset=offset,
                                         limit=limit)
        return {"total": total, "offset": offset, "limit": limit,
                "items": [trial_view(t, describe=describe) for t in rows]}

    key = ("trials", job_id, tuple(state or ()), max_latency_ms, offset, limit)
    return await _answer(request, storage, authenticate, key, TrialPage, render, job_id=job_id)


@router.get("/{job_id}/trials/{number}", response_model=TrialOut, responses=ERRORS, summary="One trial")
def get_trial(job_id: JobId, number: TrialNumber, storage: StorageDep, _: ReadToken) -> TrialOut:
    from search_spaces.base import space_class

    with storage.unit_of_work():
        describe = space_class(storage.get_job(job_id).space).describe
        return trial_view(storage.trial(job_id, number), describe=describe)


@router.get("/{job_id}/front", response_model=FrontOut, responses=ERRORS,
            summary="The Pareto front: task metric against latency, fastest first")
async def get_front(job_id: JobId, request: Request, storage: StorageDep, authenticate: ReadCheck) -> Response:
    return await _answer(request, storage, authenticate, ("front", job_id), FrontOut,
                         lambda: front_view(storage, job_id), job_id=job_id)


@router.get("/{job_id}/best", response_model=FrontMemberOut, responses=ERRORS,
            summary="The best front member at most a latency (default: the job's target)")
def get_best(job_id: JobId, storage: StorageDep, _: ReadToken, max_latency_ms: LatencyMs = None) -> FrontMemberOut:
    with storage.unit_of_work():
        return best_front_member(storage, job_id, max_latency_ms=max_latency_ms)


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


@router.get("/{job_id}/events", responses={**ERRORS, 200: {"content": {"text/event-stream": {}},
                                                         "description": "server-sent events"}},
            response_class=StreamingResponse,
            summary="Live progress as server-sent events ('progress' on each change, 'end' when finished)")
async def job_events(job_id: JobId, request: Request, storage: StorageDep, _: ReadToken,
                     max_wait_s: Annotated[float, Query(gt=0, le=3600, allow_inf_nan=False,
                                                        description="close the stream after this long")] = 600,
                     ) -> StreamingResponse:
    first = (await run_in_threadpool(job_summary, storage, job_id)).model_dump(mode="json")  # 404 first
    events = request.app.state.job_events
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s

    async def stream() -> AsyncIterator[str]:
        last, quiet_since = None, loop.time()
        watching = events.watch(job_id, first=first, quiet_s=1.0)
        try:
            async for summary in watching:
                if summary is not None and summary_key(summary) != last:
                    yield _event("progress", summary)
                    last, quiet_since = summary_key(summary), loop.time()
                if summary is not None and summary["state"] in FINISHED_JOB_STATES:
                    yield _event("end", {"job_id": job_id, "state": summary["state"], "message": summary["message"]})
                    return
                if loop.time() >= deadline or await request.is_disconnected():
                    return
                if loop.time() - quiet_since >= 15:
                    yield ": keep-alive\n\n"
                    quiet_since = loop.time()
        finally:
            await watching.aclose()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
