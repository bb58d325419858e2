"""The one exception hierarchy of hwnas.

It lives in the lowest layer so that every package can raise it; `nas.errors` re-exports it, and the
mapping to CLI exit codes (and later HTTP status codes) is done in one place each in `nas`.
Messages name the field, the rule, the value received and the fix.
"""

from __future__ import annotations


class HwnasError(Exception):
    """Root of every error hwnas raises on purpose."""


class SpecError(HwnasError):
    """A user-supplied spec or option is invalid. Carries one message per offending field."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems else [message]


class InvalidArchError(SpecError):
    """An architecture does not belong to its search space."""


class RegistryError(HwnasError):
    """A plug-in name is unknown, duplicated, or a class is not of the registry's kind."""


class NotFoundError(HwnasError):
    """A job, trial, device profile or artifact does not exist. `resource` names its kind (`job`, `trial`,
    `device`, ...) so that the interface (CLI or API) can add how to find the existing ones."""

    def __init__(self, message: str, *, resource: str | None = None, owner: int | str | None = None) -> None:
        super().__init__(message)
        self.resource = resource
        self.owner = owner  # the job a trial or checkpoint belongs to


class ConflictError(HwnasError):
    """The operation does not fit the current state (a job leased elsewhere, already finished...)."""


class StorageError(HwnasError):
    """The database refused or failed an operation."""


class DatabaseUnavailableError(StorageError):
    """The database cannot be reached (restarting, network down): the same operation may work later."""


class ArtifactStoreError(StorageError):
    """The object store behind the artifacts (`HWNAS_ARTIFACTS_URL`) refused or failed a transfer."""


class ExecutionError(HwnasError):
    """An executor could not run candidates (Ray unreachable, worker lost...)."""


class DataError(HwnasError):
    """Task data is missing, unreadable or too small."""


class LatencyError(HwnasError):
    """Latency could not be measured or predicted for the requested device."""
