"""Validation loss and bits per byte per language on the held-out split.

For each language, up to ``eval_tokens`` tokens of its held-out documents are concatenated and
cut into windows of ``seq_len + 1``; the loss is the mean over all their predicted tokens. The
windows are fixed at the start, so the numbers are comparable from step to step.

Bits per byte is the same predictions' information over the UTF-8 bytes they stand for: the
sum of their losses in nats, over ln 2, over their bytes (:mod:`geex.tokenizer.token_bytes`).
Unlike the loss it does not depend on the tokenizer, so runs on different vocabularies compare.
Special tokens (the end of each document) stand for no text, 0 bytes, and their loss is left
out of it. As ``geex eval`` scores a text (:mod:`geex.eval.bits_per_byte`), only the
tokenizer's ids share the probability: the rows the model's vocabulary is padded with (never a
target) are left out of its softmax, so the two measure the same. The loss keeps them: it is
the training loss, which is taken over the whole padded vocabulary. It needs the dataset's
tokenizer; a dataset written without one gets the loss only. Under tensor parallel the logits
stay split by vocabulary and both are computed from the slices (:func:`geex.model.loss.lm_loss`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.distributed as dist

from geex.data.shards import TokenShards
from geex.errors import GeexError
from geex.model.loss import lm_loss
from geex.tokenizer.token_bytes import token_byte_lengths
from geex.tokenizer.tokenizer import Tokenizer
from geex.train.precision import autocast

# The columns summed per language (and reduced over ranks): loss of every predicted token and
# their count; loss of the tokens that stand for text, and their bytes.
_LOSS, _TOKENS, _TEXT_LOSS, _BYTES = range(4)


class Validation:
    def __init__(
        self,
        shards: TokenShards,
        seq_len: int,
        eval_tokens: int,
        tokenizer: Tokenizer | None = None,
    ):
        self.windows: dict[str, torch.Tensor] = {}
        for language in shards.languages:
            docs = shards.documents_of(language)
            if not len(docs):
                continue
            take, pieces = 0, []
            for offset, length in zip(docs["offset"], docs["length"], strict=True):
                n = int(min(length, eval_tokens + 1 - take))
                pieces.append(shards.read(int(offset), n))
                take += n
                if take > eval_tokens:
                    break
            tokens = np.concatenate(pieces)
            width = min(seq_len, len(tokens) - 1)
            if width < 1:
                continue
            count = (len(tokens) - 1) // width
            rows = [tokens[i * width : i * width + width + 1] for i in range(count)]
            self.windows[language] = torch.from_numpy(np.stack(rows))
        self.token_bytes = _byte_table(tokenizer, shards.vocab_size)

    @torch.no_grad()
    def measure(self, model, precision: str, micro_batch: int, world) -> dict[str, dict]:
        """``{"val_loss": {language: loss, ..., "all": loss}}``, and ``"val_bpb"`` alike where
        the tokenizer gives byte counts: identical on every rank."""
        was_training = model.training
        model.eval()
        token_bytes = None if self.token_bytes is None else self.token_bytes.to(world.device)
        sums = torch.zeros(len(self.windows) + 1, 4, dtype=torch.float64)
        for i, windows in enumerate(self.windows.values()):
            # Every data-parallel rank runs the same number of batches (sharded models need all
            # ranks in every forward); padding rows carry zero weight.
            per_rank = -(-len(windows) // world.dp)
            mine = windows[world.dp_rank * per_rank : (world.dp_rank + 1) * per_rank]
            for start in range(0, per_rank, micro_batch):
                batch = mine[start : start + micro_batch]
                real = len(batch)
                size = min(micro_batch, per_rank - start)
                if real < size:
                    pad = windows[:1].expand(size - real, -1)
                    batch = torch.cat([batch, pad]) if real else pad
                batch = batch.to(world.device)
                with autocast(precision, world.device, model):
                    logits = model(batch[:, :-1])
                targets = batch[:, 1:]
                per_token = lm_loss(logits, targets, reduction="none").view(len(batch), -1)
                per_token = per_token[:real]
                sums[i, _LOSS] += float(per_token.double().sum())
                sums[i, _TOKENS] += per_token.numel()
                if token_bytes is not None:
                    nbytes = token_bytes[targets[:real].long()]
                    # vocab= rather than slicing the logits: under tensor parallel they are
                    # split by vocabulary, and a slice would gather them.
                    text_loss = lm_loss(
                        logits, targets, reduction="none", vocab=len(token_bytes)
                    ).view(len(batch), -1)[:real]
                    sums[i, _TEXT_LOSS] += float(
                        text_loss.masked_fill(nbytes == 0, 0).double().sum()
                    )
                    sums[i, _BYTES] += float(nbytes.sum())
        sums[-1] = sums[:-1].sum(dim=0)
        if world.mesh is not None:
            reduced = sums.to(world.comm_device)
            dist.all_reduce(reduced, group=world.mesh["dp"].get_group())
            sums = reduced.cpu()
        model.train(was_training)
        names = [*self.windows, "all"]
        rows = dict(zip(names, sums.tolist(), strict=True))
        measured = {"val_loss": {n: r[_LOSS] / r[_TOKENS] for n, r in rows.items() if r[_TOKENS]}}
        if self.token_bytes is not None:
            measured["val_bpb"] = {
                name: r[_TEXT_LOSS] / math.log(2) / r[_BYTES]
                for name, r in rows.items()
                if r[_BYTES]
            }
        return measured


def _byte_table(tokenizer: Tokenizer | None, vocab_size: int) -> torch.Tensor | None:
    """Bytes per id for every id the shards may hold; None without a byte-level tokenizer."""
    lengths = None if tokenizer is None else token_byte_lengths(tokenizer)
    if lengths is None:
        return None
    if len(lengths) < vocab_size:
        raise GeexError(
            f"the dataset's tokenizer has {len(lengths):,} ids but its shards declare "
            f"{vocab_size:,}: the tokenizer.json beside them is not the one they were made with"
        )
    return torch.from_numpy(lengths)
