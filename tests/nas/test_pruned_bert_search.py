"""End to end on a tiny random-initialised BERT: search, teacher cache, export, reload in a clean Python."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nas.db.storage import open_storage
from nas.engine.bound_job import bind_job
from nas.engine.controller import Controller
from nas.engine.worker_tasks import candidate_task, supernet_weights_path
from nas.service import front_members, job_summary, submit_job
from nas.spec import parse_spec
from tests.conftest import fast_settings, tiny_pruned_bert_options
from tests.nas.engine.test_checkpoint_export import CLEAN_LOAD
from workers.evaluate import evaluate_candidate
from workers.executors.in_process import InProcessExecutor

CLEAN_CLASSIFY = CLEAN_LOAD.split("import torch\n", 1)[0] + r"""
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, texts_path, out_path = sys.argv[1:4]
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
texts = json.load(open(texts_path))
with torch.no_grad():
    batch = tokenizer(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    predictions = model(**batch).logits.argmax(-1).tolist()
from transformers import pipeline
classify = pipeline("text-classification", model=folder, trust_remote_code=True)
json.dump({"predictions": predictions, "id2label": {str(k): v for k, v in model.config.id2label.items()},
           "class": type(model).__name__, "pipeline": [r["label"] for r in classify(texts[:4])]}, open(out_path, "w"))
"""


def spec_for(files: tuple[Path, Path], tiny_bert_dir: Path, **changes: object):  # type: ignore[no-untyped-def]
    data = {"name": "tiny-sentiment", "space": "pruned-bert",
            "space_options": tiny_pruned_bert_options(tiny_bert_dir, teacher_steps=40),
            "task": {"kind": "classification", "train": str(files[0]), "validation": str(files[1]),
                     "text_column": "sentence", "label_column": "label", "label_names": ["negative", "positive"],
                     "max_seq_len": 16, "batch_size": 16, "learning_rate": 3e-3},
            "device": "cpu-1t", "latency_target_ms": 1000.0, "strategy": "nsga2",
            "budget": {"trials": 4, "train_steps": 15}, "seed": 0, "search": {"mode": "standalone"}, **changes}
    return parse_spec(data)


@pytest.mark.slow
def test_search_export_and_clean_reload(sentiment_files: tuple[Path, Path], tiny_bert_dir: Path,
                                        tmp_path: Path, sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    settings = fast_settings(data_dir=tmp_path / "data", executor="in-process")
    controller = Controller(storage, settings, executor_factory=InProcessExecutor)
    job_id = submit_job(storage, spec_for(sentiment_files, tiny_bert_dir))
    job = controller.run_job(job_id)
    assert job.state == "completed", job.message

    summary = job_summary(storage, job_id)
    baseline = summary.baseline
    assert baseline["metric_name"] == "accuracy" and baseline["teacher_steps"] == 40
    assert baseline["metric"] > 0.7 and baseline["latency_ms"] > 0  # the fine-tuned teacher learned the task
    options = job.preparation["options"]
    assert Path(options["teacher_dir"], "teacher.safetensors").is_file()
    assert Path(options["importance_file"]).is_file()
    trials = storage.trials(job_id, states=("complete",))
    assert trials and all(set(t.metrics) == {"accuracy", "f1", "mcc"} for t in trials)
    assert all(m.arch_text.startswith("L") for m in front_members(storage, job_id))

    # A second job on the same base, data and teacher budget reuses the cached teacher.
    second = controller.run_job(submit_job(storage, spec_for(sentiment_files, tiny_bert_dir,
                                                             budget={"trials": 1, "train_steps": 1})))
    assert second.preparation["options"]["teacher_dir"] == options["teacher_dir"]
    assert second.preparation["baseline"]["metric"] == baseline["metric"]

    (checkpoint,) = storage.checkpoints(job_id)
    folder = Path(checkpoint.path)
    assert "modeling_hwnas_pruned_bert.py" in {p.name for p in folder.iterdir()}
    card = (folder / "README.md").read_text()
    assert "baseline (unpruned teacher) accuracy" in card and "AutoModelForSequenceClassification" in card

    # The project's own predictions on the dev set, from the trial's weights.
    from safetensors.torch import load_file

    from nas.engine.bound_job import bind_job
    from search_spaces.arch import Arch

    trial = storage.trial(job_id, int(folder.name.rsplit("-", 1)[1]))
    bound = bind_job(storage, job)
    task, space = bound.task, bound.space
    model = space.build(Arch.from_dict(trial.arch))
    model.load_state_dict(load_file(trial.weights_path))
    expected = task.predict(model)
    assert sum(p == g for p, g in zip(expected, task._validation[2].tolist())) / len(expected) == \
        pytest.approx(trial.metric)

    texts = [line.rsplit("\t", 1)[0] for line in sentiment_files[1].read_text().splitlines()[1:]]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    done = subprocess.run([sys.executable, "-I", "-c", CLEAN_CLASSIFY, str(folder), str(tmp_path / "texts.json"),
                           str(tmp_path / "out.json")], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "custom code" not in done.stdout + done.stderr  # AutoTokenizer did not stop to ask (issue 18)
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["class"] == "HwnasPrunedBertForSequenceClassification"
    assert result["id2label"] == {"0": "negative", "1": "positive"}
    assert result["predictions"] == expected
    assert result["pipeline"] == [["negative", "positive"][p] for p in expected[:4]]  # the labels' names


@pytest.mark.slow
def test_a_one_shot_pruned_bert_search_ends_with_a_fine_tuned_export(sentiment_files: tuple[Path, Path],
                                                                    tiny_bert_dir: Path, tmp_path: Path,
                                                                    sqlite_url: str) -> None:
    """The one-shot pipeline on the pruned BERT: the adaptive supernet distilled from the teacher, candidates
    scored on inherited weights, the best fine-tuned by distillation and exported for plain `transformers`."""
    storage = open_storage(sqlite_url)
    settings = fast_settings(data_dir=tmp_path / "data", executor="in-process")
    controller = Controller(storage, settings, executor_factory=InProcessExecutor)
    spec = spec_for(sentiment_files, tiny_bert_dir, strategy="evolution", budget={"trials": 8, "train_steps": 15},
                    search={"mode": "one-shot", "supernet_steps": 12, "final_candidates": 1,
                            "screen_candidates": 3, "screen_steps": 4})
    assert spec.search.mode == "one-shot"
    assert spec_for(sentiment_files, tiny_bert_dir).search.mode == "standalone"  # not the default yet
    job_id = submit_job(storage, spec)
    job = controller.run_job(job_id)
    assert job.state == "completed", job.message
    trials = storage.trials(job_id, states=("complete",))
    inherited = [t for t in trials if not t.steps_done]
    (finalist,) = [t for t in trials if t.steps_done == 15]
    screened = [t for t in trials if t.steps_done == 4]  # screened for 4 steps, not chosen
    assert inherited and all(t.weights_path is None for t in inherited)  # scored on the supernet's weights
    assert finalist.steps_done == 15 and "inherited_accuracy" in finalist.metrics
    assert len(screened) == 2 and all("screened_accuracy" in t.metrics for t in [finalist, *screened])
    assert finalist.metrics["screened_accuracy"] >= max(t.metrics["screened_accuracy"] for t in screened)
    (checkpoint,) = storage.checkpoints(job_id)
    assert Path(checkpoint.path).name == f"checkpoint-trial-{finalist.number}"
    texts = [line.rsplit("\t", 1)[0] for line in sentiment_files[1].read_text().splitlines()[1:]]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    done = subprocess.run([sys.executable, "-I", "-c", CLEAN_CLASSIFY, checkpoint.path, str(tmp_path / "texts.json"),
                           str(tmp_path / "out.json")], capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    labels = [int(line.rsplit("\t", 1)[1]) for line in sentiment_files[1].read_text().splitlines()[1:]]
    predictions = json.loads((tmp_path / "out.json").read_text())["predictions"]
    accuracy = sum(p == g for p, g in zip(predictions, labels)) / len(labels)
    assert accuracy == pytest.approx(finalist.metric)  # the export is the finalist the job scored

    # Outside the job, the task rebuilt from the stored job (as the benchmark's ablations rebuild it) finds the
    # job's supernet in the cache and trains the finalist to the figure the job recorded.
    bound = bind_job(storage, storage.get_job(job_id))
    supernet = supernet_weights_path(bound, settings)
    assert supernet.is_file()
    again = evaluate_candidate(candidate_task(bound, settings, finalist, train_steps=15, supernet_path=str(supernet),
                                              artifact_dir=tmp_path / "again"))
    assert again.state == "complete" and again.metric == pytest.approx(finalist.metric)

    # A second job on the same data with another latency target shares the teacher, its importance scores and
    # the supernet: it starts searching at once.
    second = controller.run_job(submit_job(storage, spec_for(
        sentiment_files, tiny_bert_dir, strategy="evolution", latency_target_ms=500.0,
        budget={"trials": 2, "train_steps": 1}, search={"mode": "one-shot", "supernet_steps": 12,
                                                         "final_candidates": 1})))
    assert second.state == "completed", second.message
    assert second.preparation["options"] == job.preparation["options"]
    assert len(list((settings.artifacts_dir / "cache").glob("supernet-*"))) == 1  # one supernet, trained once


@pytest.mark.slow
def test_the_task_agnostic_supernet_is_trained_once_and_serves_another_task(sentiment_files: tuple[Path, Path],
                                                                           tiny_bert_dir: Path, tmp_path: Path,
                                                                           sqlite_url: str) -> None:
    """AutoDistil's way: one supernet distilled from the base on unlabelled text; a job on one task and a job
    on another (other data, other labels, other teacher) both search on it and fit only their heads."""
    from tests.conftest import TINY_WORDS, write_sentiment_tsv

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(TINY_WORDS[(i * 7 + j) % len(TINY_WORDS)] for j in range(12))
                                for i in range(300)))
    storage = open_storage(sqlite_url)
    messages: list[str] = []
    record_progress = storage.record_progress
    storage.record_progress = lambda job_id, text: (messages.append(text), record_progress(job_id, text))[1]
    settings = fast_settings(data_dir=tmp_path / "data", executor="in-process")
    controller = Controller(storage, settings, executor_factory=InProcessExecutor)
    agnostic = {"supernet": "task-agnostic", "agnostic_corpus": str(corpus), "agnostic_steps": 8,
                "agnostic_seq_len": 16}
    search = {"mode": "one-shot", "supernet_steps": 6, "final_candidates": 1}
    jobs = []
    other_task = (write_sentiment_tsv(tmp_path / "other-train.tsv", rows=300, seed=7),
                  write_sentiment_tsv(tmp_path / "other-dev.tsv", rows=60, seed=8))
    for files in (sentiment_files, other_task):
        spec = spec_for(files, tiny_bert_dir, strategy="evolution", budget={"trials": 4, "train_steps": 5},
                        space_options=tiny_pruned_bert_options(tiny_bert_dir, teacher_steps=20, **agnostic),
                        search=search)
        job = controller.run_job(submit_job(storage, spec))
        assert job.state == "completed", job.message
        jobs.append(job)
    first, second = (job.preparation["options"] for job in jobs)
    assert first["teacher_dir"] != second["teacher_dir"]  # two tasks, two teachers
    assert first["agnostic_supernet"] == second["agnostic_supernet"]  # one task-agnostic supernet
    assert len(list((settings.artifacts_dir / "cache" / "agnostic").iterdir())) == 1
    # the job's message followed its preparation: the teacher, then the supernet's steps (issue 17)
    assert any(m.startswith("preparing: the fine-tuned teacher") for m in messages)
    assert "task-agnostic supernet: step 8 of 8" in " ".join(messages), messages
    for job in jobs:  # searched on inherited weights, the best fine-tuned and exported
        trials = storage.trials(job.id, states=("complete",))
        assert any(not t.steps_done for t in trials) and len([t for t in trials if t.steps_done]) == 1
        assert storage.checkpoints(job.id)
