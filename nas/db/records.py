"""Frozen domain records: what `Storage` hands out instead of ORM rows.

A record is a copy made inside the session that read it; changing the database goes through the storage's
named state transitions (start a trial, complete it, mark it infeasible, ...), never through a record.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from nas.spec import JobSpec

Record = TypeVar("Record")


def from_row(cls: type[Record], row: Any) -> Record:
    """A record of `cls` with the same-named attributes of an ORM row."""
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Baseline:
    """What a space's preparation compares the job's results with (the unpruned, fine-tuned teacher of
    pruned-bert): its arch and metric, and its latency once measured on the job's device."""

    arch: dict[str, Any]
    metric_name: str | None = None
    metric: float | None = None
    latency_ms: float | None = None
    predicted_latency_ms: float | None = None
    latency_measured: bool = False
    extra: dict[str, Any] | None = None  # what else the space recorded (teacher steps, ...)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known} or None)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**out, **(self.extra or {})}


@dataclass(frozen=True)
class JobRecord:
    """A stored job. `spec` is the spec as stored (JSON); `job_spec` parses it (on first use: parsing checks
    the data files, which only the engine needs)."""

    id: int
    name: str | None
    state: str
    spec: dict[str, Any]
    space: str
    device: str
    latency_target_ms: float
    strategy: str
    trials_budget: int
    study_name: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    lease_owner: str | None
    lease_expires_at: float | None
    cancel_requested: bool
    message: str | None
    data_info: dict[str, Any] | None
    preparation: dict[str, Any] | None
    created_by: str | None
    latency_model_id: int | None

    @cached_property
    def job_spec(self) -> JobSpec:
        from nas.spec import JobSpec

        return JobSpec.model_validate(self.spec)

    @property
    def prepared_options(self) -> dict[str, Any]:
        """The options the job's preparation made for its space (empty before, or for spaces with none)."""
        return dict((self.preparation or {}).get("options") or {})

    @property
    def baseline(self) -> Baseline | None:
        stored = (self.preparation or {}).get("baseline")
        return Baseline.from_dict(stored) if stored else None


@dataclass(frozen=True)
class TrialRecord:
    id: int
    job_id: int
    number: int
    optuna_number: int
    arch_hash: str
    arch: dict[str, Any]
    state: str
    predicted_latency_ms: float | None
    predicted_latency_std_ms: float | None
    measured_latency_ms: float | None
    metric: float | None
    params: int | None
    train_loss: float | None
    metrics: dict[str, float] | None
    worker: str | None
    attempts: int
    weights_path: str | None
    steps_done: int | None
    rungs: list[dict[str, Any]] | None
    error: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def latency_ms(self) -> float | None:
        """The trial's best-known latency: measured when it was, else predicted."""
        return self.measured_latency_ms or self.predicted_latency_ms


@dataclass(frozen=True)
class FrontMember:
    """A member of a job's stored Pareto front: its trial, and the point the front was computed with."""

    trial: TrialRecord
    metric: float
    latency_ms: float


@dataclass(frozen=True)
class HypervolumePoint:
    """The front's hypervolume after `trials_done` trials."""

    trials_done: int
    hypervolume: float
    created_at: datetime | None


@dataclass(frozen=True)
class CheckpointRecord:
    id: int
    job_id: int
    trial_id: int
    path: str
    archive_path: str
    sha256: str
    size_bytes: int
    measured_latency_ms: float | None
    created_at: datetime | None


@dataclass(frozen=True)
class TrainedResult:
    """What a rung (or the whole budget) of training left on a trial: the columns a result writes."""

    metric: float
    params: int | None
    train_loss: float | None
    worker: str | None
    metrics: dict[str, float] | None
    weights_path: str | None
    steps_done: int
    rungs: list[dict[str, Any]] | None = None

    def columns(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.rungs is None:
            out.pop("rungs")
        return {**out, "error": None}


@dataclass(frozen=True)
class TokenRecord:
    """An API token as stored: never the token, only its sha256 and first characters."""

    id: int
    name: str
    scope: str
    token_hash: str
    prefix: str
    created_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class LatencyModelRecord:
    """A stored latency model: its kind, space signature, device and accuracy report; `payload` (the pickled
    predictor) only when it was asked for."""

    id: int
    device: str
    space: str
    space_version: int
    space_key: str
    kind: str
    report: dict[str, Any] | None
    created_at: datetime | None
    payload: bytes | None = None


@dataclass(frozen=True)
class LatencySampleRecord:
    id: int
    device: str
    space: str
    space_version: int
    arch_hash: str
    arch: dict[str, Any]
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    protocol: dict[str, Any]
    purpose: str
    job_id: int | None
    trial_id: int | None
    created_at: datetime | None
