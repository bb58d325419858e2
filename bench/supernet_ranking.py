"""Do inherited weights rank archs as training them does? (issue 16, a first measurement)

Trains the sparse-transformer supernet with the sandwich rule for `--supernet-steps` on a corpus, then
scores `--archs` random archs three ways: with the weights they inherit from the supernet (no training),
after `--finetune-steps` from those weights, and each trained from scratch for `--train-steps`. Reports
validation bits per character each way, the time each took, and the Kendall tau of each ranking against
training from scratch (1: the same order). JSON beside the printout.

    python bench/supernet_ranking.py --corpus ../shared/data/tinyshakespeare/input.txt
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    import torch
    from scipy.stats import kendalltau

    from latency_models.meter import pinned_threads
    from search_spaces.base import random_archs
    from search_spaces.sparse_transformer.supernet import SparseSupernet
    from workers.evaluate import task_and_space
    from workers.supernet_training import train_supernet

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path,
                        default=REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt")
    parser.add_argument("--supernet-steps", type=int, default=300)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--archs", type=int, default=10)
    parser.add_argument("--finetune-steps", type=int, default=50,
                        help="also score each arch after this many steps from its inherited weights (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--default-space", action="store_true",
                        help="the space's default options (up to 4 layers, d_model 192, 8 experts of width 256) "
                             "instead of the small space")
    parser.add_argument("--tokenizer", choices=["byte", "char"], default="byte")
    parser.add_argument("--distill", action="store_true",
                        help="in-place distillation in the supernet (the default before 2026-12-04; the committed "
                             "results used it)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--standalone-from", type=Path, default=None,
                        help="take the from-scratch scores from an earlier run's JSON (the same archs, corpus, "
                             "task and --train-steps; checked) instead of training them again")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "supernet_ranking.json")
    args = parser.parse_args()
    if not args.corpus.is_file():
        raise SystemExit(f"--corpus: {args.corpus} is missing (see ../shared/data/README.md)")

    small = {"max_seq_len": 64, "max_layers": 3, "d_model_choices": [64, 96, 128], "heads_choices": [0, 2, 4],
             "dense_width_choices": [128, 256], "moe_experts_choices": [2, 4], "moe_top_k_choices": [1, 2],
             "moe_width_choices": [64, 128]}
    options = {"max_seq_len": 64} if args.default_space else small
    task_spec = {"kind": "language-modeling", "train": str(args.corpus), "seq_len": 64, "batch_size": 16,
                 "eval_tokens": 20_000, "tokenizer": args.tokenizer}
    task, space = task_and_space("sparse-transformer", options, task_spec)
    archs = random_archs(space, count=args.archs, seed=args.seed + 1)
    with pinned_threads(args.threads):
        supernet = SparseSupernet(space.options, seed=args.seed)
        began = time.perf_counter()
        history = train_supernet(supernet, space, task, steps=args.supernet_steps, seed=args.seed,
                                 distill=args.distill)
        supernet_s = time.perf_counter() - began
        inherited, inherited_s = [], 0.0
        for arch in archs:
            began = time.perf_counter()
            inherited.append(task.evaluate(supernet.extract(arch, space.build(arch, seed=0)).eval()))
            inherited_s += time.perf_counter() - began
        finetuned, finetune_s = [], 0.0
        for arch in archs if args.finetune_steps else []:
            began = time.perf_counter()
            model = supernet.extract(arch, space.build(arch, seed=0))
            task.train(model, steps=args.finetune_steps, seed=args.seed)
            finetuned.append(task.evaluate(model))
            finetune_s += time.perf_counter() - began
        standalone, standalone_s = [], 0.0
        if args.standalone_from is not None:
            earlier = json.loads(args.standalone_from.read_text())
            same = (earlier["task"] == task_spec and earlier["space_options"] == options
                    and earlier["train_steps"] == args.train_steps
                    and [a["arch"] for a in earlier["archs"]] == [a.config for a in archs])
            if not same:
                raise SystemExit(f"--standalone-from {args.standalone_from}: another run (archs, task or steps differ)")
            standalone = [a["standalone_bpc"] for a in earlier["archs"]]
            standalone_s = earlier["standalone_s_per_arch"] * len(archs)
        for arch in archs if args.standalone_from is None else []:
            began = time.perf_counter()
            model = space.build(arch, seed=args.seed)
            task.train(model, steps=args.train_steps, seed=args.seed)
            standalone.append(task.evaluate(model))
            standalone_s += time.perf_counter() - began
    tau = kendalltau(inherited, standalone)
    tau_finetuned = kendalltau(finetuned, standalone) if finetuned else None
    result = {
        "command": " ".join(sys.argv), "machine": f"{platform.machine()}, {platform.python_version()}",
        "torch": torch.__version__, "corpus": str(args.corpus), "space_options": options, "task": task_spec,
        "supernet_steps": args.supernet_steps, "train_steps": args.train_steps, "threads": args.threads,
        "distill": args.distill,
        "supernet_s": round(supernet_s, 1), "inherited_eval_s_per_arch": round(inherited_s / len(archs), 2),
        "standalone_s_per_arch": round(standalone_s / len(archs), 1),
        "supernet_loss_first_last": [history[0].loss_largest, history[-1].loss_largest],
        "kendall_tau": round(float(tau.statistic), 3), "p_value": round(float(tau.pvalue), 4),
        "finetune_steps": args.finetune_steps,
        "finetune_s_per_arch": round(finetune_s / len(archs), 2) if finetuned else None,
        "kendall_tau_finetuned": round(float(tau_finetuned.statistic), 3) if tau_finetuned else None,
        "p_value_finetuned": round(float(tau_finetuned.pvalue), 4) if tau_finetuned else None,
        "archs": [{"arch": a.config, "inherited_bpc": round(i, 4), "standalone_bpc": round(s, 4),
                   "finetuned_bpc": round(finetuned[n], 4) if finetuned else None}
                  for n, (a, i, s) in enumerate(zip(archs, inherited, standalone))],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.scatter(standalone, inherited, label=f"inherited (tau {result['kendall_tau']})")
        if finetuned:
            ax.scatter(standalone, finetuned, marker="x",
                       label=f"after {args.finetune_steps} steps from inherited "
                             f"(tau {result['kendall_tau_finetuned']})")
        ax.set_xlabel(f"trained from scratch, {args.train_steps} steps (bits per char)")
        ax.set_ylabel("one-shot score (bits per char)")
        ax.set_title(f"Rank agreement, {len(archs)} random archs")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out.with_suffix(".png"), dpi=110)
    except ImportError:
        pass
    print(json.dumps({k: v for k, v in result.items() if k != "archs"}, indent=1))


if __name__ == "__main__":
    main()
