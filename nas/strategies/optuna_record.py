"""Writing proposed trials to an Optuna RDB study in one transaction.

`RDBStorage.create_new_trial(template_trial=...)` stores a trial with its parameters, but checks each
parameter against the study's earlier distributions with two queries per parameter: about 30 queries
for one candidate of the sparse-transformer space, most of the controller's time per trial. Here a
batch of sampled trials goes in with a handful of statements, through Optuna's own ORM models (so the
rows are what Optuna writes: the same tables, columns and JSON encodings, and `optuna.load_study` and
`optuna-dashboard` read them back). The distribution check was already made by the in-memory study the
trials were sampled from, which holds the same trials as the record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session


def create_trials(storage: Any, study_id: int, trials: Sequence[Any]) -> list[tuple[int, int]]:
    """Store `trials` (running `FrozenTrial`s with params and system attrs) in `storage`'s study `study_id`;
    return `(number, trial_id)` each, numbered after the study's existing trials."""
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    with Session(storage.engine) as session, session.begin():
        # Lock the study row, as Optuna does, so that numbers are counted under the lock.
        session.execute(select(models.StudyModel).where(models.StudyModel.study_id == study_id).with_for_update()
                        ).scalar_one()
        count = session.scalar(select(func.count(models.TrialModel.trial_id))
                               .where(models.TrialModel.study_id == study_id)) or 0
        rows = []
        for offset, trial in enumerate(trials):
            if trial.state != TrialState.RUNNING or trial.values is not None or trial.intermediate_values \
                    or trial.user_attrs:
                raise ValueError(f"trial {trial.number}: only running trials with params and system attrs "
                                 "can be created in a batch")
            row = models.TrialModel(study_id=study_id, number=count + offset, state=TrialState.RUNNING,
                                    datetime_start=trial.datetime_start)
            rows.append(row)
        session.add_all(rows)
        session.flush()  # assigns trial ids
        for row, trial in zip(rows, trials):
            session.add_all(models.TrialParamModel(
                trial_id=row.trial_id, param_name=name, param_value=trial.distributions[name].to_internal_repr(value),
                distribution_json=distribution_to_json(trial.distributions[name])) for name, value in trial.params.items())
            session.add_all(models.TrialSystemAttributeModel(trial_id=row.trial_id, key=key, value_json=json.dumps(value))
                            for key, value in trial.system_attrs.items())
        return [(int(row.number), int(row.trial_id)) for row in rows]
