"""The service's side of latency models: profile a (device, space), store the predictors, pick one.

A job uses the stored predictor for its device and its space's latency signature (profiling first,
on the device, when none exists); `auto` picks the lowest held-out MAPE among the newest of each kind.
"""

from __future__ import annotations

import logging
from typing import Any

from latency_models.base import LatencyModel
from latency_models.device import DeviceProfile
from latency_models.profiler import ProfileOutcome, ProfilePlan, ProgressHook
from nas.db.records import LatencyModelRecord
from nas.db.storage import Storage
from search_spaces.base import SearchSpace
from search_spaces.errors import LatencyError
from workers.device_tasks import DeviceRunner

logger = logging.getLogger(__name__)


def store_profile(storage: Storage, outcome: ProfileOutcome) -> list[int]:
    """Store a profiling run's samples and predictors (with their reports); return the predictors' ids."""
    device = outcome.device["name"]
    storage.add_profile_samples(device=device, space=outcome.space, space_version=outcome.space_version,
                                samples=outcome.samples)
    return [storage.add_latency_model(device=device, space=outcome.space, space_version=outcome.space_version,
                                      space_key=outcome.space_key, space_signature=outcome.space_signature,
                                      kind=p["kind"], payload=p["payload"],
                                      report={**p["report"], "timings_s": outcome.timings_s})
            for p in outcome.predictors]


def profile_and_store(storage: Storage, runner: DeviceRunner, *, device: DeviceProfile, space: SearchSpace,
                      plan: ProfilePlan, on_progress: ProgressHook | None = None,
                      transfer_from: DeviceProfile | None = None) -> tuple[ProfileOutcome, list[int]]:
    """Profile on the device and store what it fitted. With `transfer_from`, fit only a `transfer` model from
    that device's best stored predictor for the space (at most `MAX_TRANSFER_SAMPLES` samples here)."""
    source = None
    if transfer_from is not None:
        from latency_models.transfer import MAX_TRANSFER_SAMPLES

        if plan.samples > MAX_TRANSFER_SAMPLES:
            raise LatencyError(f"samples: a transfer fits on at most {MAX_TRANSFER_SAMPLES} end-to-end samples, got "
                               f"{plan.samples}; lower --samples, or profile without --transfer-from")
        rows = [r for r in candidate_rows(storage, device=transfer_from, space=space, kind="auto")
                if r.kind != "transfer"]
        if not rows:
            raise LatencyError(f"transfer-from: no stored latency model for {space.name} on {transfer_from.name!r} "
                               f"with these space options; profile that device first")
        source = (rows[0].payload or b"", transfer_from.model_dump())
        plan = plan.model_copy(update={"kinds": ("transfer",), "corner_timings": 1})  # no timing past the samples
        logger.info("transferring %s model %s of %r to %r", rows[0].kind, rows[0].id, transfer_from.name, device.name)
    outcome = runner.profile(device, space.name, space.options.model_dump(mode="json"), plan, on_progress=on_progress,
                             source=source)
    return outcome, store_profile(storage, outcome)


def candidate_rows(storage: Storage, *, device: DeviceProfile, space: SearchSpace,
                   kind: str) -> list[LatencyModelRecord]:
    """The newest stored predictor of each kind for this device and space signature (`kind` may be 'auto')."""
    newest: dict[str, LatencyModelRecord] = {}
    for row in storage.latency_models(device=device.name, space=space.name, space_key=space.latency_key()):
        if row.space_version == space.version and row.kind not in newest and kind in ("auto", row.kind):
            newest[row.kind] = row
    return sorted(newest.values(), key=lambda r: float((r.report or {}).get("mape", float("inf"))))


def job_latency_model(storage: Storage, runner: DeviceRunner, *, device: DeviceProfile, space: SearchSpace,
                      kind: str, plan: ProfilePlan, reanchor: bool = True) -> tuple[LatencyModel, dict[str, Any]]:
    """Load the predictor a job uses, profiling the device first when none is stored, re-anchored to the
    device's speed now (`reanchor_model`; not after profiling it just now). Returns it and its row info."""
    rows = candidate_rows(storage, device=device, space=space, kind=kind)
    if not rows:
        reanchor = False  # fitted on measurements of this minute
        logger.info("no %s latency model for %s on %r: profiling (%d samples, %d held out)", kind, space.name,
                    device.name, plan.samples, plan.holdout)
        profile_and_store(storage, runner, device=device, space=space, plan=plan)
        rows = candidate_rows(storage, device=device, space=space, kind=kind)
    if not rows:
        raise LatencyError(f"no latency model of kind {kind!r} for {space.name} on {device.name!r} after profiling")
    row = rows[0]
    model = LatencyModel.load(row.payload or b"", space=space, device=device)
    info: dict[str, Any] = {"id": row.id, "kind": row.kind, "report": row.report, "drift_factor": 1.0}
    if reanchor and model.reference:
        info["drift_factor"] = reanchor_model(model, runner, device=device, space=space, plan=plan)
    return model, info


def reanchor_model(model: LatencyModel, runner: DeviceRunner, *, device: DeviceProfile, space: SearchSpace,
                   plan: ProfilePlan) -> float:
    """Time the predictor's anchors (its drift reference and the space's corners, with their profiled times)
    on the device now, interleaved, and scale its predictions by the median of (now / then): a machine that
    has drifted since profiling, or a sister device of another speed, is predicted in its own time without a
    new profile. Returns the factor (1.0, unchanged, if the anchors cannot be timed)."""
    import statistics

    from search_spaces.arch import Arch

    assert model.reference is not None
    anchors = [{"arch": model.reference["arch"], "ms": model.reference["ms"]}, *model.reference.get("anchors", [])]
    try:
        archs = [Arch.from_dict(a["arch"]) for a in anchors]
        samples = runner.measure(device, space.name, space.options.model_dump(mode="json"), archs,
                                 plan.meter.model_copy(update={"seed": plan.meter.seed + 11}))
    except Exception as exc:  # noqa: BLE001  (an old or foreign reference: predict as profiled)
        logger.warning("latency model for %s on %r: anchors not timed (%s); predictions not re-anchored",
                       space.name, device.name, exc)
        return 1.0
    ratios = [sample.median_ms / float(anchor["ms"]) for sample, anchor in zip(samples, anchors)]
    factor = statistics.median(ratios)
    model.drift_factor = factor
    logger.info("latency model for %s on %r re-anchored x %.3f (now / profiled, per anchor: %s)", space.name,
                device.name, factor, ", ".join(f"{r:.3f}" for r in ratios))
    return factor
