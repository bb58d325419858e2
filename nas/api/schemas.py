"""The API's request and response bodies (pydantic v2); they make the OpenAPI schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from latency_models.device import DeviceProfile
from nas.auth import DURATION_PATTERN


class Problem(BaseModel):
    """Every error answer: what went wrong and how to fix it, plus one line per offending field."""

    detail: str
    error: str = Field(description="the hwnas error class, e.g. SpecError, NotFoundError")
    problems: list[str] = Field(default_factory=list)


class CheckpointOut(BaseModel):
    id: int
    trial: int
    archive_name: str
    sha256: str
    size_bytes: int
    measured_latency_ms: float | None
    download_url: str
    created_at: str | None


class LatencyModelOut(BaseModel):
    id: int
    device: str
    space: str
    space_version: int
    space_key: str
    kind: str
    report: dict[str, Any] | None = Field(description="held-out accuracy: MAPE, within 5%/10%, Kendall tau, "
                                                       "noise floor, and the held-out points")
    created_at: str | None


class JobOut(BaseModel):
    job_id: int
    name: str | None
    state: str = Field(description="queued, running, completed, failed or cancelled")
    created_by: str | None = Field(default=None, description="the name of the token that submitted it (None: the "
                                                             "local CLI)")
    space: str
    device: str
    latency_target_ms: float
    strategy: str
    trials_budget: int
    trials: int = Field(description="trials recorded so far (of any state)")
    trial_states: dict[str, int]
    progress: float = Field(description="trials recorded / budget, 0 to 1")
    cancel_requested: bool
    message: str | None
    metric_name: str
    maximize_metric: bool
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    hypervolume: float | None
    checkpoint: CheckpointOut | None
    latency_model: LatencyModelOut | None
    baseline: dict[str, Any] | None
    spec: dict[str, Any]


class JobPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[JobOut]


class TrialOut(BaseModel):
    trial: int
    state: str = Field(description="pending, running, complete, infeasible, failed or stopped (early, at `steps_done`)")
    arch: dict[str, Any]
    arch_hash: str
    arch_text: str
    metric: float | None
    metrics: dict[str, float] | None
    latency_ms: float | None = Field(description="measured when it was, else predicted")
    predicted_latency_ms: float | None
    predicted_latency_std_ms: float | None
    measured_latency_ms: float | None
    params: int | None
    worker: str | None
    attempts: int = Field(description="dispatches, retries after a lost worker included")
    steps_done: int | None = Field(description="training steps reached (a stopped trial's budget)")
    rungs: list[dict[str, float]] | None = Field(description="metric at each early-stopping rung: steps, metric")
    error: str | None
    started_at: str | None
    finished_at: str | None


class TrialPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[TrialOut]


class FrontMemberOut(BaseModel):
    trial: int
    metric: float
    latency_ms: float = Field(description="the latency the front was computed with: measured, else predicted")
    predicted_latency_ms: float | None
    predicted_latency_std_ms: float | None
    measured_latency_ms: float | None
    params: int | None
    arch: dict[str, Any]
    arch_hash: str
    arch_text: str
    under_target: bool
    checkpoint: CheckpointOut | None


class FrontOut(BaseModel):
    job_id: int
    latency_target_ms: float
    metric_name: str
    maximize_metric: bool
    hypervolume: float | None
    members: list[FrontMemberOut]


class ExportRequest(BaseModel):
    """Which trial to export: a trial number, or the best front member under `max_latency_ms` (default: the
    job's target)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    trial: int | None = Field(default=None, ge=0, le=10_000_000)
    max_latency_ms: float | None = Field(default=None, gt=0, le=3_600_000)


class DeviceIn(DeviceProfile):
    """A device profile to add. Types are strict (no "1" for 1, no 0 for false): a profile is a measurement
    protocol, and a value the client did not mean would be measured as if it had."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DeviceOut(DeviceProfile):
    """A device profile with the latency models fitted on it."""

    latency_models: list[LatencyModelOut]


class CancelOut(BaseModel):
    job_id: int
    state: str
    detail: str


class DatasetOut(BaseModel):
    """A stored dataset. Name it in a job spec as `dataset:NAME`, or pin its bytes as `dataset:sha256:HEX`."""

    id: int
    name: str
    format: str = Field(description="text (a corpus), tsv, csv or jsonl (a table)")
    sha256: str
    size_bytes: int
    ref: str = Field(description="the reference that pins this content in a job spec")
    info: dict[str, Any] = Field(description="what the format check found: rows and columns, or lines")
    created_by: str | None = Field(description="the name of the token that uploaded it")
    created_at: str | None


class DatasetPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[DatasetOut]


class DeletedOut(BaseModel):
    id: int
    detail: str


class TokenIn(BaseModel):
    """A token to create: its name, scope and (optionally) lifetime."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    scope: Literal["read", "submit", "admin"]
    expires_in: str | None = Field(default=None, pattern=DURATION_PATTERN,
                                   description="lifetime such as 90s, 15m, 12h or 30d; unset: no expiry")


class TokenOut(BaseModel):
    id: int
    name: str
    scope: str
    prefix: str = Field(description="the token's first characters, to tell tokens apart")
    created_at: str | None
    expires_at: str | None
    last_used_at: str | None = Field(description="recorded at most once a minute (HWNAS_TOKEN_TOUCH_INTERVAL_S)")
    revoked_at: str | None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="the secret: shown only in this answer, only its sha256 is stored")


def add_job_spec_schema(openapi: dict[str, Any], *, path: str) -> None:
    """Document `POST path`'s body as the job spec model (with its nested task and budget models); the route
    itself takes the raw body so that `parse_spec` reports every problem with its field and fix."""
    from nas.spec import job_spec_schema_model

    schema = job_spec_schema_model().model_json_schema(ref_template="#/components/schemas/{model}")
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in schema.pop("$defs", {}).items():
        if "kind" in definition.get("properties", {}):  # the discriminator: always sent
            definition["required"] = sorted({*definition.get("required", []), "kind"})
        components[name] = definition
    components["JobSpec"] = schema
    operation = openapi["paths"][path]["post"]
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    operation["requestBody"] = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/JobSpec"},
        **({"examples": content["examples"]} if "examples" in content else {})}}}
