"""`PrunedBertSpace`: structured pruning of a pretrained BERT, searched per layer.

An arch keeps some of the base's layers (in order) and, in each, a number of attention heads and a
number of FFN units (in steps of `ffn_step`, so matrix shapes stay efficient). Which heads and units
go is decided by importance scores computed once per job; `build` slices the (fine-tuned) teacher's
weights to a physically smaller network, which the task then recovers by distillation from the
teacher, in the spirit of CoFi pruning and Block Movement Pruning.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from search_spaces.arch import Arch
from search_spaces.base import (
    Block,
    Preparation,
    PreparedSpace,
    SearchSpace,
    SupernetSpace,
    TaskRunner,
    TrialLike,
    register_space,
)
from search_spaces.errors import InvalidArchError
from search_spaces.pruned_bert.base_model import BaseShape, base_shape, load_base_state
from search_spaces.pruned_bert.options import PrunedBertOptions
from search_spaces.pruned_bert.preparation import TEACHER_FILE
from search_spaces.pruned_bert.importance import (
    Importance,
    magnitude_importance,
    random_importance,
    slice_state_dict,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

logger = logging.getLogger(__name__)
ENCODER_PREFIXES = ("bert.embeddings.", "bert.encoder.")  # what the task-agnostic supernet holds


@lru_cache(maxsize=4)
def _load_tensors(path: str, mtime_ns: int) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def load_cached(path: Path) -> dict[str, Tensor]:
    """Read a safetensors file once per process (candidates are built from the same teacher many times)."""
    return _load_tensors(str(path), path.stat().st_mtime_ns)


@register_space("pruned-bert")
class PrunedBertSpace(SearchSpace, PreparedSpace, SupernetSpace):
    version = 1
    one_shot_by_default: ClassVar[bool] = True  # measured ahead of standalone on SST-2 and MRPC (issue 17)
    supernet_largest_first: ClassVar[float] = 0.0  # the largest arch is the teacher: nothing to train first
    options_model = PrunedBertOptions
    task_kinds: ClassVar[frozenset[str]] = frozenset({"classification"})
    auto_class: ClassVar[str] = "AutoModelForSequenceClassification"
    options: PrunedBertOptions

    @property
    def base(self) -> BaseShape:
        return base_shape(self.options.base_model)

    # ---- the arch ------------------------------------------------------------------------------
    def sample(self, trial: TrialLike) -> Arch:
        b, o = self.base, self.options
        layers = []
        for i in range(b.layers):
            keep = int(trial.suggest_int(f"l{i}.keep", 0, 1))
            heads = int(trial.suggest_int(f"l{i}.heads", 0, b.heads // o.head_step)) * o.head_step
            ffn = int(trial.suggest_int(f"l{i}.ffn", 0, b.ffn // o.ffn_step)) * o.ffn_step
            layers.append({"source": i, "heads": heads, "ffn": ffn, "keep": keep})
        kept = [layer for layer in layers if layer.pop("keep")]
        while len(kept) < o.min_layers:  # keep the lowest layers not yet kept, as an encoder's bottom matters most
            extra = next(layer for layer in layers if layer not in kept)
            kept = sorted([*kept, extra], key=lambda layer: layer["source"])
        return self.make_arch(kept)

    def full_arch(self) -> Arch:
        """The unpruned base: the teacher's arch."""
        b = self.base
        return self.make_arch([{"source": i, "heads": b.heads, "ffn": b.ffn} for i in range(b.layers)])

    def make_arch(self, layers: list[dict[str, int]]) -> Arch:
        b = self.base
        arch = Arch.from_config(self.name, self.version, {
            "base": self.options.base_model, "base_fingerprint": b.fingerprint, "hidden_size": b.hidden_size,
            "head_size": b.head_size, "num_labels": self.options.num_labels, "layers": layers})
        self.validate(arch)
        return arch

    def validate(self, arch: Arch) -> None:
        self.check_arch_identity(arch)
        b, o = self.base, self.options
        c = arch.config
        keys = {"base", "base_fingerprint", "hidden_size", "head_size", "num_labels", "layers"}
        if set(c) != keys:
            raise InvalidArchError(f"pruned-bert arch keys must be {sorted(keys)}, got {sorted(c)}",
                                   problems=[f"keys: {sorted(c)}"])
        problems: list[str] = []
        expected = (o.base_model, b.fingerprint, b.hidden_size, b.head_size, o.num_labels)
        got = (c["base"], c["base_fingerprint"], c["hidden_size"], c["head_size"], c["num_labels"])
        if got != expected:
            problems.append(f"base/fingerprint/hidden_size/head_size/num_labels must be {expected} (this space's "
                            f"base and task), got {got}")
        layers = c["layers"]
        if not isinstance(layers, list) or not o.min_layers <= len(layers) <= b.layers:
            problems.append(f"layers must hold {o.min_layers} to {b.layers} layers, got "
                            f"{len(layers) if isinstance(layers, list) else layers!r}")
            layers = []
        previous = -1
        for j, layer in enumerate(layers):
            where = f"layers[{j}]"
            if not isinstance(layer, dict) or set(layer) != {"source", "heads", "ffn"}:
                problems.append(f"{where} must have exactly source, heads and ffn, got {layer!r}")
                continue
            source, heads, ffn = layer["source"], layer["heads"], layer["ffn"]
            if not isinstance(source, int) or not previous < source < b.layers:
                problems.append(f"{where}.source must be a base layer after {previous} and below {b.layers}, "
                                f"got {source!r} (layers keep the base's order)")
            else:
                previous = source
            if not isinstance(heads, int) or not 0 <= heads <= b.heads or (heads % o.head_step and heads != b.heads):
                problems.append(f"{where}.heads must be 0 to {b.heads} in steps of {o.head_step}, got {heads!r}")
            if not isinstance(ffn, int) or not 0 <= ffn <= b.ffn or (ffn % o.ffn_step and ffn != b.ffn):
                problems.append(f"{where}.ffn must be 0 to {b.ffn} in steps of {o.ffn_step}, got {ffn!r}")
        if problems:
            raise InvalidArchError("invalid pruned-bert arch: " + "; ".join(problems), problems=problems)

    @classmethod
    def describe(cls, config: dict[str, Any]) -> str:
        return "; ".join(f"L{layer['source']}:h{layer['heads']}/f{layer['ffn']}" for layer in config["layers"])

    def feature_names(self) -> list[str]:
        names = ["n_layers", "total_heads", "total_ffn"]
        for i in range(self.base.layers):
            names += [f"l{i}.kept", f"l{i}.heads", f"l{i}.ffn"]
        return names

    def encode(self, arch: Arch) -> list[float]:
        self.validate(arch)
        layers = {layer["source"]: layer for layer in arch.config["layers"]}
        features = [float(len(layers)), float(sum(v["heads"] for v in layers.values())),
                    float(sum(v["ffn"] for v in layers.values()))]
        for i in range(self.base.layers):
            layer = layers.get(i)
            features += [1.0, float(layer["heads"]), float(layer["ffn"])] if layer else [0.0, 0.0, 0.0]
        return features

    def blocks(self, arch: Arch) -> list[Block]:
        """Embeddings; per layer attention(h) and ffn(w), both also at 0 (their residual and norm stay); head."""
        self.validate(arch)
        b = self.base
        result = [Block("embedding", (("hidden", b.hidden_size), ("vocab_size", b.vocab_size)))]
        for layer in arch.config["layers"]:
            result.append(Block("attention", (("hidden", b.hidden_size), ("heads", layer["heads"]),
                                              ("head_size", b.head_size))))
            result.append(Block("ffn", (("hidden", b.hidden_size), ("width", layer["ffn"]))))
        result.append(Block("classifier", (("hidden", b.hidden_size), ("labels", self.options.num_labels))))
        return result

    def build_for_timing(self, arch: Arch) -> nn.Module:
        """The arch's network with seeded uniform weights, without slicing the teacher (3x faster)."""
        import torch

        from search_spaces.pruned_bert.modeling_hwnas_pruned_bert import HwnasPrunedBertForSequenceClassification

        self.validate(arch)
        with torch.device("meta"):
            model = HwnasPrunedBertForSequenceClassification(self.model_config(arch))
        model = model.to_empty(device="cpu")
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.uniform_(-0.05, 0.05, generator=generator)
        return model.eval()

    def block_catalogue(self) -> list[Block]:
        b, o = self.base, self.options
        result = [Block("embedding", (("hidden", b.hidden_size), ("vocab_size", b.vocab_size)))]
        result += [Block("attention", (("hidden", b.hidden_size), ("heads", h), ("head_size", b.head_size)))
                   for h in range(0, b.heads + 1, o.head_step)]
        result += [Block("ffn", (("hidden", b.hidden_size), ("width", w))) for w in range(0, b.ffn + 1, o.ffn_step)]
        result.append(Block("classifier", (("hidden", b.hidden_size), ("labels", o.num_labels))))
        return result

    def build_block(self, block: Block, *, batch_size: int, seq_len: int,
                    seed: int = 0) -> tuple[nn.Module, dict[str, Tensor]]:
        from search_spaces.pruned_bert.blocks import build_block

        return build_block(block, self.model_config(self.full_arch()), batch_size=batch_size, seq_len=seq_len,
                           seed=seed)

    def latency_signature(self) -> dict[str, Any]:
        """The base's shape (by its fingerprint) and the label count; teacher and importance change no timing."""
        return {"base_fingerprint": self.base.fingerprint, "num_labels": self.options.num_labels,
                "head_step": self.options.head_step, "ffn_step": self.options.ffn_step,
                "min_layers": self.options.min_layers}

    # ---- networks ------------------------------------------------------------------------------
    def model_config(self, arch: Arch) -> Any:
        from search_spaces.pruned_bert.modeling_hwnas_pruned_bert import HwnasPrunedBertConfig

        b, o = self.base, self.options
        layers = arch.config["layers"]
        labels = o.labels or tuple(str(i) for i in range(o.num_labels))
        return HwnasPrunedBertConfig(
            vocab_size=b.vocab_size, hidden_size=b.hidden_size, head_size=b.head_size,
            layer_heads=[layer["heads"] for layer in layers], layer_ffn=[layer["ffn"] for layer in layers],
            source_layers=[layer["source"] for layer in layers], max_position_embeddings=b.max_position_embeddings,
            type_vocab_size=b.type_vocab_size, layer_norm_eps=b.layer_norm_eps, num_labels=o.num_labels,
            id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})

    def full_state(self, *, seed: int = 0) -> dict[str, Tensor]:
        """The teacher's weights: the fine-tuned teacher if prepared, else the base with a seeded new head."""
        if self.options.teacher_dir is not None:
            return load_cached(Path(self.options.teacher_dir) / TEACHER_FILE)
        return self._base_state(seed=seed)

    def _base_state(self, *, seed: int) -> dict[str, Tensor]:
        import torch

        from search_spaces.pruned_bert.modeling_hwnas_pruned_bert import HwnasPrunedBertForSequenceClassification

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = HwnasPrunedBertForSequenceClassification(self.model_config(self.full_arch())).classifier
        state = dict(load_base_state(self.options.base_model))
        state["classifier.weight"], state["classifier.bias"] = head.weight.detach(), head.bias.detach()
        return state

    def base_model_network(self, *, seed: int = 0) -> nn.Module:
        """The unpruned base as this space's network (a seeded new head), whatever the job prepared."""
        import torch

        from search_spaces.pruned_bert.modeling_hwnas_pruned_bert import HwnasPrunedBertForSequenceClassification

        with torch.device("meta"):
            model = HwnasPrunedBertForSequenceClassification(self.model_config(self.full_arch()))
        model.load_state_dict({k: v.clone() for k, v in self._base_state(seed=seed).items()}, strict=True,
                              assign=True)
        return model.eval()

    def importance(self, state: dict[str, Tensor], *, seed: int = 0) -> Importance:
        """The job's prepared scores; without preparation, magnitude (or random) from the weights."""
        b, o = self.base, self.options
        if o.importance_file is not None:
            return Importance.from_tensors(load_cached(Path(o.importance_file)))
        if o.importance == "random":
            return random_importance(layers=b.layers, heads=b.heads, units=b.ffn, seed=seed)
        return magnitude_importance(state, layers=b.layers, heads=b.heads, head_size=b.head_size)

    def build(self, arch: Arch, *, seed: int = 0) -> nn.Module:
        import torch

        from search_spaces.pruned_bert.modeling_hwnas_pruned_bert import HwnasPrunedBertForSequenceClassification

        self.validate(arch)
        state = self.full_state(seed=seed)
        sliced = slice_state_dict(state, layers=arch.config["layers"], head_size=self.base.head_size,
                                  importance=self.importance(state, seed=seed))
        with torch.device("meta"):
            model = HwnasPrunedBertForSequenceClassification(self.model_config(arch))
        model.load_state_dict(sliced, strict=True, assign=True)
        return model.eval()

    # ---- the width- and depth-adaptive supernet (one-shot search) ------------------------------------
    def build_supernet(self, *, seed: int) -> nn.Module:
        """Task-specific: the teacher, its heads and units reordered by importance (see
        `search_spaces.pruned_bert.supernet`). Task-agnostic: the prepared task-agnostic encoder (see
        `search_spaces.pruned_bert.agnostic`; unprepared, the base reordered by magnitude) under the teacher's
        pooler and head, the encoder frozen: training it fits the head alone."""
        import torch

        from search_spaces.pruned_bert.modeling_hwnas_pruned_bert import HwnasPrunedBertForSequenceClassification
        from search_spaces.pruned_bert.supernet import PrunedBertSupernet, reorder_by_importance

        b = self.base
        if self.options.supernet == "task-agnostic":
            from search_spaces.pruned_bert.agnostic import job_supernet

            return job_supernet(self, seed=seed)
        state = self.full_state(seed=seed)
        ordered = reorder_by_importance(state, self.importance(state, seed=seed), layers=b.layers,
                                        head_size=b.head_size)
        with torch.device("meta"):
            model = HwnasPrunedBertForSequenceClassification(self.model_config(self.full_arch()))
        model.load_state_dict({k: v.clone() for k, v in ordered.items()}, strict=True, assign=True)
        return PrunedBertSupernet(model, teacher=self.teacher(), head_size=b.head_size)

    def inherit(self, supernet: nn.Module, arch: Arch) -> nn.Module:
        import torch

        from search_spaces.pruned_bert.modeling_hwnas_pruned_bert import HwnasPrunedBertForSequenceClassification

        self.validate(arch)
        with torch.device("meta"):
            model = HwnasPrunedBertForSequenceClassification(self.model_config(arch))
        model = model.to_empty(device="cpu")
        return supernet.extract(arch, model)  # type: ignore[operator]

    def supernet_logits(self, supernet: nn.Module, inputs: dict[str, Tensor], arch: Arch) -> Tensor:
        return supernet(inputs, arch)

    def sandwich_archs(self) -> tuple[Arch, Arch]:
        """The teacher's arch, and the fewest layers (the lowest) at the narrowest non-zero widths (a layer
        with no heads and no units is only its norms: not a model worth training towards)."""
        b, o = self.base, self.options
        smallest = [{"source": i, "heads": min(o.head_step, b.heads), "ffn": min(o.ffn_step, b.ffn)}
                    for i in range(o.min_layers)]
        return self.full_arch(), self.make_arch(smallest)

    def teacher(self) -> nn.Module | None:
        if self.options.teacher_dir is None:
            return None
        teacher = self.build(self.full_arch())
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        return teacher

    def tokenizer_dir(self) -> Path | None:
        return self.base.path

    def example_inputs(self, arch: Arch, *, batch_size: int, seq_len: int) -> dict[str, Tensor]:
        import torch

        seq_len = min(seq_len, self.base.max_position_embeddings)
        generator = torch.Generator().manual_seed(0)
        low = min(1000, max(1, self.base.vocab_size // 5))  # ordinary word pieces, not special tokens
        ids = torch.randint(low, min(self.base.vocab_size, 20000), (batch_size, seq_len), generator=generator)
        # token_type_ids too: a graph exported from these inputs must take a sentence pair's segments (without
        # them an ONNX export treated every token as the first segment, and changed MRPC's predictions)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}

    # ---- once per job --------------------------------------------------------------------------
    def prepare(self, runner: TaskRunner, *, cache_dir: Path, job_dir: Path, seed: int,
                report: Callable[[str], None] | None = None) -> Preparation:
        """The teacher fine-tuned and importance scored, cached per base, task data, budget and seed (and, for a
        task-agnostic supernet, that supernet, cached per base): see `search_spaces.pruned_bert.preparation`."""
        from search_spaces.pruned_bert.preparation import prepare_pruned_bert

        return prepare_pruned_bert(self, runner, cache_dir=Path(cache_dir), seed=seed, report=report)

    # ---- export --------------------------------------------------------------------------------
    def export(self, model: nn.Module, arch: Arch, directory: Path, *, model_card: str) -> Path:
        return self.save_hf_folder(model, arch, directory, model_card=model_card)

    def load_exported(self, directory: Path) -> nn.Module:
        return self.load_hf_folder(directory)
