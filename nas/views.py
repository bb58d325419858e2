"""The output models of a job, a trial, a front member, a checkpoint, a latency model and a token: what the
API answers, what `--json` on the command line prints and what the Python client checks each answer against.
The service (`nas.service`) builds them from storage records; nothing else shapes these answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CheckpointOut(BaseModel):
    id: int
    trial: int
    # Where the checkpoint lies on the server's disk: for a local caller (the CLI on its own database); never
    # serialised, so the API and `model_dump` never show the server's paths.
    path: str | None = Field(default=None, exclude=True)
    archive: str | None = Field(default=None, exclude=True)
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
    data: dict[str, Any] | None = Field(default=None, description="what the task found in its data: sizes, "
                                                                  "vocabulary or labels")
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
    metrics: dict[str, float] | None = Field(default=None, description="every metric the task reported")
    trained_steps: int | None = Field(default=None, description="training steps behind `metric`; 0: scored on "
                                                                "weights inherited from the supernet (one-shot)")
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


def dump_with_paths(value: Any) -> Any:
    """`value` (a view, or lists and dicts of them) as JSON-ready data, checkpoints with their server paths:
    what the command line prints for its own database."""
    if isinstance(value, CheckpointOut):
        return {**value.model_dump(mode="json"), "path": value.path, "archive": value.archive}
    if isinstance(value, BaseModel):
        return {name: dump_with_paths(getattr(value, name)) for name in value.model_dump(mode="json")}
    if isinstance(value, list):
        return [dump_with_paths(item) for item in value]
    if isinstance(value, dict):
        return {key: dump_with_paths(item) for key, item in value.items()}
    return value
