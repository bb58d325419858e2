"""The hwnas exception hierarchy (defined in the lowest layer, re-exported here) and CLI exit codes.

Exit codes are mapped here and only here; the API's HTTP mapping will sit beside it.
"""

from __future__ import annotations

from search_spaces.errors import (
    ConflictError,
    DataError,
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
    "ConflictError",
    "DataError",
    "ExecutionError",
    "HwnasError",
    "InvalidArchError",
    "LatencyError",
    "NotFoundError",
    "RegistryError",
    "SpecError",
    "StorageError",
    "exit_code_for",
]

# Ordered most specific first: the first matching class decides.
_EXIT_CODES: tuple[tuple[type[HwnasError], int], ...] = (
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


def exit_code_for(error: HwnasError) -> int:
    for cls, code in _EXIT_CODES:
        if isinstance(error, cls):
            return code
    return 1
