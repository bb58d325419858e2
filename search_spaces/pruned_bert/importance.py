"""Importance of each attention head and FFN unit, and slicing a full BERT down to the most important.

Taylor importance (Michel et al., 2019, "Are Sixteen Heads Really Better than One?"): the expected
absolute gradient of the task loss with respect to a mask of ones on each head's output (and each
FFN unit), i.e. the first-order change in loss from removing it. Magnitude is the cheap, data-free
alternative: the norm of the weights a head (or unit) writes through. Random is the control.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

LAYER = "bert.encoder.layer.{}."


@dataclass(frozen=True)
class Importance:
    """Scores of a full-size model: `heads` is layers x heads, `ffn` is layers x units; higher matters more."""

    heads: Tensor
    ffn: Tensor

    def to_tensors(self) -> dict[str, Tensor]:
        return {"heads": self.heads.contiguous(), "ffn": self.ffn.contiguous()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> Importance:
        return cls(heads=tensors["heads"], ffn=tensors["ffn"])

    def top_heads(self, layer: int, count: int) -> list[int]:
        return _top(self.heads[layer], count)

    def top_units(self, layer: int, count: int) -> list[int]:
        return _top(self.ffn[layer], count)


def _top(scores: Tensor, count: int) -> list[int]:
    import torch

    order = torch.argsort(scores, descending=True, stable=True)[:count]
    return sorted(int(i) for i in order)


def taylor_importance(model: nn.Module, batches: Iterable[dict[str, Tensor]]) -> Importance:
    """Accumulate |d loss / d mask| per head and per FFN unit over `batches` (inputs with `labels`)."""
    import torch

    config = model.config  # type: ignore[union-attr]
    layers, heads, units = config.num_hidden_layers, max(config.layer_heads), max(config.layer_ffn)
    head_mask = torch.ones(layers, heads, requires_grad=True)
    ffn_mask = torch.ones(layers, units, requires_grad=True)
    head_total = torch.zeros(layers, heads, dtype=torch.float64)
    ffn_total = torch.zeros(layers, units, dtype=torch.float64)
    was_training = model.training
    model.eval()  # no dropout: the score is of the network as it will run
    count = 0
    for batch in batches:
        loss = model(**batch, head_mask=head_mask, ffn_mask=ffn_mask).loss
        head_grad, ffn_grad = torch.autograd.grad(loss, [head_mask, ffn_mask])
        head_total += head_grad.abs().double()
        ffn_total += ffn_grad.abs().double()
        count += 1
    model.train(was_training)
    if count == 0:
        raise ValueError("taylor importance needs at least one batch of task data")
    return Importance(heads=(head_total / count).float(), ffn=(ffn_total / count).float())


def magnitude_importance(state: dict[str, Tensor], *, layers: int, heads: int, head_size: int) -> Importance:
    """Per head: |W_value rows| x |W_out columns|; per unit: |W_in row| x |W_out column|.

    Both are zero for a head or unit whose output weights are zero, whatever its inputs.
    """
    import torch

    head_scores, unit_scores = [], []
    for layer in range(layers):
        p = LAYER.format(layer)
        value = state[p + "attention.self.value.weight"].view(heads, head_size, -1)
        out = state[p + "attention.output.dense.weight"].view(-1, heads, head_size)
        head_scores.append(value.flatten(1).norm(dim=1) * out.transpose(0, 1).flatten(1).norm(dim=1))
        unit_in = state[p + "intermediate.dense.weight"]
        unit_out = state[p + "output.dense.weight"]
        unit_scores.append(unit_in.norm(dim=1) * unit_out.norm(dim=0))
    return Importance(heads=torch.stack(head_scores).float(), ffn=torch.stack(unit_scores).float())


def random_importance(*, layers: int, heads: int, units: int, seed: int) -> Importance:
    """The control for benchmarks: a random order of heads and units."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return Importance(heads=torch.rand(layers, heads, generator=generator),
                      ffn=torch.rand(layers, units, generator=generator))


def slice_state_dict(state: dict[str, Tensor], *, layers: list[dict[str, Any]], head_size: int,
                     importance: Importance) -> dict[str, Tensor]:
    """The full model's weights cut to `layers` (each `{"source", "heads", "ffn"}`), keeping the most
    important heads and units of each source layer. Returns fresh contiguous tensors."""
    import torch

    result = {k: v for k, v in state.items() if not k.startswith("bert.encoder.layer.")}
    for j, layer in enumerate(layers):
        src, dst = LAYER.format(layer["source"]), LAYER.format(j)
        head_ids = importance.top_heads(layer["source"], layer["heads"])
        rows = torch.tensor([h * head_size + i for h in head_ids for i in range(head_size)], dtype=torch.long)
        units = torch.tensor(importance.top_units(layer["source"], layer["ffn"]), dtype=torch.long)
        if layer["heads"]:
            for proj in ("query", "key", "value"):
                result[f"{dst}attention.self.{proj}.weight"] = state[f"{src}attention.self.{proj}.weight"][rows]
                result[f"{dst}attention.self.{proj}.bias"] = state[f"{src}attention.self.{proj}.bias"][rows]
        result[f"{dst}attention.output.dense.weight"] = state[f"{src}attention.output.dense.weight"][:, rows]
        if layer["ffn"]:
            result[f"{dst}intermediate.dense.weight"] = state[f"{src}intermediate.dense.weight"][units]
            result[f"{dst}intermediate.dense.bias"] = state[f"{src}intermediate.dense.bias"][units]
        result[f"{dst}output.dense.weight"] = state[f"{src}output.dense.weight"][:, units]
        for name in ("attention.output.dense.bias", "attention.output.LayerNorm.weight",
                     "attention.output.LayerNorm.bias", "output.dense.bias", "output.LayerNorm.weight",
                     "output.LayerNorm.bias"):
            result[dst + name] = state[src + name]
    return {k: v.detach().clone().contiguous() for k, v in result.items()}
