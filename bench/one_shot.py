"""One-shot against standalone search on the demo's space, alternated, each through `hwnas search`.

    python bench/one_shot.py --part modes [--rounds 1] [--supernet-steps 1000] [--candidates 200]

Each run is a fresh data folder (both modes profile the device first), the in-process executor and one
training thread. One-shot is the demo spec with `search: {mode: one-shot}`: `--supernet-steps` of supernet,
`--candidates` trials scored on inherited weights and 3 finalists trained for the demo's 400 steps. Then
standalone (the demo spec, NSGA-II, 400 steps per trial) gets the same wall time: `max_minutes` is one-shot's
whole run less a minute, with no limit on trials. Reported per run: wall time, candidates evaluated (scored, not
predicted infeasible), and the best validation bits per character whose measured latency meets the target
(the exported checkpoint's). Writes `bench/results/one_shot_modes.json`.

Not yet here: the issue's other parts (rank agreement on 24 archs of the default space, PLANER's claim,
strategies' hypervolume curves); `bench/supernet_ranking.py` measures rank agreement on a smaller space.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
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
    best = next((t for t in trials if t["trial"] == checkpoint.get("trial")), None)
    return {"wall_s": round(wall_s, 1), "trials": len(trials),
            "evaluated": sum(1 for t in trials if t["state"] in ("complete", "stopped")),
            "infeasible": sum(1 for t in trials if t["state"] == "infeasible"),
            "finalists": sum(1 for t in trials if t["state"] == "complete" and t["steps_done"]
                             and spec.get("search", {}).get("mode") == "one-shot"),
            "best_bits_per_char": best["metric"] if best else None,
            "best_measured_ms": checkpoint.get("measured_latency_ms"), "best_trial": checkpoint.get("trial")}


def part_modes(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    demo = yaml.safe_load((REPO / "nas" / "examples" / "demo.yaml").read_text())
    if args.latency_target_ms is not None:
        demo["latency_target_ms"] = args.latency_target_ms
    one_shot = {**demo, "budget": {**demo["budget"], "trials": args.candidates, "max_minutes": 60},
                "search": {"mode": "one-shot", "supernet_steps": args.supernet_steps, "final_candidates": 3}}
    runs = []
    for round_ in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="hwnas-one-shot-") as tmp:
            first = {"mode": "one-shot", "round": round_, **run_search(one_shot, Path(tmp))}
        print(json.dumps(first), flush=True)
        # the same wall time for standalone: its search gets what one-shot's whole run took, less a minute for
        # the profiling, measuring and export both pay, and as many trials as it can train in that time
        minutes = max(1.0, (first["wall_s"] - 60) / 60)
        standalone = {**demo, "budget": {**demo["budget"], "trials": 10_000, "max_minutes": round(minutes, 2)}}
        with tempfile.TemporaryDirectory(prefix="hwnas-standalone-") as tmp:
            second = {"mode": "standalone", "round": round_, "max_minutes": round(minutes, 2),
                      **run_search(standalone, Path(tmp))}
        print(json.dumps(second), flush=True)
        runs += [first, second]
    return {"part": "modes", "standalone_spec": demo, "one_shot_spec": one_shot, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["modes"], required=True)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--supernet-steps", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--latency-target-ms", type=float, default=None, help="default: the demo's (1.0 ms)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "one_shot_modes.json")
    args = parser.parse_args()
    result = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {platform.python_version()}",
              "date": time.strftime("%Y-%m-%d"), **part_modes(args)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
