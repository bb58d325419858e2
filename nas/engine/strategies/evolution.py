"""An evolutionary strategy in the HAT way: a population, the best feasible candidates as parents, children
by crossover and mutation of their parameters.

It is an Optuna sampler (`EvolutionSampler`) under the same `OptunaStrategy` as the others, so the study,
resumption and the database record are shared. The first `population` trials are random; after that each
new trial takes one parent (mutation) or two (crossover, then mutation) from the `parents` best completed
trials: feasible ones (latency constraint <= 0) by the task's metric, then the least infeasible, one per
arch (repeats of the best arch would crowd out the rest; the search loop also asks again when a proposal
repeats an arch the job has, so a population does not collapse onto one arch). Each
parameter comes from a parent when the parent has it and it is still valid (spaces sample conditionally: a
layer's expert count exists only for an MoE layer), else it is drawn at random; a mutation redraws it with
probability `mutation_prob`. Candidates the latency model predicts over the target are never evaluated (HAT's
predictor-guided filter, in the search loop): a one-shot search tells them to the sampler as infeasible and
asks again, a standalone one records them as infeasible trials; with inherited weights (one-shot) a candidate
costs seconds, so a job can afford thousands.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from nas.engine.strategies.base import register_strategy
from nas.engine.strategies.optuna_strategies import OptunaStrategy


def _sampler_class() -> type:
    import optuna
    from optuna.samplers import BaseSampler, RandomSampler
    from optuna.trial import TrialState

    class EvolutionSampler(BaseSampler):
        def __init__(self, *, population: int, parents: int, mutation_prob: float, crossover_share: float,
                     seed: int) -> None:
            self.population, self.parents = population, parents
            self.mutation_prob, self.crossover_share = mutation_prob, crossover_share
            self._rng = random.Random(seed)
            self._random = RandomSampler(seed=seed)
            self._plans: dict[int, tuple[list[dict[str, Any]], bool]] = {}  # trial id -> (parents' params, mutate)

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return {}

        def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            return {}

        def _ranked(self, study: Any) -> list[Any]:
            done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0

            def violation(t: Any) -> float:
                return max((v for k, v in t.system_attrs.items() if k.startswith("constraints")), default=0.0)

            ranked, seen = [], set()
            for t in sorted(done, key=lambda t: (max(violation(t), 0.0), sign * t.values[0], t.number)):
                key = tuple(sorted((name, repr(value)) for name, value in t.params.items()))
                if key not in seen:  # one parent per arch: repeats of the best would crowd out the rest
                    seen.add(key)
                    ranked.append(t)
            return ranked

        def before_trial(self, study: Any, trial: Any) -> None:
            ranked = self._ranked(study)
            if trial.number < self.population or len(ranked) < 2:
                self._plans[trial._trial_id] = ([], False)
                return
            pool = ranked[:max(2, self.parents)]
            if self._rng.random() < self.crossover_share:
                first, second = self._rng.sample(pool, 2)
                self._plans[trial._trial_id] = ([first.params, second.params], True)
            else:
                self._plans[trial._trial_id] = ([self._rng.choice(pool).params], True)

        def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
            parents, mutate = self._plans.get(trial._trial_id, ([], False))
            candidates = [p[param_name] for p in parents if param_name in p]
            if candidates:
                value = self._rng.choice(candidates)
                try:
                    valid = param_distribution._contains(param_distribution.to_internal_repr(value))
                except (ValueError, TypeError):
                    valid = False
                if valid and not (mutate and self._rng.random() < self.mutation_prob):
                    return value
            return self._random.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Sequence[float] | None) -> None:
            self._plans.pop(trial._trial_id, None)

    return EvolutionSampler


@register_strategy("evolution")
class EvolutionStrategy(OptunaStrategy):
    """HAT-style evolution: random first population, then crossover and mutation of the best feasible."""

    def make_sampler(self) -> Any:
        budget = self.config.trials_budget
        population = max(4, min(100, budget // 10))
        return _sampler_class()(population=population, parents=max(2, population // 4), mutation_prob=0.3,
                                crossover_share=0.5, seed=self.config.seed)
