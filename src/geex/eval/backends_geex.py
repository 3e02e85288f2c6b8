"""A Geex checkpoint as an evaluation backend: several prompts decoded together, n samples each.

The prompts of one call (a batch from :func:`geex.eval.backends.generate_samples`) are
left-padded and decoded as one batch by :func:`geex.model.generation.generate`, which fans
each prompt's cache out to its ``n`` samples. Each row stops as soon as its own prompt's
:class:`StopRule` fires, so a batch mixing Python and C++ prompts ends each where it should
and a finished row stops costing compute.

torch (through :mod:`geex.model`) is imported when a model is loaded, so that importing
the evaluation stays light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from geex.eval.backends import PromptFitter, Sampling, StopRule


class GeexBackend:
    """Completions from a Geex model and its tokenizer (the prompts already carry their tag).

    Each prompt's last pre-token is healed (:mod:`geex.tokenizer.healing`), as ``geex serve``
    and ``geex generate`` heal theirs, unless ``sampling.token_healing`` is off: a HumanEval-X
    prompt ends after a line break, where Geex's tokenizers would have kept the next line's
    indentation in the same token.
    """

    def __init__(self, model, tokenizer, *, repetition_penalty: float | None = None) -> None:
        from geex.model.loader import check_tokenizer_fits

        check_tokenizer_fits(tokenizer, model.config)
        self.model, self.tokenizer = model, tokenizer
        self.fitter = PromptFitter(model.config.max_seq_len)
        self.fim = self.fim_ids = None  # set by use_fim_style, for infilling
        # The checkpoint folder's own (geex.model.generation_defaults)
        self.repetition_penalty = repetition_penalty

    def use_fim_style(self, choice: str = "auto", name: str = "the model") -> str:
        """Infill in the style ``choice`` names ("auto": detected from the vocabulary, as
        ``geex serve`` does); returns the style's name. Refused where the vocabulary lacks it."""
        from geex.eval.fim_prompts import resolve_infill_style

        vocab = {
            **self.tokenizer.backend.get_vocab(with_added_tokens=True),
            **self.tokenizer.marker_aliases,
        }
        self.fim, self.fim_ids = resolve_infill_style(choice, vocab, "geex", name)
        return self.fim.name

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        *,
        tokenizer: str | os.PathLike | None = None,
        device: str = "auto",
        dtype: str = "auto",
        quantize: str | None = None,
    ) -> GeexBackend:
        """A checkpoint folder, with the tokenizer saved in it unless another is named."""
        from geex.model.loader import load_for_inference

        loaded = load_for_inference(
            folder, tokenizer=tokenizer, device=device, dtype=dtype, quantize=quantize
        )
        return cls(loaded.model, loaded.tokenizer, repetition_penalty=loaded.repetition_penalty)

    def generate(
        self, prompts: Sequence[str], stops: Sequence[StopRule], sampling: Sampling
    ) -> list[list[str]]:
        from geex.tokenizer.healing import heal_prompt

        healer = self.tokenizer if sampling.token_healing else None
        healed = [
            heal_prompt(
                healer, self.fitter.fit(self.tokenizer.encode(prompt), sampling.max_new_tokens)
            )
            for prompt in prompts
        ]
        return self._decode([h.ids for h in healed], stops, sampling, healed=healed)

    def infill(
        self, holes: Sequence[tuple[str, str]], stops: Sequence[StopRule], sampling: Sampling
    ) -> list[list[str]]:
        """The middles of (prefix, suffix) holes in the model's FIM style; each ends at the
        style's end token or its stop rule. The prompt leaves the middle the same room as a
        completion gets (:class:`~geex.eval.backends.PromptFitter`)."""
        from geex.eval.fim_prompts import fim_prompt_ids

        if self.fim is None:
            self.use_fim_style()
        budget = self.fitter.prompt_budget(sampling.max_new_tokens)
        prompt_ids = [
            fim_prompt_ids(
                self.tokenizer.encode, self.fim, self.fim_ids, prefix, suffix, max_tokens=budget
            )
            for prefix, suffix in holes
        ]
        return self._decode(prompt_ids, stops, sampling, end_ids=self.fim_ids.end, infill=True)

    def text_nll(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """Each text's information in nats after the end-of-document token (where every
        training document starts), and its token count (:mod:`geex.eval.bits_per_byte`)."""
        from geex.eval.bits_per_byte import texts_nll

        return texts_nll(
            self.model,
            self.tokenizer.encode,
            texts,
            start=self.tokenizer.eod_id,
            vocab_size=self.tokenizer.vocab_size,
            context=self.model.config.max_seq_len,
            device=next(self.model.parameters()).device,
        )

    def _decode(
        self,
        prompt_ids: list[list[int]],
        stops: Sequence[StopRule],
        sampling: Sampling,
        end_ids: frozenset[int] = frozenset(),
        infill: bool = False,
        healed: Sequence | None = None,
    ) -> list[list[str]]:
        """``infill``: special tokens a model emits mid-middle are dropped from the text, as
        ``geex serve`` drops them from what it sends an editor, so that a middle is judged as
        a user would get it (a completion keeps them, as HumanEval-X runs always have).
        ``healed``: each prompt's :class:`~geex.tokenizer.healing.HealedPrompt`, whose first
        tokens are constrained and whose tail is cut from the text."""
        from geex.model.generation import generate
        from geex.model.sampling import SamplingConfig

        n = sampling.n

        def decode(row: int, ids: list[int]) -> str:
            if infill:
                return self.tokenizer.decode_text(ids)
            text = self.tokenizer.decode(ids)
            return healed[row // n].completion(text) if healed else text

        config = SamplingConfig(
            max_new_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            num_samples=n,
            repetition_penalty=sampling.penalty,
        )
        cut: dict[int, str] = {}  # row -> its text up to where its stop rule fired

        def should_stop(row: int, ids: list[int]) -> bool:
            ended = bool(ids) and ids[-1] in end_ids  # an infill's end token
            text = decode(row, ids[:-1] if ended else ids)
            end = stops[row // n].end(text)
            if end is not None or ended:
                cut[row] = text if end is None else text[:end]
            return end is not None or ended

        token_ids = generate(
            self.model,
            prompt_ids,
            config,
            vocab_size=self.tokenizer.vocab_size,
            eos_id=self.tokenizer.eod_id,
            pad_id=self.tokenizer.pad_id,
            should_stop=should_stop,
            allowed_tokens=(lambda row, ids: healed[row // n].allowed(ids)) if healed else None,
        )
        return [
            [
                cut[p * n + s] if p * n + s in cut else decode(p * n + s, ids)
                for s, ids in enumerate(samples)
            ]
            for p, samples in enumerate(token_ids)
        ]
