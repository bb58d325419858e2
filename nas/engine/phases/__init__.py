"""The phases of a job, in the order the controller runs them.

Adding a phase (a supernet to train before the search, the winners to train after it) means adding its
module and one line here.
"""

from __future__ import annotations

from nas.engine.phases.base import JobRun, LatencyModelFactory, Phase
from nas.engine.phases.baseline import MeasureBaseline
from nas.engine.phases.export import ExportBest
from nas.engine.phases.final_training import TrainFinalists
from nas.engine.phases.finish import RemeasureFront
from nas.engine.phases.latency_model import ChooseLatencyModel
from nas.engine.phases.prepare import Prepare
from nas.engine.phases.search import Search
from nas.engine.phases.supernet import TrainSupernet

JOB_PHASES: tuple[Phase, ...] = (
    Prepare(),             # the space's preparation (teacher, importance); the job's data described
    ChooseLatencyModel(),  # the device's predictor for the space, profiled first when none is stored
    MeasureBaseline(),     # the prepared baseline measured on the device (spaces that have one)
    TrainSupernet(),       # one-shot: the space's weight-sharing supernet, trained once or found cached
    Search(),              # ask, predict, dispatch, record, until the budget is spent or the job cancelled
    RemeasureFront(),      # every front member measured on the device
    TrainFinalists(),      # one-shot: the best front members under the target trained on
    ExportBest(),          # the best member under the target exported as a checkpoint
)

__all__ = ["JOB_PHASES", "JobRun", "LatencyModelFactory", "Phase"]
