"""Labelled text examples from TSV, CSV or JSONL files, or from a Hugging Face dataset.

Files are read row by row with the standard library so that every problem names its file and line
(GLUE's TSVs carry a UTF-8 byte-order mark and unbalanced quotes: TSV is read with quoting off).
Hub datasets go through `datasets.load_dataset`, offline: with no network and no local copy the
error says so plainly.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from search_spaces.errors import DataError

FileFormat = Literal["auto", "tsv", "csv", "jsonl"]
SUFFIXES = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
MAX_FIELD_CHARS = 10_000_000


@dataclass(frozen=True)
class Examples:
    """Texts (and optional second texts) with their raw label values, and where each came from."""

    source: str
    texts: list[str]
    pairs: list[str] | None
    labels: list[str]
    lines: list[int]
    sha256: str
    label_names: list[str] | None = None  # a hub dataset's own class names, in id order

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Columns:
    text: str
    pair: str | None
    label: str

    def names(self) -> list[str]:
        return [c for c in (self.text, self.pair, self.label) if c is not None]


def file_format(path: Path, fmt: FileFormat, *, field: str) -> str:
    if fmt != "auto":
        return fmt
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise DataError(f"{field}: cannot tell the format of {path} from its suffix {path.suffix!r}; "
                        f"set task.format to tsv, csv or jsonl") from None


def table_rows(path: Path, fmt: str, *, shown: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs; raises DataError naming the file (as `shown`, default its path) and line for
    malformed rows."""
    name = shown or str(path)
    csv.field_size_limit(MAX_FIELD_CHARS)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if fmt == "jsonl":
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{name}:{number}: not a JSON object ({exc.msg}); each line of a JSONL file "
                                    "must be one JSON object") from None
                if not isinstance(row, dict):
                    raise DataError(f"{name}:{number}: a JSONL line must be a JSON object, got {type(row).__name__}")
                yield number, row
            return
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else csv.reader(handle)
        header: list[str] | None = None
        for values in reader:
            number = reader.line_num
            if header is None:
                header = [h.strip() for h in values]
                continue
            if not values or values == [""]:
                continue
            if len(values) != len(header):
                raise DataError(f"{name}:{number}: expected {len(header)} {fmt.upper()} fields ({', '.join(header)}), "
                                f"found {len(values)}; fix the row (a tab or comma inside a text?)")
            yield number, dict(zip(header, values))
        if header is None:
            raise DataError(f"{name}: the file is empty; a header row naming the columns is needed")


def read_file(path: str | Path, *, fmt: FileFormat, columns: Columns, field: str) -> Examples:
    """All examples of one file; every problem names `field`, the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{field}: no such file {path}; give a TSV, CSV or JSONL file")
    kind = file_format(path, fmt, field=field)
    texts: list[str] = []
    pairs: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    try:
        for number, row in table_rows(path, kind):
            missing = [c for c in columns.names() if c not in row]
            if missing:
                raise DataError(f"{path}:{number}: no column {', '.join(map(repr, missing))} (columns: "
                                f"{', '.join(map(repr, row))}); set task.text_column, task.text_pair_column "
                                "or task.label_column")
            label = row[columns.label]
            if label is None or (isinstance(label, str) and not label.strip()):
                raise DataError(f"{path}:{number}: empty label in column {columns.label!r}; every row needs a label")
            if isinstance(label, float) and label.is_integer():
                label = int(label)
            texts.append(_text(row[columns.text], path, number, columns.text))
            if columns.pair is not None:
                pairs.append(_text(row[columns.pair], path, number, columns.pair))
            labels.append(str(label).strip())
            lines.append(number)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode it as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed {kind.upper()}: {exc}") from None
    if not labels:
        raise DataError(f"{field}: {path} holds no examples (only a header?)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Examples(source=str(path), texts=texts, pairs=pairs if columns.pair is not None else None,
                    labels=labels, lines=lines, sha256=digest)


def _text(value: Any, path: Path, number: int, column: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{path}:{number}: column {column!r} must hold text, got {type(value).__name__} {value!r}")
    return value


def read_hub_split(name: str, *, config: str | None, split: str, columns: Columns, field: str) -> Examples:
    """One split of a Hugging Face dataset, offline (from the local cache or a local dataset script/folder)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets

        data = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # noqa: BLE001  (datasets raises many types; all mean "not available here")
        raise DataError(f"{field}: cannot load Hugging Face dataset {name!r} (config {config!r}, split {split!r}) "
                        f"offline: {type(exc).__name__}: {str(exc)[:300]}. hwnas runs without the hub: put the "
                        "dataset in the local Hugging Face cache first, or give task.train and task.validation "
                        "files") from None
    missing = [c for c in columns.names() if c not in data.column_names]
    if missing:
        raise DataError(f"{field}: dataset {name!r} split {split!r} has no column {', '.join(map(repr, missing))} "
                        f"(columns: {data.column_names}); set task.text_column or task.label_column")
    feature = data.features[columns.label]
    names = list(feature.names) if hasattr(feature, "names") else None
    labels = [str(v) for v in data[columns.label]]
    fingerprint = getattr(data, "_fingerprint", "") or hashlib.sha256("\n".join(labels).encode()).hexdigest()
    return Examples(source=f"hf:{name}/{config or ''}/{split}", texts=list(data[columns.text]),
                    pairs=list(data[columns.pair]) if columns.pair else None, labels=labels,
                    lines=list(range(1, len(labels) + 1)), sha256=str(fingerprint), label_names=names)
