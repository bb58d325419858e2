"""The API's request and response bodies (pydantic v2); they make the OpenAPI schema. The outputs shared with
the command line and the client live in `nas.views`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from latency_models.device import DeviceProfile
from nas.auth import DURATION_PATTERN
from nas.views import (
    CheckpointOut,
    FrontMemberOut,
    FrontOut,
    JobOut,
    JobPage,
    LatencyModelOut,
    TokenCreatedOut,
    TokenOut,
    TrialOut,
    TrialPage,
)


class Problem(BaseModel):
    """Every error answer: what went wrong and how to fix it, plus one line per offending field."""

    detail: str
    error: str = Field(description="the hwnas error class, e.g. SpecError, NotFoundError")
    problems: list[str] = Field(default_factory=list)


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


__all__ = ["CheckpointOut", "FrontMemberOut", "FrontOut", "JobOut", "JobPage", "LatencyModelOut", "TokenCreatedOut",
           "TokenOut", "TrialOut", "TrialPage"]
