"""The controller and the service: job specs, strategies, Pareto fronts, storage and the CLI.

Importing `nas` loads no torch, ray or transformers; they are imported where used.
"""

from __future__ import annotations

__all__: list[str] = []
