"""The pruned BERT's blocks as stand-alone modules, timed in isolation by lookup-table predictors.

A layer is two blocks: attention with h heads (its output projection, residual and layer norm
included; h = 0 leaves only the bias, residual and norm) and the feed-forward block of width w
(w = 0 likewise). Embeddings and the pooler-plus-classifier head are one block each. The modules
are the network's own classes, so a block costs in isolation what it costs in the network.
"""

from __future__ import annotations

import torch
from torch import nn

from search_spaces.base import Block
from search_spaces.pruned_bert.modeling_hwnas_pruned_bert import (
    AddNorm,
    Attention,
    Embeddings,
    HwnasPrunedBertConfig,
    Intermediate,
    Pooler,
)


class EmbeddingBlock(nn.Module):
    def __init__(self, config: HwnasPrunedBertConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids, torch.zeros_like(input_ids))


class AttentionBlock(nn.Module):
    def __init__(self, config: HwnasPrunedBertConfig, heads: int) -> None:
        super().__init__()
        self.attention = Attention(config, heads)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.attention(hidden_states, attention_mask[:, None, None, :].to(torch.bool), None)


class FeedForwardBlock(nn.Module):
    def __init__(self, config: HwnasPrunedBertConfig, width: int) -> None:
        super().__init__()
        self.intermediate = Intermediate(config.hidden_size, width) if width else None
        self.output = AddNorm(width, config.hidden_size, config.layer_norm_eps, config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        h = None if self.intermediate is None else self.intermediate(hidden_states)
        return self.output(h, hidden_states)


class ClassifierBlock(nn.Module):
    def __init__(self, hidden: int, labels: int) -> None:
        super().__init__()
        self.pooler = Pooler(hidden)
        self.classifier = nn.Linear(hidden, labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pooler(hidden_states))


def build_block(block: Block, config: HwnasPrunedBertConfig, *, batch_size: int, seq_len: int,
                seed: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    p = dict(block.params)
    seq_len = min(seq_len, config.max_position_embeddings)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if block.kind == "embedding":
            low = min(1000, max(1, config.vocab_size // 5))
            ids = torch.randint(low, min(config.vocab_size, 20000), (batch_size, seq_len), generator=generator)
            return EmbeddingBlock(config), {"input_ids": ids}
        hidden = torch.randn(batch_size, seq_len, config.hidden_size, generator=generator)
        if block.kind == "attention":
            mask = torch.ones(batch_size, seq_len, dtype=torch.long)
            return AttentionBlock(config, p["heads"]), {"hidden_states": hidden, "attention_mask": mask}
        if block.kind == "ffn":
            return FeedForwardBlock(config, p["width"]), {"hidden_states": hidden}
        if block.kind == "classifier":
            return ClassifierBlock(config.hidden_size, p["labels"]), {"hidden_states": hidden}
    raise ValueError(f"pruned-bert has no block kind {block.kind!r}")
