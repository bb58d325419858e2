"""A weight-sharing supernet of the `sparse-transformer` space (HAT, AutoMoE): one network holding every arch.

The supernet has the space's widest model width, its most layers, and per layer an attention block with the
most heads, a dense feed-forward block of the widest width and a mixture-of-experts block with the most
experts at the widest expert width. An arch uses the leading slices of it:
- its model width `d`: the first `d` features of the embeddings, every norm and every projection;
- its heads `h`: the first `d` query, key and value features, split into `h` heads of `d / h`;
- a dense block of width `w`: the first `w` hidden units;
- an MoE block of `E` experts of width `w`, top-`k`: the router's first `E` outputs, the first `E` experts,
  each sliced to its first `w` units;
- its `n` layers: the supernet's first `n`, for their feed-forward blocks; its attention layers: the
  supernet's first attention blocks in order (an arch's j-th layer with attention uses the supernet's j-th
  attention block, whatever its layer index). Shared by layer index instead (before 2026-12-04), an arch whose
  first layer has no attention but a later one has scored on its inherited weights like an attention-free
  arch (3.53 to 3.56 bits per char where training reached 2.80 to 2.99): a later layer's attention had
  learned to work on what an earlier attention wrote, and without it contributed nothing.

`forward(input_ids, arch)` runs the arch on the shared weights (in training, it leaves the arch's MoE
balancing loss, weighted as standalone training weighs it, in `aux_loss`: without it the routers collapse onto
a few experts; a standalone model of the largest arch scored 0.08 bits per char worse without it after 300
steps); `extract(arch, space)` copies those slices into a standalone `HwnasSparseForCausalLM` that computes
the same outputs (a test checks it), so an arch found with inherited weights is exported (or trained further)
as any other candidate.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.arch import Arch
from search_spaces.sparse_transformer.modeling_hwnas_sparse import HwnasSparseConfig, MixtureOfExperts
from search_spaces.sparse_transformer.space import SparseTransformerOptions


class _Linear(nn.Module):
    """A linear layer at its largest shape; `weight[:out, :in]` (and `bias[:out]`) serve a slice."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True) -> None:
        super().__init__()
        layer = nn.Linear(in_features, out_features, bias=bias)
        self.weight = layer.weight
        self.bias = layer.bias

    def sliced(self, x: torch.Tensor, *, rows: slice | torch.Tensor, cols: int) -> torch.Tensor:
        weight = self.weight[rows, :cols]
        return F.linear(x, weight, self.bias[rows] if self.bias is not None else None)


class _Norm(nn.Module):
    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def sliced(self, x: torch.Tensor, d: int) -> torch.Tensor:
        return F.layer_norm(x, (d,), self.weight[:d], self.bias[:d], self.eps)


class _Layer(nn.Module):
    def __init__(self, o: SparseTransformerOptions, eps: float) -> None:
        super().__init__()
        d = max(o.d_model_choices)
        self.d_max = d
        self.attn_norm = _Norm(d, eps)
        self.qkv = _Linear(d, 3 * d)
        self.out = _Linear(d, d)
        self.ffn_norm = _Norm(d, eps)
        dense = max(o.dense_width_choices)
        self.up = _Linear(d, dense)
        self.down = _Linear(dense, d)
        experts, width = max(o.moe_experts_choices), max(o.moe_width_choices)
        self.router = _Linear(d, experts, bias=False)
        self.experts_up = nn.ModuleList(_Linear(d, width) for _ in range(experts))
        self.experts_down = nn.ModuleList(_Linear(width, d) for _ in range(experts))
        self.balance: torch.Tensor | None = None  # the MoE block's balancing loss in the last training forward

    def qkv_rows(self, d: int) -> torch.Tensor:
        """The rows of the shared qkv projection an arch of width `d` uses: its q, k and v features."""
        base = torch.arange(d)
        return torch.cat([base, base + self.d_max, base + 2 * self.d_max])

    def attention(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        batch, seq, d = x.shape
        qkv = self.qkv.sliced(x, rows=self.qkv_rows(d), cols=d)
        q, k, v = qkv.view(batch, seq, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out.sliced(y.transpose(1, 2).reshape(batch, seq, d), rows=slice(0, d), cols=d)

    def dense(self, x: torch.Tensor, width: int) -> torch.Tensor:
        d = x.shape[-1]
        return self.down.sliced(F.gelu(self.up.sliced(x, rows=slice(0, width), cols=d)), rows=slice(0, d),
                                cols=width)

    def moe(self, x: torch.Tensor, *, experts: int, top_k: int, width: int) -> torch.Tensor:
        """Top-k routing over the first `experts` experts, each run only on its tokens (as the exported
        model's `MixtureOfExperts` does)."""
        shape, d = x.shape, x.shape[-1]
        tokens = x.reshape(-1, d)
        probs = F.softmax(self.router.sliced(tokens, rows=slice(0, experts), cols=d), dim=-1, dtype=torch.float32)
        top_probs, top_idx = probs.topk(top_k, dim=-1)
        weights = (top_probs / top_probs.sum(dim=-1, keepdim=True)).to(tokens.dtype)
        if self.training:
            self.balance = MixtureOfExperts.balancing_loss(probs, top_idx)
        out = torch.zeros_like(tokens)
        for expert in range(experts):
            rows, slot = (top_idx == expert).nonzero(as_tuple=True)
            if rows.numel():
                hidden = F.gelu(self.experts_up[expert].sliced(tokens[rows], rows=slice(0, width), cols=d))
                y = self.experts_down[expert].sliced(hidden, rows=slice(0, d), cols=width)
                out.index_add_(0, rows, y * weights[rows, slot].unsqueeze(-1))
        return out.reshape(shape)

    def attend(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        """The residual stream after this layer's attention block (the arch's attention ordinal picks it)."""
        return x + self.attention(self.attn_norm.sliced(x, x.shape[-1]), heads)

    def feed_forward(self, x: torch.Tensor, layer: dict[str, Any]) -> torch.Tensor:
        self.balance = None
        d = x.shape[-1]
        ffn = layer.get("ffn", {"kind": "none"})
        if ffn["kind"] == "dense":
            x = x + self.dense(self.ffn_norm.sliced(x, d), int(ffn["width"]))
        elif ffn["kind"] == "moe":
            x = x + self.moe(self.ffn_norm.sliced(x, d), experts=int(ffn["experts"]), top_k=int(ffn["top_k"]),
                             width=int(ffn["width"]))
        return x


def attention_sources(arch: Arch) -> list[int | None]:
    """For each layer of `arch`, the supernet layer whose attention block it uses (None: no attention): the
    arch's j-th attention layer uses the supernet's j-th (its order among the arch's attention layers, not
    its layer index)."""
    sources: list[int | None] = []
    count = 0
    for spec in arch.config["layers"]:
        if int(spec.get("attn_heads", 0)):
            sources.append(count)
            count += 1
        else:
            sources.append(None)
    return sources


class SparseSupernet(nn.Module):
    """Every arch of a `sparse-transformer` space's options, on shared weights (see the module's docstring)."""

    def __init__(self, options: SparseTransformerOptions, *, eps: float = 1e-5, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        o = self.options = options
        d = max(o.d_model_choices)
        self.tok_emb = nn.Embedding(o.vocab_size, d)
        self.pos_emb = nn.Embedding(o.max_seq_len, d)
        self.layers = nn.ModuleList(_Layer(o, eps) for _ in range(o.max_layers))
        self.final_norm = _Norm(d, eps)
        self.lm_head = _Linear(d, o.vocab_size, bias=False)
        self.aux_loss_coef = HwnasSparseConfig().moe_aux_loss_coef  # as standalone training weighs it
        self.aux_loss: torch.Tensor | None = None  # after a training forward: the weighted balancing loss
        for module in self.modules():  # the exported model's initialisation (HF's normal(0, 0.02))
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            elif isinstance(module, _Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor, arch: Arch) -> torch.Tensor:
        """The logits of `arch` on the shared weights."""
        config = arch.config
        d = int(config["d_model"])
        seq = input_ids.shape[1]
        x = self.tok_emb.weight[:, :d][input_ids] + self.pos_emb.weight[:seq, :d][None]
        for layer, spec, source in zip(self.layers, config["layers"], attention_sources(arch)):
            if source is not None:
                x = self.layers[source].attend(x, int(spec["attn_heads"]))
            x = layer.feed_forward(x, spec)
        balances = [layer.balance for layer in self.layers[:len(config["layers"])] if layer.balance is not None]
        self.aux_loss = self.aux_loss_coef * torch.stack(balances).mean() if balances else None
        return self.lm_head.sliced(self.final_norm.sliced(x, d), rows=slice(0, self.options.vocab_size), cols=d)

    @torch.no_grad()
    def extract(self, arch: Arch, model: nn.Module) -> nn.Module:
        """Copy `arch`'s slices into `model` (the space's `build(arch)`: an `HwnasSparseForCausalLM`)."""
        d = int(arch.config["d_model"])
        state: dict[str, torch.Tensor] = {
            "tok_emb.weight": self.tok_emb.weight[:, :d], "pos_emb.weight": self.pos_emb.weight[:, :d],
            "final_norm.weight": self.final_norm.weight[:d], "final_norm.bias": self.final_norm.bias[:d],
            "lm_head.weight": self.lm_head.weight[:, :d],
        }
        for i, (layer, spec, source) in enumerate(zip(self.layers, arch.config["layers"], attention_sources(arch))):
            prefix = f"blocks.{i}."
            if source is not None:
                attn = self.layers[source]
                rows = attn.qkv_rows(d)
                state |= {prefix + "attn_norm.weight": attn.attn_norm.weight[:d],
                          prefix + "attn_norm.bias": attn.attn_norm.bias[:d],
                          prefix + "attn.qkv.weight": attn.qkv.weight[rows, :d],
                          prefix + "attn.qkv.bias": attn.qkv.bias[rows],
                          prefix + "attn.out.weight": attn.out.weight[:d, :d],
                          prefix + "attn.out.bias": attn.out.bias[:d]}
            ffn = spec.get("ffn", {"kind": "none"})
            if ffn["kind"] != "none":
                state |= {prefix + "ffn_norm.weight": layer.ffn_norm.weight[:d],
                          prefix + "ffn_norm.bias": layer.ffn_norm.bias[:d]}
            if ffn["kind"] == "dense":
                w = int(ffn["width"])
                state |= {prefix + "ffn.up.weight": layer.up.weight[:w, :d], prefix + "ffn.up.bias": layer.up.bias[:w],
                          prefix + "ffn.down.weight": layer.down.weight[:d, :w],
                          prefix + "ffn.down.bias": layer.down.bias[:d]}
            elif ffn["kind"] == "moe":
                experts, w = int(ffn["experts"]), int(ffn["width"])
                state[prefix + "ffn.router.weight"] = layer.router.weight[:experts, :d]
                ups, downs = layer.experts_up[:experts], layer.experts_down[:experts]
                state |= {prefix + "ffn.up_weight": torch.stack([up.weight[:w, :d] for up in ups]),
                          prefix + "ffn.up_bias": torch.stack([up.bias[:w] for up in ups]),
                          prefix + "ffn.down_weight": torch.stack([down.weight[:d, :w] for down in downs]),
                          prefix + "ffn.down_bias": torch.stack([down.bias[:d] for down in downs])}
        model.load_state_dict({name: tensor.clone() for name, tensor in state.items()}, strict=True)
        return model
