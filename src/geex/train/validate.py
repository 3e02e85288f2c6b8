"""Validation loss per language on the held-out split.

For each language, up to ``eval_tokens`` tokens of its held-out documents are concatenated and
cut into windows of ``seq_len + 1``; the loss is the mean over all their predicted tokens. The
windows are fixed at the start, so the numbers are comparable from step to step.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from geex.data.shards import TokenShards
from geex.model.loss import lm_loss
from geex.train.precision import autocast


class Validation:
    def __init__(self, shards: TokenShards, seq_len: int, eval_tokens: int):
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

    @torch.no_grad()
    def losses(self, model, precision: str, micro_batch: int, world) -> dict[str, float]:
        """Mean loss per language and over all of them ("all"), identical on every rank."""
        was_training = model.training
        model.eval()
        sums = torch.zeros(len(self.windows) + 1, 2, dtype=torch.float64)
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
                with autocast(precision, world.device):
                    logits = model(batch[:, :-1])
                per_token = lm_loss(logits, batch[:, 1:], reduction="none").view(len(batch), -1)
                sums[i, 0] += float(per_token[:real].double().sum())
                sums[i, 1] += per_token[:real].numel()
        sums[-1] = sums[:-1].sum(dim=0)
        if world.mesh is not None:
            reduced = sums.to(world.comm_device)
            dist.all_reduce(reduced, group=world.mesh["dp"].get_group())
            sums = reduced.cpu()
        model.train(was_training)
        names = [*self.windows, "all"]
        return {name: float(s / n) for name, (s, n) in zip(names, sums.tolist(), strict=True) if n}
