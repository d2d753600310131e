"""Token tables, length-sorted batches, right padding and masked mean pooling.

Sequences are sorted by length (longest first, so an out-of-memory shows up on the first batch)
and cut into batches of a fixed count (DNABERT-S) or under a token budget (ESM-2, counting the
padded size `rows x longest`). Padding is on the right only and never enters a mean. Token ids of
a whole shard live in one flat array (`TokenTable`) and a batch is padded from it with numpy, in
one vectorised step, straight into the buffer that goes to the device.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TokenTable:
    """Token ids of many sequences, flat: sequence i is `flat[offsets[i]:offsets[i + 1]]`."""

    flat: np.ndarray  # int64
    offsets: np.ndarray  # int64, one more than there are sequences

    @classmethod
    def from_lists(cls, token_lists: Sequence[Sequence[int]]) -> TokenTable:
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        offsets = np.zeros(len(token_lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter(itertools.chain.from_iterable(token_lists), dtype=np.int64, count=int(offsets[-1]))
        return cls(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, index: int) -> list[int]:
        return self.flat[self.offsets[index] : self.offsets[index + 1]].tolist()


def pad_rows(
    table: TokenTable, rows: Sequence[int], pad_id: int, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`(ids [len(rows), longest], lengths)` for the sequences `rows` of `table`, right-padded with
    `pad_id`; `ids` is written into `out` (a flat int64 buffer, e.g. pinned memory) when given."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = table.lengths[rows]
    longest = int(lengths.max())
    if out is None:
        ids = np.empty((len(rows), longest), dtype=np.int64)
    else:
        ids = out[: len(rows) * longest].reshape(len(rows), longest)
    ids.fill(pad_id)
    positions = np.arange(longest)
    real = positions[None, :] < lengths[:, None]
    ids[real] = table.flat[(table.offsets[rows][:, None] + positions[None, :])[real]]
    return ids, lengths


def length_sorted(lengths: Sequence[int]) -> list[int]:
    """Indices by decreasing length; equal lengths keep input order (a stable, deterministic plan)."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def batches_by_count(lengths: Sequence[int], max_sequences: int) -> list[list[int]]:
    if max_sequences < 1:
        raise ValueError("batch size must be at least 1")
    order = length_sorted(lengths)
    return [order[i : i + max_sequences] for i in range(0, len(order), max_sequences)]


def batches_by_tokens(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Batches whose padded size (rows x longest row) stays within `max_tokens`; a sequence longer
    than the budget forms a batch of its own."""
    if max_tokens < 1:
        raise ValueError("token budget must be at least 1")
    batches: list[list[int]] = []
    current: list[int] = []
    for index in length_sorted(lengths):
        # Sorted longest first: the batch's first row is its longest.
        if current and (len(current) + 1) * lengths[current[0]] > max_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def split_batch(batch: list[int], max_rows: int) -> list[list[int]]:
    return [batch[i : i + max_rows] for i in range(0, len(batch), max_rows)]


def pad_right(token_lists: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(input_ids, attention_mask)`, both int64 [rows, longest], real tokens first in each row."""
    ids, lengths = pad_rows(TokenTable.from_lists(token_lists), range(len(token_lists)), pad_id)
    ids = torch.from_numpy(ids)
    return ids, length_mask(torch.from_numpy(lengths), ids.shape[1])


def length_mask(lengths: torch.Tensor, longest: int) -> torch.Tensor:
    """int64 [rows, longest] attention mask, 1 on each row's first `lengths[row]` positions (built
    where `lengths` is, so only the lengths travel to the device)."""
    return (torch.arange(longest, device=lengths.device)[None, :] < lengths[:, None]).long()


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where `mask` is 1, in float32: [rows, length, dim] -> [rows, dim].
    Divides by each row's own count of pooled positions, never by the padded length."""
    weights = mask.to(device=hidden.device, dtype=torch.float32).unsqueeze(-1)
    total = (hidden.float() * weights).sum(dim=1)
    return total / weights.sum(dim=1)
