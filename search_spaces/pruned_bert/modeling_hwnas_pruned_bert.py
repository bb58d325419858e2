"""A structurally pruned BERT for sequence classification, in Hugging Face form.

This file is copied verbatim into every exported checkpoint and loaded there with
`trust_remote_code=True`, so it imports nothing but torch and transformers. The search space builds
its candidates (and the full-size teacher) from these same classes.

Each layer has its own number of attention heads (`layer_heads[i]`, 0 removes the attention block
but keeps its output bias and LayerNorm, exactly what masking every head does) and its own FFN
width (`layer_ffn[i]`, 0 likewise). Parameter names mirror `transformers`' `BertForSequenceClassification`,
so a BERT state dict loads into the full-size model unchanged and slicing is plain indexing.
`head_mask` (layers x heads) and `ffn_mask` (layers x units) multiply head outputs and FFN units:
they are what first-order Taylor importance differentiates.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class HwnasPrunedBertConfig(PreTrainedConfig):
    """The pruned network's shape. Its `model_type` is `bert`, with BERT's own size fields set to this
    network's largest layer: `AutoConfig` (which `AutoTokenizer` and `pipeline` read) then never needs this
    file, so loading the tokenizer never stops to ask about remote code; `trust_remote_code=True` still
    loads these classes (the config's `auto_map`). Without it, `transformers` builds a plain BERT from the
    same fields, which either is this network (no layer pruned in width) or fails on the first pruned
    weight's shape, never silently."""

    model_type = "bert"

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 384,
        head_size: int = 32,
        layer_heads: list[int] | None = None,
        layer_ffn: list[int] | None = None,
        source_layers: list[int] | None = None,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        initializer_range: float = 0.02,
        pad_token_id: int = 0,
        **kwargs: Any,
    ) -> None:
        self.pad_token_id = pad_token_id
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.head_size = head_size
        self.layer_heads = [int(h) for h in (layer_heads if layer_heads is not None else [12] * 6)]
        self.layer_ffn = [int(w) for w in (layer_ffn if layer_ffn is not None else [1536] * 6)]
        self.source_layers = [int(s) for s in (source_layers or range(len(self.layer_heads)))]
        self.num_hidden_layers = len(self.layer_heads)
        self.num_attention_heads = max(self.layer_heads, default=0)
        self.intermediate_size = max(self.layer_ffn, default=0)
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        super().__init__(**kwargs)


class Embeddings(nn.Module):
    def __init__(self, config: HwnasPrunedBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + \
            self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, head_size: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_size, self.dropout = heads, head_size, dropout
        self.query = nn.Linear(hidden, heads * head_size)
        self.key = nn.Linear(hidden, heads * head_size)
        self.value = nn.Linear(hidden, heads * head_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, head_mask: torch.Tensor | None) -> torch.Tensor:
        batch, seq, _ = x.shape
        shape = (batch, seq, self.heads, self.head_size)
        q, k, v = (proj(x).view(shape).transpose(1, 2) for proj in (self.query, self.key, self.value))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 dropout_p=self.dropout if self.training else 0.0)
        if head_mask is not None:
            context = context * head_mask.view(1, -1, 1, 1)
        return context.transpose(1, 2).reshape(batch, seq, self.heads * self.head_size)


class AddNorm(nn.Module):
    """`LayerNorm(x + dense(h))`; with a zero-width input the dense layer adds only its bias."""

    def __init__(self, width: int, hidden: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        update = self.dense.bias if h is None else self.dropout(self.dense(h))
        return self.LayerNorm(x + update)


class Attention(nn.Module):
    def __init__(self, config: HwnasPrunedBertConfig, heads: int) -> None:
        super().__init__()
        self.self = SelfAttention(config.hidden_size, heads, config.head_size, config.attention_probs_dropout_prob) \
            if heads else None
        self.output = AddNorm(heads * config.head_size, config.hidden_size, config.layer_norm_eps,
                              config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, head_mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(None if self.self is None else self.self(x, mask, head_mask), x)


class Intermediate(nn.Module):
    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self, config: HwnasPrunedBertConfig, heads: int, ffn: int) -> None:
        super().__init__()
        self.attention = Attention(config, heads)
        self.intermediate = Intermediate(config.hidden_size, ffn) if ffn else None
        self.output = AddNorm(ffn, config.hidden_size, config.layer_norm_eps, config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, head_mask: torch.Tensor | None,
                ffn_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask, head_mask)
        if self.intermediate is None:
            return self.output(None, x)
        h = self.intermediate(x)
        if ffn_mask is not None:
            h = h * ffn_mask
        return self.output(h, x)


class Encoder(nn.Module):
    def __init__(self, config: HwnasPrunedBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(config, h, w) for h, w in zip(config.layer_heads, config.layer_ffn))


class Pooler(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))


class BertBody(nn.Module):
    def __init__(self, config: HwnasPrunedBertConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config.hidden_size)


class HwnasPrunedBertForSequenceClassification(PreTrainedModel):
    config_class = HwnasPrunedBertConfig
    base_model_prefix = "bert"

    def __init__(self, config: HwnasPrunedBertConfig) -> None:
        super().__init__(config)
        self.bert = BertBody(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.bert.embeddings.word_embeddings = value

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if module.weight.numel():
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        ffn_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, None, None, :].to(torch.bool)
        x = self.bert.embeddings(input_ids, token_type_ids)
        hidden = [x]
        for i, layer in enumerate(self.bert.encoder.layer):
            heads = self.config.layer_heads[i]
            x = layer(x, mask, head_mask[i, :heads] if head_mask is not None and heads else None,
                      ffn_mask[i, : self.config.layer_ffn[i]] if ffn_mask is not None else None)
            hidden.append(x)
        logits = self.classifier(self.dropout(self.bert.pooler(x)))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=tuple(hidden) if output_hidden_states else None)
