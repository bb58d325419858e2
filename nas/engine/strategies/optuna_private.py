"""The parts of Optuna that are not public API and that hwnas uses, in one place.

- `rdb_models()`: Optuna's ORM models of its RDB storage (`optuna.storages._rdb.models`). hwnas writes a
  batch of asked trials, and a tell, each in one transaction with them (`optuna_record`), instead of one
  commit per suggested parameter; the rows are the ones `RDBStorage` writes (a test compares them).
- `frozen_trial_id(trial)`: a stored trial's id, read from the `FrozenTrial`s loaded when the working copy
  is rebuilt (the public lookup by number costs a query per trial).
- `working_storage(study)` and `study_id(study)`: the storage and id of an in-memory study. The working copy
  that samples is an in-memory study; trials are looked up there by number (`BaseStorage`'s public methods
  need the study's id, which `Study` does not expose).

`tests/nas/engine/test_strategies.py` fails if an Optuna release moves any of them.
"""

from __future__ import annotations

from typing import Any


def rdb_models() -> Any:
    from optuna.storages._rdb import models

    return models


def working_storage(study: Any) -> Any:
    """The storage of an in-memory `optuna.Study`."""
    return study._storage


def study_id(study: Any) -> int:
    """The id of `study` in its storage."""
    return int(study._study_id)


def frozen_trial_id(trial: Any) -> int:
    """The storage id of a `FrozenTrial` read from a storage."""
    return int(trial._trial_id)
