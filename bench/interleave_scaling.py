"""`bench/scaling.py --part inprocess` run from two checkouts, interleaved, to compare two commits.

Each round runs the 1,000-trial in-process job once on SQLite and once on PostgreSQL from the checkout
under test (`--repo`, default this one) and from the baseline checkout (`--baseline-repo`, e.g. a
`git worktree` of the commit before a change), alternating which goes first. Reports each run, the
medians, and the ratio after / before of the controller's time per trial.

    git worktree add /tmp/before <commit>
    python bench/interleave_scaling.py --baseline-repo /tmp/before --rounds 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KEYS = ("wall_s", "controller_overhead_ms_per_trial", "controller_cpu_ms_per_trial")


def run_once(repo: Path, trials: int) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="hwnas-interleave-")) / "scaling.json"
    subprocess.run([sys.executable, str(repo / "bench" / "scaling.py"), "--part", "inprocess",
                    "--inprocess-trials", str(trials), "--inprocess-repeats", "1", "--out", str(out)],
                   cwd=repo, check=True, stdout=subprocess.DEVNULL)
    runs = json.loads(out.read_text())["inprocess"]["runs"]
    return {db: rows[0] for db, rows in runs.items()}


def commit_of(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-repo", type=Path, required=True)
    parser.add_argument("--repo", type=Path, default=REPO)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scaling_interleaved.json")
    args = parser.parse_args()
    sides = {"before": args.baseline_repo.resolve(), "after": args.repo.resolve()}
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for round_ in range(args.rounds):
        order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
        for side in order:
            result = run_once(sides[side], args.trials)
            runs[side].append(result)
            print(f"round {round_ + 1} {side}: " + ", ".join(
                f"{db} {r['controller_overhead_ms_per_trial']} ms/trial ({r['wall_s']} s)" for db, r in result.items()),
                flush=True)
    medians = {side: {db: {key: statistics.median(r[db][key] for r in rows) for key in KEYS}
                      for db in ("sqlite", "postgresql")} for side, rows in runs.items()}
    ratios = {db: round(medians["after"][db]["controller_overhead_ms_per_trial"]
                        / medians["before"][db]["controller_overhead_ms_per_trial"], 3) for db in ("sqlite", "postgresql")}
    result = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {platform.python_version()}",
              "commits": {side: commit_of(repo) for side, repo in sides.items()}, "trials": args.trials,
              "rounds": args.rounds, "runs": runs, "medians": medians,
              "ratio_after_over_before_ms_per_trial": ratios}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({"medians": medians, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
