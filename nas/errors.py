"""The hwnas exception hierarchy (defined in the lowest layer, re-exported here), CLI exit codes and HTTP codes.

Exit codes and HTTP status codes are mapped here and only here; the API client maps status codes back.
"""

from __future__ import annotations

from search_spaces.errors import (
    ArtifactStoreError,
    ConflictError,
    DataError,
    DatabaseUnavailableError,
    ExecutionError,
    HwnasError,
    InvalidArchError,
    LatencyError,
    NotFoundError,
    RegistryError,
    SpecError,
    StorageError,
)

__all__ = [
    "ArtifactStoreError",
    "ConflictError",
    "DataError",
    "DatabaseUnavailableError",
    "ExecutionError",
    "HwnasError",
    "InvalidArchError",
    "LatencyError",
    "NotFoundError",
    "RegistryError",
    "SpecError",
    "StorageError",
    "AuthError",
    "ForbiddenError",
    "PayloadTooLargeError",
    "TooManyRequestsError",
    "JobFailedError",
    "JobCancelledError",
    "cli_message",
    "api_message",
    "error_for_status",
    "exit_code_for",
    "http_status_for",
]


class AuthError(HwnasError):
    """No bearer token, or one that is unknown, expired or revoked (HTTP 401)."""


class ForbiddenError(HwnasError):
    """A valid token whose scope is too weak for the request (HTTP 403)."""


class PayloadTooLargeError(HwnasError):
    """A request body over the service's limit (HTTP 413)."""


class TooManyRequestsError(HwnasError):
    """Too many failed authentications from one client address (HTTP 429); `retry_after_s` says when to retry."""

    def __init__(self, message: str, *, retry_after_s: float = 60.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

class JobFailedError(HwnasError):
    """A job run in the foreground (`hwnas search`, `hwnas resume`) ended failed; the message is the job's."""


class JobCancelledError(HwnasError):
    """A job run in the foreground was cancelled before its budget was spent."""


# Ordered most specific first: the first matching class decides.
_EXIT_CODES: tuple[tuple[type[HwnasError], int], ...] = (
    (JobFailedError, 9),
    (JobCancelledError, 10),
    (AuthError, 8),
    (ForbiddenError, 8),
    (TooManyRequestsError, 8),
    (PayloadTooLargeError, 2),
    (SpecError, 2),
    (RegistryError, 2),
    (DataError, 2),
    (NotFoundError, 3),
    (ConflictError, 4),
    (StorageError, 5),
    (ExecutionError, 6),
    (LatencyError, 7),
    (HwnasError, 1),
)


def _first_match(table: tuple[tuple[type[HwnasError], int], ...], error: HwnasError) -> int:
    return next(code for cls, code in table if isinstance(error, cls))  # HwnasError closes every table


def exit_code_for(error: HwnasError) -> int:
    return _first_match(_EXIT_CODES, error)


# Ordered most specific first, like the exit codes. Server-side failures (storage, execution, device) are
# 503 (try again) or 500; everything the caller can fix is a 4xx.
_HTTP_STATUS: tuple[tuple[type[HwnasError], int], ...] = (
    (AuthError, 401),
    (ForbiddenError, 403),
    (PayloadTooLargeError, 413),
    (TooManyRequestsError, 429),
    (SpecError, 422),
    (RegistryError, 422),
    (DataError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (StorageError, 503),
    (LatencyError, 503),
    (ExecutionError, 500),
    (HwnasError, 500),
)


def http_status_for(error: HwnasError) -> int:
    return _first_match(_HTTP_STATUS, error)


def error_for_status(status: int, message: str) -> HwnasError:
    """The client side: the hwnas error an HTTP status stands for (the first class mapped to it)."""
    for cls, mapped in _HTTP_STATUS:
        if mapped == status:
            return cls(message)
    return HwnasError(f"HTTP {status}: {message}")


# How to find what exists, per missing resource: storage says what is wrong, the interface says the fix.
_CLI_FIXES: dict[str, str] = {
    "job": "list jobs with `hwnas jobs`",
    "trial": "see `hwnas show {owner}`",
    "device": "list them with `hwnas devices list` or add it with `hwnas devices add`",
    "latency model": "list them with `hwnas devices show DEVICE`",
    "token": "list tokens with `hwnas token list`",
    "checkpoint": "see `hwnas show {owner}`",
    "dataset": "datasets live on a server: list them with GET /api/v1/datasets (or HwnasClient.datasets())",
}
_API_FIXES: dict[str, str] = {
    "job": "list jobs with GET /api/v1/jobs",
    "trial": "list the job's trials with GET /api/v1/jobs/{owner}/trials",
    "device": "list them with GET /api/v1/devices or add it with POST /api/v1/devices",
    "latency model": "see the device's models with GET /api/v1/devices/DEVICE",
    "token": "list tokens with GET /api/v1/tokens",
    "checkpoint": "list the job's checkpoints with GET /api/v1/jobs/{owner}",
    "dataset": "list datasets with GET /api/v1/datasets",
}


def _with_fix(error: HwnasError, fixes: dict[str, str]) -> str:
    text = " ".join(str(error).split())
    resource = getattr(error, "resource", None)
    if resource in fixes:
        text += "; " + fixes[resource].replace("{owner}", str(getattr(error, "owner", None) or "JOB"))
    return text


def cli_message(error: HwnasError) -> str:
    """The error as the command line prints it, with the command that finds what exists."""
    return _with_fix(error, _CLI_FIXES)


def api_message(error: HwnasError) -> str:
    """The error as the API answers it, with the request that finds what exists."""
    return _with_fix(error, _API_FIXES)
