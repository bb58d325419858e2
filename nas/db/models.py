"""SQLAlchemy models of hwnas's own tables (prefixed `nas_`, beside Optuna's tables)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "nas_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    space: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(64))
    latency_target_ms: Mapped[float] = mapped_column(Float)
    strategy: Mapped[str] = mapped_column(String(32))
    trials_budget: Mapped[int] = mapped_column(Integer)
    study_name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Leases are epoch seconds: portable comparisons on SQLite and PostgreSQL alike.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str | None] = mapped_column(Text)
    data_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # What the space prepared once for the job (teacher, importance) and the baseline it is compared with.
    preparation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The name of the API token that submitted the job (None: the local CLI).
    created_by: Mapped[str | None] = mapped_column(String(200))
    # The stored latency predictor the job's search used.
    latency_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("nas_latency_models.id", ondelete="SET NULL", name="fk_nas_jobs_latency_model_id"))


class TrialRow(Base):
    __tablename__ = "nas_trials"
    __table_args__ = (UniqueConstraint("job_id", "number", name="uq_nas_trials_job_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("nas_jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    optuna_number: Mapped[int] = mapped_column(Integer)
    arch_hash: Mapped[str] = mapped_column(String(32), index=True)
    arch: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    predicted_latency_ms: Mapped[float | None] = mapped_column(Float)
    predicted_latency_std_ms: Mapped[float | None] = mapped_column(Float)
    measured_latency_ms: Mapped[float | None] = mapped_column(Float)
    metric: Mapped[float | None] = mapped_column(Float)
    params: Mapped[int | None] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, float] | None] = mapped_column(JSON)
    worker: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    weights_path: Mapped[str | None] = mapped_column(Text)
    # Training steps the trial reached, and its metric at each rung of an early-stopping job
    # (`[{"steps": 20, "metric": 3.1}, ...]`); a stopped trial keeps the budget it had reached.
    steps_done: Mapped[int | None] = mapped_column(Integer)
    rungs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def latency_ms(self) -> float | None:
        """The trial's best-known latency: measured when it was, else predicted."""
        return self.measured_latency_ms or self.predicted_latency_ms


class FrontMemberRow(Base):
    __tablename__ = "nas_front_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("nas_jobs.id", ondelete="CASCADE"), index=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("nas_trials.id", ondelete="CASCADE"))
    metric: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)


class HypervolumeRow(Base):
    __tablename__ = "nas_hypervolume_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("nas_jobs.id", ondelete="CASCADE"), index=True)
    trials_done: Mapped[int] = mapped_column(Integer)
    hypervolume: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeviceProfileRow(Base):
    __tablename__ = "nas_device_profiles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    backend: Mapped[str] = mapped_column(String(32))
    threads: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    seq_len: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))
    workload: Mapped[str] = mapped_column(String(16), default="forward", server_default="forward")
    decode_tokens: Mapped[int] = mapped_column(Integer, default=32, server_default="32")
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LatencySampleRow(Base):
    __tablename__ = "nas_latency_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device: Mapped[str] = mapped_column(ForeignKey("nas_device_profiles.name"), index=True)
    space: Mapped[str] = mapped_column(String(64))
    space_version: Mapped[int] = mapped_column(Integer)
    arch_hash: Mapped[str] = mapped_column(String(32), index=True)
    arch: Mapped[dict[str, Any]] = mapped_column(JSON)
    median_ms: Mapped[float] = mapped_column(Float)
    p10_ms: Mapped[float] = mapped_column(Float)
    p90_ms: Mapped[float] = mapped_column(Float)
    runs: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[dict[str, Any]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("nas_jobs.id", ondelete="SET NULL"))
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("nas_trials.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LatencyModelRow(Base):
    __tablename__ = "nas_latency_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device: Mapped[str] = mapped_column(ForeignKey("nas_device_profiles.name"), index=True)
    space: Mapped[str] = mapped_column(String(64))
    space_version: Mapped[int] = mapped_column(Integer)
    space_key: Mapped[str] = mapped_column(String(16), index=True, server_default="")
    space_signature: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CheckpointRow(Base):
    __tablename__ = "nas_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("nas_jobs.id", ondelete="CASCADE"), index=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("nas_trials.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    archive_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    measured_latency_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiTokenRow(Base):
    """A bearer token: only its sha256 is stored; `prefix` (the first characters) lets a user tell them apart."""

    __tablename__ = "nas_api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Recorded at most once per `token_touch_interval_s`, never a write per request.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DatasetBlobRow(Base):
    """Uploaded bytes, stored once by their sha256 (kept while a dataset or a job refers to them)."""

    __tablename__ = "nas_dataset_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DatasetRow(Base):
    """A named, format-checked dataset over a blob."""

    __tablename__ = "nas_datasets"
    __table_args__ = (UniqueConstraint("name", name="uq_nas_datasets_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(ForeignKey("nas_dataset_blobs.sha256"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobDatasetRow(Base):
    """A job's use of a blob (its spec names it as dataset:sha256:...)."""

    __tablename__ = "nas_job_datasets"

    job_id: Mapped[int] = mapped_column(ForeignKey("nas_jobs.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("nas_dataset_blobs.sha256"), primary_key=True, index=True)
