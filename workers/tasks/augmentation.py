"""Teacher-labelled data augmentation for distillation (TinyBERT's idea, without an outside model).

A small data set (MRPC: 3,667 pairs) seen for many epochs lets a student learn the teacher's answers on the
training examples only. TinyBERT (Jiao et al., 2020) distils on many perturbed copies instead: each word
replaced, with some probability, by a similar word (from BERT's masked-language head or GloVe), and the
copy labelled by the teacher's soft prediction alone, since its gold label may no longer hold.

hwnas has neither a masked-language head (a sentence encoder such as all-MiniLM-L6-v2 ships none) nor word
vectors offline, so the similar pieces come from the teacher's own input-embedding table: a piece's
`neighbours` nearest pieces by cosine similarity, among the pieces the training data uses (so a replacement
is a real, in-domain piece, whatever the tokenizer). Special tokens ([CLS], [SEP], padding) stay.

The randomness is drawn from `(seed, step)`, not from a generator carried across steps, so a resumed run
perturbs its later steps exactly as an uninterrupted one would, and the batches' order is the same with
augmentation as without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor, nn

logger = logging.getLogger(__name__)

CHUNK_ROWS = 2048  # similarity rows computed at once (pieces x vocabulary floats)


class NeighbourTable:
    """For each vocabulary id the training data uses, its nearest ids (cosine similarity of input embeddings)
    among those same ids; ids not in the table are never replaced."""

    def __init__(self, embeddings: Tensor, *, used_ids: Iterable[int], neighbours: int) -> None:
        import torch
        import torch.nn.functional as F

        ids = torch.tensor(sorted(set(used_ids)), dtype=torch.long)
        if len(ids) < 2 or neighbours < 1:
            raise ValueError("a neighbour table needs two or more pieces and one or more neighbours")
        k = min(neighbours, len(ids) - 1)
        vectors = F.normalize(embeddings.detach().float()[ids], dim=-1)
        rows = []
        for start in range(0, len(ids), CHUNK_ROWS):
            similarity = vectors[start:start + CHUNK_ROWS] @ vectors.T
            similarity[torch.arange(similarity.shape[0]), torch.arange(start, start + similarity.shape[0])] = -2.0
            rows.append(ids[similarity.topk(k, dim=-1).indices])
        self.table = torch.full((int(embeddings.shape[0]),), -1, dtype=torch.long)
        self.table[ids] = torch.arange(len(ids))
        self.neighbours = torch.cat(rows)  # (len(ids), k): the k nearest ids of each used id

    def replace(self, input_ids: Tensor, *, rows: Tensor, token_p: float, generator: object) -> Tensor:
        """A copy of `input_ids` where, in the rows marked by `rows`, each piece in the table is replaced by
        one of its neighbours (chosen uniformly) with probability `token_p`."""
        import torch

        out = input_ids.clone()
        slot = self.table[input_ids.clamp(0, len(self.table) - 1)]
        draw = torch.rand(input_ids.shape, generator=generator)  # type: ignore[call-overload]
        chosen = torch.randint(0, self.neighbours.shape[1], input_ids.shape,
                               generator=generator)  # type: ignore[call-overload]
        mask = rows.unsqueeze(-1) & (slot >= 0) & (draw < token_p)
        out[mask] = self.neighbours[slot[mask], chosen[mask]]
        return out


def neighbour_table(teacher: nn.Module, *, token_ids: Sequence[Sequence[int]], special_ids: Iterable[int],
                    neighbours: int) -> NeighbourTable:
    """The table for a teacher's input embeddings and the pieces of `token_ids` that are not special."""
    embeddings = teacher.get_input_embeddings().weight  # type: ignore[operator]
    special = set(special_ids)
    used = {i for ids in token_ids for i in ids if i not in special and 0 <= i < embeddings.shape[0]}
    table = NeighbourTable(embeddings, used_ids=used, neighbours=neighbours)
    logger.info("augmentation: %d pieces with %d neighbours each", len(used), table.neighbours.shape[1])
    return table


def augmentation_generator(seed: int, step: int) -> object:
    """The generator of one step's perturbations, from (seed, step) alone (see the module's note)."""
    import torch

    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + 17) % (2 ** 63))
