from __future__ import annotations

import pytest
import torch

from search_spaces.arch import Arch
from search_spaces.base import get_space
from search_spaces.errors import SpecError
from search_spaces.sparse_transformer.modeling_hwnas_sparse import MixtureOfExperts
from tests.conftest import TINY_SPACE_OPTIONS
from search_spaces.testing import SpaceContract


class TestSparseTransformerContract(SpaceContract):
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


@pytest.mark.parametrize("top_k", [1, 2])
def test_moe_runs_each_expert_only_on_its_routed_tokens(top_k: int) -> None:
    moe = _moe(top_k=top_k)
    x = torch.randn(3, 10, 8)
    seen: dict[int, int] = {}
    for e, expert in enumerate(moe.experts):
        expert.register_forward_hook(lambda m, inp, out, e=e: seen.__setitem__(e, seen.get(e, 0) + inp[0].shape[0]))
    with torch.no_grad():
        out = moe(x)
        _, top_idx, weights = moe.route(x.reshape(-1, 8))
    routed = torch.bincount(top_idx.reshape(-1), minlength=4).tolist()
    # Each expert processed exactly its routed tokens, and experts with none never ran.
    assert {e: n for e, n in seen.items()} == {e: n for e, n in enumerate(routed) if n}
    assert sum(seen.values()) == 30 * top_k

    # Reference computed a second way: every expert on every token, combined with the top-k weights.
    with torch.no_grad():
        tokens = x.reshape(-1, 8)
        dense = torch.stack([expert(tokens) for expert in moe.experts], dim=1)  # (N, E, d)
        reference = (dense.gather(1, top_idx[..., None].expand(-1, -1, 8)) * weights[..., None]).sum(dim=1)
    torch.testing.assert_close(out.reshape(-1, 8), reference, rtol=1e-5, atol=1e-6)


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
