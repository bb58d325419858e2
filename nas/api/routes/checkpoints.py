"""Checkpoints: export a trial on request, and download an archive streamed with its sha256 in a header."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from nas.api.routes.jobs import ERRORS, JobId
from nas.api.schemas import CheckpointOut, ExportRequest
from nas.api.security import ReadToken, StorageDep, SubmitToken
from nas.db.storage import Storage
from nas.errors import NotFoundError, SpecError
from nas.service import checkpoint_for_trial

router = APIRouter(prefix="/jobs", tags=["checkpoints"])

# A download name is a plain file name: no folders, no dots in front, nothing a path could be built from.
ArchiveName = Annotated[str, Path(min_length=8, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*\.tar\.gz$",
                                  description="the archive's file name, as `download_url` gives it")]
SHA256_HEADER = "X-Checkpoint-SHA256"


def _trial_in_body_exists(storage: Storage, job_id: int, number: int) -> None:
    """404 for an unknown job (the path); 422 for a trial number (the body) that the job does not have."""
    try:
        storage.trial(job_id, number)
    except NotFoundError:
        storage.get_job(job_id)
        raise SpecError(f"trial: job {job_id} has no trial {number}; list its trials with GET "
                        f"/api/v1/jobs/{job_id}/trials") from None


@router.post("/{job_id}/checkpoints", response_model=CheckpointOut, responses={**ERRORS, 201: {"model": CheckpointOut}},
             summary="Export a trial (or the best under a latency) as a checkpoint; returns its download link")
async def export_checkpoint(job_id: JobId, request: ExportRequest, response: Response, storage: StorageDep,
                            http: Request, _: SubmitToken) -> CheckpointOut:
    settings = http.app.state.settings
    if request.trial is not None:
        await run_in_threadpool(_trial_in_body_exists, storage, job_id, request.trial)
    checkpoint, created = await run_in_threadpool(checkpoint_for_trial, storage, settings, job_id,
                                                  trial_number=request.trial, max_latency_ms=request.max_latency_ms)
    response.status_code = 201 if created else 200
    return checkpoint


@router.get("/{job_id}/checkpoints/{archive_name}", response_class=FileResponse,
            responses={**ERRORS, 200: {"content": {"application/gzip": {}},
                                       "description": f"the archive; its sha256 is in the {SHA256_HEADER} header"}},
            summary="Download a checkpoint archive (.tar.gz of a Hugging Face folder)")
def download_checkpoint(job_id: JobId, archive_name: ArchiveName, storage: StorageDep, http: Request,
                        _: ReadToken) -> FileResponse:
    import os

    row = storage.checkpoint_by_archive_name(job_id, archive_name)
    if not os.path.isfile(row.archive_path):  # exported by another process: fetched from the object store
        http.app.state.settings.artifact_store().pull(row.archive_path)
    if not os.path.isfile(row.archive_path):
        raise NotFoundError(f"the archive of checkpoint {row.id} is gone from the server's artifacts; export it "
                            f"again with POST /api/v1/jobs/{job_id}/checkpoints")
    return FileResponse(row.archive_path, media_type="application/gzip", filename=archive_name,
                        headers={SHA256_HEADER: row.sha256})
