"""Datasets: upload (streamed multipart), list, get, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from nas.api.routes.jobs import ERRORS
from nas.api.schemas import DatasetOut, DatasetPage, DeletedOut
from nas.api.security import ReadToken, StorageDep, SubmitToken
from nas.api.uploads import receive_upload
from nas.datasets import DATASET_FORMATS, datasets_dir, delete_dataset, store_upload
from nas.db.dataset_storage import DatasetRecord
from nas.db.storage import isoformat
from search_spaces.data_paths import DATASET_NAME_PATTERN, dataset_ref

router = APIRouter(prefix="/datasets", tags=["datasets"])
DatasetId = Annotated[int, Path(ge=1, le=2**31 - 1, description="dataset id")]
UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "name", "format"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "the data file"},
            "name": {"type": "string", "pattern": DATASET_NAME_PATTERN, "description": "the name jobs use"},
            "format": {"type": "string", "enum": list(DATASET_FORMATS),
                       "description": "text: a UTF-8 corpus; tsv, csv, jsonl: a table with a header (or JSON "
                                      "objects, one a line)"},
        }}}},
}


def dataset_out(record: DatasetRecord) -> dict[str, Any]:
    return {"id": record.id, "name": record.name, "format": record.format, "sha256": record.sha256,
            "size_bytes": record.size_bytes, "ref": dataset_ref(record.sha256), "info": record.info,
            "created_by": record.created_by, "created_at": isoformat(record.created_at)}


@router.post("", status_code=201, response_model=DatasetOut,
             responses={**ERRORS, 200: {"model": DatasetOut, "description": "already stored under this name"}},
             openapi_extra={"requestBody": UPLOAD_BODY},
             summary="Upload a dataset (multipart: file, name, format); checked, stored once by sha256")
async def upload_dataset(request: Request, response: Response, storage: StorageDep,
                         token: SubmitToken) -> dict[str, Any]:
    settings = request.app.state.settings
    folder = datasets_dir(settings.artifacts_dir)
    received = await receive_upload(request, folder=folder / "tmp", max_bytes=settings.max_upload_bytes)
    try:
        name = received.fields.get("name", "")
        fmt = received.fields.get("format", "")
        stored = await run_in_threadpool(
            store_upload, storage, artifacts_dir=settings.artifacts_dir, temp_path=received.temp_path,
            sha256=received.sha256, size_bytes=received.size_bytes, name=name, fmt=fmt,
            filename=received.filename, created_by=token.name, store=settings.artifact_store())
    finally:
        received.temp_path.unlink(missing_ok=True)
    response.status_code = 201 if stored.created else 200
    return dataset_out(stored.dataset)


@router.get("", response_model=DatasetPage, responses=ERRORS, summary="List datasets, newest first")
def list_datasets(storage: StorageDep, _: ReadToken, offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100,
                  sha256: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$",
                                                      description="only datasets of these bytes")] = None,
                  ) -> dict[str, Any]:
    if sha256 is not None:
        records = storage.datasets.by_sha256(sha256)
        return {"total": len(records), "offset": 0, "limit": limit, "items": [dataset_out(r) for r in records]}
    total, records = storage.datasets.list(offset=offset, limit=limit)
    return {"total": total, "offset": offset, "limit": limit, "items": [dataset_out(r) for r in records]}


@router.get("/{dataset_id}", response_model=DatasetOut, responses=ERRORS, summary="One dataset")
def get_dataset(dataset_id: DatasetId, storage: StorageDep, _: ReadToken) -> dict[str, Any]:
    return dataset_out(storage.datasets.get(dataset_id))


@router.delete("/{dataset_id}", response_model=DeletedOut, responses=ERRORS,
               summary="Delete a dataset (refused while a queued or running job uses it)")
def remove_dataset(dataset_id: DatasetId, request: Request, storage: StorageDep, _: SubmitToken) -> dict[str, Any]:
    settings = request.app.state.settings
    delete_dataset(storage, artifacts_dir=settings.artifacts_dir, dataset_id=dataset_id,
                   store=settings.artifact_store())
    return {"id": dataset_id, "detail": "deleted; its bytes stay while a stored job refers to them"}
