"""`Arch`: a frozen, JSON-serialisable architecture with a stable hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class Arch:
    """One candidate network of a search space.

    The configuration is kept as canonical JSON so that the value is immutable, hashable and
    round-trips through the database and Ray unchanged.
    """

    space: str
    version: int
    config_json: str
    hash: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(f"{self.space}/{self.version}/{self.config_json}".encode()).hexdigest()
        object.__setattr__(self, "hash", digest[:16])

    @classmethod
    def from_config(cls, space: str, version: int, config: dict[str, Any]) -> Arch:
        return cls(space=space, version=version, config_json=canonical_json(config))

    @property
    def config(self) -> dict[str, Any]:
        """A fresh copy of the configuration; mutating it never changes the arch."""
        result: dict[str, Any] = json.loads(self.config_json)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "version": self.version, "config": self.config, "hash": self.hash}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Arch:
        return cls.from_config(str(data["space"]), int(data["version"]), dict(data["config"]))
