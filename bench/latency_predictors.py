"""Latency predictors' accuracy and cost per space on this machine (issue 4's benchmark).

For each space: profile on a torch-cpu device at 1 thread, batch 1 (the blocks, `--samples` archs to
fit on), then judge both predictors on `--holdout` other random archs, each measured twice (the
second measurement against the first is the noise floor). Prints a Markdown table and writes the raw
reports to bench/results/latency_predictors.json.

    python bench/latency_predictors.py                 # both spaces, defaults below
    python bench/latency_predictors.py --space pruned-bert --samples 200 --holdout 100
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# (space, options, device profile, default training samples)
CASES: dict[str, tuple[dict[str, Any], str, int]] = {
    "sparse-transformer": ({}, "cpu-1t", 400),
    "pruned-bert": ({"base_model": "minilm-l6"}, "cpu-1t-seq128", 200),
}


def run_case(space_name: str, *, samples: int | None, holdout: int, seed: int, repeats: int,
             min_rounds: int, max_rounds: int) -> dict[str, Any]:
    from latency_models.device import BUILTIN_DEVICES
    from latency_models.meter import MeterSettings
    from latency_models.profiler import ProfilePlan, profile
    from search_spaces.base import get_space

    options, device_name, default_samples = CASES[space_name]
    space = get_space(space_name, options)
    device = BUILTIN_DEVICES[device_name]
    meter = MeterSettings(repeats=repeats, min_rounds=min_rounds, max_rounds=max_rounds, seed=seed)
    plan = ProfilePlan(samples=samples or default_samples, holdout=holdout, seed=seed, meter=meter)
    began = time.perf_counter()
    outcome = profile(space, device, plan)
    wall = time.perf_counter() - began
    return {"space": space_name, "device": device.model_dump(), "plan": plan.model_dump(mode="json"),
            "blocks": len(space.block_catalogue()), "timings_s": outcome.timings_s, "wall_s": wall,
            "reports": [p["report"] for p in outcome.predictors]}


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| space (device) | predictor | fitted on | profiling s | MAPE % | within 5 % | within 10 % | "
             "Kendall tau | noise floor: MAPE / within 10 % / tau | predict ms/arch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        d = r["device"]
        m = r["plan"]["meter"]
        where = (f"{r['space']} ({d['name']}: {d['threads']} thread, batch {d['batch_size']}, seq {d['seq_len']}; "
                 f"meter {m['repeats']} runs x {m['min_rounds']}-{m['max_rounds']} rounds)")
        for rep in r["reports"]:
            n = rep["noise_floor"]
            fitted = f"{r['blocks']} blocks + {rep['n_train']} archs" if rep["kind"] == "lookup-table" \
                else f"{rep['n_train']} archs"
            lines.append(f"| {where} | {rep['kind']} | {fitted} | {rep['profiling_s']:.0f} | {rep['mape']:.2f} | "
                         f"{rep['within_5pct']:.0f} | {rep['within_10pct']:.0f} | {rep['kendall_tau']:.3f} | "
                         f"{n['mape']:.2f} / {n['within_10pct']:.0f} / {n['kendall_tau']:.3f} | "
                         f"{rep['predict_ms']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", choices=[*CASES, "all"], default="all")
    parser.add_argument("--samples", type=int, default=None, help="archs to fit on (default per space)")
    parser.add_argument("--holdout", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="meter: timed runs per model per round")
    parser.add_argument("--min-rounds", type=int, default=4)
    parser.add_argument("--max-rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latency_predictors.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    spaces = list(CASES) if args.space == "all" else [args.space]
    results = [run_case(s, samples=args.samples, holdout=args.holdout, seed=args.seed, repeats=args.repeats,
                        min_rounds=args.min_rounds, max_rounds=args.max_rounds) for s in spaces]
    record = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "date": time.strftime("%Y-%m-%d"), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(markdown(results))
    print(f"\nraw reports written to {args.out}")


if __name__ == "__main__":
    main()
