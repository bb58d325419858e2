from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nas.spec import JobSpec, load_spec, parse_spec
from search_spaces.errors import SpecError


def good_spec(corpus: Path) -> dict:  # type: ignore[type-arg]
    return {"space": "sparse-transformer", "task": {"kind": "language-modeling", "train": str(corpus)},
            "device": "cpu-1t", "latency_target_ms": 5.0, "strategy": "nsga2",
            "budget": {"trials": 8, "train_steps": 50, "max_minutes": 10}, "seed": 0}


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"space": "cnn"}, "space", "unknown space 'cnn'"),
    ({"strategy": "grid"}, "strategy", "unknown strategy 'grid'"),
    ({"latency_target_ms": 0}, "latency_target_ms", "greater than 0"),
    ({"latency_target_ms": -3}, "latency_target_ms", "greater than 0"),
    ({"budget": {"trials": 0}}, "budget.trials", "greater than or equal to 1"),
    ({"budget": {"trials": 10**9}}, "budget.trials", "less than or equal to 100000"),
    ({"budget": {"trials": 4, "train_steps": 0}}, "budget.train_steps", "greater than or equal to 1"),
    ({"budget": {"trials": 4, "max_minutes": -1}}, "budget.max_minutes", "greater than 0"),
    ({"bogus": 1}, "bogus", "unknown field"),
    ({"budget": {"trials": 4, "epochs": 3}}, "budget.epochs", "unknown field"),
    ({"device": "tpu v9!"}, "device", "should match pattern"),
    ({"task": {"kind": "language-modeling", "train": "/no/such/file.txt"}}, "task", "does not exist"),
    ({"task": {"kind": "speech", "train": "x"}}, "task", "task.kind must be one of"),
    ({"space_options": {"max_layers": 0}}, "space_options.max_layers", "greater than or equal to 1"),
    ({"search": {"mode": "few-shot"}}, "search.mode", "'standalone' or 'one-shot'"),
    ({"search": {"mode": "one-shot", "supernet_steps": 0}}, "search.supernet_steps", "greater than or equal to 1"),
    ({"search": {"mode": "one-shot"}, "budget": {"trials": 4, "train_steps": 9, "min_train_steps": 3}},
     "spec", "budget.min_train_steps (early stopping) applies to standalone training"),
])
def test_each_bad_field_is_refused_by_name(corpus_file: Path, change: dict, field: str, words: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpecError) as info:
        parse_spec({**good_spec(corpus_file), **change})
    assert any(p.startswith(field) and words in p for p in info.value.problems), info.value.problems


@pytest.fixture()
def plain_space() -> Iterator[str]:
    """A plug-in space without a weight-sharing supernet: the sparse space's methods, not its capability."""
    from search_spaces.base import SPACES, SearchSpace, SupernetSpace, register_space
    from search_spaces.sparse_transformer.space import SparseTransformerSpace

    methods = {k: v for k, v in vars(SparseTransformerSpace).items()
               if k not in ("__dict__", "__weakref__", "name") and k not in vars(SupernetSpace)
               and k not in ("build_supernet", "inherit", "sandwich_archs")}
    cls = register_space("plain-test-space")(type("PlainTestSpace", (SearchSpace,), methods))
    assert not issubclass(cls, SupernetSpace)
    yield "plain-test-space"
    SPACES._classes.pop("plain-test-space")


def test_one_shot_is_refused_for_a_space_without_a_supernet_with_the_fix(corpus_file: Path, plain_space: str) -> None:
    spec = {**good_spec(corpus_file), "space": plain_space, "search": {"mode": "one-shot"}}
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    (problem,) = info.value.problems
    assert "one-shot needs a space with a weight-sharing supernet" in problem and f"{plain_space!r} has none" in problem
    assert "spaces that do: pruned-bert, sparse-transformer" in problem and "use search.mode: standalone" in problem
    assert parse_spec({**spec, "search": {"mode": "standalone"}}).search.mode == "standalone"
    unset = {k: v for k, v in spec.items() if k not in ("search", "strategy")}
    assert parse_spec(unset).search.mode == "standalone"  # no supernet: standalone by default


def test_pruned_bert_is_one_shot_by_default_since_its_benchmarks(sentiment_files: tuple[Path, Path],
                                                                 tiny_bert_dir: Path) -> None:
    train, validation = sentiment_files
    spec = {"space": "pruned-bert", "space_options": {"base_model": str(tiny_bert_dir)},
            "task": {"kind": "classification", "train": str(train), "validation": str(validation)},
            "latency_target_ms": 5.0, "budget": {"trials": 4}}
    assert parse_spec(spec).search.mode == "one-shot"  # one-shot led on SST-2 and MRPC (README)
    assert parse_spec({**spec, "search": {"mode": "standalone"}}).search.mode == "standalone"
    agnostic = {**spec, "space_options": {**spec["space_options"], "supernet": "task-agnostic"}}
    assert parse_spec(agnostic).space_options["supernet"] == "task-agnostic"
    with pytest.raises(SpecError) as info:  # a task-agnostic supernet serves a one-shot search only
        parse_spec({**agnostic, "search": {"mode": "standalone"}})
    (problem,) = info.value.problems
    assert "space_options.supernet: task-agnostic" in problem and "use search.mode: one-shot" in problem


def test_one_shot_is_the_default_mode_where_the_space_has_a_supernet(corpus_file: Path,
                                                                     sentiment_files: tuple[Path, Path],
                                                                     tiny_bert_dir: Path) -> None:
    spec = parse_spec(good_spec(corpus_file))
    assert spec.search.mode == "one-shot" and spec.search.final_candidates == 3
    unset = {k: v for k, v in good_spec(corpus_file).items() if k != "strategy"}
    assert parse_spec(unset).strategy == "evolution"  # the measured best on inherited weights
    assert parse_spec({**unset, "search": {"mode": "standalone"}}).strategy == "nsga2"
    assert parse_spec({**unset, "strategy": "tpe"}).strategy == "tpe"
    for null in ({"search": None}, {"strategy": None}):  # left out is a default; null is a wrong type
        with pytest.raises(SpecError) as info:
            parse_spec({**good_spec(corpus_file), **null})
        assert any(p.startswith(next(iter(null))) for p in info.value.problems), info.value.problems
    assert JobSpec.model_validate(json.loads(spec.to_json())).search.mode == "one-shot"  # stored as chosen
    early_stopping = {**good_spec(corpus_file), "budget": {"trials": 8, "train_steps": 50, "min_train_steps": 10}}
    assert parse_spec(early_stopping).search.mode == "standalone"  # early stopping is a standalone option
    assert parse_spec({**good_spec(corpus_file), "search": {"supernet_steps": 5}}).search.mode == "one-shot"
    assert parse_spec({**good_spec(corpus_file), "search": {"mode": "standalone"}}).search.mode == "standalone"
    train, validation = sentiment_files
    bert = {"space": "pruned-bert", "space_options": {"base_model": str(tiny_bert_dir)},
            "task": {"kind": "classification", "train": str(train), "validation": str(validation)},
            "latency_target_ms": 5.0, "budget": {"trials": 4}}
    # pruned-bert: one-shot by default too since both of its benchmarks (SST-2, MRPC) showed it ahead
    assert parse_spec(bert).search.mode == "one-shot" and parse_spec(bert).strategy == "evolution"


def test_all_problems_are_reported_at_once(corpus_file: Path) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**good_spec(corpus_file), "space": "cnn", "strategy": "grid", "latency_target_ms": 0})
    assert len(info.value.problems) == 3


def test_good_spec_round_trips(corpus_file: Path) -> None:
    spec = parse_spec(good_spec(corpus_file))
    assert parse_spec(json.loads(spec.to_json())) == spec
    assert spec.task.validation_fraction == 0.05


def test_yaml_spec_resolves_data_paths_relative_to_itself(tmp_path: Path, corpus_file: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        "space: sparse-transformer\ntask: {kind: language-modeling, train: corpus.txt}\n"
        "latency_target_ms: 2\nbudget: {trials: 2}\n")
    assert load_spec(tmp_path / "spec.yaml").task.train == str(corpus_file)


def test_unreadable_and_malformed_spec_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("space: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_spec(tmp_path / "bad.json")


@pytest.mark.parametrize("name", ["demo.yaml", "sst2-pruned-bert.yaml"])
def test_example_specs_parse(name: str) -> None:
    from nas.spec import load_spec
    from tests.conftest import REPO_ROOT, SHARED_DATA

    if name.startswith("sst2") and not (SHARED_DATA / "sst2").is_dir():
        pytest.skip("needs ../shared/data/sst2 (see its README)")
    spec = load_spec(REPO_ROOT / "nas" / "examples" / name)
    assert spec.budget.trials > 0
