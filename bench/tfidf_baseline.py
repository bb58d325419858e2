"""The floor every pruned classifier must clear: TF-IDF (word 1-2 grams and character 2-5 grams) with a
logistic regression, fitted in seconds with scikit-learn.

    .venv/bin/python bench/tfidf_baseline.py --dataset sst2
    .venv/bin/python bench/tfidf_baseline.py --dataset mrpc

Reads the task's files with hwnas's own reader (the same columns as the pruned-BERT benchmark); a pair task's
two texts are joined by " ||| ". Reports dev accuracy and F1 (of label 1) and the latency of one example at a
time (vectorise and predict, median over the first 200 dev examples). `bench/pruned_bert_sst2.py` uses
`tfidf_baseline` for its table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _examples(path: Path, options: dict[str, Any]) -> tuple[list[str], list[str]]:
    from workers.tasks.table_files import Columns, read_file

    columns = Columns(text=options["text_column"], pair=options.get("text_pair_column"),
                      label=options["label_column"])
    examples = read_file(path, fmt="auto", columns=columns, field="bench")
    texts = examples.texts if examples.pairs is None else [f"{a} ||| {b}" for a, b in
                                                           zip(examples.texts, examples.pairs)]
    return texts, [str(label) for label in examples.labels]


def tfidf_baseline(data: Path, options: dict[str, Any], *, timed_examples: int = 200) -> dict[str, Any]:
    """Fit on `data/train.tsv`, score `data/dev.tsv` (see the module's docstring)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
    from sklearn.pipeline import FeatureUnion, make_pipeline

    train_texts, train_labels = _examples(data / "train.tsv", options)
    dev_texts, dev_labels = _examples(data / "dev.tsv", options)
    began = time.perf_counter()
    model = make_pipeline(
        FeatureUnion([("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
                      ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                                                min_df=2))]),
        LogisticRegression(max_iter=2000, C=4.0))
    model.fit(train_texts, train_labels)
    fit_s = time.perf_counter() - began
    predicted = model.predict(dev_texts)
    positive = sorted(set(train_labels))[-1]
    timings = []
    for text in dev_texts[:timed_examples]:
        began = time.perf_counter()
        model.predict([text])
        timings.append((time.perf_counter() - began) * 1000)
    return {"accuracy": float(accuracy_score(dev_labels, predicted)),
            "f1": float(f1_score(dev_labels, predicted, pos_label=positive)),
            "mcc": float(matthews_corrcoef(dev_labels, predicted)),
            "latency_ms_per_example": statistics.median(timings), "fit_s": fit_s,
            "train_examples": len(train_texts), "dev_examples": len(dev_texts)}


def main() -> None:
    from bench.pruned_bert_sst2 import DATASETS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="sst2")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    print(json.dumps(tfidf_baseline(args.data_dir / args.dataset, DATASETS[args.dataset]), indent=2))


if __name__ == "__main__":
    main()
