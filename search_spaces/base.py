"""The search-space contract: sample, validate, encode, describe blocks, build and export."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from search_spaces.arch import Arch
from search_spaces.data_paths import DataPath
from search_spaces.errors import InvalidArchError, SpecError
from search_spaces.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor, nn


class TrialLike(Protocol):
    """What a space needs from an Optuna trial to sample (`optuna.trial.Trial` satisfies it)."""

    def suggest_int(self, name: str, low: int, high: int) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class Block:
    """One block of a network as a lookup-table latency predictor sees it: a kind and its sizes."""

    kind: str
    params: tuple[tuple[str, int], ...]

    @property
    def key(self) -> str:
        return self.kind + "(" + ",".join(f"{k}={v}" for k, v in self.params) + ")"


class TaskRunner(Protocol):
    """What a space needs from a task to prepare itself (a `workers.tasks.Task` satisfies it)."""

    @property
    def metric_name(self) -> str: ...

    def train(self, model: nn.Module, *, steps: int, seed: int, teacher: nn.Module | None = None,
              learning_rate: float | None = None) -> float: ...

    def evaluate(self, model: nn.Module) -> float: ...

    def sample_batches(self, *, count: int, seed: int) -> list[dict[str, Tensor]]: ...

    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class Preparation:
    """What `SearchSpace.prepare` made once per job: options every worker's copy of the space gets
    (paths to cached artifacts) and the baseline the job is compared with (arch and metric)."""

    options: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None


class SpaceOptions(BaseModel):
    """Base of each space's options; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def data_paths(cls, raw: Mapping[str, Any]) -> list[DataPath]:
        """The fields of `raw` (options as sent, not yet validated) that name the server's disk."""
        return []

    def check_search_mode(self, mode: str) -> None:
        """Raise ValueError (naming the option and the fix) if these options do not fit a job's `search.mode`."""


class PreparedSpace(ABC):
    """A capability of a space built on a pretrained base: work done once per job before any candidate, the
    base's tokenizer, and a teacher to distil candidates from. A space without it has nothing to prepare, uses
    its task's own tokenizer and trains candidates from their labels alone."""

    @abstractmethod
    def prepare(self, runner: TaskRunner, *, cache_dir: Path, job_dir: Path, seed: int,
                report: Callable[[str], None] | None = None) -> Preparation:
        """Work done once per job before any candidate (fine-tune a teacher, score importance). Must be
        idempotent and cached: a resumed job calls it again. `report` takes a one-line account of what it is
        doing (the job's message while it prepares; called at most every few seconds)."""

    @abstractmethod
    def tokenizer_dir(self) -> Path | None:
        """A folder with the tokenizer the space's networks expect (the pretrained base's)."""

    @abstractmethod
    def teacher(self) -> nn.Module | None:
        """The network candidates are distilled from (None until the job's preparation made one)."""


class SupernetSpace(ABC):
    """A capability of a space whose archs can all share one weight-sharing supernet (one-shot search): an
    arch runs on the supernet's leading slices, and `inherit` copies them into a standalone model of the arch
    (the one `build` makes) that computes the same outputs.

    A supernet whose objective is not next-token prediction defines `sandwich_loss(batch, arch, *, spec)`
    (the pruned BERT's: distillation from its teacher). `one_shot_by_default`: whether a spec that leaves
    `search.mode` out gets one-shot (a space turns it on once a benchmark shows one-shot ahead);
    `supernet_largest_first`: the share of the supernet's steps that train the largest arch alone.
    """

    one_shot_by_default: ClassVar[bool] = True
    supernet_largest_first: ClassVar[float] = 0.3

    @abstractmethod
    def build_supernet(self, *, seed: int) -> nn.Module:
        """The supernet, initialised (seeded); its `forward(inputs, arch)` gives the arch's logits."""

    @abstractmethod
    def inherit(self, supernet: nn.Module, arch: Arch) -> nn.Module:
        """A standalone model of `arch` holding the supernet's slices for it (no masks, no unused experts)."""

    @abstractmethod
    def sandwich_archs(self) -> tuple[Arch, Arch]:
        """The largest and the smallest arch (the sandwich rule trains both at every step)."""

    def supernet_logits(self, supernet: nn.Module, inputs: dict[str, Tensor], arch: Arch) -> Tensor:
        """The arch's logits on the supernet for model inputs (`example_inputs`' keys)."""
        return supernet(inputs["input_ids"], arch)


class DecodeSpace(ABC):
    """A capability of a causal language-model space: its archs can be timed generating tokens with a
    key-value cache (a device profile with `workload: decode` measures per-token decode latency)."""

    @abstractmethod
    def build_decode_timer(self, arch: Arch, *, batch_size: int, prompt_len: int,
                           new_tokens: int) -> tuple[nn.Module, dict[str, Tensor]]:
        """A module whose forward generates `new_tokens` tokens with the cache after a prompt of `prompt_len`
        (prefilled once, outside the timed call) and leaves its cache as it found it."""

    @abstractmethod
    def build_decode_block(self, block: Block, *, batch_size: int, context_len: int,
                           seed: int = 0) -> tuple[nn.Module, dict[str, Tensor]]:
        """One block of `blocks(arch)` working on one new token; attention attends to `context_len` cached
        positions (the lookup table of a decode device)."""


def teacher_of(space: SearchSpace) -> nn.Module | None:
    return space.teacher() if isinstance(space, PreparedSpace) else None


class SearchSpace(ABC):
    """A family of networks that a strategy searches.

    `sample` draws an `Arch` through an Optuna trial (so the same seed gives the same archs);
    `validate` raises `InvalidArchError` naming what is wrong; `encode` gives fixed-length numeric
    features (for learned latency models); `blocks` lists per-block descriptions a lookup-table
    predictor sums; `build` gives a randomly initialised `torch.nn.Module` (seeded); `export` writes a
    Hugging Face folder that plain `transformers` loads with `trust_remote_code=True`.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    options_model: ClassVar[type[SpaceOptions]] = SpaceOptions
    task_kinds: ClassVar[frozenset[str]] = frozenset()
    auto_class: ClassVar[str] = "AutoModel"

    def __init__(self, options: Mapping[str, Any] | SpaceOptions | None = None) -> None:
        self.options = self.parse_options(options)

    @classmethod
    def parse_options(cls, options: Mapping[str, Any] | SpaceOptions | None) -> Any:
        if isinstance(options, cls.options_model):
            return options
        try:
            return cls.options_model.model_validate(dict(options or {}))
        except PydanticValidationError as exc:
            problems = [
                f"space_options.{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
                for err in exc.errors()
            ]
            raise SpecError("; ".join(problems), problems=problems) from None

    def check_arch_identity(self, arch: Arch) -> None:
        if arch.space != self.name or arch.version != self.version:
            raise InvalidArchError(
                f"arch belongs to {arch.space} v{arch.version}, not {self.name} v{self.version}; "
                "sample it from this space"
            )

    @classmethod
    def describe(cls, config: dict[str, Any]) -> str:
        """A one-line human summary of an arch's config (for tables)."""
        return json.dumps(config, sort_keys=True, separators=(",", ":"))

    @abstractmethod
    def sample(self, trial: TrialLike) -> Arch: ...

    @abstractmethod
    def validate(self, arch: Arch) -> None: ...

    @abstractmethod
    def feature_names(self) -> list[str]: ...

    @abstractmethod
    def encode(self, arch: Arch) -> list[float]: ...

    @abstractmethod
    def blocks(self, arch: Arch) -> list[Block]: ...

    def build_for_timing(self, arch: Arch) -> nn.Module:
        """A network of this arch's shapes for latency measurement only; weights need not be meaningful.

        The default is `build(arch, seed=0)`. Spaces whose `build` is slow (slicing a pretrained
        model) override it, as long as the timing is the same (dense networks: values do not matter;
        MoE networks: routing does, so they keep `build`).
        """
        return self.build(arch, seed=0)

    def block_family(self, block: Block) -> str:
        """A finer grouping than `block.kind` for blocks whose cost may scale differently on another backend
        (a few-shot transfer may weight each family on its own: `latency_models.transfer`); the kind itself
        unless a space knows better."""
        return block.kind

    @abstractmethod
    def block_catalogue(self) -> list[Block]:
        """Every distinct block any arch of this space can contain (what a lookup table times)."""

    @abstractmethod
    def build(self, arch: Arch, *, seed: int = 0) -> nn.Module: ...

    @abstractmethod
    def build_block(self, block: Block, *, batch_size: int, seq_len: int,
                    seed: int = 0) -> tuple[nn.Module, dict[str, Tensor]]:
        """One block of `blocks(arch)` as a module on its own, with inputs for one forward pass.

        A lookup-table latency predictor times these in isolation and sums them.
        """

    def latency_signature(self) -> dict[str, Any]:
        """The options that change how fast this space's networks run.

        A latency predictor fitted under one signature refuses archs of a space with another. The
        default is every option; spaces whose options include paths or training settings narrow it.
        """
        return self.options.model_dump(mode="json")

    def latency_key(self) -> str:
        """A short stable digest of name, version and `latency_signature()`."""
        text = json.dumps({"space": self.name, "version": self.version, "signature": self.latency_signature()},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @abstractmethod
    def example_inputs(self, arch: Arch, *, batch_size: int, seq_len: int) -> dict[str, Tensor]:
        """Inputs for one forward pass, used to measure latency and to compare exports."""

    @abstractmethod
    def export(self, model: nn.Module, arch: Arch, directory: Path, *, model_card: str) -> Path:
        """Write `model` as a Hugging Face folder with its modelling code and a README model card."""

    @abstractmethod
    def load_exported(self, directory: Path) -> nn.Module:
        """Load a folder written by `export` (through `transformers`, as a user would)."""

    def save_hf_folder(self, model: nn.Module, arch: Arch, directory: Path, *, model_card: str) -> Path:
        """Write a `transformers` model whose classes live in one modelling file, registered for
        `trust_remote_code` under `auto_class`, with the arch in its config and a README model card."""
        import shutil

        directory = Path(directory)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        type(model).config_class.register_for_auto_class()  # type: ignore[attr-defined]
        type(model).register_for_auto_class(self.auto_class)  # type: ignore[attr-defined]
        model.config.hwnas_arch = arch.to_dict()  # type: ignore[union-attr]
        model.save_pretrained(directory, safe_serialization=True)  # type: ignore[operator]
        (directory / "README.md").write_text(model_card, encoding="utf-8")
        return directory

    def load_hf_folder(self, directory: Path) -> nn.Module:
        import transformers

        return getattr(transformers, self.auto_class).from_pretrained(str(directory), trust_remote_code=True)


SPACES: Registry[SearchSpace] = Registry("search space", SearchSpace)


def random_archs(space: SearchSpace, *, count: int, seed: int, exclude: Iterable[str] = ()) -> list[Arch]:
    """`count` distinct archs drawn uniformly by Optuna's random sampler (same seed, same archs).

    Hashes in `exclude` are skipped, so held-out sets never overlap training sets.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    seen = set(exclude)
    result: list[Arch] = []
    for _ in range(count * 50):
        if len(result) == count:
            break
        trial = study.ask()
        arch = space.sample(trial)
        study.tell(trial, 0.0)
        if arch.hash not in seen:
            seen.add(arch.hash)
            result.append(arch)
    return result


def corner_archs(space: SearchSpace) -> list[Arch]:
    """The space's extremes where it names them (a supernet space's largest and smallest arch): the corners a
    latency model's training set must hold, since random samples rarely reach them."""
    if not isinstance(space, SupernetSpace):
        return []
    unique: dict[str, Arch] = {}
    for arch in space.sandwich_archs():
        unique.setdefault(arch.hash, arch)
    return list(unique.values())


def register_space(name: str) -> Any:
    """Class decorator: `@register_space("sparse-transformer")`."""
    return SPACES.register(name)


def get_space(name: str, options: Mapping[str, Any] | None = None) -> SearchSpace:
    """An instance of the registered space `name` with validated `options`."""
    return space_class(name)(options)


def space_class(name: str) -> type[SearchSpace]:
    import search_spaces.builtin  # noqa: F401  (registers the built-in spaces)

    return SPACES.get(name)


def space_names() -> list[str]:
    import search_spaces.builtin  # noqa: F401

    return SPACES.names()
