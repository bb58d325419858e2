"""Service settings from the environment (`HWNAS_` prefix). Built by callers, never at import time."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from latency_models.meter import MeterSettings

if TYPE_CHECKING:
    from latency_models.profiler import ProfilePlan
    from workers.artifact_store import ArtifactLocation, ArtifactStore


def _meter_default(name: str) -> Any:
    return MeterSettings.model_fields[name].default


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HWNAS_", extra="ignore")

    data_dir: Path = Field(default=Path("hwnas-data"), description="SQLite file and artifacts (embedded default)")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite in data_dir")
    artifacts_url: str | None = Field(
        default=None, description="object storage holding the artifacts (s3://bucket/prefix, any fsspec URL); "
                                  "unset: the artifacts folder under data_dir is the only copy (share it)")
    artifacts_options: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict, description="fsspec options for artifacts_url as JSON, e.g. {\"endpoint_url\": "
                                          "\"http://minio:9000\"}; never credentials (each process reads its own "
                                          "from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    ray_address: str | None = Field(default=None, description="Ray cluster address; default a local Ray")
    executor: str = Field(default="ray", pattern=r"^[a-z][a-z0-9-]{0,63}$",
                          description="an executor registered in workers.executors (built in: ray, in-process)")
    max_parallel_trials: int | None = Field(default=None, ge=1, le=10_000)
    training_threads: int = Field(default=1, ge=1, le=256)
    supernet_checkpoint_s: float = Field(default=120.0, gt=0, le=86_400,
                                         description="how often a supernet in training saves a checkpoint")
    lease_ttl_s: float = Field(default=60.0, gt=0.5, le=86_400)
    trial_max_attempts: int = Field(default=3, ge=1, le=100,
                                    description="dispatches of a trial whose worker keeps dying before it fails")
    db_outage_timeout_s: float = Field(default=300.0, ge=0, le=86_400,
                                       description="how long a controller waits for a lost database to come back")
    controller_max_jobs: int = Field(default=2, ge=1, le=1000, description="jobs one controller runs at once")
    # The meter's defaults are MeterSettings' own (`latency_models.meter`), defined there once.
    meter_warmup: int = Field(default=_meter_default("warmup"), ge=0, le=1000)
    meter_repeats: int = Field(default=_meter_default("repeats"), ge=1, le=10_000, description="timed runs per model per round")
    meter_min_rounds: int = Field(default=_meter_default("min_rounds"), ge=1, le=1000)
    meter_max_rounds: int = Field(default=_meter_default("max_rounds"), ge=1, le=1000)
    meter_tolerance: float = Field(default=_meter_default("tolerance"), ge=0.0, le=1.0,
                                   description="median change that counts as stable")
    profile_samples: int = Field(default=120, ge=10, le=100_000, description="archs a job's profiling fits on")
    profile_overhead_samples: int = Field(default=20, ge=3, le=100_000)
    profile_holdout: int = Field(default=100, ge=2, le=100_000, description="held-out archs for the report")
    # The service (`hwnas serve`) and its clients.
    host: str = Field(default="127.0.0.1", description="address `hwnas serve` binds to")
    port: int = Field(default=8000, ge=1, le=65_535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=1 << 30, description="largest request body accepted")
    events_interval_s: float = Field(default=0.5, gt=0, le=60, description="how often progress events are checked")
    runner_poll_s: float = Field(default=1.0, gt=0, le=3600, description="how often the serve loop looks for jobs")
    data_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(), description="folders whose files a job sent to the server may name by path (os.pathsep- "
                                "separated, or a JSON list); default none: remote jobs use datasets or builtin:")
    max_upload_bytes: int = Field(default=1 << 30, ge=1024, le=1 << 40, description="largest dataset upload")
    auth_failures_per_minute: int = Field(default=30, ge=1, le=1_000_000,
                                          description="failed authentications one client address may make per "
                                                      "minute before it is answered 429")
    token_touch_interval_s: float = Field(default=60.0, ge=0, le=86_400,
                                          description="how stale a token's recorded last use may get")
    api_workers: int = Field(default=1, ge=1, le=64, description="API worker processes of `hwnas serve`")
    api_threads: int = Field(default=8, ge=1, le=1024,
                             description="threads per API process for database work (the connection pool keeps "
                                         "this many plus 4 open: a thread never waits for, or opens, a connection)")
    url: str | None = Field(default=None, description="a server for the CLI and nas.client; unset: the local database")
    token: SecretStr | None = Field(default=None, description="bearer token for `url`")

    @field_validator("artifacts_url")
    @classmethod
    def _check_artifacts_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from fsspec.registry import known_implementations

        protocol = value.split("://", 1)[0] if "://" in value else ""
        if protocol not in known_implementations or protocol in ("file", "local", ""):
            raise ValueError(f"HWNAS_ARTIFACTS_URL: must be an object-store URL such as s3://bucket/prefix (a "
                             f"protocol fsspec knows, not a local path: for a shared folder set HWNAS_DATA_DIR), "
                             f"got {value!r}")
        if "@" in value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError("HWNAS_ARTIFACTS_URL: holds credentials (user:secret@...), which would travel inside "
                             "every task and every error message; give the bucket alone and each process "
                             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in its environment")
        return value.rstrip("/")

    @field_validator("artifacts_options", mode="before")
    @classmethod
    def _parse_artifacts_options(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"HWNAS_ARTIFACTS_OPTIONS: must be a JSON object, got {value!r} ({exc.msg}); "
                                 'e.g. {"endpoint_url": "http://127.0.0.1:9000"}') from None
        if not isinstance(value, dict):
            raise ValueError(f"HWNAS_ARTIFACTS_OPTIONS: must be a JSON object, got {value!r}")
        from workers.artifact_store import secret_options

        secrets = secret_options(value)
        if secrets:
            raise ValueError(f"HWNAS_ARTIFACTS_OPTIONS: {secrets} look like credentials, which would travel "
                             "inside every task; remove them and give each process AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY in its environment")
        return value

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return tuple(json.loads(text))
            return tuple(part for part in text.split(os.pathsep) if part.strip())
        return value

    @field_validator("data_roots")
    @classmethod
    def _absolute_roots(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        for root in value:
            if not root.is_absolute():
                raise ValueError(f"HWNAS_DATA_ROOTS: each root must be an absolute folder, got {str(root)!r}")
        return tuple(Path(os.path.realpath(root)) for root in value)

    def meter(self, *, seed: int = 0) -> MeterSettings:
        return MeterSettings(warmup=self.meter_warmup, repeats=self.meter_repeats, min_rounds=self.meter_min_rounds,
                             max_rounds=self.meter_max_rounds, tolerance=self.meter_tolerance, seed=seed)

    def profile_plan(self, *, samples: int | None = None, holdout: int | None = None, seed: int = 0) -> ProfilePlan:
        from latency_models.profiler import ProfilePlan

        samples = samples or self.profile_samples
        return ProfilePlan(samples=samples, overhead_samples=min(self.profile_overhead_samples, samples),
                           holdout=holdout or self.profile_holdout, seed=seed, meter=self.meter(seed=seed))

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{(self.data_dir / 'hwnas.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return (self.data_dir / "artifacts").resolve()

    def artifact_location(self) -> ArtifactLocation:
        """Where this process finds the artifacts (its folder; the object store behind it, if any)."""
        from workers.artifact_store import ArtifactLocation

        return ArtifactLocation(local_dir=str(self.artifacts_dir), url=self.artifacts_url,
                                options=dict(self.artifacts_options))

    def artifact_store(self) -> ArtifactStore:
        from workers.artifact_store import ArtifactStore

        return ArtifactStore(self.artifact_location())
