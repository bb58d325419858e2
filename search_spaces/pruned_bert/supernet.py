"""A width- and depth-adaptive BERT (DynaBERT): one network whose sub-networks are the `pruned-bert` archs.

The supernet starts as the job's teacher (the fine-tuned base) with the heads and FFN units of every layer
**reordered by importance** (the scores the space already computes: Taylor by default), most important
first. Reordering permutes the query, key and value rows and the output columns of each head together (and
each unit's input row and output column), so the teacher computes exactly what it did. An arch then uses
leading slices: in each layer it keeps (by `source`), its first `heads` heads and first `ffn` units, and the
layers it does not keep are skipped. These are the heads and units `build` keeps (the most important), so
the arch's inherited model is `build`'s model with the supernet's weights.

`forward(batch, arch)` runs the arch on the shared weights with real slices (no masks: a smaller arch costs
less); `hidden` also returns the hidden state after each kept layer, keyed by its source layer.
`sandwich_loss` is the training objective (DynaBERT): distillation from the frozen teacher, on its logits
(the task's `distill_alpha` and temperature, with the labels' cross-entropy) and on the hidden states of
the kept layers (mean squared error against the teacher's same layer, which is the layer mapping that
dropping layers needs). `extract(arch, model)` copies the slices into the arch's standalone model.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.arch import Arch
from search_spaces.distillation import hidden_state_mse, logit_distillation_loss
from search_spaces.pruned_bert.importance import LAYER, Importance


def reorder_by_importance(state: dict[str, torch.Tensor], importance: Importance, *, layers: int,
                          head_size: int) -> dict[str, torch.Tensor]:
    """The teacher's weights with each layer's heads and FFN units sorted by importance, most important
    first (the same function: each head's rows and columns move together)."""
    result = dict(state)
    for layer in range(layers):
        p = LAYER.format(layer)
        head_order = torch.argsort(importance.heads[layer], descending=True, stable=True)
        rows = (head_order[:, None] * head_size + torch.arange(head_size)[None]).reshape(-1)
        for proj in ("query", "key", "value"):
            result[f"{p}attention.self.{proj}.weight"] = state[f"{p}attention.self.{proj}.weight"][rows]
            result[f"{p}attention.self.{proj}.bias"] = state[f"{p}attention.self.{proj}.bias"][rows]
        result[f"{p}attention.output.dense.weight"] = state[f"{p}attention.output.dense.weight"][:, rows]
        units = torch.argsort(importance.ffn[layer], descending=True, stable=True)
        result[f"{p}intermediate.dense.weight"] = state[f"{p}intermediate.dense.weight"][units]
        result[f"{p}intermediate.dense.bias"] = state[f"{p}intermediate.dense.bias"][units]
        result[f"{p}output.dense.weight"] = state[f"{p}output.dense.weight"][:, units]
    return {k: v.contiguous() for k, v in result.items()}


class PrunedBertSupernet(nn.Module):
    """The reordered teacher as a supernet (see the module's docstring). `model` is a full-size
    `HwnasPrunedBertForSequenceClassification`; `teacher` (frozen, not saved with the supernet) is what the
    sub-networks learn from."""

    def __init__(self, model: nn.Module, *, teacher: nn.Module | None, head_size: int,
                 hidden_weight: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.head_size, self.hidden_weight = head_size, hidden_weight
        self.__dict__["teacher"] = teacher  # not a submodule: neither trained nor saved
        self._teacher_cache: tuple[torch.Tensor, Any] | None = None

    # ---- running an arch on the shared weights -----------------------------------------------------
    def _layer(self, layer: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, *, heads: int,
               units: int) -> torch.Tensor:
        attention = layer.attention
        if heads:
            width = heads * self.head_size
            batch, seq, _ = x.shape
            s = attention.self
            q, k, v = (F.linear(x, proj.weight[:width], proj.bias[:width]).view(batch, seq, heads, self.head_size)
                       .transpose(1, 2) for proj in (s.query, s.key, s.value))
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                     dropout_p=s.dropout if self.training else 0.0)
            context = context.transpose(1, 2).reshape(batch, seq, width)
            out = attention.output
            update = out.dropout(F.linear(context, out.dense.weight[:, :width], out.dense.bias))
        else:
            update = attention.output.dense.bias
        x = attention.output.LayerNorm(x + update)
        output = layer.output
        if units:
            inter = layer.intermediate.dense
            h = F.gelu(F.linear(x, inter.weight[:units], inter.bias[:units]))
            update = output.dropout(F.linear(h, output.dense.weight[:, :units], output.dense.bias))
        else:
            update = output.dense.bias
        return output.LayerNorm(x + update)

    def forward(self, batch: dict[str, torch.Tensor], arch: Arch, *, hidden: bool = False,
                last_input: bool = False) -> Any:
        """The arch's logits on `batch` (`input_ids`, optional `attention_mask` and `token_type_ids`); with
        `hidden`, also the hidden state after each kept layer by source layer, and with `last_input` the input
        of the last kept layer (what its attention relations are computed from)."""
        model, input_ids = self.model, batch["input_ids"]
        token_types = batch.get("token_type_ids")
        if token_types is None:
            token_types = torch.zeros_like(input_ids)
        attention_mask = batch.get("attention_mask")
        mask = None if attention_mask is None else attention_mask[:, None, None, :].to(torch.bool)
        x = model.bert.embeddings(input_ids, token_types)
        states: dict[int, torch.Tensor] = {}
        layer_input = x
        for spec in arch.config["layers"]:
            source = int(spec["source"])
            layer_input = x
            x = self._layer(model.bert.encoder.layer[source], x, mask, heads=int(spec["heads"]),
                            units=int(spec["ffn"]))
            states[source] = x
        logits = model.classifier(model.dropout(model.bert.pooler(x)))
        if last_input:
            return logits, states, layer_input
        return (logits, states) if hidden else logits

    # ---- training ----------------------------------------------------------------------------------
    def _teacher_outputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The teacher's logits and hidden states on `batch`, computed once per batch (every arch of a
        sandwich step learns from the same)."""
        key = batch["input_ids"]  # held by the cache, so `is` cannot match a new batch at a reused address
        if self._teacher_cache is None or self._teacher_cache[0] is not key:
            teacher = self.__dict__["teacher"]
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            with torch.no_grad():
                out = teacher(**inputs, output_hidden_states=True)
            states = {i: h for i, h in enumerate(out.hidden_states[1:])}
            self._teacher_cache = (key, (out.logits.float(), states))
        return self._teacher_cache[1]

    def sandwich_loss(self, batch: dict[str, torch.Tensor], arch: Arch, *, spec: Any) -> torch.Tensor:
        """DynaBERT's objective for one arch: `(1 - a) CE + a T^2 KL(teacher || arch)` on the logits plus
        `hidden_weight` times the mean squared error of each kept layer's hidden state against the teacher's
        same layer. Without a teacher (no preparation): the labels' cross-entropy alone."""
        logits, states = self(batch, arch, hidden=True)
        logits = logits.float()
        if self.__dict__["teacher"] is None:
            return F.cross_entropy(logits, batch["labels"])
        soft, teacher_states = self._teacher_outputs(batch)
        loss = logit_distillation_loss(logits, batch["labels"], soft, alpha=float(spec.distill_alpha),
                                       temperature=float(spec.distill_temperature))
        if not self.hidden_weight:  # (a frozen encoder: the task-agnostic supernet's head fit)
            return loss
        hidden = hidden_state_mse([(states[s], teacher_states[s]) for s in states],
                                  attention_mask=batch.get("attention_mask"))
        return loss + self.hidden_weight * hidden

    # ---- the arch's own model ----------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Arch, model: nn.Module) -> nn.Module:
        """Copy `arch`'s leading slices into `model` (the space's `build(arch)` network)."""
        state = self.model.state_dict()
        result = {k: v for k, v in state.items() if not k.startswith("bert.encoder.layer.")}
        for j, spec in enumerate(arch.config["layers"]):
            src, dst = LAYER.format(spec["source"]), LAYER.format(j)
            width, units = int(spec["heads"]) * self.head_size, int(spec["ffn"])
            if width:
                for proj in ("query", "key", "value"):
                    result[f"{dst}attention.self.{proj}.weight"] = state[f"{src}attention.self.{proj}.weight"][:width]
                    result[f"{dst}attention.self.{proj}.bias"] = state[f"{src}attention.self.{proj}.bias"][:width]
            result[f"{dst}attention.output.dense.weight"] = state[f"{src}attention.output.dense.weight"][:, :width]
            if units:
                result[f"{dst}intermediate.dense.weight"] = state[f"{src}intermediate.dense.weight"][:units]
                result[f"{dst}intermediate.dense.bias"] = state[f"{src}intermediate.dense.bias"][:units]
            result[f"{dst}output.dense.weight"] = state[f"{src}output.dense.weight"][:, :units]
            for name in ("attention.output.dense.bias", "attention.output.LayerNorm.weight",
                         "attention.output.LayerNorm.bias", "output.dense.bias", "output.LayerNorm.weight",
                         "output.LayerNorm.bias"):
                result[dst + name] = state[src + name]
        model.load_state_dict({k: v.detach().clone().contiguous() for k, v in result.items()}, strict=True)
        return model.eval()
