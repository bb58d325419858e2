"""Writing an Optuna RDB study in one transaction per batch of proposals and one per tell.

Optuna's `RDBStorage` stores a trial with its parameters through `create_new_trial(template_trial=...)`,
which checks each parameter against the study's earlier distributions with two queries per parameter
(about 30 queries for one sparse-transformer candidate), and finishes a trial in two transactions
(`set_trial_system_attr` for the constraint, then `set_trial_state_values`). That was most of the
controller's time per trial. Here the same rows are written with a handful of statements, through
Optuna's own ORM models and encodings (the same tables, columns and JSON; `optuna.load_study` and
`optuna-dashboard` read them back, and `tests/nas/engine/test_strategies.py` checks the rows equal Optuna's).
The distribution check was already made by the in-memory study the trials were sampled from, which holds
the same trials as the database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from nas.engine.strategies.optuna_private import rdb_models


def create_trials(storage: Any, study_id: int, trials: Sequence[Any]) -> list[tuple[int, int]]:
    """Store `trials` (running `FrozenTrial`s with params and system attrs) in `storage`'s study `study_id`;
    return `(number, trial_id)` each, numbered after the study's existing trials."""
    from optuna.distributions import distribution_to_json
    models = rdb_models()
    from optuna.trial import TrialState

    for trial in trials:
        if trial.state != TrialState.RUNNING or trial.values is not None or trial.intermediate_values \
                or trial.user_attrs:
            raise ValueError(f"trial {trial.number}: only running trials with params and system attrs can be "
                             "created in a batch")
    with Session(storage.engine) as session, session.begin():
        # Lock the study row, as Optuna does, so that numbers are counted under the lock.
        session.execute(select(models.StudyModel.study_id).where(models.StudyModel.study_id == study_id)
                        .with_for_update()).scalar_one()
        count = session.scalar(select(func.count(models.TrialModel.trial_id))
                               .where(models.TrialModel.study_id == study_id)) or 0
        rows = [models.TrialModel(study_id=study_id, number=count + i, state=TrialState.RUNNING,
                                  datetime_start=trial.datetime_start) for i, trial in enumerate(trials)]
        session.add_all(rows)
        session.flush()  # assigns trial ids
        params = [{"trial_id": row.trial_id, "param_name": name,
                   "param_value": trial.distributions[name].to_internal_repr(value),
                   "distribution_json": distribution_to_json(trial.distributions[name])}
                  for row, trial in zip(rows, trials) for name, value in trial.params.items()]
        attrs = [{"trial_id": row.trial_id, "key": key, "value_json": json.dumps(value)}
                 for row, trial in zip(rows, trials) for key, value in trial.system_attrs.items()]
        if params:
            session.execute(insert(models.TrialParamModel), params)
        if attrs:
            session.execute(insert(models.TrialSystemAttributeModel), attrs)
        return [(int(row.number), int(row.trial_id)) for row in rows]


def finish_trial(storage: Any, trial_id: int, *, state: Any, values: Sequence[float] | None,
                 system_attrs: Mapping[str, Any], replace: Sequence[str] = ()) -> bool:
    """Finish a running trial: add `system_attrs` (replacing those named in `replace`, which it held already),
    set its `values` and `state`, in one transaction. False (nothing written) if it was not running."""
    models = rdb_models()
    from optuna.trial import TrialState

    trials = models.TrialModel.__table__
    with Session(storage.engine) as session, session.begin():
        finished = session.execute(
            update(trials).where(trials.c.trial_id == trial_id, trials.c.state == TrialState.RUNNING)
            .values(state=state, datetime_complete=datetime.now(timezone.utc).replace(tzinfo=None)))  # naive UTC
        if finished.rowcount != 1:
            session.rollback()
            return False
        if replace:
            session.execute(delete(models.TrialSystemAttributeModel).where(
                models.TrialSystemAttributeModel.trial_id == trial_id,
                models.TrialSystemAttributeModel.key.in_(list(replace))))
        if system_attrs:
            session.execute(insert(models.TrialSystemAttributeModel), [
                {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                for key, value in system_attrs.items()])
        if values is not None:
            stored = [models.TrialValueModel.value_to_stored_repr(value) for value in values]
            session.execute(insert(models.TrialValueModel), [
                {"trial_id": trial_id, "objective": objective, "value": value, "value_type": value_type}
                for objective, (value, value_type) in enumerate(stored)])
        return True
