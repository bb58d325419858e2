"""Search spaces: sample, validate, encode and build candidate networks; export checkpoints."""

from __future__ import annotations

from search_spaces.arch import Arch, canonical_json
from search_spaces.base import Block, SearchSpace, SpaceOptions, get_space, register_space, space_names
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
from search_spaces.registry import Registry

__all__ = [
    "Arch",
    "Block",
    "ConflictError",
    "DataError",
    "ExecutionError",
    "HwnasError",
    "InvalidArchError",
    "LatencyError",
    "NotFoundError",
    "Registry",
    "RegistryError",
    "SearchSpace",
    "SpaceOptions",
    "SpecError",
    "StorageError",
    "canonical_json",
    "get_space",
    "register_space",
    "space_names",
]
