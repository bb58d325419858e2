"""The sparse transformer's blocks as stand-alone modules, timed in isolation by lookup-table predictors.

Each wraps the very module class the full network uses (`SparseBlock`, `MixtureOfExperts`), so a
block's measured time includes what the network pays for it: its layer norm and residual add, and
for MoE the router, the top-k selection, the sort-based dispatch and the scatter back.
"""

from __future__ import annotations

import torch
from torch import nn

from transformers import DynamicCache

from search_spaces.base import Block
from search_spaces.sparse_transformer.modeling_hwnas_sparse import CACHE_FIELD, SparseBlock

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


# ---- decode workloads: one new token at a time, with the key-value cache ---------------------------------
def _crop_to(cache: object, length: int) -> None:
    """Drop what a cache holds beyond `length` positions (a negative `crop` works in every transformers 5)."""
    excess = cache.get_seq_length(0) - length  # type: ignore[attr-defined]
    if excess > 0:
        cache.crop(-excess)  # type: ignore[attr-defined]


class DecodeTimer(nn.Module):
    """The whole network generating `new_ids.shape[1]` tokens after `prompt_ids` with its key-value cache.

    The prompt is prefilled on the first call (a meter's warm-up), on the inputs' device and dtype; every
    call then runs the new tokens one at a time (fixed ids, so that the work does not depend on what the
    model predicts) and crops the cache back to the prompt, so that calls are alike.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.cache: object | None = None

    def forward(self, prompt_ids: torch.Tensor, new_ids: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            self.cache = getattr(self.model(input_ids=prompt_ids, use_cache=True), CACHE_FIELD)
        logits = prompt_ids.new_empty(0)
        for t in range(new_ids.shape[1]):
            logits = self.model(input_ids=new_ids[:, t:t + 1], cache=self.cache, use_cache=True).logits
        _crop_to(self.cache, prompt_ids.shape[1])
        return logits


class AttentionDecodeBlock(nn.Module):
    """The attention sub-block on one new token, attending to `context_len` cached positions (prefilled on the
    first call from `context`), the cache cropped back after each call."""

    def __init__(self, d_model: int, heads: int, context_len: int) -> None:
        super().__init__()
        self.block = SparseBlock(d_model, {"attn_heads": heads, "ffn": {"kind": "none"}}, LAYER_NORM_EPS)
        self.context_len = context_len
        self.cache: object | None = None

    def forward(self, context: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            self.cache = DynamicCache()
            self.block(context, None, cache=self.cache, cache_index=0)
        out = self.block(hidden_states, None, cache=self.cache, cache_index=0)
        _crop_to(self.cache, self.context_len)
        return out


def build_decode_block(block: Block, *, max_seq_len: int, batch_size: int, context_len: int,
                       seed: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A block of a decode step: one token in; attention over `context_len` cached positions."""
    context_len = max(1, min(context_len, max_seq_len - 1))
    if block.kind != "attention":
        return build_block(block, max_seq_len=max_seq_len, batch_size=batch_size, seq_len=1, seed=seed)
    p = dict(block.params)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = AttentionDecodeBlock(p["d_model"], p["heads"], context_len)
    return module, {"context": torch.randn(batch_size, context_len, p["d_model"], generator=generator),
                    "hidden_states": torch.randn(batch_size, 1, p["d_model"], generator=generator)}
