"""Training samples from packed shards, in an order fixed by (seed, sample number) alone.

The token stream is cut into windows of ``seq_len + 1`` tokens at stride ``seq_len`` (inputs
and shifted targets), across document boundaries, as CodeGeeX packed its data. Window order is
a seeded permutation per epoch. Because the order depends on nothing but the seed and a global
sample counter, a run resumes exactly from that counter, and a run restarted on a different
number of data-parallel ranks continues with the same samples.
"""

from __future__ import annotations

import numpy as np
import torch

from geex.data.shards import TokenShards
from geex.errors import GeexError


class PackedSamples:
    def __init__(self, shards: TokenShards, seq_len: int, seed: int):
        self.shards, self.seq_len, self.seed = shards, seq_len, seed
        self.num_samples = (len(shards) - 1) // seq_len
        if self.num_samples < 1:
            raise GeexError(
                f"the training data holds {len(shards)} tokens: not even one sequence of "
                f"{seq_len + 1}; give more data or a shorter --seq-len"
            )
        self._epoch, self._order = -1, None

    def _window(self, sample: int) -> int:
        epoch, i = divmod(sample, self.num_samples)
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch, self._order = epoch, rng.permutation(self.num_samples)
        return int(self._order[i])

    def batch(self, first_sample: int, size: int) -> torch.Tensor:
        """Samples ``first_sample .. first_sample + size - 1`` as a ``(size, seq_len + 1)`` tensor."""
        rows = [
            self.shards.read(self._window(k) * self.seq_len, self.seq_len + 1)
            for k in range(first_sample, first_sample + size)
        ]
        return torch.from_numpy(np.stack(rows))


def micro_batch_start(
    step: int, micro: int, dp_rank: int, *, global_batch: int, micro_batch: int, accumulation: int
) -> int:
    """The first global sample of micro-batch ``micro`` of data-parallel rank ``dp_rank``.

    Optimizer step ``step`` consumes samples ``[step * global_batch, (step + 1) * global_batch)``;
    each rank takes a contiguous block of ``accumulation * micro_batch`` of them, so the union over
    ranks is the same whatever the data-parallel degree.
    """
    return step * global_batch + (dp_rank * accumulation + micro) * micro_batch


def document_positions_and_mask(input_ids: torch.Tensor, eod_id: int):
    """Position ids that restart after every end-of-document token, and a causal mask that
    keeps attention inside each document (CodeGeeX's reset_position_ids/reset_attention_mask).

    Returns ``(position_ids (B, T), attn_mask (B, 1, T, T) bool)``.
    """
    # Document number of each token: the count of end-of-document tokens strictly before it.
    is_eod = (input_ids == eod_id).long()
    return positions_and_mask_of_documents(torch.cumsum(is_eod, dim=1) - is_eod)


def positions_and_mask_of_documents(documents: torch.Tensor):
    """Positions and a causal mask for sequences packed from several documents, given each
    token's document number ``(B, T)`` (the same number over one document's run of tokens):
    positions restart at 0 where a document starts, and no token attends to another document.

    Returns ``(position_ids (B, T), attn_mask (B, 1, T, T) bool)``.
    """
    batch, seq = documents.shape
    arange = torch.arange(seq, device=documents.device).expand(batch, seq)
    start_of_doc = torch.zeros_like(arange)
    boundary = torch.nn.functional.pad(documents[:, 1:] != documents[:, :-1], (1, 0))
    start_of_doc[boundary] = arange[boundary]
    start_of_doc = torch.cummax(start_of_doc, dim=1).values
    positions = arange - start_of_doc
    causal = torch.ones(seq, seq, dtype=torch.bool, device=documents.device).tril()
    same_doc = documents[:, :, None] == documents[:, None, :]
    return positions, (causal & same_doc)[:, None]
