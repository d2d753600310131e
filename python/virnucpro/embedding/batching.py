"""Length-sorted batches, right padding and masked mean pooling.

Sequences are sorted by length (longest first, so an out-of-memory shows up on the first batch)
and cut into batches of a fixed count (DNABERT-S) or under a token budget (ESM-2, counting the
padded size `rows x longest`). Padding is on the right only and never enters a mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


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
    longest = max(len(tokens) for tokens in token_lists)
    ids = torch.full((len(token_lists), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), longest), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        ids[row, : len(tokens)] = torch.as_tensor(tokens, dtype=torch.long)
        mask[row, : len(tokens)] = 1
    return ids, mask


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where `mask` is 1, in float32: [rows, length, dim] -> [rows, dim].
    Divides by each row's own count of pooled positions, never by the padded length."""
    weights = mask.to(device=hidden.device, dtype=torch.float32).unsqueeze(-1)
    total = (hidden.float() * weights).sum(dim=1)
    return total / weights.sum(dim=1)
