"""The job spec: what a user submits (YAML or JSON), validated once at the edge.

Every problem is reported with its field, the rule, the value received and the fix, all at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationInfo, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from search_spaces.errors import SpecError


def _one_of(what: str, value: str, names: list[str]) -> str:
    if value not in names:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(names)}")
    return value


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trials: int = Field(ge=1, le=100_000, description="candidates proposed, infeasible and failed ones included")
    train_steps: int = Field(default=50, ge=1, le=10_000_000, description="optimizer steps per candidate")
    max_minutes: float = Field(default=60.0, gt=0, le=60 * 24 * 30, description="wall-time cap of the search")
    parallel_trials: int | None = Field(default=None, ge=1, le=10_000,
                                        description="most trials of this job in flight at once; default: its "
                                                    "fair share of the cluster")
    min_train_steps: int | None = Field(default=None, ge=1, le=10_000_000,
                                        description="early stopping: the first rung's training steps (successive "
                                                    "halving up to train_steps); unset: every trial trains fully")
    reduction_factor: int = Field(default=3, ge=2, le=100,
                                  description="early stopping: 1 in reduction_factor trials goes on at each rung")

    @model_validator(mode="after")
    def _rungs_fit(self) -> Budget:
        if self.min_train_steps is not None and self.min_train_steps >= self.train_steps:
            raise ValueError(f"budget.min_train_steps must be below budget.train_steps ({self.train_steps}), got "
                             f"{self.min_train_steps}; lower it, or leave it out to train every trial fully")
        return self


class SearchMode(BaseModel):
    """How candidates get their weights: trained each from scratch (`standalone`), or inherited from one
    weight-sharing supernet trained once per space and data (`one-shot`: supernet, search on inherited
    weights, then the winners trained on)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["standalone", "one-shot"] | None = Field(
        default=None, description="standalone: every candidate trains budget.train_steps from scratch; one-shot: "
                                  "candidates inherit a supernet's weights (spaces with one). Left out: one-shot "
                                  "where the space has a supernet and budget.min_train_steps is not set, else "
                                  "standalone; the stored spec records the mode chosen")
    supernet_steps: int = Field(default=1000, ge=1, le=10_000_000,
                                description="one-shot: sandwich steps of the supernet's training (cached per space "
                                            "options, data, steps and seed)")
    final_candidates: int = Field(default=3, ge=1, le=1000,
                                  description="one-shot: the best front members under the target trained on")
    final_train_steps: int | None = Field(default=None, ge=1, le=10_000_000,
                                          description="one-shot: training steps of each final candidate (default: "
                                                      "budget.train_steps)")
    final_from: Literal["inherited", "scratch"] = Field(
        default="inherited", description="one-shot: final training starts from the inherited weights or from scratch")
    final_eval_every_steps: int = Field(
        default=0, ge=0, le=10_000_000,
        description="one-shot: score each finalist on the validation data before its final training and every "
                    "this many steps of it, and keep the best weights (a small model on a small data set can "
                    "over-train); 0: keep the weights of the last step")
    screen_candidates: int = Field(
        default=0, ge=0, le=1000,
        description="one-shot: before final training, this many of the best candidates under the target by "
                    "inherited metric (front members or not) train search.screen_steps each, and the best "
                    "final_candidates of them by that metric are trained on (inherited scores rank candidates only "
                    "loosely); 0: no screening, the finalists are the best front members by inherited metric")
    screen_steps: int = Field(default=100, ge=1, le=10_000_000,
                              description="one-shot: training steps of each screened candidate "
                                          "(search.screen_candidates)")
    supernet_distill: bool = Field(default=False,
                                   description="one-shot: the smaller archs of each sandwich step also learn from the "
                                               "largest arch's predictions (in-place distillation; off by default: "
                                               "measured worse at short budgets)")


class JobSpec(BaseModel):
    """A search job: the space to search, the task, the device and its latency target, the budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, max_length=200)
    space: str
    space_options: dict[str, Any] = Field(default_factory=dict)
    task: SerializeAsAny[Any]
    device: str = Field(default="cpu-1t", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                        description="a device profile in the database (`hwnas devices list`)")
    latency_model: Literal["auto", "lookup-table", "learned"] = Field(
        default="auto", description="which stored predictor to use; auto: the lowest held-out MAPE")
    latency_target_ms: float = Field(gt=0, le=3_600_000)
    strategy: str = Field(default="nsga2", description="the search strategy; left out: evolution for a one-shot "
                                                         "search, nsga2 for a standalone one")
    budget: Budget
    search: SearchMode = Field(default_factory=SearchMode)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, data: Any) -> Any:
        """Fill in `search.mode` when it is left out (see `SearchMode.mode`), and `strategy` (evolution for a
        one-shot search, nsga2 for a standalone one), so that a stored spec keeps what it ran with even if
        these defaults change."""
        if not isinstance(data, dict):
            return data
        if "search" not in data:
            search: Any = {}
        elif isinstance(data["search"], SearchMode):
            search = data["search"].model_dump(exclude_none=True)
        else:
            search = data["search"]
        if not isinstance(search, dict):  # `search: null` and other wrong types: the field's own check says so
            return data
        mode = search.get("mode")
        if mode is None:
            mode = default_search_mode(data.get("space"), data.get("budget"))
            data = {**data, "search": {**search, "mode": mode}}
        if "strategy" not in data:  # measured best on inherited weights (bench/one_shot.py --part strategies)
            data = {**data, "strategy": "evolution" if mode == "one-shot" else "nsga2"}
        return data

    @field_validator("space")
    @classmethod
    def _known_space(cls, value: str) -> str:
        from search_spaces.base import space_names

        return _one_of("space", value, space_names())

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        from nas.engine.strategies.base import strategy_names

        return _one_of("strategy", value, strategy_names())

    @field_validator("task", mode="before")
    @classmethod
    def _typed_task(cls, value: Any, info: ValidationInfo) -> Any:
        from workers.tasks.base import TaskSpec, task_classes

        if isinstance(value, TaskSpec):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping with a 'kind', got {value!r}")
        classes = task_classes()
        kind = value.get("kind")
        if not isinstance(kind, str) or kind not in classes:
            raise ValueError(f"task.kind must be one of: {', '.join(classes)}; got {kind!r}")
        try:
            if info.mode == "json":  # the edge (parse_spec): as strict as the JSON it came in
                return classes[kind].spec_model.model_validate_json(json.dumps(value), strict=True)
            return classes[kind].spec_model.model_validate(value)
        except PydanticValidationError as exc:
            raise ValueError("; ".join(p.removeprefix("spec: ") for p in format_errors(exc))) from None

    @model_validator(mode="after")
    def _space_fits(self) -> JobSpec:
        from search_spaces.base import SPACES

        space_cls = SPACES.get(self.space)
        if space_cls.task_kinds and self.task.kind not in space_cls.task_kinds:
            raise ValueError(f"space {self.space!r} takes tasks of kind {sorted(space_cls.task_kinds)}, "
                             f"got task.kind={self.task.kind!r}")
        space_cls.parse_options(self.space_options).check_search_mode(self.search.mode)
        if self.search.mode == "one-shot":
            from search_spaces.base import SupernetSpace, space_names

            if not issubclass(space_cls, SupernetSpace):
                with_one = [n for n in space_names() if issubclass(SPACES.get(n), SupernetSpace)]
                raise ValueError(f"search.mode: one-shot needs a space with a weight-sharing supernet; space "
                                 f"{self.space!r} has none (spaces that do: {', '.join(with_one) or 'none'}); use "
                                 "search.mode: standalone")
            if self.budget.min_train_steps is not None:
                raise ValueError("budget.min_train_steps (early stopping) applies to standalone training; a one-shot "
                                 "search trains no candidate; leave it out, or use search.mode: standalone")
            self._screening_fits()
        elif self.search.screen_candidates:
            raise ValueError(f"search.screen_candidates ({self.search.screen_candidates}) picks a one-shot search's "
                             "finalists; a standalone search trains every candidate; leave it out, or use "
                             "search.mode: one-shot")
        elif self.search.final_eval_every_steps:
            raise ValueError(f"search.final_eval_every_steps ({self.search.final_eval_every_steps}) applies to a "
                             "one-shot search's final training; a standalone search has none; leave it out, or "
                             "use search.mode: one-shot")
        return self

    def _screening_fits(self) -> None:
        search = self.search
        if not search.screen_candidates:
            return
        if search.screen_candidates <= search.final_candidates:
            raise ValueError(f"search.screen_candidates ({search.screen_candidates}) must be above "
                             f"search.final_candidates ({search.final_candidates}) to choose among them; raise it, "
                             "or set it to 0 to train the best by inherited metric")
        final_steps = search.final_train_steps if search.final_train_steps is not None else self.budget.train_steps
        if search.screen_steps >= final_steps:
            raise ValueError(f"search.screen_steps ({search.screen_steps}) must be below the final training's "
                             f"{final_steps} steps (search.final_train_steps, else budget.train_steps); lower it")

    def to_json(self) -> str:
        return self.model_dump_json()


def default_search_mode(space: Any, budget: Any) -> Literal["standalone", "one-shot"]:
    """One-shot where the space has a weight-sharing supernet that is one-shot by default and early stopping
    (a standalone option) is not asked for; standalone otherwise (an unknown space is reported by its own check)."""
    from search_spaces.base import SPACES, SupernetSpace, space_names

    if not isinstance(space, str) or space not in space_names():
        return "standalone"
    early_stopping = (budget.min_train_steps if isinstance(budget, Budget)
                      else budget.get("min_train_steps") if isinstance(budget, dict) else None)
    space_cls = SPACES.get(space)
    if early_stopping is None and issubclass(space_cls, SupernetSpace) and space_cls.one_shot_by_default:
        return "one-shot"
    return "standalone"


def format_errors(exc: PydanticValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        location = ".".join(str(p) for p in err["loc"]) or "spec"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field; remove it or check its spelling"
        received = err.get("input")
        if isinstance(received, dict):
            problems.append(f"{location}: {message}")
        else:
            problems.append(f"{location}: {message} (got {json.dumps(received, default=str)[:120]})")
    return problems


def parse_spec(data: Any) -> JobSpec:
    """Validate a decoded spec; raise `SpecError` listing every problem."""
    if not isinstance(data, dict):
        raise SpecError(f"spec: must be a mapping of fields, got {type(data).__name__}")
    try:
        # Strict, as JSON: `false` is not a seed of 0 and "3" is not 3 (the types the schema documents).
        return JobSpec.model_validate_json(json.dumps(data, default=str), strict=True)
    except PydanticValidationError as exc:
        problems = format_errors(exc)
        raise SpecError("invalid job spec: " + "; ".join(problems), problems=problems) from None
    except SpecError as exc:
        raise SpecError("invalid job spec: " + "; ".join(exc.problems), problems=exc.problems) from None


def load_spec(path: Path | str) -> JobSpec:
    """Read a YAML or JSON spec. Relative data paths are taken relative to the spec file's folder."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"--spec: cannot read {str(path)!r}: {exc.strerror}; give an existing YAML or JSON file")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"--spec: {str(path)!r} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                        f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
    if isinstance(data, dict) and isinstance(data.get("task"), dict):
        task = dict(data["task"])
        for key in ("train", "validation"):
            value = task.get(key)
            if isinstance(value, str) and not value.startswith("builtin:") and not Path(value).is_absolute():
                task[key] = str((path.parent / value).resolve())
        data = {**data, "task": task}
    return parse_spec(data)


def job_spec_schema_model() -> type[BaseModel]:
    """JobSpec as the API documents it: `space` one of the registered spaces, `task` one of the registered
    tasks' spec models told apart by `kind`. Validation still goes through `parse_spec` (its messages)."""
    from typing import Annotated, Union

    from pydantic import create_model

    from nas.engine.strategies.base import strategy_names
    from search_spaces.base import space_names
    from workers.tasks.base import task_classes

    tasks = tuple(cls.spec_model for cls in task_classes().values())
    task_type = Annotated[Union[tasks], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007
    space_type = Literal[tuple(space_names())]  # type: ignore[valid-type]
    return create_model("JobSpec", __base__=JobSpec, __doc__=JobSpec.__doc__ or "A search job.",
                        space=(space_type, Field(description="the search space")),
                        strategy=(Literal[tuple(strategy_names())],  # type: ignore[valid-type]
                                  Field(default="nsga2", description="the search strategy; left out: evolution "
                                                                     "for a one-shot search, nsga2 otherwise")),
                        task=(task_type, Field(description="the task: its data, loss and metric")))
