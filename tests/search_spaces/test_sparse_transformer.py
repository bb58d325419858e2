from __future__ import annotations

import pytest
import torch

from search_spaces.arch import Arch
from search_spaces.base import get_space
from search_spaces.errors import SpecError
from search_spaces.sparse_transformer.modeling_hwnas_sparse import MixtureOfExperts
from tests.conftest import TINY_SPACE_OPTIONS
from search_spaces.testing import SpaceContract, SupernetContract


class TestSparseTransformerContract(SpaceContract, SupernetContract):
    @pytest.fixture()
    def space(self):  # type: ignore[no-untyped-def]
        return get_space("sparse-transformer", TINY_SPACE_OPTIONS)

    @pytest.fixture()
    def bad_archs(self, space):  # type: ignore[no-untyped-def]
        good = {"vocab_size": 259, "max_seq_len": 32, "d_model": 32,
                "layers": [{"attn_heads": 2, "ffn": {"kind": "dense", "width": 32}}]}

        def variant(**changes):  # type: ignore[no-untyped-def]
            return Arch.from_config(space.name, space.version, {**good, **changes})

        return [
            variant(d_model=48),  # not a d_model choice
            variant(layers=[]),  # too few layers
            variant(layers=[good["layers"][0]] * 3),  # too many layers
            variant(layers=[{"attn_heads": 3, "ffn": {"kind": "none"}}]),  # heads not offered
            variant(layers=[{"attn_heads": 2, "ffn": {"kind": "moe", "experts": 2, "top_k": 3, "width": 16}}]),
            variant(layers=[{"attn_heads": 2, "ffn": {"kind": "dense", "width": 7}}]),
            variant(layers=[{"attn_heads": 2, "ffn": {"kind": "conv"}}]),
            variant(vocab_size=300),
        ]

    def expected_outputs(self, arch: Arch) -> int:
        return 259


def test_options_are_checked_per_field() -> None:
    with pytest.raises(SpecError) as info:
        get_space("sparse-transformer", {"min_layers": 3, "max_layers": 2})
    assert "min_layers" in str(info.value)
    with pytest.raises(SpecError) as info:
        get_space("sparse-transformer", {"d_model_choices": [30], "heads_choices": [4]})
    assert "30 % 4" in str(info.value)
    with pytest.raises(SpecError) as info:
        get_space("sparse-transformer", {"widths": [1]})
    assert "space_options.widths" in str(info.value)


def _moe(experts: int = 4, top_k: int = 2, d_model: int = 8) -> MixtureOfExperts:
    torch.manual_seed(0)
    return MixtureOfExperts(d_model, experts, top_k, width=16).eval()


def _dense_reference(moe: MixtureOfExperts, tokens: torch.Tensor) -> torch.Tensor:
    """Every expert on every token, combined with the top-k weights: the function a sparse dispatch computes."""
    import torch.nn.functional as F

    hidden = F.gelu(torch.einsum("nd,ewd->new", tokens, moe.up_weight) + moe.up_bias)
    every = torch.einsum("new,edw->ned", hidden, moe.down_weight) + moe.down_bias  # (N, E, d)
    _, top_idx, weights = moe.route(tokens)
    d = tokens.shape[-1]
    return (every.gather(1, top_idx[..., None].expand(-1, -1, d)) * weights[..., None]).sum(dim=1)


@pytest.mark.parametrize("top_k", [1, 2])
def test_moe_multiplies_each_token_only_by_its_routed_experts(top_k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatch is sparse: the rows multiplied are the tokens' top-k assignments (not every expert on
    every token), grouped by expert, and a token's output does not move when an expert it is not routed to
    changes."""
    from search_spaces.sparse_transformer import modeling_hwnas_sparse as modeling

    moe = _moe(top_k=top_k)
    x = torch.randn(3, 10, 8)
    rows: list[tuple[int, list[int]]] = []
    grouped, looped = moe._grouped, moe._looped
    monkeypatch.setattr(moe, "_grouped", lambda r, e, ends: rows.append(
        (r.shape[0], torch.diff(ends, prepend=ends.new_zeros(1)).tolist())) or grouped(r, e, ends))
    monkeypatch.setattr(moe, "_looped", lambda r, c: rows.append((r.shape[0], list(c))) or looped(r, c))
    with torch.no_grad():
        out = moe(x).reshape(-1, 8)
        _, top_idx, _ = moe.route(x.reshape(-1, 8))
        assert rows == [(30 * top_k, torch.bincount(top_idx.reshape(-1), minlength=4).tolist())]
        unused = next(e for e in range(4) if not (top_idx[0] == e).any())
        moe.up_weight[unused] += 1.0
        moe.down_bias[unused] += 1.0
        again = moe(x).reshape(-1, 8)
    torch.testing.assert_close(again[0], out[0], rtol=0, atol=0)
    assert not torch.equal(again, out)  # the tokens routed to that expert did move
    assert modeling.MOE_DISPATCH in ("grouped-mm", "loop")


@pytest.mark.parametrize("experts", [2, 4, 8])
@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("batch", [1, 5])
def test_moe_grouped_and_looped_dispatch_compute_the_same_function(experts: int, top_k: int, batch: int) -> None:
    """Inference's grouped matmul, training's loop over experts and the dense reference agree, experts with
    no tokens included (8 experts over 7 tokens leave some empty)."""
    from search_spaces.sparse_transformer import modeling_hwnas_sparse as modeling

    if not modeling.GROUPED_MM:
        pytest.skip(f"torch {torch.__version__} has no grouped matmul here: inference loops too")
    moe = _moe(experts=experts, top_k=top_k)
    x = torch.randn(batch, 7, 8)
    with torch.no_grad():
        inference = moe(x)  # no gradient: grouped
        reference = _dense_reference(moe, x.reshape(-1, 8)).reshape(x.shape)
    training = moe(x)  # parameters need gradients: the loop
    assert training.requires_grad
    torch.testing.assert_close(inference, training.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(inference, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_moe_inference_runs_in_any_dtype_a_user_casts_it_to(dtype: torch.dtype) -> None:
    """A model cast to float64 or bfloat16 (and one moved to a GPU) infers with whatever dispatch runs there:
    the grouped matmul is checked per device and dtype, and a pair it does not support loops over experts
    instead of failing (it used to raise for float64 on CPU)."""
    moe = _moe(experts=4, top_k=2).to(dtype)
    x = torch.randn(2, 16, 8).to(dtype)
    with torch.no_grad():
        inference = moe(x)
        reference = _dense_reference(moe, x.reshape(-1, 8)).reshape(x.shape)
    tolerance = 1e-6 if dtype == torch.float64 else 5e-2
    assert inference.dtype == dtype
    torch.testing.assert_close(inference, reference, rtol=tolerance, atol=tolerance)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_moe_inference_on_cuda_matches_the_dense_reference(dtype: torch.dtype) -> None:
    moe = _moe(experts=8, top_k=2).to(device="cuda", dtype=dtype)
    x = torch.randn(3, 16, 8, device="cuda", dtype=dtype)
    with torch.no_grad():
        inference = moe(x)
        reference = _dense_reference(moe, x.reshape(-1, 8)).reshape(x.shape)
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(inference, reference, rtol=tolerance, atol=tolerance)


def test_balancing_loss_is_lowest_for_balanced_routing() -> None:
    experts = 4
    n = 64
    balanced_probs = torch.full((n, experts), 1 / experts)
    balanced_idx = torch.arange(n).remainder(experts)[:, None]
    skewed_probs = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(n, 1)
    skewed_idx = torch.zeros(n, 1, dtype=torch.long)
    half_idx = torch.arange(n).remainder(2)[:, None]
    half_probs = torch.tensor([[0.4, 0.4, 0.1, 0.1]]).repeat(n, 1)
    balanced = MixtureOfExperts.balancing_loss(balanced_probs, balanced_idx)
    half = MixtureOfExperts.balancing_loss(half_probs, half_idx)
    skewed = MixtureOfExperts.balancing_loss(skewed_probs, skewed_idx)
    assert balanced.item() == pytest.approx(1.0)
    assert balanced < half < skewed


def test_moe_aux_loss_reaches_the_training_loss() -> None:
    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    arch = space.make_arch(d_model=16, layers=[{"attn_heads": 0, "ffn": {"kind": "moe", "experts": 4, "top_k": 1,
                                                                           "width": 16}}])
    model = space.build(arch, seed=0)
    ids = space.example_inputs(arch, batch_size=2, seq_len=16)["input_ids"]
    out = model(input_ids=ids, labels=ids)
    assert out.aux_loss is not None and out.aux_loss.item() >= 1.0 - 1e-6
    out.loss.backward()
    assert model.blocks[0].ffn.router.weight.grad is not None
    assert model.blocks[0].ffn.router.weight.grad.abs().sum() > 0


MOE = {"kind": "moe", "experts": 2, "top_k": 1, "width": 16}


@pytest.mark.parametrize("layers", [
    [{"attn_heads": 2, "ffn": MOE}],  # every layer attends: transformers' cache has exactly one layer per layer
    [{"attn_heads": 2, "ffn": MOE}, {"attn_heads": 2, "ffn": {"kind": "dense", "width": 32}}],
    [{"attn_heads": 0, "ffn": MOE}, {"attn_heads": 2, "ffn": {"kind": "none"}}],
    [{"attn_heads": 0, "ffn": {"kind": "dense", "width": 32}}],  # no attention at all
], ids=["all-attention-1", "all-attention-2", "mixed", "no-attention"])
def test_generate_with_the_cache_transformers_builds_equals_generating_without(layers: list[dict]) -> None:
    """`generate()` sizes its cache from the config (one cache layer per network layer); greedy decoding with
    it gives the tokens decoding without a cache gives, for archs whose every layer attends and archs with
    layers that do not."""
    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    model = space.build(space.make_arch(d_model=32, layers=layers), seed=0).eval()
    prompt = torch.tensor([[5, 80, 120, 3, 200]])
    with torch.no_grad():
        cached = model.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=True, pad_token_id=0)
        uncached = model.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=False, pad_token_id=0)
    assert cached.shape == (1, 15)
    assert cached.tolist() == uncached.tolist()
