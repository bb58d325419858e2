"""The floor any language model must clear: add-alpha smoothed byte n-gram models on a job's own split.

    python bench/ngram_baseline.py [--spec nas/examples/demo.yaml] [--orders 2 3 4] [--alpha 0.01]

Trains on the task's training text and scores the same validation bytes the task's `evaluate` scores (its
first `eval_tokens`), in bits per byte (the demo's corpus is Python source: bytes and characters nearly
coincide). Writes `bench/results/ngram_baseline.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def ngram_bits_per_byte(train: bytes, validation: bytes, *, order: int, alpha: float) -> float:
    """Add-alpha smoothed n-gram (context of order-1 bytes, 256 symbols), bits per validation byte."""
    context = order - 1
    grams = Counter(train[i:i + order] for i in range(len(train) - context))
    contexts = Counter(train[i:i + context] for i in range(len(train) - context)) if context else None
    total_bits = 0.0
    scored = 0
    for i in range(context, len(validation)):
        gram, ctx = validation[i - context:i + 1], validation[i - context:i]
        ctx_count = contexts[ctx] if contexts is not None else len(train)
        total_bits -= math.log2((grams[gram] + alpha) / (ctx_count + alpha * 256))
        scored += 1
    return total_bits / max(1, scored)


def main() -> None:
    from nas.spec import load_spec
    from workers.tasks.base import make_task

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=REPO / "nas" / "examples" / "demo.yaml")
    parser.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ngram_baseline.json")
    args = parser.parse_args()
    spec = load_spec(args.spec)
    task = make_task(spec.task)
    train, validation = task._texts  # noqa: SLF001 - the task's own split, exactly
    validation = validation[:spec.task.eval_tokens]
    results = []
    for order in args.orders:
        began = time.perf_counter()
        bits = ngram_bits_per_byte(train, validation, order=order, alpha=args.alpha)
        results.append({"order": order, "bits_per_byte": round(bits, 3), "seconds": round(time.perf_counter() - began, 1)})
        print(f"{order}-gram, add-{args.alpha}: {bits:.3f} bits per byte", flush=True)
    out = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {platform.python_version()}",
           "spec": str(args.spec), "train_bytes": len(train), "validation_bytes_scored": len(validation),
           "alpha": args.alpha, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
