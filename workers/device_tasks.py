"""Work that must run on the device itself: profiling a space, and measuring archs.

A node that has a device carries a Ray custom resource named after its profile; these tasks ask for
one unit of it, so Ray places them on that node. With no such node they run in this process, but
only when the profile describes this machine (a torch-cpu profile with no more threads than it has,
or cuda where CUDA is available); anything else fails with a message that says how to fix it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from typing import Any, Literal

from latency_models.device import DeviceProfile
from latency_models.measure import measure_archs
from latency_models.meter import LatencySample, MeterSettings, make_meter
from latency_models.profiler import ProfileOutcome, ProfilePlan, ProgressHook, profile
from search_spaces.arch import Arch
from search_spaces.base import get_space
from search_spaces.errors import LatencyError
from workers.artifact_store import pull_referenced

logger = logging.getLogger(__name__)
DEVICE_CHECK_S = 5.0  # how often a device task's wait checks that a node with the device is still there


def profile_task(device: dict[str, Any], space: str, space_options: dict[str, Any],
                 plan: dict[str, Any], source: tuple[bytes, dict[str, Any]] | None = None,
                 artifacts: dict[str, Any] | None = None) -> ProfileOutcome:
    """Profile `space` on this node's device (the body of the Ray task, or the local call); `source`: another
    device's predictor (payload, device) to transfer from; `artifacts`: where the files the space's options
    name (a prepared teacher) are found when this node does not share the artifacts folder."""
    pull_referenced(artifacts, space_options)
    space_obj = get_space(space, space_options)
    return profile(space_obj, DeviceProfile.model_validate(device), ProfilePlan.model_validate(plan),
                   source=_source_model(space_obj, source))


def _source_model(space: Any, source: tuple[bytes, dict[str, Any]] | None) -> Any:
    if source is None:
        return None
    from latency_models.base import LatencyModel

    payload, device = source
    return LatencyModel.load(payload, space=space, device=DeviceProfile.model_validate(device))


def measure_task(device: dict[str, Any], space: str, space_options: dict[str, Any], archs: list[dict[str, Any]],
                 meter: dict[str, Any], artifacts: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Measure archs interleaved on this node's device; samples as plain dicts."""
    pull_referenced(artifacts, space_options)
    space_obj = get_space(space, space_options)
    profile_obj = DeviceProfile.model_validate(device)
    samples = measure_archs(space_obj, [Arch.from_dict(a) for a in archs],
                            make_meter(profile_obj, MeterSettings.model_validate(meter)))
    where = f"{socket.gethostname()}:{os.getpid()}"
    return [{**s.to_dict(), "protocol": {**s.protocol, "measured_by": where}} for s in samples]


class DeviceRunner:
    """Runs device tasks where the device is: a Ray node with its resource, else here if this is it."""

    def __init__(self, *, use_ray: bool, ray_address: str | None = None,
                 artifacts: dict[str, Any] | None = None) -> None:
        self.use_ray = use_ray
        self.ray_address = ray_address
        self.artifacts = artifacts  # `ArtifactLocation.to_dict()`, passed on to tasks on other nodes

    def placement(self, device: DeviceProfile) -> Literal["ray", "local"]:
        if self.use_ray:
            from workers.executors.ray_executor import ensure_ray, import_ray

            ray = import_ray()
            if not ray.is_initialized() and self.ray_address:
                ensure_ray(address=self.ray_address)
            if ray.is_initialized() and ray.cluster_resources().get(device.ray_resource, 0) > 0:
                return "ray"
        if device.describes_this_machine():
            return "local"
        raise LatencyError(
            f"device profile {device.name!r} ({device.backend}, {device.threads} threads) is not this machine, and "
            f"no Ray node advertises the resource {device.ray_resource!r}; start a Ray worker on the device with "
            f"`ray start --address HEAD --resources '{{\"{device.ray_resource}\": 1}}'` and set HWNAS_RAY_ADDRESS, "
            "or pick a profile of this machine (see `hwnas devices list`)"
        )

    def _remote(self, device: DeviceProfile, function: Any) -> Any:
        from workers.executors.ray_executor import import_ray

        ray = import_ray()
        options: dict[str, Any] = {"resources": {device.ray_resource: 1}, "max_retries": 1}
        if device.backend == "cuda":
            options["num_gpus"] = 1
        else:
            options["num_cpus"] = device.threads
        return ray.remote(function).options(**options)

    def profile(self, device: DeviceProfile, space: str, space_options: dict[str, Any], plan: ProfilePlan, *,
                on_progress: ProgressHook | None = None,
                source: tuple[bytes, dict[str, Any]] | None = None) -> ProfileOutcome:
        args = (device.model_dump(), space, dict(space_options), plan.model_dump(mode="json"), source, self.artifacts)
        if self.placement(device) == "ray":
            logger.info("profiling %s on the Ray node with resource %r", space, device.ray_resource)
            outcome = self._get(self._remote(device, profile_task).remote(*args), device)
            if outcome is not None:
                return outcome
        space_obj = get_space(space, space_options)
        return profile(space_obj, device, plan, on_progress=on_progress, source=_source_model(space_obj, source))

    def measure(self, device: DeviceProfile, space: str, space_options: dict[str, Any], archs: Sequence[Arch],
                meter: MeterSettings) -> list[LatencySample]:
        if not archs:
            return []
        args = (device.model_dump(), space, dict(space_options), [a.to_dict() for a in archs],
                meter.model_dump(mode="json"), self.artifacts)
        raw = self._get(self._remote(device, measure_task).remote(*args), device) \
            if self.placement(device) == "ray" else None
        if raw is None:
            raw = measure_task(*args)
        return [LatencySample(**r) for r in raw]

    def _get(self, ref: Any, device: DeviceProfile) -> Any:
        """The task's result; None when every node with the device died meanwhile and this machine is one
        (the caller then runs it here). Ray would otherwise keep a task for a vanished resource pending
        forever."""
        from workers.executors.ray_executor import import_ray

        ray = import_ray()
        while True:
            done, _ = ray.wait([ref], timeout=DEVICE_CHECK_S)
            if done:
                return ray.get(ref)
            if ray.cluster_resources().get(device.ray_resource, 0) > 0:
                continue
            ray.cancel(ref, force=True)
            if device.describes_this_machine():
                logger.warning("no Ray node has device %r any more; measuring here", device.name)
                return None
            raise LatencyError(f"every Ray node with device {device.name!r} left the cluster while measuring on "
                               f"it; start one with `hwnas worker --address HEAD --device {device.name}`")
