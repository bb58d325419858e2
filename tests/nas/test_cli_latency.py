"""`hwnas devices` and `hwnas profile` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import TINY_SPACE_OPTIONS
from tests.nas.test_cli import hwnas


def test_devices_add_list_show(tmp_path: Path) -> None:
    added = hwnas(tmp_path, "devices", "add", "laptop-4t", "--threads", "4", "--seq-len", "128")
    assert added.returncode == 0, added.stderr
    listed = json.loads(hwnas(tmp_path, "devices", "list", "--json").stdout)
    names = [d["name"] for d in listed]
    assert {"cpu-1t", "cpu-2t", "laptop-4t"} <= set(names)
    shown = json.loads(hwnas(tmp_path, "devices", "show", "laptop-4t", "--json").stdout)
    assert shown["threads"] == 4 and shown["seq_len"] == 128 and not shown["builtin"] and shown["latency_models"] == []


def test_bad_device_input_is_refused_with_the_field(tmp_path: Path) -> None:
    bad = hwnas(tmp_path, "devices", "add", "x", "--threads", "0")
    assert bad.returncode == 2 and "threads" in bad.stderr and "(got 0)" in bad.stderr
    reserved = hwnas(tmp_path, "devices", "add", "CPU")
    assert reserved.returncode == 2 and "Ray reserves" in reserved.stderr
    assert hwnas(tmp_path, "devices", "add", "dup").returncode == 0
    again = hwnas(tmp_path, "devices", "add", "dup", "--threads", "2")
    assert again.returncode == 4 and "already exists" in again.stderr
    assert json.loads(hwnas(tmp_path, "devices", "show", "dup", "--json").stdout)["threads"] == 1  # nothing lost
    missing = hwnas(tmp_path, "devices", "show", "nope")
    assert missing.returncode == 3 and "hwnas devices add" in missing.stderr


def test_profile_prints_one_json_object_per_predictor_and_stores_them(tmp_path: Path) -> None:
    result = hwnas(tmp_path, "profile", "--device", "cpu-1t", "--space", "sparse-transformer",
                   "--space-options", json.dumps(TINY_SPACE_OPTIONS), "--samples", "12", "--holdout", "4", "--json")
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["kind"] for r in reports] == ["lookup-table", "learned"]
    for r in reports:
        for key in ("mape", "within_5pct", "within_10pct", "kendall_tau", "noise_floor", "profiling_s"):
            assert key in r
    shown = json.loads(hwnas(tmp_path, "devices", "show", "cpu-1t", "--json").stdout)
    assert sorted(m["kind"] for m in shown["latency_models"]) == ["learned", "lookup-table"]
    assert {m["id"] for m in shown["latency_models"]} == {r["id"] for r in reports}


def test_profile_refuses_bad_options_and_foreign_devices(tmp_path: Path) -> None:
    bad_json = hwnas(tmp_path, "profile", "--device", "cpu-1t", "--space", "sparse-transformer",
                     "--space-options", "{max_layers: 3")
    assert bad_json.returncode == 2 and "--space-options" in bad_json.stderr
    bad_space = hwnas(tmp_path, "profile", "--device", "cpu-1t", "--space", "nope")
    assert bad_space.returncode == 2 and "unknown space" in bad_space.stderr
    assert hwnas(tmp_path, "devices", "add", "jetson", "--backend", "cuda").returncode == 0  # no CUDA here
    foreign = hwnas(tmp_path, "profile", "--device", "jetson", "--space", "sparse-transformer")
    assert foreign.returncode == 7 and "no Ray node advertises the resource 'jetson'" in foreign.stderr
    shown = json.loads(hwnas(tmp_path, "devices", "show", "jetson", "--json").stdout)
    assert shown["latency_models"] == []


def test_a_model_transferred_from_another_device_with_a_few_samples(tmp_path: Path) -> None:
    """`hwnas profile --transfer-from`: another device's predictor plus at most 20 samples here, stored and
    reported like any other kind, and refused with the fix when the source has none or too many samples. The
    new device is one thread at another sequence length: a two-thread device on this 2-core machine times
    only as well as the machine is quiet (153% MAPE against a noise floor of 64% with both cores busy, 242%
    against 33% beside a training run), which says nothing about the transfer."""
    options = ["--space", "sparse-transformer", "--space-options", json.dumps(TINY_SPACE_OPTIONS)]
    assert hwnas(tmp_path, "devices", "add", "cpu-1t-seq32", "--seq-len", "32").returncode == 0
    missing = hwnas(tmp_path, "profile", "--device", "cpu-1t-seq32", *options, "--transfer-from", "cpu-1t")
    assert missing.returncode != 0 and "profile that device first" in missing.stderr
    assert hwnas(tmp_path, "profile", "--device", "cpu-1t", *options, "--samples", "12", "--holdout", "4",
                 "--json").returncode == 0
    too_many = hwnas(tmp_path, "profile", "--device", "cpu-1t-seq32", *options, "--transfer-from", "cpu-1t",
                     "--samples", "40")
    assert too_many.returncode != 0 and "at most 20" in too_many.stderr
    result = hwnas(tmp_path, "profile", "--device", "cpu-1t-seq32", *options, "--transfer-from", "cpu-1t",
                   "--samples", "6", "--holdout", "8", "--json")
    assert result.returncode == 0, result.stderr
    (report,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert report["kind"] == "transfer" and report["n_train"] == 6 and report["n_holdout"] == 8
    assert report["device"] == "cpu-1t-seq32"
    # read the error against the meter's own: timings are only as good as the machine is quiet
    assert report["mape"] < max(50.0, 3 * report["noise_floor"]["mape"])
    shown = json.loads(hwnas(tmp_path, "devices", "show", "cpu-1t-seq32", "--json").stdout)
    assert [m["kind"] for m in shown["latency_models"]] == ["transfer"]


def test_a_decode_device_is_stored_and_refused_for_an_encoder_space(  # type: ignore[no-untyped-def]
        tmp_path: Path, sentiment_files, tiny_bert_dir: Path) -> None:
    added = hwnas(tmp_path, "devices", "add", "cpu-decode", "--seq-len", "32", "--workload", "decode",
                  "--decode-tokens", "16")
    assert added.returncode == 0, added.stderr
    shown = json.loads(hwnas(tmp_path, "devices", "show", "cpu-decode", "--json").stdout)
    assert shown["workload"] == "decode" and shown["decode_tokens"] == 16 and shown["seq_len"] == 32
    bad = hwnas(tmp_path, "devices", "add", "cpu-x", "--workload", "sideways")
    assert bad.returncode == 2 and "workload" in bad.stderr
    spec = {"space": "pruned-bert", "space_options": {"base_model": str(tiny_bert_dir)},
            "task": {"kind": "classification", "train": str(sentiment_files[0]),
                     "validation": str(sentiment_files[1])},
            "device": "cpu-decode", "latency_target_ms": 5.0, "budget": {"trials": 2}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    refused = hwnas(tmp_path, "search", "--spec", str(tmp_path / "spec.json"))
    assert refused.returncode == 2 and "not a causal language model" in refused.stderr
