"""Phase `supernet` (one-shot jobs): train the space's weight-sharing supernet once, or find it cached.

It trains where candidates run (`workers.supernet_runner`): one Ray task when the service uses Ray (a dead
worker is replaced, resuming from the checkpoint), else in the controller's process.

The supernet of a (space options, data by content, task settings, steps, seed) lives in its own folder under
the artifacts' cache (`workers.supernet_training`), so a second job on the same data, with another latency
target or device, starts searching at once. While training it reports its step and loss as the job's message
(the API, SSE and the page show it), saves a checkpoint every `HWNAS_SUPERNET_CHECKPOINT_S`, and stops at a
cancel or a lost lease with a checkpoint saved: the next run of the job resumes there, not from zero.
"""

from __future__ import annotations

import logging
import time

from latency_models.meter import pinned_threads
from nas.engine.phases.base import JobRun, Phase
from nas.engine.worker_tasks import supernet_task
from search_spaces.errors import ConflictError
from workers.supernet_runner import SupernetRunner

logger = logging.getLogger(__name__)
REPORT_EVERY_S = 2.0  # progress written to the job (and a cancel looked for) at most this often


class TrainSupernet(Phase):
    name = "supernet"

    def applies(self, run: JobRun) -> bool:
        return not run.cancelled and run.job.spec.search.mode == "one-shot"

    def run(self, run: JobRun) -> None:
        job, settings, storage = run.job, run.settings, run.storage
        steps = job.spec.search.supernet_steps
        task = supernet_task(job, settings)
        last_report = [0.0]
        stop = [False]

        def progress(step: int, total: int, loss: float) -> None:
            now = time.monotonic()
            if now - last_report[0] >= REPORT_EVERY_S or step == total:
                last_report[0] = now
                storage.record_progress(job.job_id, f"supernet: step {step} of {total}, loss {loss:.3f}")
                stop[0] = storage.cancel_requested(job.job_id)

        def should_stop() -> bool:
            return stop[0] or run.lease_lost.is_set()

        runner = SupernetRunner(use_ray=settings.executor == "ray", ray_address=settings.ray_address)
        try:
            with pinned_threads(settings.training_threads):
                outcome = runner.run(task, progress=progress, should_stop=should_stop)
        except InterruptedError:
            if run.lease_lost.is_set():
                raise ConflictError(f"job {job.job_id}: lease lost during the supernet's training; stopping") from None
            run.cancelled = True
            return
        run.supernet_path = outcome.path
        how = ("found in the cache" if outcome.cached else
               f"trained in {outcome.train_s:.0f} s" + (f" (resumed at step {outcome.resumed_from_step})"
                                                         if outcome.resumed_from_step else ""))
        logger.info("job %s: supernet %s %s", job.job_id, outcome.key, how)
        storage.record_progress(job.job_id, f"supernet {outcome.key}: {steps} steps, {how}; searching")
