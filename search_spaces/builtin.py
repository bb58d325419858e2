"""Imports the built-in spaces so that they register themselves."""

from __future__ import annotations

from search_spaces.sparse_transformer import space as _sparse_transformer  # noqa: F401
from search_spaces.pruned_bert import space as _pruned_bert  # noqa: F401
