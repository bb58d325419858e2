"""ONNX Runtime as a device backend: exports equal the torch models (both spaces, MoE with unbalanced
routing), and the exported MoE block stays sparse: a token's output depends only on its top-k experts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latency_models.onnx_runtime import OrtModel, export_onnx
from search_spaces.base import get_space, random_archs
from search_spaces.sparse_transformer.modeling_hwnas_sparse import MixtureOfExperts
from tests.conftest import TINY_SPACE_OPTIONS, tiny_pruned_bert_options

TOLERANCE = 1e-4  # float32: ONNX Runtime's kernels sum in another order than torch's


def _onnx(model, inputs, tmp_path: Path) -> OrtModel:  # type: ignore[no-untyped-def]
    return OrtModel(export_onnx(model, inputs, tmp_path / "model.onnx"), threads=1)


def test_sparse_archs_with_moe_layers_export_equal_at_any_length(tmp_path: Path) -> None:
    import onnx

    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    (arch,) = [a for a in random_archs(space, count=40, seed=1) if '"moe"' in a.config_json][:1]
    model = space.build(arch, seed=0).eval()
    session = _onnx(model, space.example_inputs(arch, batch_size=2, seq_len=16), tmp_path)
    for length in (16, 5, 31):
        ids = torch.randint(0, 259, (2, length), generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            expected = model(input_ids=ids).logits.numpy()
        assert np.abs(session(input_ids=ids.numpy()) - expected).max() < TOLERANCE
    ops = {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert "NonZero" in ops  # routed rows found per expert: a dispatch, not every expert on every token


def _moe_session(moe: MixtureOfExperts, tokens: torch.Tensor, tmp_path: Path, name: str) -> np.ndarray:
    path = export_onnx(moe, {"x": tokens}, tmp_path / f"{name}.onnx")
    return OrtModel(path, threads=1)(x=tokens.numpy())


def test_the_exported_moe_block_runs_only_each_tokens_top_k_experts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    moe = MixtureOfExperts(16, 4, 2, 8).eval()
    with torch.no_grad():  # unbalanced routing: expert 0 takes most tokens, expert 3 none
        moe.router.weight.zero_()
        moe.router.weight[0, 0] = 5.0
        moe.router.weight[1, 1] = 1.0
        moe.router.weight[3] = -5.0
    tokens = torch.randn(1, 12, 16)
    with torch.no_grad():
        _, top_idx, _ = moe.route(tokens.reshape(-1, 16))
        expected = moe(tokens).numpy()
    before = _moe_session(moe, tokens, tmp_path, "before")
    assert np.abs(before - expected).max() < TOLERANCE
    assert 3 not in top_idx.tolist() and 0 in top_idx.flatten().tolist()
    # Change expert 2's weights: only the tokens routed to it may move.
    with torch.no_grad():
        moe.up_weight[2].add_(1.0)
    after = _moe_session(moe, tokens, tmp_path, "after")
    uses_2 = (top_idx == 2).any(dim=-1).numpy()
    moved = np.abs(after - before).reshape(12, 16).max(axis=-1) > 1e-6
    assert (moved == uses_2).all() and uses_2.any() and not uses_2.all()


def test_a_pruned_bert_exports_equal(tiny_bert_dir: Path, tmp_path: Path) -> None:
    space = get_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir))
    arch = space.make_arch([{"source": 0, "heads": 3, "ffn": 32}, {"source": 1, "heads": 0, "ffn": 16}])
    model = space.build(arch, seed=0).eval()
    inputs = space.example_inputs(arch, batch_size=2, seq_len=12)
    session = _onnx(model, inputs, tmp_path)
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    assert np.abs(session(**{k: v.numpy() for k, v in inputs.items()}) - expected).max() < TOLERANCE


def test_an_onnx_profile_of_this_machine_measures_archs() -> None:
    from latency_models.device import DeviceProfile
    from latency_models.measure import measure_archs
    from latency_models.meter import MeterSettings, make_meter

    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    device = DeviceProfile(name="ort-1t", backend="onnxruntime-cpu", threads=1, seq_len=16)
    assert device.describes_this_machine()
    samples = measure_archs(space, random_archs(space, count=2, seed=0),
                            make_meter(device, MeterSettings(warmup=1, repeats=2, min_rounds=1, max_rounds=2)))
    assert all(s.median_ms > 0 and s.protocol["backend"] == "onnxruntime-cpu" for s in samples)
    with pytest.raises(Exception, match="float32"):
        make_meter(DeviceProfile(name="ort-bf16", backend="onnxruntime-cpu", dtype="bfloat16")).place(
            torch.nn.Linear(2, 2), {"input": torch.ones(1, 2)})


def test_an_int8_onnx_profile_times_the_quantised_graph(tmp_path: Path) -> None:
    """dtype int8 on ONNX Runtime: the float32 export quantised dynamically (int8 MatMul weights), timed as
    such; int8 anywhere else is refused with the fix."""
    from pydantic import ValidationError

    from latency_models.device import DeviceProfile
    from latency_models.measure import measure_archs
    from latency_models.meter import MeterSettings, make_meter
    from latency_models.onnx_runtime import OrtModel, export_onnx, quantize_int8

    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    device = DeviceProfile(name="ort-int8", backend="onnxruntime-cpu", threads=1, seq_len=16, dtype="int8")
    samples = measure_archs(space, random_archs(space, count=2, seed=0),
                            make_meter(device, MeterSettings(warmup=1, repeats=2, min_rounds=1, max_rounds=2)))
    assert all(s.median_ms > 0 and s.protocol["dtype"] == "int8" for s in samples)
    arch = space.make_arch(d_model=32, layers=[{"attn_heads": 2, "ffn": {"kind": "dense", "width": 64}}])
    model = space.build(arch, seed=0).eval()
    inputs = space.example_inputs(arch, batch_size=2, seq_len=16)
    full = export_onnx(model, inputs, tmp_path / "float.onnx")
    small = quantize_int8(full, tmp_path / "int8.onnx")
    assert small.stat().st_size < 0.8 * full.stat().st_size  # MatMul weights int8 (embeddings stay float)
    import onnx

    assert "MatMulInteger" in {node.op_type for node in onnx.load(str(small)).graph.node}
    got = OrtModel(small, threads=1)(**{k: v.numpy() for k, v in inputs.items()})
    assert got.shape == (2, 16, model.config.vocab_size) and np.isfinite(got).all()
    with pytest.raises(ValidationError, match="int8.*ONNX Runtime only.*onnxruntime-cpu"):
        DeviceProfile(name="cpu-int8", backend="torch-cpu", dtype="int8")


def test_a_pruned_bert_graph_takes_sentence_pairs_and_padding(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """The graph's inputs are the task's (ids, mask, segments): a padded batch of sentence pairs gives the
    torch model's logits. Found on MRPC: a graph without `token_type_ids` scored 0.7696 where torch scored
    0.7525, every second sentence read as a first."""
    space = get_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir))
    arch = space.full_arch()
    model = space.build(arch, seed=0).eval()
    session = _onnx(model, space.example_inputs(arch, batch_size=2, seq_len=12), tmp_path)
    assert session.input_names == {"input_ids", "attention_mask", "token_type_ids"}
    inputs = space.example_inputs(arch, batch_size=3, seq_len=10)
    inputs["token_type_ids"][:, 5:] = 1  # the second sentence
    inputs["attention_mask"][2, 7:] = 0  # a shorter pair, padded
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    assert np.abs(session(**{k: v.numpy() for k, v in inputs.items()}) - expected).max() < TOLERANCE
