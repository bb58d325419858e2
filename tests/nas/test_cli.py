"""The `hwnas` command line as a user runs it: a real subprocess, exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST_MEASURING_ENV, REPO_ROOT, TINY_SPACE_OPTIONS


def hwnas(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HWNAS_DATA_DIR": str(tmp_path / "data"), "HWNAS_EXECUTOR": "in-process",
           **FAST_MEASURING_ENV}
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)


def write_spec(tmp_path: Path, corpus: Path, **changes: object) -> Path:
    spec = {"space": "sparse-transformer", "space_options": TINY_SPACE_OPTIONS,
            "task": {"kind": "language-modeling", "train": str(corpus), "seq_len": 16, "batch_size": 4},
            "latency_target_ms": 50.0, "budget": {"trials": 3, "train_steps": 5}, "seed": 0,
            "search": {"mode": "standalone"}, **changes}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.slow
def test_search_json_then_browse_and_export(tmp_path: Path, corpus_file: Path) -> None:
    done = hwnas(tmp_path, "search", "--spec", str(write_spec(tmp_path, corpus_file)), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"job_id", "state", "trials", "front", "checkpoint"} <= set(result)
    assert result["state"] == "completed" and result["trials"] == 3
    assert result["front"] and {"trial", "metric", "metrics", "latency_ms", "predicted_latency_ms",
                                "predicted_latency_std_ms", "measured_latency_ms", "arch", "trained_steps"} == set(result["front"][0])
    for member in result["front"]:  # every front member was measured on the device before export
        assert member["measured_latency_ms"] is not None and member["latency_ms"] == member["measured_latency_ms"]
    # The job profiled cpu-1t for its space first (none was stored) and searched with the better predictor.
    assert result["latency_model"]["kind"] in ("lookup-table", "learned")
    assert result["checkpoint"]["measured_latency_ms"] <= 50.0
    assert Path(result["checkpoint"]["path"]).is_dir() and len(result["checkpoint"]["sha256"]) == 64

    job = str(result["job_id"])
    pareto = json.loads(hwnas(tmp_path, "pareto", job, "--json").stdout)
    assert [m["trial"] for m in pareto["front"]] == [m["trial"] for m in result["front"]]
    shown = json.loads(hwnas(tmp_path, "show", job, "--json").stdout)
    assert shown["state"] == "completed" and len(shown["trial_list"]) == 3
    listing = hwnas(tmp_path, "jobs")
    assert listing.returncode == 0 and "completed" in listing.stdout
    table = hwnas(tmp_path, "pareto", job)
    assert "bits_per_char" in table.stdout

    out = tmp_path / "exported"
    exported = hwnas(tmp_path, "export", job, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    again = hwnas(tmp_path, "export", job, "--out", str(out))
    assert again.returncode == 2 and "is not empty" in again.stderr

    finished = hwnas(tmp_path, "cancel", job)
    assert finished.returncode == 4 and "already completed" in finished.stderr
    assert hwnas(tmp_path, "resume", job).returncode == 4


def test_bad_spec_exits_2_with_one_line_per_run_and_stores_nothing(tmp_path: Path, corpus_file: Path) -> None:
    spec = write_spec(tmp_path, corpus_file, strategy="grid", latency_target_ms=-1)
    done = hwnas(tmp_path, "search", "--spec", str(spec))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "strategy: unknown strategy 'grid'" in done.stderr and "latency_target_ms" in done.stderr
    listing = hwnas(tmp_path, "jobs", "--json")
    assert json.loads(listing.stdout) == []


def test_unknown_job_exits_3(tmp_path: Path) -> None:
    for command in (["show", "42"], ["pareto", "42"], ["cancel", "42"], ["resume", "42"]):
        done = hwnas(tmp_path, *command)
        assert done.returncode == 3, (command, done.stderr)
        assert done.stderr.strip() == "error: job 42 does not exist; list jobs with `hwnas jobs`"


def test_cli_import_loads_no_torch_ray_or_transformers() -> None:
    code = ("import sys, nas, nas.cli.app, nas.service, nas.spec, nas.engine.controller; "
            "print(sorted(m for m in ('torch', 'ray', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr


def test_a_job_that_ends_failed_exits_9(tmp_path: Path, tiny_bert_dir: Path,
                                         sentiment_files: tuple[Path, Path]) -> None:
    """A base model whose weights are missing passes the spec check, and the job fails in its preparation:
    `hwnas search` prints the failed job and exits with the failed job's own code."""
    import shutil

    from tests.conftest import tiny_pruned_bert_options

    broken = tmp_path / "bert-without-weights"
    shutil.copytree(tiny_bert_dir, broken)
    for weights in [*broken.glob("*.safetensors"), *broken.glob("*.bin")]:
        weights.unlink()
    spec = {"space": "pruned-bert", "space_options": tiny_pruned_bert_options(broken),
            "task": {"kind": "classification", "train": str(sentiment_files[0]),
                     "validation": str(sentiment_files[1]), "max_seq_len": 16, "batch_size": 16},
            "device": "cpu-1t", "latency_target_ms": 1000.0, "budget": {"trials": 2, "train_steps": 5}, "seed": 0,
            "search": {"mode": "standalone"}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    done = hwnas(tmp_path, "search", "--spec", str(path))
    assert done.returncode == 9, (done.returncode, done.stderr[-2000:])
    assert "error: job 1 failed:" in done.stderr and "failed" in done.stdout


@pytest.mark.slow
def test_a_one_shot_search_ends_with_a_final_trained_checkpoint_that_plain_transformers_loads(
        tmp_path: Path, corpus_file: Path) -> None:
    spec = write_spec(tmp_path, corpus_file, budget={"trials": 12, "train_steps": 5},
                      search={"mode": "one-shot", "supernet_steps": 8, "final_candidates": 2, "final_train_steps": 6})
    done = hwnas(tmp_path, "search", "--spec", str(spec), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "completed" and result["trials"] == 12, result
    shown = json.loads(hwnas(tmp_path, "show", str(result["job_id"]), "--json").stdout)
    trials = shown["trial_list"]
    trained = [t for t in trials if t["steps_done"]]
    inherited = [t for t in trials if t["state"] == "complete" and not t["steps_done"]]
    assert 1 <= len(trained) <= 2 and inherited  # finalists trained on; the rest scored on inherited weights
    for trial in trained:
        assert trial["steps_done"] == 6 and "inherited_bits_per_char" in trial["metrics"]
    assert result["checkpoint"]["trial"] in {t["trial"] for t in trained}
    front = json.loads(hwnas(tmp_path, "pareto", str(result["job_id"]), "--json").stdout)["front"]
    assert {m["trained_steps"] for m in front} <= {0, 6}  # the front says which figures are inherited
    assert [m["trained_steps"] for m in result["front"]] == [m["trained_steps"] for m in front]
    # a second job on the same data and supernet settings, another target, reuses the supernet (no training)
    (supernet,) = (tmp_path / "data").rglob("supernet-*/supernet.safetensors")
    written_ns = supernet.stat().st_mtime_ns
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "latency_target_ms": 40.0}))
    again = hwnas(tmp_path, "search", "--spec", str(spec), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["state"] == "completed"
    assert list((tmp_path / "data").rglob("supernet-*/supernet.safetensors")) == [supernet]
    assert supernet.stat().st_mtime_ns == written_ns
    code = ("import sys; from transformers import AutoModelForCausalLM; import torch; "
            f"m = AutoModelForCausalLM.from_pretrained({result['checkpoint']['path']!r}, trust_remote_code=True); "
            "print(m(torch.tensor([[1, 2, 3]])).logits.shape)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert loaded.returncode == 0 and "torch.Size([1, 3" in loaded.stdout, loaded.stderr
