"""Fine-tuning samples: conversations rendered with the chat template, packed, loss on answers only.

Each conversation is rendered with the template one assistant turn at a time: the text up to
the answer is the template rendered as a prompt (``add_generation_prompt``), and the answer is
what the full rendering adds after it, up to and including the end-of-turn token. The pieces
are encoded separately, so an answer's tokens are exactly ``encode(answer) + [end of turn]``:
the tokens the model will produce after the served prompt, which is encoded alone too. Only
those tokens are trained (targets elsewhere are -100).

Conversations are packed into sequences of ``seq_len + 1`` tokens (inputs and shifted targets)
in a seeded order, each sequence filled until the next conversation does not fit, the rest
padded. Attention does not cross conversations and positions restart in each
(:func:`geex.train.data.positions_and_mask_of_documents`), so a packed conversation gets the
logits it would get alone. As with pretraining, the order of sequences depends on the seed and
a global sample counter only, so a run resumes exactly and the data-parallel degree may change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geex.errors import GeexError
from geex.model.loss import IGNORE_INDEX
from geex.tokenizer.chat_template import GEEX_CHAT_TEMPLATE, render_chat_template
from geex.train.conversations import Conversation
from geex.train.data import positions_and_mask_of_documents

PACKING_STREAM = 0x5F7


@dataclass
class SftBatch:
    inputs: torch.Tensor  # (B, T)
    targets: torch.Tensor  # (B, T), IGNORE_INDEX outside answers
    position_ids: torch.Tensor  # (B, T), restarting in each conversation
    attn_mask: torch.Tensor  # (B, 1, T, T) bool, causal within each conversation
    documents: torch.Tensor  # (B, T): each input's conversation number (-1: padding)

    def to(self, device) -> SftBatch:
        return SftBatch(*(t.to(device) for t in vars(self).values()))


def encode_conversation(
    messages: Sequence[dict], tokenizer, template: str
) -> tuple[list[int], list[bool]]:
    """The ids of a conversation up to its last answer, and which of them are answer tokens
    (each answer's content and its end-of-turn token)."""
    end_of_turn = tokenizer.eod_token
    special = {"bos_token": end_of_turn, "eos_token": end_of_turn}
    ids: list[int] = []
    trained: list[bool] = []
    done = ""  # the rendered text encoded so far
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render_chat_template(template, messages[:i], special, add_generation_prompt=True)
        full = render_chat_template(
            template, messages[: i + 1], special, add_generation_prompt=False
        )
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise GeexError(
                "the chat template renders a conversation's beginning differently once it "
                "goes on: its answers cannot be located for training"
            )
        answer = full[len(prompt) :]
        end = answer.rfind(end_of_turn)
        if end < 0:
            raise GeexError(f"the chat template does not close an answer with {end_of_turn!r}")
        context = tokenizer.encode(prompt[len(done) :], allow_special=True)
        content = tokenizer.encode(answer[:end])  # an answer's text is text, whatever it holds
        ids += [*context, *content, tokenizer.eod_id]
        trained += [False] * len(context) + [True] * (len(content) + 1)
        done = prompt + answer[: end + len(end_of_turn)]
    return ids, trained


def fine_tuning_tokenizer(model_folder: str | Path):
    """The tokenizer saved with the model to fine-tune, with the chat template it will be
    trained on: its own if it has one (a model tuned before), else Geex's."""
    from geex.tokenizer import load_tokenizer

    try:
        tokenizer = load_tokenizer(model_folder)
    except GeexError as err:
        raise GeexError(
            f"fine-tuning on conversations needs the tokenizer saved with the model ({err})"
        ) from None
    if tokenizer.chat_template is None:
        tokenizer.chat_template = GEEX_CHAT_TEMPLATE
    return tokenizer


class SftSamples:
    """Packed fine-tuning sequences, served in a seeded order like pretraining samples."""

    def __init__(
        self,
        conversations: Sequence[Conversation],
        tokenizer,
        template: str,
        seq_len: int,
        seed: int,
    ):
        self.seq_len, self.seed = seq_len, seed
        encoded = [_encoded(c, tokenizer, template) for c in conversations]
        for (ids, _), conversation in zip(encoded, conversations, strict=True):
            if len(ids) > seq_len + 1:
                raise GeexError(
                    f"{conversation.where}: {len(ids):,} tokens, more than a sequence of "
                    f"--seq-len {seq_len} holds ({seq_len + 1}): shorten it, or train with a "
                    f"longer --seq-len (up to the model's context)"
                )
        # The packing order: a stream of its own (epoch orders draw from [seed, epoch]).
        order = np.random.default_rng([seed, PACKING_STREAM]).permutation(len(encoded))
        self.ids, self.trained, self.documents = _pack(
            [encoded[i] for i in order], seq_len + 1, tokenizer.eod_id
        )
        self.num_samples = len(self.ids)
        # Targets that count in each sequence: the loss is averaged over a step's answer tokens.
        self.targets_per_sample = self._targets(np.arange(self.num_samples)).sum(axis=1)
        self._epoch, self._order = -1, None

    def _targets(self, rows: np.ndarray) -> np.ndarray:
        """Which targets of ``rows`` are trained: an answer token, in the same conversation."""
        documents = self.documents[rows]
        return self.trained[rows, 1:] & (documents[:, 1:] == documents[:, :-1])

    def _rows(self, first_sample: int, size: int) -> np.ndarray:
        rows = []
        for sample in range(first_sample, first_sample + size):
            epoch, i = divmod(sample, self.num_samples)
            if epoch != self._epoch:
                rng = np.random.default_rng([self.seed, epoch])
                self._epoch, self._order = epoch, rng.permutation(self.num_samples)
            rows.append(self._order[i])
        return np.array(rows)

    def batch(self, first_sample: int, size: int) -> SftBatch:
        """Samples ``first_sample .. first_sample + size - 1``."""
        rows = self._rows(first_sample, size)
        ids = torch.from_numpy(self.ids[rows])
        targets = ids[:, 1:].masked_fill(~torch.from_numpy(self._targets(rows)), IGNORE_INDEX)
        documents = torch.from_numpy(self.documents[rows][:, :-1])
        positions, mask = positions_and_mask_of_documents(documents)
        return SftBatch(ids[:, :-1], targets, positions, mask, documents)

    def trained_targets(self, first_sample: int, size: int) -> int:
        """How many answer tokens samples ``first_sample ..`` (``size`` of them) train on."""
        return int(self.targets_per_sample[self._rows(first_sample, size)].sum())


def _encoded(conversation: Conversation, tokenizer, template: str):
    try:
        return encode_conversation(conversation.messages, tokenizer, template)
    except GeexError as err:
        raise GeexError(f"{conversation.where}: {err}") from None


def _pack(encoded: list[tuple[list[int], list[bool]]], length: int, pad_id: int):
    """Rows of ``length`` tokens: ids, trained flags and each token's conversation number
    (padding is a conversation of its own, never trained)."""
    rows: list[list[int]] = [[]]
    for number, (ids, _) in enumerate(encoded):
        if len(rows[-1]) + len(ids) > length:
            rows.append([])
        rows[-1].extend([number] * len(ids))
    flat_ids = [token for ids, _ in encoded for token in ids]
    flat_trained = [flag for _, flags in encoded for flag in flags]
    ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    trained = np.zeros((len(rows), length), dtype=bool)
    documents = np.full((len(rows), length), -1, dtype=np.int64)
    start = 0
    for r, row in enumerate(rows):
        ids[r, : len(row)] = flat_ids[start : start + len(row)]
        trained[r, : len(row)] = flat_trained[start : start + len(row)]
        documents[r, : len(row)] = row
        start += len(row)
    return ids, trained, documents
