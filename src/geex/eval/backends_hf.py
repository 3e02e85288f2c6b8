"""A Hugging Face causal language model as an evaluation backend, through ``transformers``.

Any ``AutoModelForCausalLM`` with its ``AutoTokenizer``: a Hub name or a local folder, such as
one written by ``geex convert to-hf`` (CodeGeeX's architecture is not in transformers, so that
folder carries its own code and needs ``trust_remote_code``). Prompts are left-padded so that
every row's continuation starts at the same position; each row stops once its own prompt's
:class:`StopRule` fires, as with Geex's own backend.

``transformers`` is an optional dependency (``geex[hf]``) and heavy: it is imported when a
model is loaded, so that this module imports, and says what to install, on the base install.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from geex.errors import GeexError
from geex.eval.backends import Sampling, StopRule
from geex.model.hf_loading import import_transformers, load_causal_lm
from geex.model.sampling import GREEDY_BELOW


class HFBackend:
    """Completions from a ``transformers`` model and tokenizer."""

    def __init__(self, model, tokenizer) -> None:
        tokenizer.padding_side = "left"  # continuations must start where every prompt ends
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise GeexError("the tokenizer has neither a padding nor an end-of-text token")
            tokenizer.pad_token = tokenizer.eos_token
        self.model, self.tokenizer = model.eval(), tokenizer
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        # A row's text ends at its first end-of-text token, or at the padding that follows a
        # row which finished before the others.
        self.end_ids = {*eos, tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
        self.fim = self.fim_ids = None  # set by use_fim_style, for infilling

    def use_fim_style(self, choice: str = "auto", name: str = "the model") -> str:
        """Infill in the style ``choice`` names ("auto": detected from the vocabulary and the
        model type, as ``geex serve`` does); returns the style's name. The style's end tokens
        end a middle."""
        from geex.eval.fim_prompts import resolve_infill_style
        from geex.serve.hf_runner import HFCodec

        self.codec = HFCodec(self.tokenizer, self.model.generation_config)
        hint = getattr(self.model.config, "model_type", None)
        self.fim, self.fim_ids = resolve_infill_style(choice, self.codec.vocab, hint, name)
        self.end_ids |= self.fim_ids.end
        return self.fim.name

    @classmethod
    def load(
        cls,
        name_or_folder: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
    ) -> HFBackend:
        model, tokenizer = load_causal_lm(
            name_or_folder, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        return cls(model, tokenizer)

    def generate(
        self, prompts: Sequence[str], stops: Sequence[StopRule], sampling: Sampling
    ) -> list[list[str]]:
        device = next(self.model.parameters()).device
        batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True).to(device)
        return self._decode(dict(batch), stops, sampling)

    def infill(
        self, holes: Sequence[tuple[str, str]], stops: Sequence[StopRule], sampling: Sampling
    ) -> list[list[str]]:
        """The middles of (prefix, suffix) holes in the model's FIM style, left-padded into
        one batch as :meth:`generate` pads its prompts."""
        from geex.eval.fim_prompts import fim_prompt_ids

        if self.fim is None:
            self.use_fim_style()
        context = getattr(self.model.config, "max_position_embeddings", None) or 1 << 30
        budget = max(context - sampling.max_new_tokens, 1)
        rows = [
            fim_prompt_ids(
                self.codec.encode_text,
                self.fim,
                self.fim_ids,
                prefix,
                suffix,
                max_tokens=budget,
                leading_ids=self.codec.leading_ids,
            )
            for prefix, suffix in holes
        ]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        batch = {
            "input_ids": torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device),
            "attention_mask": torch.tensor(
                [[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device
            ),
        }
        return self._decode(batch, stops, sampling)

    def text_nll(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """Each text's information in nats after the tokenizer's start token (BOS, else EOS;
        with neither, from the text's second token on), and its token count
        (:mod:`geex.eval.bits_per_byte`)."""
        from geex.eval.bits_per_byte import texts_nll

        start = self.tokenizer.bos_token_id
        start = self.tokenizer.eos_token_id if start is None else start
        return texts_nll(
            lambda ids: self.model(input_ids=ids).logits,
            lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"],
            texts,
            start=start,
            vocab_size=len(self.tokenizer),
            context=self._scoring_context(),
            device=next(self.model.parameters()).device,
        )

    def _scoring_context(self) -> int:
        """The positions the model was trained on, under any of the names configs give them;
        without one, the tokenizer's ``model_max_length`` (transformers' placeholder for "no
        limit" is a huge number: then each text is scored whole)."""
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            if isinstance(getattr(config, name, None), int):
                return getattr(config, name)
        return min(self.tokenizer.model_max_length, 1 << 30)

    def _decode(
        self, batch: dict, stops: Sequence[StopRule], sampling: Sampling
    ) -> list[list[str]]:
        prompt_length = batch["input_ids"].shape[1]
        sample = sampling.temperature >= GREEDY_BELOW  # below it, greedy (as Geex decodes)
        options = (
            # top_k=0: sample from the whole distribution (transformers' default keeps 50).
            {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
            if sample
            else {}
        )
        criteria = _StopRules(self, stops, sampling.n, prompt_length)
        with torch.inference_mode():
            output = self.model.generate(
                **batch,
                do_sample=sample,
                max_new_tokens=sampling.max_new_tokens,
                num_return_sequences=sampling.n,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=import_transformers().StoppingCriteriaList([criteria]),
                **options,
            )
        texts = [self.completion_text(row, stops[i // sampling.n]) for i, row in enumerate(
            output[:, prompt_length:].tolist()
        )]  # fmt: skip
        n = sampling.n
        return [texts[p * n : (p + 1) * n] for p in range(len(stops))]

    def completion_text(self, ids: list[int], stop: StopRule) -> str:
        """The text of one row's new ids, up to its end token and its stop rule."""
        text = self.text_until_end(ids)
        end = stop.end(text)
        return text if end is None else text[:end]

    def text_until_end(self, ids: list[int]) -> str:
        for i, token in enumerate(ids):
            if token in self.end_ids:
                ids = ids[:i]
                break
        # A middle drops special tokens, as geex serve's does (GeexBackend.infill says why).
        infilling = self.fim is not None
        return self.tokenizer.decode(ids, skip_special_tokens=infilling)


class _StopRules:
    """transformers stopping criterion (any callable of ``(input_ids, scores)`` serves): row
    ``r`` (prompt ``r // n``) is done when its rule fires. Rows are checked until done, one
    decode each per step."""

    def __init__(
        self, backend: HFBackend, stops: Sequence[StopRule], n: int, prompt_length: int
    ) -> None:
        self.backend, self.stops, self.n, self.prompt_length = backend, stops, n, prompt_length
        self.done: set[int] = set()

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        new = input_ids[:, self.prompt_length :].tolist()
        for row, ids in enumerate(new):
            if row in self.done:
                continue
            if self.stops[row // self.n].end(self.backend.text_until_end(ids)) is not None:
                self.done.add(row)
        return torch.tensor(
            [row in self.done for row in range(len(new))], dtype=torch.bool, device=input_ids.device
        )
