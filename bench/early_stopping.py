"""Issue 6's early-stopping benchmark: in the same wall time, how many candidates does a search evaluate with
successive halving (`budget.min_train_steps`) and without, and how good is what it finds?

Each run is one job of the sparse-transformer space on tiny-shakespeare (character level, from
`../shared/data`), NSGA-II, on the in-process executor (one candidate at a time, real training), under the
same `budget.max_minutes`; the latency model is the tests' feature-sum fake, so that no profiling time is
spent and both modes see the same latencies. The two modes alternate over `--rounds` rounds (seed = round).

    python bench/early_stopping.py                 # 2 rounds of 2 minutes per mode; JSON in bench/results/
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
SPACE_OPTIONS = {"max_seq_len": 64, "max_layers": 3, "d_model_choices": [32, 64], "heads_choices": [0, 2, 4],
                 "dense_width_choices": [64, 128, 256], "moe_experts_choices": [2, 4], "moe_top_k_choices": [1, 2],
                 "moe_width_choices": [32, 64]}


def run_job(*, min_train_steps: int | None, train_steps: int, minutes: float, seed: int) -> dict[str, Any]:
    from nas.engine.controller import Controller
    from nas.db.storage import open_storage
    from nas.service import submit_job
    from nas.settings import Settings
    from nas.spec import parse_spec
    from tests.fakes import FakeDeviceRunner, feature_sum_factory
    from workers.executors.in_process import InProcessExecutor

    folder = Path(tempfile.mkdtemp(prefix="hwnas-early-stopping-"))
    storage = open_storage(f"sqlite:///{folder / 'hwnas.db'}")
    budget: dict[str, Any] = {"trials": 10_000, "train_steps": train_steps, "max_minutes": minutes}
    if min_train_steps:
        budget["min_train_steps"] = min_train_steps
    spec = parse_spec({"space": "sparse-transformer", "space_options": SPACE_OPTIONS,
                       "task": {"kind": "language-modeling", "train": str(CORPUS), "tokenizer": "char", "seq_len": 32,
                                "batch_size": 8, "eval_tokens": 4096, "max_bytes": 400_000},
                       "latency_target_ms": 1000.0, "budget": budget, "seed": seed})
    job_id = submit_job(storage, spec)
    controller = Controller(storage, Settings(data_dir=folder / "data", executor="in-process", training_threads=1),
                            executor_factory=InProcessExecutor, latency_model_factory=feature_sum_factory,
                            device_runner=FakeDeviceRunner())
    began = time.perf_counter()
    job = controller.run_job(job_id)
    wall_s = time.perf_counter() - began
    trials = storage.trials(job_id)
    trained = [t for t in trials if t.state in ("complete", "stopped")]
    complete = [t for t in trials if t.state == "complete"]
    history = storage.hypervolume_history(job_id)
    return {"job_state": job.state, "wall_s": round(wall_s, 1), "trials_trained": len(trained),
            "complete": len(complete), "stopped": len(trained) - len(complete),
            "steps_spent": sum(t.steps_done or 0 for t in trained),
            "best_bits_per_char": round(min(t.metric for t in complete), 4) if complete else None,
            "hypervolume": round(history[-1].hypervolume, 6) if history else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--train-steps", type=int, default=270)
    parser.add_argument("--min-train-steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "early_stopping.json")
    args = parser.parse_args()
    if not CORPUS.is_file():
        sys.exit(f"{CORPUS} is missing: this benchmark needs ../shared/data (see its README)")
    modes = {"full": None, "halving": args.min_train_steps}
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for r in range(args.rounds):
        for mode in (("full", "halving") if r % 2 == 0 else ("halving", "full")):
            result = run_job(min_train_steps=modes[mode], train_steps=args.train_steps, minutes=args.minutes, seed=r)
            runs[mode].append(result)
            print(f"round {r}, {mode}: {result}", flush=True)
    medians = {mode: {key: statistics.median(run[key] for run in rows)
                      for key in ("trials_trained", "complete", "steps_spent", "best_bits_per_char", "hypervolume")}
               for mode, rows in runs.items()}
    ratio = medians["halving"]["trials_trained"] / max(1, medians["full"]["trials_trained"])
    print(f"medians: {medians}; candidates evaluated, halving over full: x{ratio:.2f}", flush=True)
    results = {"machine": f"{platform.node()} {platform.machine()}, {platform.python_version()}",
               "date": time.strftime("%Y-%m-%d"), "minutes": args.minutes, "train_steps": args.train_steps,
               "min_train_steps": args.min_train_steps, "runs": runs, "medians": medians,
               "trials_trained_ratio": round(ratio, 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
