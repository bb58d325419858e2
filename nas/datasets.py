"""Datasets: data that belongs to the service. Uploaded, format-checked, stored once by sha256, named.

A job spec names a dataset as `dataset:NAME` or `dataset:sha256:HEX`. At submission the names are pinned
to their content (`dataset:sha256:HEX` is what the stored spec keeps, so a job is reproducible even if
the name is later deleted or reused), the dataset's format is checked against the task, and the job's use
of the bytes is recorded (a dataset used by a queued or running job cannot be deleted; bytes a stored job
refers to are kept). Before a task reads its data, `materialize_task` replaces each reference with the
stored file's path.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nas.db.dataset_storage import DatasetRecord
from nas.errors import DataError, NotFoundError, SpecError
from search_spaces.data_paths import DATASET_NAME_PATTERN, DATASET_PREFIX, dataset_ref, parse_dataset_ref

if TYPE_CHECKING:
    from nas.db.storage import Storage
    from nas.spec import JobSpec
    from workers.artifact_store import ArtifactStore
    from workers.tasks.base import TaskSpec

logger = logging.getLogger(__name__)
DatasetFormat = Literal["text", "tsv", "csv", "jsonl"]
DATASET_FORMATS: tuple[str, ...] = ("text", "tsv", "csv", "jsonl")
_NAME = re.compile(DATASET_NAME_PATTERN)
CHUNK_BYTES = 1 << 20


def datasets_dir(artifacts_dir: Path) -> Path:
    return artifacts_dir / "datasets"


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise SpecError(f"name: a dataset name is 1 to 200 letters, digits, '_', '.' or '-', starting with a letter "
                        f"or digit, got {name!r}; pick such a name")
    return name


def check_format_name(fmt: str) -> str:
    if fmt not in DATASET_FORMATS:
        raise SpecError(f"format: must be one of {', '.join(DATASET_FORMATS)} (text: a corpus for language "
                        f"modelling; tsv, csv, jsonl: a table of examples), got {fmt!r}")
    return fmt


def _check_text(path: Path, shown: str) -> dict[str, Any]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    lines, characters, offset = 0, 0, 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line = lines + chunk[:exc.start].count(b"\n") + 1
                raise DataError(f"file: {shown}:{line}: not UTF-8 text ({exc.reason} at byte {offset + exc.start}); "
                                "re-encode it as UTF-8") from None
            lines += text.count("\n")
            characters += len(text)
            offset += len(chunk)
        try:
            characters += len(decoder.decode(b"", final=True))
        except UnicodeDecodeError:
            raise DataError(f"file: {shown}: ends inside a UTF-8 character (truncated?); upload the whole file") \
                from None
    if characters == 0:
        raise DataError(f"file: {shown} is empty; a corpus needs text")
    return {"encoding": "utf-8", "lines": lines + 1, "characters": characters}


def _check_table(path: Path, fmt: str, shown: str) -> dict[str, Any]:
    import csv

    from workers.tasks.table_files import table_rows

    columns: list[str] = []
    rows = 0
    try:
        for _, row in table_rows(path, fmt, shown=shown):
            if not columns:
                columns = list(row)
            rows += 1
    except UnicodeDecodeError as exc:
        raise DataError(f"file: {shown}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode it as UTF-8") \
            from None
    except csv.Error as exc:
        raise DataError(f"file: {shown}: malformed {fmt.upper()}: {exc}") from None
    except DataError as exc:
        raise DataError(f"file: {exc}") from None
    if rows == 0:
        raise DataError(f"file: {shown} holds no rows (only a header?); a table needs examples")
    return {"rows": rows, "columns": columns}


def check_dataset_file(path: Path, fmt: str, *, shown: str) -> dict[str, Any]:
    """What a stored dataset records of its file (rows and columns, or lines); DataError naming file and line."""
    return _check_text(path, shown) if fmt == "text" else _check_table(path, fmt, shown)


@dataclass(frozen=True)
class StoredUpload:
    dataset: DatasetRecord
    created: bool


def _lock(folder: Path, sha256: str) -> Any:
    from filelock import FileLock

    locks = folder / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{sha256}.lock"), timeout=60)


def store_upload(storage: Storage, *, artifacts_dir: Path, temp_path: Path, sha256: str, size_bytes: int,
                 name: str, fmt: str, filename: str, created_by: str | None,
                 store: ArtifactStore | None = None) -> StoredUpload:
    """Check an uploaded file (already streamed to `temp_path`, in the datasets folder) and store it (with an
    object store: uploaded there before it is recorded, so a recorded dataset is always readable elsewhere).

    Nothing is stored on a refusal; the temporary file is always gone afterwards.
    """
    try:
        check_name(name)
        check_format_name(fmt)
        existing = storage.datasets.by_name(name)
        if existing is not None and existing.sha256 == sha256 and existing.format == fmt:
            return StoredUpload(existing, False)
        info = {**check_dataset_file(temp_path, fmt, shown=filename or "upload"), "filename": filename}
        folder = datasets_dir(artifacts_dir)
        final = folder / "sha256" / sha256
        with _lock(folder, sha256):
            placed = False
            if not final.is_file():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temp_path, final)
                placed = True
            try:
                if store is not None:
                    store.push(final)
                record, created = storage.datasets.add(name=name, sha256=sha256, fmt=fmt, info=info,
                                                       size_bytes=size_bytes, path=str(final),
                                                       created_by=created_by)
            except BaseException:
                if placed and not storage.datasets.blob_exists(sha256):
                    final.unlink(missing_ok=True)
                    if store is not None:
                        store.delete(final)
                raise
        return StoredUpload(record, created)
    finally:
        temp_path.unlink(missing_ok=True)


def delete_dataset(storage: Storage, *, artifacts_dir: Path, dataset_id: int,
                   store: ArtifactStore | None = None) -> None:
    """Delete a dataset (refused while a queued or running job uses it); its bytes go when nothing refers to them
    (here and in the object store)."""
    record = storage.datasets.get(dataset_id)
    with _lock(datasets_dir(artifacts_dir), record.sha256):
        path = storage.datasets.delete(dataset_id)
        if path is not None:
            Path(path).unlink(missing_ok=True)
            if store is not None:
                store.delete(path)


def _resolve_ref(storage: Storage, value: str, *, field: str) -> tuple[str, list[DatasetRecord]]:
    """The sha256 a reference names and the datasets stored with it; SpecError if none is stored."""
    try:
        how, key = parse_dataset_ref(value)
    except ValueError as exc:
        raise SpecError(f"{field}: {exc}") from None
    if how == "name":
        record = storage.datasets.by_name(key)
        if record is None:
            raise SpecError(f"{field}: no dataset named {key!r} on this server; upload it (POST /api/v1/datasets, "
                            "`hwnas submit`) or list them with GET /api/v1/datasets")
        return record.sha256, [record]
    records = storage.datasets.by_sha256(key)
    if not records and not storage.datasets.blob_exists(key):
        raise SpecError(f"{field}: no dataset with sha256 {key} on this server; upload it first")
    return key, records


def pin_datasets(storage: Storage, spec: JobSpec) -> tuple[JobSpec, list[str]]:
    """The spec with each `dataset:` reference pinned to `dataset:sha256:HEX` and its format checked against
    the task (a table's format is written into `task.format` when that is `auto`); and the sha256s used."""
    task = spec.task
    changes: dict[str, Any] = {}
    formats: dict[str, str] = {}
    problems: list[str] = []
    for name in type(task).data_fields:
        value = getattr(task, name, None)
        if not isinstance(value, str) or not value.startswith(DATASET_PREFIX):
            continue
        field = f"task.{name}"
        try:
            sha256, records = _resolve_ref(storage, value, field=field)
        except SpecError as exc:
            problems.append(str(exc))
            continue
        accepted = type(task).dataset_formats
        fits = [r.format for r in records if r.format in accepted]
        if records and not fits:
            problems.append(f"{field}: dataset {records[0].name!r} is {records[0].format}, and a {task.kind} task "
                            f"takes {', '.join(accepted)}; upload the data in one of those formats")
            continue
        changes[name] = dataset_ref(sha256)
        if fits:
            formats[name] = fits[0]
    if problems:
        raise SpecError("invalid job spec: " + "; ".join(problems), problems=problems)
    if "format" in type(task).model_fields and formats and getattr(task, "format") == "auto":
        kinds = set(formats.values())
        if len(kinds) > 1:
            raise SpecError(f"task.format: the datasets named are in different formats ({', '.join(sorted(kinds))}); "
                            "upload them in one format")
        changes["format"] = kinds.pop()
    if not changes:
        return spec, []
    pinned = spec.model_copy(update={"task": task.model_copy(update=changes)})
    return pinned, sorted({v.split(":")[-1] for k, v in changes.items() if k != "format"})


def materialize_task(storage: Storage, task: TaskSpec) -> TaskSpec:
    """The task spec with each `dataset:sha256:HEX` replaced by the stored file's path (for reading)."""
    changes: dict[str, str] = {}
    for name in type(task).data_fields:
        value = getattr(task, name, None)
        if isinstance(value, str) and value.startswith(DATASET_PREFIX):
            how, key = parse_dataset_ref(value)
            if how == "name":  # a spec stored before pinning (never by submit_job); resolve it now
                record = storage.datasets.by_name(key)
                if record is None:
                    raise NotFoundError(f"task.{name}: no dataset named {key!r}; upload it again")
                key = record.sha256
            changes[name] = storage.datasets.blob_path(key)
    return task.model_copy(update=changes) if changes else task
