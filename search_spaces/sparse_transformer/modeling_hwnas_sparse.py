"""A decoder-only sparse (mixture-of-experts) Transformer language model, in Hugging Face form.

This file is copied verbatim into every exported checkpoint and loaded there with
`trust_remote_code=True`, so it imports nothing but torch and transformers. The search space builds
its candidates from these same classes, so an exported checkpoint computes exactly what was searched.

Per layer, the config gives an attention block (`attn_heads`, 0 for none) and a feed-forward block:
`{"kind": "dense", "width": W}`, `{"kind": "moe", "experts": E, "top_k": K, "width": W}` or
`{"kind": "none"}`. Blocks are pre-norm residual.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MoeCausalLMOutputWithPast


class HwnasSparseConfig(PreTrainedConfig):
    model_type = "hwnas-sparse-transformer"

    def __init__(
        self,
        vocab_size: int = 259,
        d_model: int = 128,
        max_seq_len: int = 128,
        layers: list[dict[str, Any]] | None = None,
        moe_aux_loss_coef: float = 0.01,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.hidden_size = d_model
        self.max_seq_len = max_seq_len
        self.layers = [dict(layer) for layer in (layers or [])]
        self.num_hidden_layers = len(self.layers)
        self.moe_aux_loss_coef = moe_aux_loss_coef
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        super().__init__(**kwargs)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, seq, d_model = x.shape
        q, k, v = self.qkv(x).view(batch, seq, 3, self.heads, d_model // self.heads).permute(2, 0, 3, 1, 4)
        if key_padding_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            causal = torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()
            mask = causal[None, None] & key_padding_mask[:, None, None, :].bool()
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(batch, seq, d_model))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, width: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, width)
        self.down = nn.Linear(width, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class MixtureOfExperts(nn.Module):
    """Top-k routed experts with a real sparse dispatch.

    Token-expert assignments are sorted by expert, so each expert runs once on exactly the tokens
    routed to it (experts with no tokens do not run); outputs are weighted by the renormalised
    top-k router probabilities and scattered back. The Switch-Transformer balancing loss
    `E * sum_e f_e * P_e` (f: share of assignments, P: mean router probability) is kept in
    `aux_loss`; it is 1.0 for perfectly balanced routing and grows with imbalance.
    """

    def __init__(self, d_model: int, experts: int, top_k: int, width: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d_model, experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(d_model, width) for _ in range(experts))
        self.aux_loss: torch.Tensor | None = None

    def route(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router probabilities (N, E), top-k expert indices (N, K) and their weights (N, K)."""
        probs = F.softmax(self.router(tokens), dim=-1, dtype=torch.float32)
        top_probs, top_idx = probs.topk(self.top_k, dim=-1)
        weights = (top_probs / top_probs.sum(dim=-1, keepdim=True)).to(tokens.dtype)
        return probs, top_idx, weights

    @staticmethod
    def balancing_loss(probs: torch.Tensor, top_idx: torch.Tensor) -> torch.Tensor:
        experts = probs.shape[-1]
        share = torch.bincount(top_idx.reshape(-1), minlength=experts).to(probs.dtype) / top_idx.numel()
        return experts * torch.sum(share * probs.mean(dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        probs, top_idx, weights = self.route(tokens)
        self.aux_loss = self.balancing_loss(probs, top_idx)

        flat_expert = top_idx.reshape(-1)
        order = torch.argsort(flat_expert, stable=True)
        token_of = order // self.top_k
        counts = torch.bincount(flat_expert, minlength=len(self.experts)).tolist()
        routed = tokens.index_select(0, token_of)
        out = torch.zeros_like(tokens)
        start = 0
        for expert, count in zip(self.experts, counts):
            if count:
                end = start + count
                rows = token_of[start:end]
                y = expert(routed[start:end]) * weights.reshape(-1)[order[start:end]].unsqueeze(-1)
                out.index_add_(0, rows, y)
                start = end
        return out.reshape(shape)


class SparseBlock(nn.Module):
    def __init__(self, d_model: int, layer: dict[str, Any], eps: float) -> None:
        super().__init__()
        heads = int(layer.get("attn_heads", 0))
        ffn = dict(layer.get("ffn", {"kind": "none"}))
        self.attn_norm = nn.LayerNorm(d_model, eps=eps) if heads else None
        self.attn = CausalSelfAttention(d_model, heads) if heads else None
        self.ffn: nn.Module | None
        if ffn["kind"] == "dense":
            self.ffn = FeedForward(d_model, int(ffn["width"]))
        elif ffn["kind"] == "moe":
            self.ffn = MixtureOfExperts(d_model, int(ffn["experts"]), int(ffn["top_k"]), int(ffn["width"]))
        elif ffn["kind"] == "none":
            self.ffn = None
        else:
            raise ValueError(f"layers[].ffn.kind must be dense, moe or none, got {ffn['kind']!r}")
        self.ffn_norm = nn.LayerNorm(d_model, eps=eps) if self.ffn is not None else None

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        if self.attn is not None and self.attn_norm is not None:
            x = x + self.attn(self.attn_norm(x), key_padding_mask)
        if self.ffn is not None and self.ffn_norm is not None:
            x = x + self.ffn(self.ffn_norm(x))
        return x


class HwnasSparseForCausalLM(PreTrainedModel):
    config_class = HwnasSparseConfig
    base_model_prefix = "hwnas_sparse"
    main_input_name = "input_ids"

    def __init__(self, config: HwnasSparseConfig) -> None:
        super().__init__(config)
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_seq_len, config.d_model)
        self.blocks = nn.ModuleList(
            SparseBlock(config.d_model, layer, config.layer_norm_eps) for layer in config.layers
        )
        self.final_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Any,
    ) -> MoeCausalLMOutputWithPast:
        seq = input_ids.shape[1]
        if seq > self.config.max_seq_len:
            raise ValueError(f"input length {seq} exceeds max_seq_len {self.config.max_seq_len}")
        positions = torch.arange(seq, device=input_ids.device)
        x = self.tok_emb(input_ids) + self.pos_emb(positions)[None]
        key_padding_mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            key_padding_mask = attention_mask
        for block in self.blocks:
            x = block(x, key_padding_mask)
        logits = self.lm_head(self.final_norm(x))

        aux_losses = [m.aux_loss for m in self.modules() if isinstance(m, MixtureOfExperts) and m.aux_loss is not None]
        aux_loss = torch.stack(aux_losses).mean() if aux_losses else None
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
            if aux_loss is not None:
                loss = loss + self.config.moe_aux_loss_coef * aux_loss
        return MoeCausalLMOutputWithPast(loss=loss, aux_loss=aux_loss, logits=logits)
