"""The sparse transformer's blocks as stand-alone modules, timed in isolation by lookup-table predictors.

Each wraps the very module class the full network uses (`SparseBlock`, `MixtureOfExperts`), so a
block's measured time includes what the network pays for it: its layer norm and residual add, and
for MoE the router, the top-k selection, the sort-based dispatch and the scatter back.
"""

from __future__ import annotations

import torch
from torch import nn

from search_spaces.base import Block
from search_spaces.sparse_transformer.modeling_hwnas_sparse import SparseBlock

LAYER_NORM_EPS = 1e-5


class EmbeddingBlock(nn.Module):
    def __init__(self, d_model: int, vocab_size: int, max_seq_len: int) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_seq_len, d_model)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.tok_emb(input_ids) + self.pos_emb(positions)[None]


class LayerBlock(nn.Module):
    """Half a layer: the attention sub-block or the feed-forward (dense or MoE) sub-block."""

    def __init__(self, d_model: int, layer: dict[str, object]) -> None:
        super().__init__()
        self.block = SparseBlock(d_model, layer, LAYER_NORM_EPS)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.block(hidden_states, None)


class HeadBlock(nn.Module):
    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.final_norm = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.final_norm(hidden_states))


def build_block(block: Block, *, max_seq_len: int, batch_size: int, seq_len: int,
                seed: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    p = dict(block.params)
    d = p["d_model"]
    seq_len = min(seq_len, max_seq_len)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if block.kind == "embedding":
            ids = torch.randint(0, p["vocab_size"], (batch_size, seq_len), generator=generator)
            return EmbeddingBlock(d, p["vocab_size"], max_seq_len), {"input_ids": ids}
        if block.kind == "attention":
            module: nn.Module = LayerBlock(d, {"attn_heads": p["heads"], "ffn": {"kind": "none"}})
        elif block.kind == "ffn":
            module = LayerBlock(d, {"attn_heads": 0, "ffn": {"kind": "dense", "width": p["width"]}})
        elif block.kind == "moe":
            module = LayerBlock(d, {"attn_heads": 0, "ffn": {"kind": "moe", "experts": p["experts"],
                                                             "top_k": p["top_k"], "width": p["width"]}})
        elif block.kind == "lm_head":
            module = HeadBlock(d, p["vocab_size"])
        else:
            raise ValueError(f"sparse-transformer has no block kind {block.kind!r}")
    hidden = torch.randn(batch_size, seq_len, d, generator=generator)
    return module, {"hidden_states": hidden}
