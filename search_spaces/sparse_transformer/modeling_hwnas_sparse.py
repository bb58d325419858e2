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
from transformers import DynamicCache, GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MoeCausalLMOutputWithPast

# The output's key-value cache field: `cache` in transformers 5.2x, `past_key_values` before.
CACHE_FIELD = "cache" if "cache" in MoeCausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


class HwnasSparseConfig(PreTrainedConfig):
    """The network's shape. Its `model_type` is one that transformers knows but maps to no language-model
    class (`decision_transformer`): `AutoTokenizer`, which reads the config first, then never needs this file
    and never stops to ask about remote code, while `AutoModelForCausalLM` without `trust_remote_code` still
    refuses (it asks, or raises where nobody can answer) instead of building some other model from the
    fields. With `trust_remote_code=True` the config's `auto_map` loads these classes."""

    model_type = "decision_transformer"

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

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None, *, cache: Any = None,
                cache_index: int = 0) -> torch.Tensor:
        """Causal attention over `x`, after the keys and values in `cache` (layer `cache_index`) when given.
        `key_padding_mask` (batch x every position, cached ones first) masks padded keys; a query always sees
        itself, so that a left-padded row is never empty."""
        batch, seq, d_model = x.shape
        q, k, v = self.qkv(x).view(batch, seq, 3, self.heads, d_model // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.update(k, v, cache_index)
        total = k.shape[2]
        if key_padding_mask is None and total == seq:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            rows = torch.arange(seq, device=x.device)[:, None] + (total - seq)
            cols = torch.arange(total, device=x.device)[None, :]
            mask = (cols <= rows)[None, None]
            if key_padding_mask is not None:
                mask = (mask & key_padding_mask[:, None, None, -total:].bool()) | (cols == rows)[None, None]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(batch, seq, d_model))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, width: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, width)
        self.down = nn.Linear(width, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


def _grouped_mm_works(device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> bool:
    """Whether this torch has a grouped matmul that runs on this device and dtype (`torch._grouped_mm`: CPU
    float32 since 2.8; on CUDA it depends on the build, the GPU and the dtype)."""
    grouped_mm = getattr(torch, "_grouped_mm", None)
    if grouped_mm is None:
        return False
    try:
        a = torch.ones(3, 16, device=device, dtype=dtype)
        b = torch.ones(2, 16, 16, device=device, dtype=dtype)
        out = grouped_mm(a, b.transpose(1, 2), offs=torch.tensor([1, 3], dtype=torch.int32, device=device))
        return bool(out.shape == (3, 16) and torch.all(out == 16))
    except (RuntimeError, TypeError, NotImplementedError, ValueError):
        return False


_GROUPED_MM_BY_DEVICE: dict[tuple[str, torch.dtype], bool] = {}


def _grouped_mm_works_for(tokens: torch.Tensor) -> bool:
    """`_grouped_mm_works` for the tokens' device type and dtype, checked once per pair."""
    key = (tokens.device.type, tokens.dtype)
    if key not in _GROUPED_MM_BY_DEVICE:
        _GROUPED_MM_BY_DEVICE[key] = _grouped_mm_works(tokens.device, tokens.dtype)
    return _GROUPED_MM_BY_DEVICE[key]


def _exporting() -> bool:
    """Whether torch is exporting the model (to ONNX or a graph), where data-dependent Python must not run."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_exporting") and compiler.is_exporting():
        return True
    return bool(getattr(torch.onnx, "is_in_onnx_export", lambda: False)())


GROUPED_MM = _grouped_mm_works()
MOE_DISPATCH = "grouped-mm" if GROUPED_MM else "loop"  # what inference runs; part of the latency signature
GROUPED_ROWS = 512  # above this many rows per expert on average, the loop's plain matmuls are faster (measured)


class MixtureOfExperts(nn.Module):
    """Top-k routed experts with a real sparse dispatch.

    The experts' weights are stacked (`up_weight`: experts x width x d_model, and so on). Token-expert
    assignments are sorted by expert, so each expert multiplies exactly the tokens routed to it (experts
    with no tokens do no work); outputs are weighted by the renormalised top-k router probabilities and
    scattered back. Inference (no gradient) runs every expert in one grouped matmul per projection
    (`torch._grouped_mm` over the sorted tokens), a fixed number of operations whatever the number of
    experts; training, and a torch without a grouped matmul, loop over the experts with tokens. Both
    compute the same function. The Switch-Transformer balancing loss `E * sum_e f_e * P_e` (f: share of
    assignments, P: mean router probability) is kept in `aux_loss` while training; it is 1.0 for
    perfectly balanced routing and grows with imbalance.
    """

    def __init__(self, d_model: int, experts: int, top_k: int, width: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d_model, experts, bias=False)
        self.up_weight = nn.Parameter(torch.empty(experts, width, d_model))
        self.up_bias = nn.Parameter(torch.empty(experts, width))
        self.down_weight = nn.Parameter(torch.empty(experts, d_model, width))
        self.down_bias = nn.Parameter(torch.empty(experts, d_model))
        self.aux_loss: torch.Tensor | None = None
        for weight, bias in ((self.up_weight, self.up_bias), (self.down_weight, self.down_bias)):
            bound = weight.shape[-1] ** -0.5  # nn.Linear's default, expert by expert
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)

    @property
    def experts(self) -> int:
        return self.up_weight.shape[0]

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
        if _exporting():
            return self._per_expert(x)
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        weights = None
        if self.top_k == 1 and not self.training:  # a token's one weight renormalises to 1: the argmax is all
            top_idx = self.router(tokens).argmax(dim=-1)
            self.aux_loss = None
        else:
            probs, top_idx, weights = self.route(tokens)
            self.aux_loss = self.balancing_loss(probs, top_idx) if self.training else None
        expert_of, order = torch.sort(top_idx.reshape(-1), stable=True)
        token_of = order // self.top_k if self.top_k > 1 else order
        experts = torch.arange(self.experts, device=x.device)
        ends = torch.searchsorted(expert_of, experts, right=True, out_int32=True)  # where each expert's rows end
        routed = tokens.index_select(0, token_of)
        grad = torch.is_grad_enabled() and self.up_weight.requires_grad
        if (GROUPED_MM and not grad and self._aligned(tokens) and routed.shape[0] <= GROUPED_ROWS * self.experts
                and _grouped_mm_works_for(tokens)):
            y = self._grouped(routed, expert_of, ends)
        else:
            bounds = [0, *ends.tolist()]
            y = self._looped(routed, [b - a for a, b in zip(bounds, bounds[1:])])
        if weights is None:  # top-1: each row is its token's output
            return torch.empty_like(tokens).index_copy_(0, token_of, y).reshape(shape)
        y = y * weights.reshape(-1).index_select(0, order).unsqueeze(-1)
        return torch.zeros_like(tokens).index_add_(0, token_of, y).reshape(shape)

    def _per_expert(self, x: torch.Tensor) -> torch.Tensor:
        """The same function in a form an ONNX export keeps sparse: for each expert, the rows routed to it
        (NonZero), gathered, run through it and added back weighted (ScatterND); no grouped matmul, no
        Python-side sizes. Used while exporting (`torch.onnx.export`)."""
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        _, top_idx, weights = self.route(tokens)
        out = torch.zeros_like(tokens)
        for expert in range(self.experts):
            chosen = top_idx == expert
            rows = chosen.any(dim=-1).nonzero().squeeze(-1)
            weight = (weights * chosen.to(weights.dtype)).sum(dim=-1).index_select(0, rows)
            hidden = F.gelu(F.linear(tokens.index_select(0, rows), self.up_weight[expert], self.up_bias[expert]))
            y = F.linear(hidden, self.down_weight[expert], self.down_bias[expert]) * weight.unsqueeze(-1)
            out = out.index_add(0, rows, y)
        return out.reshape(shape)

    def _aligned(self, tokens: torch.Tensor) -> bool:
        """The grouped matmul needs rows whose byte strides are multiples of 16 (d_model and width multiples
        of 4 in float32)."""
        size = tokens.element_size()
        return (tokens.shape[-1] * size) % 16 == 0 and (self.up_weight.shape[1] * size) % 16 == 0

    def _grouped(self, routed: torch.Tensor, expert_of: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Every expert on its (sorted) rows: one grouped matmul per projection."""
        hidden = torch._grouped_mm(routed, self.up_weight.transpose(1, 2), offs=ends)
        hidden = F.gelu(hidden.add_(self.up_bias.index_select(0, expert_of)))
        out = torch._grouped_mm(hidden, self.down_weight.transpose(1, 2), offs=ends)
        return out.add_(self.down_bias.index_select(0, expert_of))

    def _looped(self, routed: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """Expert by expert over its slice of the sorted rows (experts with no rows do not run)."""
        parts, start = [], 0
        for expert, count in enumerate(counts):
            if count:
                rows = routed[start:start + count]
                hidden = F.gelu(F.linear(rows, self.up_weight[expert], self.up_bias[expert]))
                parts.append(F.linear(hidden, self.down_weight[expert], self.down_bias[expert]))
                start += count
        if not parts:  # no tokens at all
            return routed.new_empty(0, self.down_weight.shape[1])
        return torch.cat(parts) if len(parts) > 1 else parts[0]


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

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None, *, cache: Any = None,
                cache_index: int = 0) -> torch.Tensor:
        if self.attn is not None and self.attn_norm is not None:
            x = x + self.attn(self.attn_norm(x), key_padding_mask, cache=cache, cache_index=cache_index)
        if self.ffn is not None and self.ffn_norm is not None:
            x = x + self.ffn(self.ffn_norm(x))
        return x


class HwnasSparseForCausalLM(PreTrainedModel, GenerationMixin):
    """The language model. `generate()` (greedy, sampling, beam search) and `pipeline("text-generation")` work
    with a key-value cache (`DynamicCache`): each new token runs one position through the network. Layer i of
    the network uses the cache's layer i, so a cache that transformers sizes from the config
    (`num_hidden_layers`) always fits: an attention layer keeps its keys and values there, a layer without
    attention one zero per position, only to count the positions seen."""

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

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, MixtureOfExperts):  # stacked expert weights: as the library's nn.Linear init
            try:
                from transformers import initialization as init
            except ImportError:  # transformers before 5
                init = nn.init  # type: ignore[assignment]
            init.normal_(module.up_weight, mean=0.0, std=self.config.initializer_range)
            init.normal_(module.down_weight, mean=0.0, std=self.config.initializer_range)
            init.zeros_(module.up_bias)
            init.zeros_(module.down_bias)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> MoeCausalLMOutputWithPast:
        batch, seq = input_ids.shape
        cache = cache if cache is not None else past_key_values
        if use_cache and cache is None:
            cache = DynamicCache()
        past = cache.get_seq_length(0) if cache is not None else 0
        if position_ids is None:
            if attention_mask is not None and not bool(attention_mask.all()):  # left padding: count real tokens
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -seq:]
            else:
                position_ids = torch.arange(past, past + seq, device=input_ids.device)[None]
        if past + seq > self.config.max_seq_len:
            raise ValueError(f"input length {past + seq} exceeds max_seq_len {self.config.max_seq_len} (the "
                             "longest context this model has positions for); shorten the prompt or ask for fewer "
                             "new tokens")
        x = self.tok_emb(input_ids) + self.pos_emb(position_ids.clamp(max=self.config.max_seq_len - 1))
        key_padding_mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            key_padding_mask = attention_mask
        if cache is not None and not self.blocks:
            self._count_positions(cache, 0, batch, seq)
        for index, block in enumerate(self.blocks):
            if cache is not None and block.attn is None:
                self._count_positions(cache, index, batch, seq)
            x = block(x, key_padding_mask, cache=cache, cache_index=index)
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
        return MoeCausalLMOutputWithPast(loss=loss, aux_loss=aux_loss, logits=logits,
                                         **{CACHE_FIELD: cache if use_cache else None})

    def _count_positions(self, cache: Any, index: int, batch: int, seq: int) -> None:
        """Cache layer `index` of a layer without attention holds one zero per position, only to count them."""
        counter = self.tok_emb.weight.new_zeros(batch, 1, seq, 1)
        cache.update(counter, counter, index)
