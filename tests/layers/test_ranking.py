"""The block-wise top k: the same k best scores as torch.topk, by a shorter way."""

import pytest
import torch

from piilab.layers.ranking import BLOCK, top_k


@pytest.mark.parametrize(("width", "k"), [(BLOCK * 96, 50), (BLOCK * 96, 1), (BLOCK * 96 + 5, 8), (BLOCK * 4, 3)])
def test_top_k_finds_torchs_k_best(width, k):
    torch.manual_seed(width + k)
    scores = torch.randn(7, width)
    scores[2, 700:710] = 9.0  # ten best in one block: the block is taken once, all ten found
    values, indices = top_k(scores, k)
    want = scores.topk(k, dim=-1).values
    assert torch.equal(values, want)
    assert torch.equal(scores.gather(1, indices), values)  # each index points at its score
    assert all(len(set(row)) == k for row in indices.tolist())
