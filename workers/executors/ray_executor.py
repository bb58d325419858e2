"""`RayExecutor`: evaluates candidates as Ray tasks on a local or remote Ray cluster."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from search_spaces.errors import ExecutionError
from workers.evaluate import evaluate_candidate, worker_name
from workers.executors.base import Executor, ExecutorOptions, register_executor
from workers.types import CandidateTask, EvalResult

logger = logging.getLogger(__name__)

SLOTS_REFRESH_S = 5.0
_init_lock = threading.Lock()  # a controller's job threads may start their executors at once


def import_ray() -> Any:
    """Import Ray so that a local cluster listens on 127.0.0.1 only (read by Ray at import)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    return ray


def ensure_ray(*, address: str | None, num_cpus: int | None = None,
               resources: dict[str, float] | None = None) -> None:
    """Connect to the cluster at `address`, or start a local Ray bound to loopback.

    `resources` are custom resources of the local node (a device profile's name, when this machine has it).
    """
    ray = import_ray()
    with _init_lock:
        if not ray.is_initialized():
            _init(ray, address=address, num_cpus=num_cpus, resources=resources)


def _init(ray: Any, *, address: str | None, num_cpus: int | None, resources: dict[str, float] | None) -> None:
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            # "local": a new Ray here, even when `ray start` left its address in /tmp/ray (ray.init(None) joins it)
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, resources=resources,
                     include_dashboard=False,
                     _node_ip_address="127.0.0.1", logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001  (Ray raises many types; the user needs one message)
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise ExecutionError(f"cannot start or reach {where}: {exc}; check HWNAS_RAY_ADDRESS") from exc


@register_executor("ray")
class RayExecutor(Executor):
    """One Ray task per candidate, each asking for `cpus_per_trial` CPUs.

    Without a fixed `slots`, the cluster's CPUs decide how many candidates run at once, re-read every few
    seconds: a worker node that joins adds slots, one that dies takes its slots away. Ray retries
    nothing itself (`max_retries=0`): a task whose worker or node died comes back as a lost result, and
    the controller, which counts attempts in the database, decides whether it runs again.
    """

    def __init__(self, *, address: str | None = None, slots: int | None = None, cpus_per_trial: float = 1.0,
                 local_cpus: int | None = None) -> None:
        ray = import_ray()
        ensure_ray(address=address, num_cpus=local_cpus)
        self._fixed_slots = slots
        self._cpus_per_trial = cpus_per_trial
        self._reserve = 0 if address else 1  # a local Ray leaves a CPU to the controller and the device tasks
        self._slots_at = (-SLOTS_REFRESH_S, 1)
        self._remote = ray.remote(num_cpus=cpus_per_trial, max_retries=0)(evaluate_candidate)
        self._pending: dict[Any, CandidateTask] = {}

    @classmethod
    def from_options(cls, options: ExecutorOptions) -> RayExecutor:
        return cls(address=options.address, slots=options.slots, cpus_per_trial=options.cpus_per_trial)

    @property
    def slots(self) -> int:
        if self._fixed_slots:
            return self._fixed_slots
        read_at, slots = self._slots_at
        if time.monotonic() - read_at >= SLOTS_REFRESH_S:
            cpus = import_ray().cluster_resources().get("CPU", 0)
            slots = max(1, int(cpus // self._cpus_per_trial) - self._reserve)
            self._slots_at = (time.monotonic(), slots)
        return slots

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def trial_numbers(self) -> set[int]:
        return {c.trial_number for c in self._pending.values()}

    def submit(self, candidate: CandidateTask) -> None:
        ref = self._remote.remote(candidate)
        self._pending[ref] = candidate

    def wait(self, *, timeout_s: float | None = None) -> list[EvalResult]:
        ray = import_ray()

        if not self._pending:
            return []
        done, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout_s)
        results = []
        for ref in done:
            candidate = self._pending.pop(ref)
            try:
                results.append(ray.get(ref))
            except Exception as exc:  # noqa: BLE001  (evaluate_candidate returns its own failures: this is a lost worker)
                logger.warning("job %s trial %s: worker lost: %s", candidate.job_id, candidate.trial_number,
                               str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                results.append(EvalResult(job_id=candidate.job_id, trial_number=candidate.trial_number,
                                          state="failed", worker=worker_name(), lost=True,
                                          error=f"worker lost: {type(exc).__name__}: {exc}"[:4000]))
        return results

    def cancel_all(self) -> list[int]:
        ray = import_ray()

        numbers = []
        for ref, candidate in list(self._pending.items()):
            ray.cancel(ref, force=True)
            numbers.append(candidate.trial_number)
        self._pending.clear()
        return numbers
