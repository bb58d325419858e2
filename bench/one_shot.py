"""The one-shot pipeline's benchmarks (issue 16), each a `--part`:

    python bench/one_shot.py --part modes [--rounds 1] [--supernet-steps 500] [--candidates 200] [--latency-target-ms T]
    python bench/one_shot.py --part strategies [--space default] [--corpus FILE] [--seeds 3] [--candidates 400]
    python bench/one_shot.py --part planer [--corpus FILE] [--supernet-steps 1000] [--final-steps 1000]
    python bench/one_shot.py --part moe [--before-modeling FILE]
    python bench/one_shot.py --part throughput [--space default]

`--part modes`: one-shot against standalone on the demo's space and data, alternated, each through `hwnas
search` on a fresh data folder (both profile the device first) with the in-process executor and one training
thread. One-shot is the demo spec (its finalists trained `budget.train_steps`) with `--supernet-steps` and
`--candidates` trials scored on inherited weights (the demo's strategy). Then standalone (the demo spec with
`search: {mode: standalone}` and NSGA-II, `--standalone-steps` per trial) gets the same wall time:
`max_minutes` is one-shot's whole run less a minute, with no limit on trials. Reported per run: wall time,
candidates evaluated (scored, not predicted infeasible), the best validation bits per character whose measured
latency meets the target (the exported checkpoint's), and the front's hypervolume over time (plotted). Writes
`bench/results/one_shot_modes.json` and its PNG.

`--part strategies`: the demo's space and data (or `--space default`, `--corpus FILE`), one supernet
(`--supernet-steps`, cached under `--cache-dir`), the device's lookup table fitted here (blocks timed alone,
overhead on 20 archs), then for each strategy (random, NSGA-II, TPE, evolution) and seed, `--candidates`
trials asked and told as a job does: a candidate predicted over the target is told infeasible without
evaluation, the others are scored on their inherited weights. The hypervolume of the (bits per char, predicted
latency) front after each trial, from the median metric of every evaluated candidate and the target. Writes
`bench/results/one_shot_strategies.json` (and a PNG when matplotlib is installed).

`--part moe`: the MoE block (d_model 128, experts of width 128, 64 tokens, 1 thread, a seeded random router)
for 2, 4 and 8 experts, top-1 and top-2, at batch 1 and 32: as an earlier commit had it (`--before-modeling`,
the same weights, outputs checked equal), today's with its inference forced to the loop over experts, and
today's as it runs (grouped matmuls where they win), against a dense block of the same parameters (width E x
128) and one of the same active width (k x 128). Interleaved: each round times every variant once (median of
100 calls each), medians over the rounds. Writes `bench/results/one_shot_moe.json`. `--moe-device cuda`
times on the GPU instead (synchronised around each call; `--moe-dtype bfloat16` for the dtype CUDA's grouped
matmul takes), and `--d-model`/`--expert-width` set the sizes (PLANER's experts are far wider than ours).

`--part planer`: PLANER's claim. One-shot on the demo's space and on its dense-only copy (`ffn_kinds:
[dense]`, the same other bounds and budgets): supernet, `--candidates` evolution trials on inherited weights
with no target (the whole front), `--finalists` members spread over each front trained `--final-steps` from
their inherited weights and measured on `cpu-1t`; then, at two quality levels both final fronts reach, the
lowest measured latency reaching each, and the ratio dense-only over full.

`--part throughput`: sandwich steps per second of the supernet against steps of the largest arch trained
alone, interleaved, and the seconds of one inherited evaluation.

Rank agreement is `bench/supernet_ranking.py` (`--default-space` for the space's default options)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_search(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "HWNAS_DATA_DIR": str(folder / "data"), "HWNAS_EXECUTOR": "in-process",
           "HWNAS_TRAINING_THREADS": "1"}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nas.cli", "search", "--spec", str(spec_path), "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=3 * 3600)
    wall_s = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"hwnas search failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    shown = json.loads(subprocess.run([sys.executable, "-m", "nas.cli", "show", str(result["job_id"]), "--json"],
                                      cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout)
    trials = shown["trial_list"]
    checkpoint = result.get("checkpoint") or {}
    import sqlite3
    from datetime import datetime

    with sqlite3.connect(folder / "data" / "hwnas.db") as db:  # the front's hypervolume after each trial
        history = db.execute("SELECT h.trials_done, h.hypervolume, h.created_at, j.created_at FROM "
                             "nas_hypervolume_history h JOIN nas_jobs j ON j.id = h.job_id ORDER BY h.id").fetchall()
    hypervolume_s = [(round((datetime.fromisoformat(at) - datetime.fromisoformat(start)).total_seconds(), 1), done, hv)
                     for done, hv, at, start in history]
    best = next((t for t in trials if t["trial"] == checkpoint.get("trial")), None)
    return {"wall_s": round(wall_s, 1), "trials": len(trials),
            "evaluated": sum(1 for t in trials if t["state"] in ("complete", "stopped")),
            "distinct_archs_evaluated": len({json.dumps(t["arch"], sort_keys=True) for t in trials
                                             if t["state"] in ("complete", "stopped")}),
            "infeasible": sum(1 for t in trials if t["state"] == "infeasible"),
            "finalists": sum(1 for t in trials if t["state"] == "complete" and t["steps_done"]
                             and spec.get("search", {}).get("mode") == "one-shot"),
            "best_bits_per_char": best["metric"] if best else None,
            "best_measured_ms": checkpoint.get("measured_latency_ms"), "best_trial": checkpoint.get("trial"),
            "hypervolume_over_time": hypervolume_s}  # (seconds since the job was stored, trials, hypervolume)


def part_modes(args: argparse.Namespace) -> dict[str, Any]:
    demo = bench_spec(args)  # the demo's spec (or its space and corpus as `--space`, `--corpus` say)
    if args.latency_target_ms is not None:
        demo["latency_target_ms"] = args.latency_target_ms
    one_shot = {**demo, "budget": {**demo["budget"], "trials": args.candidates, "max_minutes": 60},
                "search": {**demo.get("search", {}), "mode": "one-shot", "supernet_steps": args.supernet_steps}}
    runs = []
    for round_ in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="hwnas-one-shot-") as tmp:
            first = {"mode": "one-shot", "round": round_, **run_search(one_shot, Path(tmp))}
        print(json.dumps(first), flush=True)
        # the same wall time for standalone: its search gets what one-shot's whole run took, less a minute for
        # the profiling, measuring and export both pay, and as many trials as it can train in that time
        minutes = max(1.0, (first["wall_s"] - 60) / 60)
        standalone = {**demo, "budget": {**demo["budget"], "trials": 10_000, "max_minutes": round(minutes, 2),
                                         "train_steps": args.standalone_steps},
                      "search": {"mode": "standalone"}, "strategy": "nsga2"}
        with tempfile.TemporaryDirectory(prefix="hwnas-standalone-") as tmp:
            second = {"mode": "standalone", "round": round_, "max_minutes": round(minutes, 2),
                      **run_search(standalone, Path(tmp))}
        print(json.dumps(second), flush=True)
        runs += [first, second]
    with plot_to(args.out.with_suffix(".png"), size=(7, 4.5)) as ax:
        if ax is not None:
            for run in runs:
                points = run["hypervolume_over_time"]
                if points:
                    ax.step([t for t, _, _ in points], [hv for _, _, hv in points], where="post",
                            color="tab:red" if run["mode"] == "one-shot" else "tab:blue",
                            label=f"{run['mode']}, round {run['round']}")
            ax.set_xlabel("seconds since the job was stored (one-shot: after its supernet; profiling first for both)")
            ax.set_ylabel("front hypervolume (one-shot: inherited scores)")
            ax.set_title("Hypervolume over time, same wall time", fontsize=10)
            ax.legend(fontsize=8)
    return {"part": "modes", "standalone_spec": demo, "one_shot_spec": one_shot, "runs": runs}


def bench_spec(args: argparse.Namespace, *, ffn_kinds: list[str] | None = None) -> dict[str, Any]:
    """The demo's own spec, or its corpus/space swapped for `--corpus` (character level) and/or the space's
    default options (`--space default`), and `ffn_kinds` when given."""
    import yaml

    spec = yaml.safe_load((REPO / "nas" / "examples" / "demo.yaml").read_text())
    if getattr(args, "corpus", None) is not None:
        spec["task"] = {"kind": "language-modeling", "train": str(args.corpus), "tokenizer": "char", "seq_len": 64,
                        "batch_size": 16}
    if args.space == "default":
        spec["space_options"] = {"max_seq_len": 64}
    if ffn_kinds is not None:
        spec["space_options"] = {**spec["space_options"], "ffn_kinds": ffn_kinds}
    return spec


@contextlib.contextmanager
def plot_to(path: Path, *, size: tuple[float, float]) -> Iterator[Any]:
    """A matplotlib axis to draw on, saved to `path` on leaving; None (nothing drawn) without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        yield None
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    yield ax
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fit_lookup_table(space: Any, device_name: str) -> Any:
    """The device's lookup table for `space`, as profiling fits it (blocks alone, overhead on 20 archs)."""
    from latency_models.device import BUILTIN_DEVICES
    from latency_models.lookup_table import LookupTableLatencyModel
    from latency_models.base import FitSample
    from latency_models.measure import measure_archs, measure_blocks
    from latency_models.meter import make_meter
    from search_spaces.base import random_archs

    device = BUILTIN_DEVICES[device_name]
    meter = make_meter(device)
    blocks = space.block_catalogue()
    block_samples = measure_blocks(space, blocks, meter)
    archs = random_archs(space, count=20, seed=0)
    samples = measure_archs(space, archs, meter)
    model = LookupTableLatencyModel(space=space, device=device,
                                    block_ms={b.key: s.median_ms for b, s in zip(blocks, block_samples)})
    model.fit([FitSample(arch=a, latency_ms=s.median_ms) for a, s in zip(archs, samples)])
    return model


def bench_setup(args: argparse.Namespace, *, ffn_kinds: list[str] | None = None
                ) -> tuple[Any, Any, dict[str, Any], Any, float, float]:
    """(task, space, spec, supernet, its training seconds, target ms) for `bench_spec`'s spec."""
    from workers.evaluate import task_and_space
    from workers.supernet_training import SupernetTask, load_supernet, run_supernet_task

    spec = bench_spec(args, ffn_kinds=ffn_kinds)
    task, space = task_and_space(spec["space"], spec["space_options"], spec["task"])
    began = time.perf_counter()
    outcome = run_supernet_task(SupernetTask(space=spec["space"], space_options=spec["space_options"],
                                             task=spec["task"], steps=args.supernet_steps, seed=0,
                                             cache_dir=str(args.cache_dir), threads=1,
                                             distill=args.supernet_distill))
    supernet = load_supernet(space, outcome.path)
    target_ms = args.latency_target_ms or float(spec["latency_target_ms"])
    return task, space, spec, supernet, time.perf_counter() - began, target_ms


def part_strategies(args: argparse.Namespace) -> dict[str, Any]:
    import optuna

    from latency_models.meter import pinned_threads
    from nas.engine.pareto import Point, hypervolume
    from nas.engine.strategies.base import StrategyConfig, make_strategy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task, space, demo, supernet, supernet_s, target_ms = bench_setup(args)
    began = time.perf_counter()
    with pinned_threads(1):
        latency = fit_lookup_table(space, demo["device"])
    profile_s = time.perf_counter() - began
    scored: dict[str, float] = {}  # arch hash -> inherited bits per char (deterministic: scored once)
    eval_s: list[float] = []

    def inherited_metric(arch: Any) -> float:
        if arch.hash not in scored:
            started = time.perf_counter()
            with pinned_threads(1):
                scored[arch.hash] = task.evaluate(space.inherit(supernet, arch).eval())
            eval_s.append(time.perf_counter() - started)
        return scored[arch.hash]

    runs = []
    for seed in range(args.seeds):
        for name in args.strategies:
            with tempfile.TemporaryDirectory(prefix="hwnas-strategies-") as tmp:
                strategy = make_strategy(name, StrategyConfig(
                    study_name=f"{name}-{seed}", storage_url=f"sqlite:///{tmp}/optuna.db",
                    directions=("minimize", "minimize"), seed=seed, trials_budget=args.candidates))
                told: list[tuple[float | None, float]] = []  # per trial: (inherited metric or None, predicted ms)
                run_began = time.perf_counter()
                for _ in range(args.candidates):
                    [(number, arch)] = strategy.ask_batch(1, space.sample)
                    predicted_ms = latency.predict(arch).mean_ms
                    if predicted_ms > target_ms:  # as the search loop does: infeasible, never evaluated
                        strategy.tell(number, [task.worst_metric(), predicted_ms],
                                      constraint=predicted_ms - target_ms)
                        told.append((None, predicted_ms))
                    else:
                        metric = inherited_metric(arch)
                        strategy.tell(number, [metric, predicted_ms], constraint=predicted_ms - target_ms)
                        told.append((metric, predicted_ms))
                run = {"strategy": name, "seed": seed, "evaluated": sum(m is not None for m, _ in told),
                       "told": told, "wall_s": round(time.perf_counter() - run_began, 1)}
            print(json.dumps({k: v for k, v in run.items() if k != "told"}), flush=True)
            runs.append(run)
    # The job's own reference point (the task's worst metric, 32 bits per char here) makes every front's
    # hypervolume nearly the same number, and so does the worst evaluated candidate (an arch with no layers
    # is on every front at once); this comparison measures from the median metric of every evaluated
    # candidate of all runs, and the target, so that only the better half of the space counts.
    evaluated = sorted(m for r in runs for m, _ in r["told"] if m is not None)
    reference = (evaluated[len(evaluated) // 2], target_ms)
    curves = []
    for run in runs:
        points: list[Point] = []
        volumes = []
        for i, (metric, ms) in enumerate(run["told"]):
            if metric is not None:
                points.append(Point(i, metric, ms))
            volumes.append(hypervolume(points, reference=reference))
        curves.append({**{k: v for k, v in run.items() if k != "told"}, "hypervolume": volumes,
                       "told": run["told"]})
    best = max(c["hypervolume"][-1] for c in curves)

    def needed(curve: dict[str, Any], share: float) -> int | None:
        return next((i + 1 for i, v in enumerate(curve["hypervolume"]) if v >= share * best), None)

    summary = {}
    for name in args.strategies:
        mine = [c for c in curves if c["strategy"] == name]
        counts = [needed(c, 0.95) for c in mine]
        summary[name] = {"final_hypervolume": [c["hypervolume"][-1] for c in mine],
                         "trials_to_95pct_of_best": counts,
                         "evaluated": [c["evaluated"] for c in mine]}
    plot = args.out.with_suffix(".png")
    with plot_to(plot, size=(7, 4.5)) as ax:
        if ax is None:
            plot = None
        else:
            colours = dict(zip(args.strategies, ["tab:gray", "tab:blue", "tab:green", "tab:red"]))
            for c in curves:
                ax.plot(range(1, len(c["hypervolume"]) + 1), c["hypervolume"], color=colours.get(c["strategy"]),
                        alpha=0.8, label=c["strategy"] if c["seed"] == 0 else None)
            ax.axhline(0.95 * best, color="black", linestyle=":", linewidth=1, label="95% of the best")
            ax.set_xlabel("trials asked (candidates predicted over the target are not evaluated)")
            ax.set_ylabel("hypervolume (bits per char x ms)")
            ax.set_title(f"Strategies on inherited weights, {args.space} space, target {target_ms} ms, "
                         f"{args.seeds} seeds", fontsize=10)
            ax.legend()
    return {"part": "strategies", "spec": demo, "latency_target_ms": target_ms, "reference": reference,
            "supernet": {"steps": args.supernet_steps, "train_s": round(supernet_s, 1)},
            "lookup_table_fit_s": round(profile_s, 1),
            "inherited_eval_s": {"count": len(eval_s), "median": statistics.median(eval_s) if eval_s else None},
            "best_hypervolume": best, "summary": summary, "curves": curves,
            "plot": plot.name if plot else None}


def part_moe(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from search_spaces.sparse_transformer import modeling_hwnas_sparse as modeling

    d_model, width, seq = args.d_model, args.expert_width, 64
    device, dtype = torch.device(args.moe_device), getattr(torch, args.moe_dtype)
    torch.set_num_threads(1)
    before = None
    if args.before_modeling is not None:
        import importlib.util

        found = importlib.util.spec_from_file_location("hwnas_modeling_before", args.before_modeling)
        assert found is not None and found.loader is not None
        before = importlib.util.module_from_spec(found)
        found.loader.exec_module(before)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def dispatch(*, grouped: bool) -> Iterator[None]:
        """Inference with the grouped matmuls where they run (`grouped`) or forced to the loop over experts."""
        saved = modeling.GROUPED_MM
        modeling.GROUPED_MM = grouped and saved
        try:
            with torch.no_grad():
                yield
        finally:
            modeling.GROUPED_MM = saved

    def median_ms(module: Any, x: Any, *, grouped: bool, calls: int = 100) -> float:
        with dispatch(grouped=grouped):
            for _ in range(10):
                module(x)
            times = []
            for _ in range(calls):
                sync()
                began = time.perf_counter()
                module(x)
                sync()
                times.append(time.perf_counter() - began)
        return statistics.median(times) * 1000.0

    def prepared(module: Any) -> Any:
        return module.to(device=device, dtype=dtype).eval()

    rows = []
    for batch in (1, 32):
        x = torch.randn(batch, seq, d_model, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
        for experts in (2, 4, 8):
            for top_k in (1, 2):
                torch.manual_seed(0)
                moe = prepared(modeling.MixtureOfExperts(d_model, experts, top_k, width))
                variants = {"moe_loop": (moe, False),
                            "dense_same_params": (prepared(modeling.FeedForward(d_model, experts * width)), False),
                            "dense_same_active_width": (prepared(modeling.FeedForward(d_model, top_k * width)), False),
                            "moe_grouped": (moe, True)}
                with dispatch(grouped=False):  # the grouped path computes what the loop does
                    reference = moe(x)
                with dispatch(grouped=True):
                    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
                    torch.testing.assert_close(moe(x), reference, rtol=tolerance, atol=tolerance)
                if before is not None:  # the block as an earlier commit had it, on the same weights
                    old = before.MixtureOfExperts(d_model, experts, top_k, width)
                    with torch.no_grad():
                        old.router.weight.copy_(moe.router.weight)
                        for e, expert in enumerate(old.experts):
                            expert.up.weight.copy_(moe.up_weight[e])
                            expert.up.bias.copy_(moe.up_bias[e])
                            expert.down.weight.copy_(moe.down_weight[e])
                            expert.down.bias.copy_(moe.down_bias[e])
                        old = prepared(old)
                        torch.testing.assert_close(old(x), moe(x), rtol=1e-5, atol=1e-5)
                    variants["moe_before"] = (old, False)
                times: dict[str, list[float]] = {name: [] for name in variants}
                for _ in range(args.rounds_moe):
                    for name, (module, grouped) in variants.items():
                        times[name].append(median_ms(module, x, grouped=grouped))
                row = {"batch": batch, "experts": experts, "top_k": top_k,
                       **{f"{name}_ms": round(statistics.median(v), 4) for name, v in times.items()}}
                active = row["dense_same_active_width_ms"]
                if before is not None:
                    row["before_over_active"] = round(row["moe_before_ms"] / active, 2)
                row |= {"loop_over_active": round(row["moe_loop_ms"] / active, 2),
                        "grouped_over_active": round(row["moe_grouped_ms"] / active, 2),
                        "grouped_over_same_params": round(row["moe_grouped_ms"] / row["dense_same_params_ms"], 2)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu, 1 thread"
    return {"part": "moe", "torch": torch.__version__, "dispatch_after": modeling.MOE_DISPATCH, "device": where,
            "dtype": args.moe_dtype, "d_model": d_model, "expert_width": width, "tokens": seq, "threads": 1,
            "rounds": args.rounds_moe, "rows": rows}


def part_planer(args: argparse.Namespace) -> dict[str, Any]:
    """PLANER's claim: at the same quality, how much lower is the latency of the full space's models (MoE
    allowed) than of a dense-only space's (the same other bounds and budgets)?"""
    import optuna

    from latency_models.device import BUILTIN_DEVICES
    from latency_models.measure import measure_archs
    from latency_models.meter import make_meter, pinned_threads
    from nas.engine.pareto import Point, pareto_front
    from nas.engine.strategies.base import StrategyConfig, make_strategy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spaces: dict[str, Any] = {}
    for label, kinds in (("full", None), ("dense-only", ["dense"])):
        task, space, spec, supernet, supernet_s, _ = bench_setup(args, ffn_kinds=kinds)
        with pinned_threads(1):
            latency = fit_lookup_table(space, spec["device"])
        began = time.perf_counter()
        scored: dict[str, tuple[Any, float, float]] = {}
        with tempfile.TemporaryDirectory(prefix="hwnas-planer-") as tmp:
            strategy = make_strategy("evolution", StrategyConfig(
                study_name=label, storage_url=f"sqlite:///{tmp}/optuna.db", directions=("minimize", "minimize"),
                seed=0, trials_budget=args.candidates))
            for _ in range(args.candidates):  # no target: the whole front, from the fastest to the best
                [(number, arch)] = strategy.ask_batch(1, space.sample)
                if arch.hash not in scored:
                    with pinned_threads(1):
                        metric = task.evaluate(space.inherit(supernet, arch).eval())
                    scored[arch.hash] = (arch, metric, latency.predict(arch).mean_ms)
                _, metric, predicted_ms = scored[arch.hash]
                strategy.tell(number, [metric, predicted_ms], constraint=-1.0)
        search_s = time.perf_counter() - began
        by_key = {i: v for i, v in enumerate(scored.values())}
        front = pareto_front([Point(i, m, ms) for i, (_, m, ms) in by_key.items()])
        picks = [front[round(j * (len(front) - 1) / max(1, args.finalists - 1))] for j in range(args.finalists)]
        picks = list({p.key: p for p in picks}.values())  # spread over the front, each once
        finalists = []
        began = time.perf_counter()
        for point in picks:
            arch = by_key[point.key][0]
            with pinned_threads(1):
                model = space.inherit(supernet, arch)
                task.train(model, steps=args.final_steps, seed=0)
                finalists.append({"arch": arch.config, "inherited_bpc": point.metric,
                                  "predicted_ms": point.latency_ms, "final_bpc": task.evaluate(model)})
        final_s = time.perf_counter() - began
        with pinned_threads(1):
            meter = make_meter(BUILTIN_DEVICES[spec["device"]])
            measured = measure_archs(space, [by_key[p.key][0] for p in picks], meter)
        for finalist, sample in zip(finalists, measured):
            finalist["measured_ms"] = sample.median_ms
        spaces[label] = {"space_options": spec["space_options"], "supernet_s": round(supernet_s, 1),
                         "search_s": round(search_s, 1), "final_training_s": round(final_s, 1),
                         "evaluated": len(scored), "inherited_front": len(front), "finalists": finalists}
        print(json.dumps({"space": label, **{k: v for k, v in spaces[label].items() if k != "finalists"}}), flush=True)

    def latency_at(label: str, bpc: float) -> float | None:
        """The lowest measured latency among the final-trained finalists reaching `bpc` or better."""
        reached = [f["measured_ms"] for f in spaces[label]["finalists"] if f["final_bpc"] <= bpc]
        return min(reached) if reached else None

    best = {label: min(f["final_bpc"] for f in v["finalists"]) for label, v in spaces.items()}
    worst = {label: max(f["final_bpc"] for f in v["finalists"]) for label, v in spaces.items()}
    both_best = max(best.values())  # the best quality both spaces reach
    levels = [both_best, both_best + 0.5 * max(0.0, min(worst.values()) - both_best)]
    iso = []
    for level in levels:
        full, dense = latency_at("full", level), latency_at("dense-only", level)
        iso.append({"bits_per_char": round(level, 4), "full_ms": full, "dense_only_ms": dense,
                    "dense_over_full": round(dense / full, 3) if full and dense else None})
    print(json.dumps(iso), flush=True)
    plot = args.out.with_suffix(".png")
    with plot_to(plot, size=(6.5, 4.5)) as ax:
        if ax is None:
            plot = None
        else:
            for label, colour in (("full", "tab:red"), ("dense-only", "tab:blue")):
                points = sorted((f["measured_ms"], f["final_bpc"]) for f in spaces[label]["finalists"])
                ax.plot(*zip(*points), marker="o", color=colour, label=f"{label}: final-trained finalists")
            for row in iso:
                ax.axhline(row["bits_per_char"], color="gray", linestyle=":", linewidth=1)
            ax.set_xlabel("measured latency (ms, cpu-1t)")
            ax.set_ylabel(f"validation bits per char after {args.final_steps} steps")
            ax.set_title("PLANER's claim: MoE space against dense-only, iso-quality levels dotted", fontsize=10)
            ax.legend()
    return {"part": "planer", "supernet_steps": args.supernet_steps, "candidates": args.candidates,
            "final_steps": args.final_steps, "spaces": spaces, "iso_quality": iso,
            "plot": plot.name if plot else None}


def part_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Supernet training steps per second against a standalone model of the largest arch, interleaved, and the
    time of one inherited evaluation."""
    from latency_models.meter import pinned_threads
    from search_spaces.base import random_archs
    from workers.evaluate import task_and_space
    from workers.supernet_training import SandwichTrainer, largest_arch

    spec = bench_spec(args)
    task, space = task_and_space(spec["space"], spec["space_options"], spec["task"])
    steps = 20
    rounds: dict[str, list[float]] = {"supernet_steps_per_s": [], "largest_arch_steps_per_s": [],
                                      "inherited_eval_s": []}
    with pinned_threads(1):
        supernet = space.build_supernet(seed=0)
        trainer = SandwichTrainer(supernet, space, task, seed=0, steps=steps * args.rounds_moe)
        largest = space.build(largest_arch(space), seed=0)
        for _ in range(args.rounds_moe):
            began = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            rounds["supernet_steps_per_s"].append(steps / (time.perf_counter() - began))
            began = time.perf_counter()
            task.train(largest, steps=steps, seed=0)
            rounds["largest_arch_steps_per_s"].append(steps / (time.perf_counter() - began))
            arch = random_archs(space, count=1, seed=len(rounds["inherited_eval_s"]))[0]
            began = time.perf_counter()
            task.evaluate(space.inherit(supernet, arch).eval())
            rounds["inherited_eval_s"].append(time.perf_counter() - began)
    medians = {k: round(statistics.median(v), 3) for k, v in rounds.items()}
    medians["supernet_over_largest"] = round(medians["supernet_steps_per_s"] / medians["largest_arch_steps_per_s"], 3)
    print(json.dumps(medians), flush=True)
    return {"part": "throughput", "space_options": spec["space_options"], "task": spec["task"], "threads": 1,
            "steps_per_round": steps, "rounds": rounds, "medians": medians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["modes", "strategies", "moe", "planer", "throughput"], required=True)
    parser.add_argument("--rounds-moe", type=int, default=7)
    parser.add_argument("--before-modeling", type=Path, default=None,
                        help="moe: an earlier modeling_hwnas_sparse.py to time as 'before' (git show REV:PATH > FILE)")
    parser.add_argument("--moe-device", default="cpu", help="moe: cpu (1 thread) or cuda")
    parser.add_argument("--moe-dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--d-model", type=int, default=128, help="moe: the model width")
    parser.add_argument("--expert-width", type=int, default=128, help="moe: each expert's width")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--supernet-steps", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--standalone-steps", type=int, default=400,
                        help="modes: training steps of each standalone trial (the demo's before it went one-shot)")
    parser.add_argument("--latency-target-ms", type=float, default=None, help="default: the demo's (1.0 ms)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--space", choices=["demo", "default"], default="demo",
                        help="the demo's space options, or the space's defaults (up to 4 layers, d_model 192, "
                             "8 experts)")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="a text file (character level) instead of the demo's builtin:python-stdlib")
    parser.add_argument("--final-steps", type=int, default=1000)
    parser.add_argument("--supernet-distill", action="store_true",
                        help="in-place distillation in the supernet (the default before 2026-12-04; the committed "
                             "strategies and planer results used it)")
    parser.add_argument("--finalists", type=int, default=6)
    parser.add_argument("--strategies", nargs="+", default=["random", "nsga2", "tpe", "evolution"])
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "hwnas-bench-supernets")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.out = args.out or REPO / "bench" / "results" / f"one_shot_{args.part}.json"
    sys.path.insert(0, str(REPO))
    result = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {platform.python_version()}",
              "date": time.strftime("%Y-%m-%d"),
              **{"modes": part_modes, "strategies": part_strategies, "moe": part_moe,
                 "planer": part_planer, "throughput": part_throughput}[args.part](args)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
