"""What a spec names on the server's disk: the contract between specs and the service's data rules.

Task specs and space options declare which of their fields hold paths (`data_paths`), so that the
service can check a spec sent over the network against its data roots without knowing each task or
space, and before any validator touches the file system (a validator that checks existence would tell a
remote user whether a file exists).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

PathKind = Literal["file", "folder", "internal", "refused"]
BUILTIN_PREFIX = "builtin:"
DATASET_PREFIX = "dataset:"


@dataclass(frozen=True)
class DataPath:
    """One field of a spec that names something on the server's disk.

    `kind`: `file` or `folder` (allowed inside the data roots), `internal` (set by the service itself,
    never by a user), `refused` (never allowed from a remote user; `reason` says why and what to do).
    """

    field: str
    value: str
    kind: PathKind
    reason: str = ""


def is_reference(value: str) -> bool:
    """A `builtin:` corpus or a `dataset:` reference: data the service owns, never a path."""
    return value.startswith(BUILTIN_PREFIX) or value.startswith(DATASET_PREFIX)


DATASET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"
SHA256_PREFIX = "sha256:"
_NAME = re.compile(DATASET_NAME_PATTERN)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def parse_dataset_ref(value: str) -> tuple[Literal["name", "sha256"], str]:
    """`dataset:NAME` -> ("name", NAME); `dataset:sha256:HEX` -> ("sha256", HEX). ValueError if malformed."""
    rest = value.removeprefix(DATASET_PREFIX)
    if rest.startswith(SHA256_PREFIX):
        digest = rest[len(SHA256_PREFIX):]
        if not _SHA256.match(digest):
            raise ValueError(f"{value!r} is not dataset:sha256: followed by 64 lower-case hex digits")
        return "sha256", digest
    if not _NAME.match(rest):
        raise ValueError(f"{value!r} is not dataset:NAME (NAME: letters, digits, '_', '.', '-', at most 200) "
                         "or dataset:sha256:HEX")
    return "name", rest


def dataset_ref(sha256: str) -> str:
    """The reference that pins a dataset's content."""
    return f"{DATASET_PREFIX}{SHA256_PREFIX}{sha256}"
