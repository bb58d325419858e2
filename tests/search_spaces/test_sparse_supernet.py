"""The sparse-transformer supernet: every arch runs on the shared weights, and extracting an arch gives a
standalone model with the same outputs (what "inherited weights" means for export and fine-tuning)."""

from __future__ import annotations

import pytest
import torch

from search_spaces.base import get_space, random_archs
from search_spaces.sparse_transformer.supernet import SparseSupernet
from tests.conftest import TINY_SPACE_OPTIONS


@pytest.fixture(scope="module")
def space():  # type: ignore[no-untyped-def]
    return get_space("sparse-transformer", {**TINY_SPACE_OPTIONS, "vocab_size": 50})


def test_an_extracted_arch_computes_what_the_supernet_computes_for_it(space) -> None:  # type: ignore[no-untyped-def]
    supernet = SparseSupernet(space.options, seed=0).eval()
    torch.manual_seed(1)
    inputs = torch.randint(0, 50, (2, 12))
    archs = random_archs(space, count=12, seed=3)
    assert {a.config["d_model"] for a in archs} == set(space.options.d_model_choices)
    kinds = {layer["ffn"]["kind"] for a in archs for layer in a.config["layers"]}
    assert {"dense", "moe"} <= kinds  # the archs cover both feed-forward kinds
    with torch.no_grad():
        for arch in archs:
            model = supernet.extract(arch, space.build(arch, seed=5)).eval()
            expected = model(input_ids=inputs).logits
            torch.testing.assert_close(supernet(inputs, arch), expected, rtol=1e-5, atol=1e-5)


def test_an_arch_trains_only_its_leading_slices(space) -> None:  # type: ignore[no-untyped-def]
    supernet = SparseSupernet(space.options, seed=0)
    small = next(a for a in random_archs(space, count=40, seed=7)
                 if a.config["d_model"] == min(space.options.d_model_choices))
    d = small.config["d_model"]
    logits = supernet(torch.randint(0, 50, (2, 8)), small)
    logits.square().mean().backward()
    grad = supernet.tok_emb.weight.grad
    assert grad is not None and grad[:, :d].abs().sum() > 0 and grad[:, d:].abs().sum() == 0
    unused = supernet.layers[len(small.config["layers"]):]
    assert all(p.grad is None for layer in unused for p in layer.parameters())


def test_the_supernet_holds_the_largest_arch(space) -> None:  # type: ignore[no-untyped-def]
    supernet = SparseSupernet(space.options)
    largest = max(random_archs(space, count=40, seed=11),
                  key=lambda a: sum(p.numel() for p in space.build(a).parameters()))
    assert sum(p.numel() for p in supernet.parameters()) >= sum(p.numel() for p in space.build(largest).parameters())


def test_attention_blocks_are_shared_by_their_order_among_an_archs_attention_layers(
        space) -> None:  # type: ignore[no-untyped-def]
    """An arch whose first layer has no attention uses the supernet's first attention block in its second
    layer (its first attention layer), not the second layer's: a later layer's block has learned to follow
    another attention, and used alone it made such archs score like attention-free ones (measured)."""
    from search_spaces.sparse_transformer.supernet import attention_sources

    d = max(space.options.d_model_choices)
    heads = max(space.options.heads_choices)
    arch = space.make_arch(d_model=d, layers=[{"attn_heads": 0, "ffn": {"kind": "dense", "width": 32}},
                                              {"attn_heads": heads, "ffn": {"kind": "none"}}])
    assert attention_sources(arch) == [None, 0]
    supernet = SparseSupernet(space.options, seed=0).eval()
    inputs = torch.randint(0, 50, (2, 8))
    with torch.no_grad():
        before = supernet(inputs, arch)
        supernet.layers[1].qkv.weight.add_(1.0)  # the second layer's own attention: unused by this arch
        torch.testing.assert_close(supernet(inputs, arch), before)
        supernet.layers[0].qkv.weight.add_(1.0)  # the first attention block: this arch's
        assert not torch.allclose(supernet(inputs, arch), before)
        model = supernet.extract(arch, space.build(arch, seed=5)).eval()
        torch.testing.assert_close(model(input_ids=inputs).logits, supernet(inputs, arch), rtol=1e-5, atol=1e-5)
