"""Batch plans, padding and masked pooling."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from virnucpro.models.batching import (
    batches_by_count,
    batches_by_tokens,
    length_sorted,
    masked_mean,
    pad_right,
)

lengths_strategy = st.lists(st.integers(min_value=1, max_value=300), max_size=200)


@given(lengths_strategy, st.integers(min_value=1, max_value=50))
def test_count_batches_cover_every_sequence_once_longest_first(lengths, size):
    batches = batches_by_count(lengths, size)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert flat == length_sorted(lengths)
    assert all(len(b) == size for b in batches[:-1])
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert batches == batches_by_count(list(lengths), size)  # deterministic


@given(lengths_strategy, st.integers(min_value=1, max_value=2000))
def test_token_batches_respect_the_budget(lengths, budget):
    batches = batches_by_tokens(lengths, budget)
    flat = [i for batch in batches for i in batch]
    assert flat == length_sorted(lengths)
    for batch in batches:
        padded = len(batch) * max(lengths[i] for i in batch)
        assert padded <= budget or len(batch) == 1


def test_equal_lengths_keep_input_order():
    assert length_sorted([5, 7, 5, 7, 5]) == [1, 3, 0, 2, 4]


def test_pad_right_puts_real_tokens_first():
    ids, mask = pad_right([[1, 9, 2], [1, 2], [1, 8, 8, 8, 2]], pad_id=3)
    assert ids.tolist() == [[1, 9, 2, 3, 3], [1, 2, 3, 3, 3], [1, 8, 8, 8, 2]]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_masked_mean_ignores_padding_and_divides_by_real_count():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [1e9, -1e9]], [[5.0, 5.0], [7.0, 9.0], [9.0, 13.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert masked_mean(hidden, mask).tolist() == [[2.0, 3.0], [7.0, 9.0]]
    assert masked_mean(hidden.to(torch.bfloat16), mask).dtype == torch.float32
