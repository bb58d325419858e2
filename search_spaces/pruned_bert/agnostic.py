"""The task-agnostic adaptive BERT (AutoDistil): one width- and depth-adaptive network per base model,
distilled from the base itself on unlabelled text, reused by every classification job.

The base's heads and FFN units are reordered by weight magnitude (no task, so no Taylor scores); every
sub-network then runs on leading slices, exactly as in the task-specific supernet (`PrunedBertSupernet`).
Training samples the sandwich per step (the full network, the smallest and `random_archs_per_step` random
archs) on windows of the corpus, and distils each from the frozen base:

- each kept layer's hidden state against the base's same layer (DynaBERT's depth mapping);
- the self-attention relations of the last kept layer against the base's same layer (MiniLMv2, as AutoDistil
  distils them): the query-query, key-key and value-value scaled dot-product distributions over the sequence,
  with one relation head (any number of student heads gives the same shape), as KL(base || sub-network) over
  real tokens.

AutoDistil maps a sub-network's last layer to the base's last layer. With one set of shared layers across
depths that gives a layer two targets (the base's same layer when deeper layers are kept, the last one when
they are not): on a tiny BERT, 120 steps of it halved the one-layer sub-network's loss and made a two-layer
one worse (2.13 to 2.33). So every kept layer learns its own layer, and a shallow sub-network's head learns
to read the features of its depth in the job's head fit.

`train_agnostic_supernet` trains it once into `cache_dir/agnostic/<key>` (key: the base's fingerprint, the
corpus by content, steps, seed, sequence length, batch size and this recipe's version), saving a checkpoint
every `checkpoint_every_s` so that a killed run resumes there; a later job, whatever its task, finds it.
A job then fits its task head on top (the encoder frozen; `PrunedBertSpace.build_supernet`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.arch import Arch
from search_spaces.errors import DataError
from search_spaces.distillation import hidden_state_mse
from search_spaces.pruned_bert.supernet import PrunedBertSupernet

if TYPE_CHECKING:
    from search_spaces.pruned_bert.space import PrunedBertSpace

logger = logging.getLogger(__name__)

AGNOSTIC_FORMAT = 1
AGNOSTIC_FILE = "agnostic_supernet.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class AgnosticRecipe:
    """How the task-agnostic supernet is trained (every field is part of its cache key)."""

    corpus: str
    steps: int
    seed: int = 0
    seq_len: int = 128
    batch_size: int = 16
    learning_rate: float = 1e-4
    random_archs_per_step: int = 2
    max_corpus_bytes: int = 4_000_000


def relation_log_probs(layer: nn.Module, x: torch.Tensor, *, heads: int, head_size: int,
                       mask: torch.Tensor | None) -> list[torch.Tensor]:
    """MiniLMv2's self-attention relations of one BERT layer on its input `x`, with one relation head:
    log softmax(A A^T / sqrt(d)) for A in the layer's (first `heads` heads of) queries, keys and values."""
    s = layer.attention.self
    width = heads * head_size
    result = []
    for proj in (s.query, s.key, s.value):
        a = F.linear(x, proj.weight[:width], proj.bias[:width])
        scores = a @ a.transpose(1, 2) / math.sqrt(width)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, :], torch.finfo(scores.dtype).min)
        result.append(F.log_softmax(scores, dim=-1))
    return result


def relation_kl(student: list[torch.Tensor], teacher: list[torch.Tensor], *,
                mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the relations and the real query tokens of KL(teacher row || student row)."""
    losses = []
    for mine, theirs in zip(student, teacher):
        kl = (theirs.exp() * (theirs - mine)).sum(-1)  # (batch, seq)
        if mask is not None:
            kl = (kl * mask).sum() / mask.sum()
        else:
            kl = kl.mean()
        losses.append(kl)
    return torch.stack(losses).mean()


class AgnosticObjective:
    """The distillation loss of one sub-network against the frozen base (see the module's docstring)."""

    def __init__(self, supernet: PrunedBertSupernet, base: nn.Module) -> None:
        self.supernet, self.base = supernet, base
        self._cache: tuple[torch.Tensor, tuple[torch.Tensor, ...], dict[int, list[torch.Tensor]]] | None = None

    def _base_states(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The base's hidden states on `batch` (embeddings first), once per batch."""
        key = batch["input_ids"]  # held by the cache, so `is` cannot match a new batch at a reused address
        if self._cache is None or self._cache[0] is not key:
            with torch.no_grad():
                out = self.base(input_ids=key, attention_mask=batch["attention_mask"],
                                token_type_ids=batch.get("token_type_ids"), output_hidden_states=True)
            self._cache = (key, tuple(out.hidden_states), {})
        return self._cache[1]

    def _base_relations(self, batch: dict[str, torch.Tensor], source: int) -> list[torch.Tensor]:
        states = self._base_states(batch)
        assert self._cache is not None
        memo = self._cache[2]
        if source not in memo:
            layer = self.base.bert.encoder.layer[source]
            heads = layer.attention.self.query.weight.shape[0] // self.supernet.head_size
            with torch.no_grad():
                memo[source] = relation_log_probs(layer, states[source], heads=heads,
                                                  head_size=self.supernet.head_size,
                                                  mask=batch["attention_mask"].bool())
        return memo[source]

    def loss(self, batch: dict[str, torch.Tensor], arch: Arch) -> torch.Tensor:
        base_states = self._base_states(batch)
        _, mine, last_input = self.supernet(batch, arch, hidden=True, last_input=True)
        mask = batch["attention_mask"]
        loss = hidden_state_mse([(state, base_states[source + 1]) for source, state in mine.items()],
                                attention_mask=mask)
        last = arch.config["layers"][-1]
        if last["heads"]:
            source = int(last["source"])
            layer = self.supernet.model.bert.encoder.layer[source]
            student = relation_log_probs(layer, last_input, heads=int(last["heads"]),
                                         head_size=self.supernet.head_size, mask=mask.bool())
            loss = loss + relation_kl(student, self._base_relations(batch, source), mask=mask.float())
        return loss


def agnostic_key(space: PrunedBertSpace, recipe: AgnosticRecipe) -> str:
    from search_spaces.corpus import fingerprint, read_corpus

    corpus = fingerprint(read_corpus(recipe.corpus, max_bytes=recipe.max_corpus_bytes))
    payload = {"base": space.base.fingerprint, "recipe": {**asdict(recipe), "corpus": corpus},
               "head_step": space.options.head_step, "ffn_step": space.options.ffn_step,
               "min_layers": space.options.min_layers, "format": AGNOSTIC_FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def corpus_windows(space: PrunedBertSpace, recipe: AgnosticRecipe) -> torch.Tensor:
    """The corpus as rows of `seq_len` token ids ([CLS] text [SEP]), by the base's own tokenizer."""
    from transformers import AutoTokenizer

    from search_spaces.corpus import read_corpus

    text = read_corpus(recipe.corpus, max_bytes=recipe.max_corpus_bytes).decode("utf-8", errors="replace")
    tokenizer = AutoTokenizer.from_pretrained(str(space.tokenizer_dir()))
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    body = recipe.seq_len - 2
    if len(ids) < body:
        raise DataError(f"space_options.agnostic_corpus {recipe.corpus!r} holds {len(ids)} tokens; the "
                         f"task-agnostic supernet needs at least {body} (one window); give a longer text")
    rows = [[tokenizer.cls_token_id, *ids[i:i + body], tokenizer.sep_token_id]
            for i in range(0, len(ids) - body + 1, body)]
    return torch.tensor(rows, dtype=torch.long)


def reordered_base(space: PrunedBertSpace, *, seed: int) -> nn.Module:
    """The base network with each layer's heads and units reordered by weight magnitude."""
    from search_spaces.pruned_bert.importance import magnitude_importance
    from search_spaces.pruned_bert.supernet import reorder_by_importance

    b = space.base
    model = space.base_model_network(seed=seed)
    state = model.state_dict()
    importance = magnitude_importance(state, layers=b.layers, heads=b.heads, head_size=b.head_size)
    model.load_state_dict(reorder_by_importance(state, importance, layers=b.layers, head_size=b.head_size))
    return model


def build_agnostic_start(space: PrunedBertSpace, *, seed: int) -> tuple[PrunedBertSupernet, nn.Module]:
    """The untrained supernet (the base reordered by magnitude) and the frozen base it learns from."""
    base = space.base_model_network(seed=seed)
    for parameter in base.parameters():
        parameter.requires_grad_(False)
    supernet = PrunedBertSupernet(reordered_base(space, seed=seed), teacher=None, head_size=space.base.head_size)
    return supernet.eval(), base.eval()


def train_agnostic_supernet(space: PrunedBertSpace, recipe: AgnosticRecipe, *, cache_dir: Path,
                            checkpoint_every_s: float = 120.0,
                            progress: Callable[[int, int, float], None] | None = None) -> Path:
    """The trained task-agnostic supernet's file, trained now or found in the cache (see the docstring)."""
    from safetensors.torch import save_file

    from search_spaces.base import random_archs

    folder = Path(cache_dir) / "agnostic" / agnostic_key(space, recipe)
    final = folder / AGNOSTIC_FILE
    if final.is_file():
        logger.info("task-agnostic supernet cached at %s", folder)
        return final
    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    windows = corpus_windows(space, recipe)
    supernet, base = build_agnostic_start(space, seed=recipe.seed)
    objective = AgnosticObjective(supernet, base)
    optimizer = torch.optim.AdamW(supernet.parameters(), lr=recipe.learning_rate, weight_decay=0.01)
    largest, smallest = space.sandwich_archs()
    step = 0
    checkpoint = folder / CHECKPOINT_FILE
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=True)
        supernet.load_state_dict(saved["weights"])
        optimizer.load_state_dict(saved["optimizer"])
        step = int(saved["step"])
        logger.info("task-agnostic supernet: resuming at step %d of %d", step, recipe.steps)
    saved_at = time.monotonic()
    warmup = max(1, recipe.steps // 10)
    while step < recipe.steps:
        generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
        rows = torch.randint(0, len(windows), (recipe.batch_size,), generator=generator)
        batch = {"input_ids": windows[rows], "attention_mask": torch.ones_like(windows[rows])}
        torch.manual_seed(recipe.seed * 1_000_003 + step)
        archs = [largest, smallest, *random_archs(space, count=recipe.random_archs_per_step,
                                                  seed=random.Random(recipe.seed * 7_919 + step).randrange(2**31))]
        supernet.train()
        optimizer.zero_grad(set_to_none=True)
        losses = []
        for arch in archs:
            loss = objective.loss(batch, arch)
            loss.backward()
            losses.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(supernet.parameters(), 1.0)
        for group in optimizer.param_groups:
            group["lr"] = recipe.learning_rate * min(1.0, (step + 1) / warmup) * 0.5 * (
                1 + math.cos(math.pi * step / max(1, recipe.steps)))
        optimizer.step()
        step += 1
        if progress is not None:
            progress(step, recipe.steps, losses[1])
        if time.monotonic() - saved_at >= checkpoint_every_s and step < recipe.steps:
            tmp = folder / (CHECKPOINT_FILE + ".tmp")
            torch.save({"step": step, "weights": supernet.state_dict(), "optimizer": optimizer.state_dict()}, tmp)
            tmp.replace(checkpoint)
            saved_at = time.monotonic()
        if step % 50 == 0 or step == recipe.steps:
            logger.info("task-agnostic supernet: step %d of %d, losses %s", step, recipe.steps,
                        " ".join(f"{x:.4f}" for x in losses))
    supernet.eval()
    from search_spaces.pruned_bert.space import ENCODER_PREFIXES

    encoder = {k: v.detach().contiguous() for k, v in supernet.model.state_dict().items()
               if k.startswith(ENCODER_PREFIXES)}
    tmp = folder / (AGNOSTIC_FILE + ".tmp")
    save_file(encoder, str(tmp))
    (folder / "agnostic.json").write_text(json.dumps({**asdict(recipe), "base": space.options.base_model,
                                                      "train_s": time.perf_counter() - began}, indent=1))
    tmp.replace(final)
    checkpoint.unlink(missing_ok=True)
    logger.info("task-agnostic supernet trained in %.0f s: %s", time.perf_counter() - began, folder)
    return final


def job_supernet(space: PrunedBertSpace, *, seed: int) -> PrunedBertSupernet:
    """A job's supernet on the task-agnostic one: the prepared encoder (unprepared: the base reordered by
    magnitude) under the job's teacher's pooler and head, the encoder frozen, so that training it (the job's
    supernet phase) fits the head alone, on every sub-network of the sandwich, by distillation from the teacher."""
    from search_spaces.pruned_bert.space import ENCODER_PREFIXES, load_cached

    model = reordered_base(space, seed=seed)
    head = {k: v for k, v in space.full_state(seed=seed).items() if not k.startswith(ENCODER_PREFIXES)}
    encoder = load_cached(Path(space.options.agnostic_supernet)) if space.options.agnostic_supernet else {}
    model.load_state_dict({**model.state_dict(), **encoder, **head}, strict=True)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not name.startswith(ENCODER_PREFIXES))
    return PrunedBertSupernet(model, teacher=space.teacher(), head_size=space.base.head_size, hidden_weight=0.0)
