"""`SparseTransformerSpace`: per-layer attention and dense/MoE/no feed-forward, plus depth and width."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from search_spaces.arch import Arch
from search_spaces.base import (Block, DecodeSpace, SearchSpace, SpaceOptions, SupernetSpace, TrialLike,
                                register_space)
from search_spaces.errors import InvalidArchError

if TYPE_CHECKING:
    from torch import Tensor, nn

FfnKind = Literal["dense", "moe", "none"]


class SparseTransformerOptions(SpaceOptions):
    """Bounds of the space. `vocab_size` normally comes from the task's tokenizer."""

    vocab_size: int = Field(default=259, ge=2, le=1_000_000)
    max_seq_len: int = Field(default=128, ge=8, le=8192)
    min_layers: int = Field(default=1, ge=1, le=64)
    max_layers: int = Field(default=4, ge=1, le=64)
    d_model_choices: tuple[int, ...] = Field(default=(64, 128, 192), min_length=1)
    heads_choices: tuple[int, ...] = Field(default=(0, 2, 4), min_length=1)
    ffn_kinds: tuple[FfnKind, ...] = Field(default=("dense", "moe", "none"), min_length=1)
    dense_width_choices: tuple[int, ...] = Field(default=(128, 256, 512), min_length=1)
    moe_experts_choices: tuple[int, ...] = Field(default=(2, 4, 8), min_length=1)
    moe_top_k_choices: tuple[int, ...] = Field(default=(1, 2), min_length=1)
    moe_width_choices: tuple[int, ...] = Field(default=(64, 128, 256), min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> SparseTransformerOptions:
        if self.min_layers > self.max_layers:
            raise ValueError(
                f"min_layers ({self.min_layers}) must not exceed max_layers ({self.max_layers}); lower min_layers"
            )
        for name in ("d_model_choices", "dense_width_choices", "moe_experts_choices", "moe_top_k_choices",
                     "moe_width_choices"):
            if any(v < 1 for v in getattr(self, name)):
                raise ValueError(f"{name} must hold positive integers, got {getattr(self, name)}")
        if any(h < 0 for h in self.heads_choices):
            raise ValueError(f"heads_choices must be >= 0 (0 means no attention), got {self.heads_choices}")
        for d in self.d_model_choices:
            for h in self.heads_choices:
                if h and d % h:
                    raise ValueError(
                        f"every d_model choice must divide by every head count: {d} % {h} != 0; "
                        "change d_model_choices or heads_choices"
                    )
        return self


@register_space("sparse-transformer")
class SparseTransformerSpace(SearchSpace, SupernetSpace, DecodeSpace):
    """Decoder-only LMs in the spirit of PLANER and AutoMoE.

    Sampling always draws every layer slot up to `max_layers` (unused slots are ignored), so the
    Optuna search space is static and NSGA-II crossover applies to every parameter.
    """

    version = 1
    options_model = SparseTransformerOptions
    task_kinds: ClassVar[frozenset[str]] = frozenset({"language-modeling"})
    auto_class: ClassVar[str] = "AutoModelForCausalLM"
    options: SparseTransformerOptions

    def sample(self, trial: TrialLike) -> Arch:
        o = self.options
        n_layers = trial.suggest_int("n_layers", o.min_layers, o.max_layers)
        d_model = int(trial.suggest_categorical("d_model", list(o.d_model_choices)))
        layers: list[dict[str, Any]] = []
        for i in range(o.max_layers):
            heads = int(trial.suggest_categorical(f"l{i}.heads", list(o.heads_choices)))
            kind = str(trial.suggest_categorical(f"l{i}.ffn", list(o.ffn_kinds)))
            dense_width = int(trial.suggest_categorical(f"l{i}.dense_width", list(o.dense_width_choices)))
            experts = int(trial.suggest_categorical(f"l{i}.experts", list(o.moe_experts_choices)))
            top_k = int(trial.suggest_categorical(f"l{i}.top_k", list(o.moe_top_k_choices)))
            moe_width = int(trial.suggest_categorical(f"l{i}.moe_width", list(o.moe_width_choices)))
            ffn: dict[str, Any]
            if kind == "dense":
                ffn = {"kind": "dense", "width": dense_width}
            elif kind == "moe":
                ffn = {"kind": "moe", "experts": experts, "top_k": min(top_k, experts), "width": moe_width}
            else:
                ffn = {"kind": "none"}
            layers.append({"attn_heads": heads, "ffn": ffn})
        return self.make_arch(d_model=d_model, layers=layers[:n_layers])

    def make_arch(self, *, d_model: int, layers: list[dict[str, Any]]) -> Arch:
        """An arch of this space from explicit choices (validated)."""
        config = {
            "vocab_size": self.options.vocab_size,
            "max_seq_len": self.options.max_seq_len,
            "d_model": d_model,
            "layers": layers,
        }
        arch = Arch.from_config(self.name, self.version, config)
        self.validate(arch)
        return arch

    def validate(self, arch: Arch) -> None:
        self.check_arch_identity(arch)
        o = self.options
        c = arch.config
        problems: list[str] = []
        if set(c) != {"vocab_size", "max_seq_len", "d_model", "layers"}:
            problems.append(f"config keys must be vocab_size, max_seq_len, d_model, layers; got {sorted(c)}")
            raise InvalidArchError("; ".join(problems), problems=problems)
        if c["vocab_size"] != o.vocab_size or c["max_seq_len"] != o.max_seq_len:
            problems.append(
                f"vocab_size/max_seq_len must be {o.vocab_size}/{o.max_seq_len} (the space's options), "
                f"got {c['vocab_size']}/{c['max_seq_len']}"
            )
        d_model = c["d_model"]
        if d_model not in o.d_model_choices:
            problems.append(f"d_model must be one of {list(o.d_model_choices)}, got {d_model!r}")
        layers = c["layers"]
        if not isinstance(layers, list) or not o.min_layers <= len(layers) <= o.max_layers:
            count = len(layers) if isinstance(layers, list) else layers
            problems.append(f"layers must hold {o.min_layers} to {o.max_layers} layers, got {count!r}")
            layers = []
        for i, layer in enumerate(layers):
            problems.extend(self._layer_problems(i, layer, d_model))
        if problems:
            raise InvalidArchError("invalid sparse-transformer arch: " + "; ".join(problems), problems=problems)

    def _layer_problems(self, i: int, layer: Any, d_model: Any) -> list[str]:
        o = self.options
        where = f"layers[{i}]"
        if not isinstance(layer, dict) or set(layer) != {"attn_heads", "ffn"}:
            return [f"{where} must have exactly attn_heads and ffn, got {layer!r}"]
        problems = []
        heads = layer["attn_heads"]
        if heads not in o.heads_choices:
            problems.append(f"{where}.attn_heads must be one of {list(o.heads_choices)}, got {heads!r}")
        elif heads and isinstance(d_model, int) and d_model % heads:
            problems.append(f"{where}.attn_heads={heads} must divide d_model={d_model}")
        ffn = layer["ffn"]
        kind = ffn.get("kind") if isinstance(ffn, dict) else None
        if kind not in o.ffn_kinds:
            problems.append(f"{where}.ffn.kind must be one of {list(o.ffn_kinds)}, got {kind!r}")
        elif kind == "dense":
            if set(ffn) != {"kind", "width"} or ffn["width"] not in o.dense_width_choices:
                problems.append(f"{where}.ffn dense width must be one of {list(o.dense_width_choices)}, got {ffn!r}")
        elif kind == "moe":
            if set(ffn) != {"kind", "experts", "top_k", "width"}:
                problems.append(f"{where}.ffn moe needs experts, top_k and width, got {ffn!r}")
            else:
                if ffn["experts"] not in o.moe_experts_choices:
                    problems.append(f"{where}.ffn.experts must be one of {list(o.moe_experts_choices)}, "
                                    f"got {ffn['experts']!r}")
                if not isinstance(ffn["top_k"], int) or not 1 <= ffn["top_k"] <= ffn["experts"]:
                    problems.append(f"{where}.ffn.top_k must be between 1 and experts={ffn['experts']}, "
                                    f"got {ffn['top_k']!r}")
                if ffn["width"] not in o.moe_width_choices:
                    problems.append(f"{where}.ffn.width must be one of {list(o.moe_width_choices)}, "
                                    f"got {ffn['width']!r}")
        elif set(ffn) != {"kind"}:
            problems.append(f"{where}.ffn of kind none takes no other key, got {ffn!r}")
        return problems

    @classmethod
    def describe(cls, config: dict[str, Any]) -> str:
        parts = []
        for layer in config.get("layers", []):
            ffn = layer["ffn"]
            attn = f"attn{layer['attn_heads']}" if layer["attn_heads"] else "-"
            if ffn["kind"] == "dense":
                parts.append(f"{attn}+ffn{ffn['width']}")
            elif ffn["kind"] == "moe":
                parts.append(f"{attn}+moe{ffn['experts']}x{ffn['width']}/top{ffn['top_k']}")
            else:
                parts.append(attn)
        return f"d={config.get('d_model')} " + " | ".join(parts)

    # Whole-network totals that track compute (per-layer features alone leave a tree model to learn sums).
    TOTALS = ("attn_layers", "dense_layers", "moe_layers", "attn_d2", "dense_d_width", "moe_d_active_width",
              "moe_experts", "moe_d_experts")

    def feature_names(self) -> list[str]:
        names = ["n_layers", "d_model", *self.TOTALS]
        for i in range(self.options.max_layers):
            names += [f"l{i}.heads", f"l{i}.dense_width", f"l{i}.experts", f"l{i}.top_k", f"l{i}.moe_width",
                      f"l{i}.active_ffn_width"]
        return names

    def encode(self, arch: Arch) -> list[float]:
        self.validate(arch)
        c = arch.config
        d = c["d_model"]
        moe = [layer["ffn"] for layer in c["layers"] if layer["ffn"]["kind"] == "moe"]
        dense = [layer["ffn"]["width"] for layer in c["layers"] if layer["ffn"]["kind"] == "dense"]
        attn = sum(1 for layer in c["layers"] if layer["attn_heads"])
        features = [float(len(c["layers"])), float(d), float(attn), float(len(dense)), float(len(moe)),
                    float(attn * d * d), float(d * sum(dense)), float(d * sum(f["top_k"] * f["width"] for f in moe)),
                    float(sum(f["experts"] for f in moe)), float(d * sum(f["experts"] for f in moe))]
        for i in range(self.options.max_layers):
            if i >= len(c["layers"]):
                features += [0.0] * 6
                continue
            layer = c["layers"][i]
            ffn = layer["ffn"]
            dense = ffn["width"] if ffn["kind"] == "dense" else 0
            experts, top_k, width = (ffn["experts"], ffn["top_k"], ffn["width"]) if ffn["kind"] == "moe" else (0, 0, 0)
            features += [float(layer["attn_heads"]), float(dense), float(experts), float(top_k), float(width),
                         float(dense + top_k * width)]
        return features

    def blocks(self, arch: Arch) -> list[Block]:
        self.validate(arch)
        c = arch.config
        d = c["d_model"]
        result = [Block("embedding", (("d_model", d), ("vocab_size", c["vocab_size"])))]
        for layer in c["layers"]:
            if layer["attn_heads"]:
                result.append(Block("attention", (("d_model", d), ("heads", layer["attn_heads"]))))
            ffn = layer["ffn"]
            if ffn["kind"] == "dense":
                result.append(Block("ffn", (("d_model", d), ("width", ffn["width"]))))
            elif ffn["kind"] == "moe":
                result.append(Block("moe", (("d_model", d), ("experts", ffn["experts"]),
                                            ("top_k", ffn["top_k"]), ("width", ffn["width"]))))
        result.append(Block("lm_head", (("d_model", d), ("vocab_size", c["vocab_size"]))))
        return result

    def block_family(self, block: Block) -> str:
        """MoE blocks by their number of experts: how routing and dispatch cost grows with the experts is the
        backend's own (torch's grouped matmul runs every expert in one call; the exported ONNX graph has a
        gather, two matmuls and a scatter per expert), so each expert count may scale on its own."""
        if block.kind == "moe":
            return f"moe/experts={dict(block.params)['experts']}"
        return block.kind

    def build(self, arch: Arch, *, seed: int = 0) -> nn.Module:
        import torch

        from search_spaces.sparse_transformer.modeling_hwnas_sparse import HwnasSparseConfig, HwnasSparseForCausalLM

        self.validate(arch)
        c = arch.config
        config = HwnasSparseConfig(vocab_size=c["vocab_size"], d_model=c["d_model"],
                                   max_seq_len=c["max_seq_len"], layers=c["layers"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = HwnasSparseForCausalLM(config)
        return model

    def latency_signature(self) -> dict[str, Any]:
        """The options, and how the MoE block dispatches at inference (a grouped matmul, or a loop over experts
        where torch has none): a predictor fitted under another dispatch is refused, so the space is profiled
        again."""
        from search_spaces.sparse_transformer.modeling_hwnas_sparse import MOE_DISPATCH

        return {**super().latency_signature(), "moe_dispatch": MOE_DISPATCH}

    # ---- the weight-sharing supernet (one-shot search) ------------------------------------------------
    def build_supernet(self, *, seed: int) -> nn.Module:
        from search_spaces.sparse_transformer.supernet import SparseSupernet

        return SparseSupernet(self.options, seed=seed)

    def inherit(self, supernet: nn.Module, arch: Arch) -> nn.Module:
        return supernet.extract(arch, self.build(arch))  # type: ignore[operator]

    def sandwich_archs(self) -> tuple[Arch, Arch]:
        """The widest, deepest arch (the most heads; the most experts at the widest width and top-k, else the
        widest dense block) and the narrowest, shallowest (the fewest heads; no feed-forward if allowed)."""
        o = self.options
        if "moe" in o.ffn_kinds:
            experts = max(o.moe_experts_choices)
            big: dict[str, Any] = {"kind": "moe", "experts": experts, "top_k": min(max(o.moe_top_k_choices), experts),
                                   "width": max(o.moe_width_choices)}
        elif "dense" in o.ffn_kinds:
            big = {"kind": "dense", "width": max(o.dense_width_choices)}
        else:
            big = {"kind": "none"}
        if "none" in o.ffn_kinds:
            small: dict[str, Any] = {"kind": "none"}
        elif "dense" in o.ffn_kinds:
            small = {"kind": "dense", "width": min(o.dense_width_choices)}
        else:
            experts = min(o.moe_experts_choices)
            small = {"kind": "moe", "experts": experts, "top_k": min(min(o.moe_top_k_choices), experts),
                     "width": min(o.moe_width_choices)}
        largest = self.make_arch(d_model=max(o.d_model_choices),
                                 layers=[{"attn_heads": max(o.heads_choices), "ffn": dict(big)} for _ in range(o.max_layers)])
        smallest = self.make_arch(d_model=min(o.d_model_choices),
                                  layers=[{"attn_heads": min(o.heads_choices), "ffn": dict(small)}
                                          for _ in range(o.min_layers)])
        return largest, smallest

    def block_catalogue(self) -> list[Block]:
        o = self.options
        result: list[Block] = []
        for d in o.d_model_choices:
            result.append(Block("embedding", (("d_model", d), ("vocab_size", o.vocab_size))))
            result += [Block("attention", (("d_model", d), ("heads", h))) for h in o.heads_choices if h]
            if "dense" in o.ffn_kinds:
                result += [Block("ffn", (("d_model", d), ("width", w))) for w in o.dense_width_choices]
            if "moe" in o.ffn_kinds:
                result += [Block("moe", (("d_model", d), ("experts", e), ("top_k", k), ("width", w)))
                           for e in o.moe_experts_choices for k in sorted({min(k, e) for k in o.moe_top_k_choices})
                           for w in o.moe_width_choices]
            result.append(Block("lm_head", (("d_model", d), ("vocab_size", o.vocab_size))))
        return list(dict.fromkeys(result))

    def build_block(self, block: Block, *, batch_size: int, seq_len: int,
                    seed: int = 0) -> tuple[nn.Module, dict[str, Tensor]]:
        from search_spaces.sparse_transformer.blocks import build_block

        return build_block(block, max_seq_len=self.options.max_seq_len, batch_size=batch_size, seq_len=seq_len,
                           seed=seed)

    def build_decode_timer(self, arch: Arch, *, batch_size: int, prompt_len: int,
                           new_tokens: int) -> tuple[nn.Module, dict[str, Tensor]]:
        """The arch generating `new_tokens` tokens with its cache after a prompt (cut to fit `max_seq_len`)."""
        import torch

        from search_spaces.sparse_transformer.blocks import DecodeTimer

        from search_spaces.errors import LatencyError

        c = arch.config
        if new_tokens >= c["max_seq_len"]:
            raise LatencyError(f"decode_tokens {new_tokens} leave no room for a prompt in max_seq_len "
                               f"{c['max_seq_len']}; use a device profile with fewer decode_tokens")
        prompt_len = min(prompt_len, c["max_seq_len"] - new_tokens)
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(0, c["vocab_size"], (batch_size, prompt_len + new_tokens), generator=generator)
        return DecodeTimer(self.build_for_timing(arch)), {"prompt_ids": ids[:, :prompt_len],
                                                          "new_ids": ids[:, prompt_len:]}

    def build_decode_block(self, block: Block, *, batch_size: int, context_len: int,
                           seed: int = 0) -> tuple[nn.Module, dict[str, Tensor]]:
        from search_spaces.sparse_transformer.blocks import build_decode_block

        return build_decode_block(block, max_seq_len=self.options.max_seq_len, batch_size=batch_size,
                                  context_len=context_len, seed=seed)

    def example_inputs(self, arch: Arch, *, batch_size: int, seq_len: int) -> dict[str, Tensor]:
        import torch

        c = arch.config
        seq_len = min(seq_len, c["max_seq_len"])
        generator = torch.Generator().manual_seed(0)
        return {"input_ids": torch.randint(0, c["vocab_size"], (batch_size, seq_len), generator=generator)}

    def export(self, model: nn.Module, arch: Arch, directory: Path, *, model_card: str) -> Path:
        return self.save_hf_folder(model, arch, directory, model_card=model_card)

    def load_exported(self, directory: Path) -> nn.Module:
        return self.load_hf_folder(directory)
