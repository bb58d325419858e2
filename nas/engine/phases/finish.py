"""Phase `finish`: re-measure every member of the Pareto front on the job's device (interleaved).

Re-measured latencies can move other trials onto the front; those are re-measured in turn, so every member
of the final front carries a fresh measurement. Resumed: trials measured before keep their measurement.
"""

from __future__ import annotations

from nas.engine.phases.base import JobRun, Phase


class RemeasureFront(Phase):
    name = "finish"

    def run(self, run: JobRun) -> None:
        assert run.search is not None, "the search phase runs before the front is re-measured"
        job_id = run.job.job_id
        trials = {t.id: t for t in run.storage.trials(job_id, states=("complete",))}
        front = run.recorder.update_front(run.search)
        while True:
            todo = [trials[p.key] for p in front if trials[p.key].measured_latency_ms is None]
            if not todo:
                break
            trials.update((t.id, t) for t in run.measure_trials(todo, purpose="front-remeasure"))
            front = run.recorder.update_front(run.search)
        run.front = front
