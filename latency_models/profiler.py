"""Profiling a (device, space): time the blocks and sampled archs, fit both predictors, report accuracy.

Runs on the machine that has the device (a Ray node with the device's custom resource, or this one;
`workers.device_tasks` decides). Returns plain data (payload bytes, reports, samples) so that it
travels back from a Ray worker and into the database unchanged.

Steps, with their wall time kept apart:
1. every block of `space.block_catalogue()` timed alone (the lookup table);
2. `samples` archs timed end to end: the space's corners (largest and smallest, `corner_archs`; the
   unpruned network is the corner random samples rarely reach, and a learned model once predicted it 29% too
   fast), then random ones; the first `overhead_samples` of them fit the lookup table's overhead, all of
   them train the learned model; each corner is timed in `corner_timings` chunks and its middle timing kept
   (one chunk's timing of the unpruned MiniLM read 48.0 ms where the job measured 41.9); each kind's
   standard deviations are calibrated on cross-fitted errors (`latency_models.calibration`);
3. `holdout` other random archs timed twice, independently (other chunks, other order): the first
   measurement judges the predictors, the second against the first gives the noise floor.
`profiling_s` of a predictor counts only what it needed (1 and its share of 2, or 2), not the evaluation.
With drift correction, each stored predictor keeps its reference arch and that arch's time: a job re-times
the reference before using the predictor and rescales its predictions (`nas.engine.latency`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from latency_models.base import FitSample, LatencyModel, ProfileData, get_latency_model_class, latency_model_names
from latency_models.calibration import std_scale
from latency_models.device import DeviceProfile
from latency_models.measure import Reference, drift_reference_arch, measure_archs, measure_blocks, rebase
from latency_models.meter import LatencySample, MeterSettings, make_meter
from latency_models.report import accuracy_report
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace, corner_archs, random_archs
from search_spaces.errors import LatencyError

logger = logging.getLogger(__name__)
ProgressHook = Callable[[str, int, int], None]  # (stage, units done so far, units in all)


class ProfilePlan(BaseModel):
    """How much to measure. The defaults give both predictors their accuracy report on 100 held-out archs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    samples: int = Field(default=120, ge=2, le=100_000, description="end-to-end archs to fit on (each kind "
                         "refuses too few: the learned model needs 10)")
    overhead_samples: int = Field(default=20, ge=1, le=100_000, description="of those, for the lookup overhead")
    holdout: int = Field(default=100, ge=2, le=100_000, description="held-out archs, measured twice")
    chunk_size: int = Field(default=16, ge=1, le=1024, description="archs measured interleaved at once")
    seed: int = Field(default=0, ge=0)
    meter: MeterSettings = Field(default_factory=MeterSettings)
    kinds: tuple[str, ...] = Field(default_factory=latency_model_names,
                                   description="latency model kinds to fit (default: every registered kind)")
    drift_correction: bool = Field(default=True, description="time a reference model in every chunk and rescale")
    corner_timings: int = Field(default=3, ge=1, le=15, description="chunks each corner (largest, smallest arch) "
                                "is timed in; the median is kept: the corners anchor every fit and each job's "
                                "re-anchoring, and one chunk's timing of an arch can be 15% off")

    @model_validator(mode="after")
    def _consistent(self) -> ProfilePlan:
        if self.overhead_samples > self.samples:
            raise ValueError(f"overhead_samples ({self.overhead_samples}) must not exceed samples ({self.samples})")
        known = latency_model_names(with_source=True)
        unknown = [k for k in self.kinds if k not in known]
        if unknown or not self.kinds:
            raise ValueError(f"kinds must name some of {', '.join(known)}, got {list(self.kinds)}")
        return self


@dataclass
class ProfileOutcome:
    """Plain results: one entry per predictor, the raw samples, the wall times per stage."""

    device: dict[str, Any]
    space: str
    space_version: int
    space_key: str
    space_signature: dict[str, Any]
    predictors: list[dict[str, Any]] = field(default_factory=list)  # kind, payload (bytes), report (dict)
    samples: list[dict[str, Any]] = field(default_factory=list)  # arch, arch_hash, sample, purpose
    timings_s: dict[str, float] = field(default_factory=dict)
    reference_ms: float | None = None  # the drift reference's baseline; all samples are scaled to it


def _predict_timed(model: LatencyModel, archs: list[Arch]) -> tuple[list[float], list[float], float]:
    """Predictions one arch at a time, as the controller asks; returns means, stds and ms per arch."""
    began = time.perf_counter()
    predictions = [model.predict(arch) for arch in archs]
    per_arch_ms = (time.perf_counter() - began) * 1000.0 / max(1, len(archs))
    return [p.mean_ms for p in predictions], [p.std_ms for p in predictions], per_arch_ms


def profile(space: SearchSpace, device: DeviceProfile, plan: ProfilePlan, *,
            on_progress: ProgressHook | None = None, source: LatencyModel | None = None) -> ProfileOutcome:
    """Profile `space` on `device` as `plan` says (see the module's docstring); `source`, another device's
    predictor, is what kinds that transfer (`transfer`) start from."""
    sourced = [k for k in plan.kinds if get_latency_model_class(k).needs_source]
    if sourced and source is None:
        raise LatencyError(f"latency model kinds {sourced} transfer from another device's predictor; profile "
                           "with --transfer-from DEVICE")
    meter = make_meter(device, plan.meter)
    blocks = space.block_catalogue()
    corners = corner_archs(space)[:plan.samples]  # the extremes random samples rarely reach: in every fit
    train = corners + random_archs(space, count=plan.samples - len(corners), seed=plan.seed,
                                   exclude=[a.hash for a in corners])
    holdout = random_archs(space, count=plan.holdout, seed=plan.seed + 1, exclude=[a.hash for a in train])
    # One fixed arch (the median by parameters of five) timed in every chunk: drift correction (see `measure`).
    reference = reference_arch = None
    if plan.drift_correction:
        reference_arch = drift_reference_arch(space, seed=plan.seed + 2)
        reference = Reference.for_arch(space, reference_arch, meter)
    total = len(blocks) + len(train) + 2 * len(holdout)
    done = 0

    def step(stage: str) -> Callable[[int], None]:
        def advance(units: int) -> None:
            nonlocal done
            done += units
            if on_progress:
                on_progress(stage, done, total)
        return advance

    outcome = ProfileOutcome(device=device.model_dump(), space=space.name, space_version=space.version,
                             space_key=space.latency_key(), space_signature=space.latency_signature())

    def timed(stage: str, run: Callable[[], list[LatencySample]]) -> list[LatencySample]:
        began = time.perf_counter()
        result = run()
        outcome.timings_s[stage] = outcome.timings_s.get(stage, 0.0) + time.perf_counter() - began
        return result

    needs_table = any(get_latency_model_class(kind).needs_block_latencies for kind in plan.kinds)
    block_samples = timed("blocks", lambda: measure_blocks(space, blocks, meter, reference=reference,
                                                                         on_progress=step("blocks"))) \
        if needs_table else []
    if not needs_table:
        done += len(blocks)
    k = plan.overhead_samples
    first = timed("overhead_samples", lambda: measure_archs(space, train[:k], meter, chunk_size=plan.chunk_size,
                                                            reference=reference, on_progress=step("samples")))
    rest = timed("more_samples", lambda: measure_archs(space, train[k:], meter, chunk_size=plan.chunk_size,
                                                       reference=reference, on_progress=step("samples")))
    # The corners again, each time in a chunk of their own (the first timing was in the overhead samples).
    corners_again = [timed("corners_again", lambda: measure_archs(space, corners, meter, chunk_size=plan.chunk_size,
                                                                  reference=reference))
                     for _ in range(plan.corner_timings - 1)] if corners else []
    measured = timed("holdout", lambda: measure_archs(space, holdout, meter, chunk_size=plan.chunk_size,
                                                      reference=reference, on_progress=step("holdout")))
    # The second measurement: other chunks, other order, other shuffles.
    order = list(range(len(holdout)))
    random.Random(plan.seed + 7).shuffle(order)
    repeat_meter = make_meter(device, plan.meter.model_copy(update={"seed": plan.meter.seed + 1}))
    shuffled = timed("holdout_repeat", lambda: measure_archs(space, [holdout[i] for i in order], repeat_meter,
                                                             chunk_size=plan.chunk_size, reference=reference,
                                                             on_progress=step("holdout again")))
    by_index = dict(zip(order, shuffled))
    repeat = [by_index[i] for i in range(len(holdout))]
    if reference is not None:  # the time base: the reference's median over every chunk, not its first chunk
        block_samples, first, rest, measured, repeat, *corners_again = rebase(
            reference, block_samples, first, rest, measured, repeat, *corners_again)

    train_samples = first + rest
    for i in range(len(corners)):  # each corner's middle timing
        timings = sorted([train_samples[i], *(again[i] for again in corners_again)], key=lambda s: s.median_ms)
        train_samples[i] = timings[(len(timings) - 1) // 2]
    for purpose, archs, samples in (("profile-train", train, train_samples), ("profile-holdout", holdout, measured),
                                    ("profile-holdout-repeat", holdout, repeat)):
        outcome.samples += [{"arch": a.to_dict(), "arch_hash": a.hash, "sample": s.to_dict(), "purpose": purpose}
                            for a, s in zip(archs, samples)]
    fit_all = [FitSample(a, s.median_ms) for a, s in zip(train, train_samples)]
    data = ProfileData(samples=fit_all, overhead_count=k,
                       block_ms={b.key: s.median_ms for b, s in zip(blocks, block_samples)} if needs_table else None,
                       source=source)
    measured_ms = [s.median_ms for s in measured]
    repeat_ms = [s.median_ms for s in repeat]
    for kind in plan.kinds:
        began = time.perf_counter()
        fitted = get_latency_model_class(kind).from_profile(space=space, device=device, data=data)
        model, n_train = fitted.model, fitted.n_train
        model.std_scale = std_scale(type(model), space=space, device=device, data=data)
        if reference is not None and reference_arch is not None and reference.baseline_ms:
            # What a job re-times to re-anchor the predictor: the drift reference and the corners (the
            # corners' times are drift-corrected to the reference's, so all share one time base).
            model.reference = {"arch": reference_arch.to_dict(), "ms": reference.baseline_ms,
                               "anchors": [{"arch": a.to_dict(), "ms": s.median_ms}
                                           for a, s in zip(corners, train_samples)]}
        spent = sum(outcome.timings_s.get(stage, 0.0) for stage in fitted.stages)
        fit_s = time.perf_counter() - began
        evaluation_began = time.perf_counter()
        means, stds, predict_ms = _predict_timed(model, holdout)
        report = accuracy_report(
            kind=kind, device=device.name, space=space.name, space_version=space.version, n_train=n_train,
            predicted_ms=means, predicted_std_ms=stds, measured_ms=measured_ms, remeasured_ms=repeat_ms,
            profiling_s=spent + fit_s, predict_ms=predict_ms, std_scale=model.std_scale,
            evaluation_s=outcome.timings_s["holdout"] + outcome.timings_s["holdout_repeat"]
            + time.perf_counter() - evaluation_began)
        logger.info("%s on %s/%s: MAPE %.2f%%, within 10%% %.1f%%, tau %.3f (noise floor: %.2f%%, %.1f%%, %.3f); "
                    "within 1 and 2 std %.0f%% and %.0f%% (std x %.2f)", kind, device.name, space.name, report.mape,
                    report.within_10pct, report.kendall_tau, report.noise_floor.mape,
                    report.noise_floor.within_10pct, report.noise_floor.kendall_tau, report.within_1std,
                    report.within_2std, model.std_scale)
        outcome.predictors.append({"kind": kind, "payload": model.save(), "report": report.summary()})
    if reference is not None:
        outcome.reference_ms = reference.baseline_ms
    return outcome
