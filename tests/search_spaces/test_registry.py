from __future__ import annotations

import pytest

from search_spaces.arch import Arch
from search_spaces.base import SPACES, SearchSpace, get_space, register_space
from search_spaces.errors import RegistryError
from search_spaces.registry import Registry


def test_duplicate_name_is_refused() -> None:
    from search_spaces.sparse_transformer.space import SparseTransformerSpace

    with pytest.raises(RegistryError, match="already registered"):
        register_space("sparse-transformer")(type("Again", (SparseTransformerSpace,), {}))


def test_non_subclass_is_refused() -> None:
    registry: Registry[SearchSpace] = Registry("search space", SearchSpace)
    with pytest.raises(RegistryError, match="not a subclass"):
        registry.register("thing")(dict)  # type: ignore[arg-type]


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(RegistryError, match="sparse-transformer"):
        get_space("no-such-space")
    assert "sparse-transformer" in SPACES.names()


def test_arch_hash_is_stable_and_key_order_free() -> None:
    a = Arch.from_config("s", 1, {"b": 1, "a": [1, 2]})
    b = Arch.from_config("s", 1, {"a": [1, 2], "b": 1})
    assert a == b and a.hash == b.hash and len(a.hash) == 16
    assert Arch.from_config("s", 2, {"b": 1, "a": [1, 2]}).hash != a.hash
    config = a.config
    config["b"] = 99
    assert a.config["b"] == 1
