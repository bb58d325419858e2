"""The `sparse-transformer` space: decoder-only language models with attention, dense and MoE blocks."""

from __future__ import annotations

from search_spaces.sparse_transformer.space import SparseTransformerOptions, SparseTransformerSpace

__all__ = ["SparseTransformerOptions", "SparseTransformerSpace"]
