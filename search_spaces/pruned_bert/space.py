"""`PrunedBertSpace`: structured pruning of a pretrained BERT, searched per layer.

An arch keeps some of the base's layers (in order) and, in each, a number of attention heads and a
number of FFN units (in steps of `ffn_step`, so matrix shapes stay efficient). Which heads and units
go is decided by importance scores computed once per job; `build` slices the (fine-tuned) teacher's
weights to a physically smaller network, which the task then recovers by distillation from the
teacher, in the spirit of CoFi pruning and Block Movement Pruning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from search_spaces.arch import Arch
from search_spaces.data_paths import DataPath
from search_spaces.base import (
    Block,
    Preparation,
    PreparedSpace,
    SearchSpace,
    SpaceOptions,
    SupernetSpace,
    TaskRunner,
    TrialLike,
    register_space,
)
from search_spaces.errors import InvalidArchError
from search_spaces.pruned_bert.base_model import BaseShape, base_shape, load_base_state
from search_spaces.pruned_bert.importance import (
    Importance,
    magnitude_importance,
    random_importance,
    slice_state_dict,
    taylor_importance,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

logger = logging.getLogger(__name__)
TEACHER_FILE = "teacher.safetensors"
TEACHER_INFO = "teacher.json"


class PrunedBertOptions(SpaceOptions):
    """Bounds of the space. `num_labels` and `labels` normally come from the task's data;
    `teacher_dir` and `importance_file` are set by the job's preparation."""

    base_model: str = Field(default="minilm-l6", min_length=1,
                            description="'minilm-l6' or a local Hugging Face BERT folder")
    num_labels: int = Field(default=2, ge=2, le=100_000)
    labels: tuple[str, ...] | None = None
    importance: Literal["taylor", "magnitude", "random"] = "taylor"
    importance_batches: int = Field(default=16, ge=1, le=10_000)
    min_layers: int = Field(default=1, ge=1, le=128)
    head_step: int = Field(default=1, ge=1, le=64)
    ffn_step: int = Field(default=32, ge=1, le=4096)
    teacher_steps: int = Field(default=1000, ge=0, le=10_000_000,
                               description="fine-tuning steps of the teacher (0: the base with an untrained head)")
    teacher_learning_rate: float = Field(default=5e-5, gt=0.0, le=1.0)
    teacher_dir: str | None = None
    importance_file: str | None = None

    @classmethod
    def data_paths(cls, raw: Mapping[str, Any]) -> list[DataPath]:
        from search_spaces.pruned_bert.base_model import BUILTIN_BASES

        paths = []
        base = raw.get("base_model")
        if isinstance(base, str) and base not in BUILTIN_BASES:
            paths.append(DataPath("space_options.base_model", base, "folder"))
        for name in ("teacher_dir", "importance_file"):
            if raw.get(name) is not None:
                paths.append(DataPath(f"space_options.{name}", str(raw[name]), "internal"))
        return paths

    @model_validator(mode="after")
    def _labels_match(self) -> PrunedBertOptions:
        if self.labels is not None and len(self.labels) != self.num_labels:
            raise ValueError(f"labels has {len(self.labels)} names but num_labels is {self.num_labels}")
        return self


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
    one_shot_by_default: ClassVar[bool] = False  # until the benchmark shows one-shot ahead (issue 17)
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
        import torch

        from search_spaces.pruned_bert.modeling_hwnas_pruned_bert import HwnasPrunedBertForSequenceClassification

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = HwnasPrunedBertForSequenceClassification(self.model_config(self.full_arch())).classifier
        state = dict(load_base_state(self.options.base_model))
        state["classifier.weight"], state["classifier.bias"] = head.weight.detach(), head.bias.detach()
        return state

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
        """The teacher, its heads and units reordered by importance (see `search_spaces.pruned_bert.supernet`)."""
        import torch

        from search_spaces.pruned_bert.modeling_hwnas_pruned_bert import HwnasPrunedBertForSequenceClassification
        from search_spaces.pruned_bert.supernet import PrunedBertSupernet, reorder_by_importance

        b = self.base
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
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    # ---- once per job --------------------------------------------------------------------------
    def prepare(self, runner: TaskRunner, *, cache_dir: Path, job_dir: Path, seed: int) -> Preparation:
        """Fine-tune the teacher (cached per base, task data and budget), then score importance (cached with it)."""
        teacher_dir = self._prepare_teacher(runner, cache_dir=Path(cache_dir), seed=seed)
        info = json.loads((teacher_dir / TEACHER_INFO).read_text(encoding="utf-8"))
        options: dict[str, Any] = {"teacher_dir": str(teacher_dir)}
        prepared = type(self)({**self.options.model_dump(), **options})
        # Kept beside the teacher (scores of the same teacher, data and seed are the same for every job), so
        # that jobs share it, and with it their one-shot supernet (whose cache key holds this path).
        path = teacher_dir / (f"importance-{self.options.importance}-{self.options.importance_batches}"
                              f"-seed{seed}.safetensors")
        if not path.is_file():
            began = time.perf_counter()
            if self.options.importance == "taylor":
                scores = taylor_importance(prepared.build(prepared.full_arch()),
                                           runner.sample_batches(count=self.options.importance_batches, seed=seed))
            else:
                scores = prepared.importance(prepared.full_state(), seed=seed)
            _save_atomic(scores.to_tensors(), path)
            logger.info("importance (%s) computed in %.1f s", self.options.importance, time.perf_counter() - began)
        options["importance_file"] = str(path)
        baseline = {"arch": self.full_arch().to_dict(), "metric": info["metric"], "metric_name": info["metric_name"],
                    "teacher_steps": info["steps"], "teacher_train_s": info["train_s"],
                    "teacher_dir": str(teacher_dir)}
        return Preparation(options=options, baseline=baseline)

    def _prepare_teacher(self, runner: TaskRunner, *, cache_dir: Path, seed: int) -> Path:
        o = self.options
        key = hashlib.sha256(json.dumps({
            "base": self.base.fingerprint, "data": runner.fingerprint(), "steps": o.teacher_steps,
            "lr": o.teacher_learning_rate, "labels": o.num_labels, "seed": seed, "version": self.version,
        }, sort_keys=True).encode()).hexdigest()[:20]
        folder = cache_dir / "teachers" / key
        if (folder / TEACHER_INFO).is_file():
            logger.info("teacher cached at %s", folder)
            return folder
        from safetensors.torch import save_file

        blank = type(self)({**o.model_dump(), "teacher_dir": None})
        model = blank.build(blank.full_arch(), seed=seed)
        began = time.perf_counter()
        logger.info("fine-tuning the teacher (%s, %d steps)", o.base_model, o.teacher_steps)
        loss = float("nan")
        if o.teacher_steps:
            loss = runner.train(model, steps=o.teacher_steps, seed=seed, learning_rate=o.teacher_learning_rate)
        train_s = time.perf_counter() - began
        metric = runner.evaluate(model)
        tmp = cache_dir / "teachers" / f".{key}.{time.time_ns()}"
        tmp.mkdir(parents=True)
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / TEACHER_FILE))
        (tmp / TEACHER_INFO).write_text(json.dumps({
            "base_model": o.base_model, "steps": o.teacher_steps, "learning_rate": o.teacher_learning_rate,
            "metric_name": runner.metric_name, "metric": metric, "train_loss": loss, "train_s": train_s,
            "data": runner.fingerprint()}, indent=2), encoding="utf-8")
        try:
            tmp.rename(folder)
        except OSError:  # another job prepared the same teacher meanwhile: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("teacher: %s %.4f after %d steps (%.0f s)", runner.metric_name, metric, o.teacher_steps, train_s)
        return folder

    # ---- export --------------------------------------------------------------------------------
    def export(self, model: nn.Module, arch: Arch, directory: Path, *, model_card: str) -> Path:
        return self.save_hf_folder(model, arch, directory, model_card=model_card)

    def load_exported(self, directory: Path) -> nn.Module:
        return self.load_hf_folder(directory)


def _save_atomic(tensors: dict[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{time.time_ns()}.tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)
