"""Which gids a rank owns: contiguous blocks on a fixed grid of `block` neurons.

Block edges never depend on the number of ranks, so the run store's neuron chunks (one block
wide) are each written by exactly one rank, for any rank count, also after a resume on a
different number of ranks.
"""

from __future__ import annotations

import numpy as np

MAX_BLOCK = 4096


def block_size(n_total: int) -> int:
    """Neurons per block: about n/64, at most MAX_BLOCK, at least 1."""
    return max(1, min(MAX_BLOCK, -(-n_total // 64)))


def bounds(n_total: int, size: int, block: int) -> np.ndarray:
    """Rank boundaries (size + 1 gids): whole blocks, as equal in neuron count as blocks allow."""
    n_blocks = -(-n_total // block)
    edges = np.round(np.linspace(0, n_blocks, size + 1)).astype(np.int64) * block
    return np.minimum(edges, n_total)
