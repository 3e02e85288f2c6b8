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
from geex.eval.backends import PromptFitter, Sampling, StopRule
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
        self.fitter = PromptFitter(self._context())
        # The model's own, from its generation_config.json (transformers' default is 1, off)
        self.repetition_penalty: float | None = getattr(
            model.generation_config, "repetition_penalty", None
        )

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
        """Each prompt's last pre-token healed as Geex's backend heals it
        (:mod:`geex.tokenizer.healing`), where the tokenizer is a byte-level fast one and
        ``sampling.token_healing`` is on."""
        from geex.tokenizer.healing import heal_prompt

        backend = getattr(self.tokenizer, "backend_tokenizer", None)  # fast tokenizers only
        backend = backend if sampling.token_healing else None
        healed = [
            heal_prompt(backend, self.fitter.fit(ids, sampling.max_new_tokens, keep=self._bos(ids)))
            for ids in map(self._ids, prompts)
        ]
        return self._decode(self._left_padded([h.ids for h in healed]), stops, sampling, healed)

    def infill(
        self, holes: Sequence[tuple[str, str]], stops: Sequence[StopRule], sampling: Sampling
    ) -> list[list[str]]:
        """The middles of (prefix, suffix) holes in the model's FIM style, left-padded into
        one batch as :meth:`generate` pads its prompts."""
        from geex.eval.fim_prompts import fim_prompt_ids

        if self.fim is None:
            self.use_fim_style()
        budget = self.fitter.prompt_budget(sampling.max_new_tokens)
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
        return self._decode(self._left_padded(rows), stops, sampling)

    def _left_padded(self, rows: list[list[int]]) -> dict:
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        return {
            "input_ids": torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device),
            "attention_mask": torch.tensor(
                [[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device
            ),
        }

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
            context=self.fitter.context,
            device=next(self.model.parameters()).device,
        )

    def _ids(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt)["input_ids"]

    def _bos(self, ids: list[int]) -> int:
        """1 where ``ids`` start with the BOS the tokenizer adds (kept when a prompt is cut)."""
        bos = self.tokenizer.bos_token_id
        return int(bos is not None and bool(ids) and ids[0] == bos)

    def _context(self) -> int:
        """The positions the model was trained on, under any of the names configs give them;
        without one, the tokenizer's ``model_max_length`` (transformers' placeholder for "no
        limit" is a huge number: then each text is scored whole)."""
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            if isinstance(getattr(config, name, None), int):
                return getattr(config, name)
        return min(self.tokenizer.model_max_length, 1 << 30)

    def _decode(
        self, batch: dict, stops: Sequence[StopRule], sampling: Sampling, healed: Sequence = ()
    ) -> list[list[str]]:
        """``healed``: each prompt's :class:`~geex.tokenizer.healing.HealedPrompt`, whose
        first tokens are constrained and whose tail is cut from the text."""
        prompt_length = batch["input_ids"].shape[1]
        n = sampling.n
        tails = [healed[i // n] if healed else None for i in range(len(stops) * n)]
        sample = sampling.temperature >= GREEDY_BELOW  # below it, greedy (as Geex decodes)
        options = (
            # top_k=0: sample from the whole distribution (transformers' default keeps 50).
            {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
            if sample
            else {}
        )
        # Always given, 1 included: an unset one would be the folder's generation_config.json
        # even where the user turned it off. Transformers looks at the whole sequence.
        options["repetition_penalty"] = sampling.penalty
        criteria = _StopRules(self, stops, tails, prompt_length)
        transformers = import_transformers()
        processors = transformers.LogitsProcessorList(
            [_Healing(tails, prompt_length)] if any(h and h.tail for h in tails) else []
        )
        with torch.inference_mode():
            output = self.model.generate(
                **batch,
                do_sample=sample,
                # Within the positions the model has (a prompt fills at most its budget)
                max_new_tokens=min(sampling.max_new_tokens, self.fitter.context - prompt_length),
                num_return_sequences=sampling.n,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=transformers.StoppingCriteriaList([criteria]),
                logits_processor=processors,
                **options,
            )
        texts = [self.completion_text(row, stops[i // n], tails[i]) for i, row in enumerate(
            output[:, prompt_length:].tolist()
        )]  # fmt: skip
        return [texts[p * n : (p + 1) * n] for p in range(len(stops))]

    def completion_text(self, ids: list[int], stop: StopRule, healed=None) -> str:
        """The text of one row's new ids, up to its end token and its stop rule."""
        text = self.text_until_end(ids, healed)
        end = stop.end(text)
        return text if end is None else text[:end]

    def text_until_end(self, ids: list[int], healed=None) -> str:
        """The row's text up to its end token, less a healed prompt's tail."""
        for i, token in enumerate(ids):
            if token in self.end_ids:
                ids = ids[:i]
                break
        # A middle drops special tokens, as geex serve's does (GeexBackend.infill says why).
        infilling = self.fim is not None
        text = self.tokenizer.decode(ids, skip_special_tokens=infilling)
        return healed.completion(text) if healed is not None else text


class _Healing:
    """transformers logits processor (any callable of ``(input_ids, scores)`` serves): a
    healed row's next token must spell its prompt's tail (:mod:`geex.tokenizer.healing`)."""

    def __init__(self, healed: Sequence, prompt_length: int) -> None:
        self.healed, self.prompt_length = healed, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        from geex.model.generation import only_allowed

        allowed = [
            healed.allowed(ids) if healed is not None and healed.tail else None
            for healed, ids in zip(
                self.healed, input_ids[:, self.prompt_length :].tolist(), strict=True
            )
        ]
        return only_allowed(scores, allowed)


class _StopRules:
    """transformers stopping criterion (any callable of ``(input_ids, scores)`` serves): row
    ``r`` (prompt ``r // n``) is done when its rule fires. Rows are checked until done, one
    decode each per step."""

    def __init__(
        self, backend: HFBackend, stops: Sequence[StopRule], healed: Sequence, prompt_length: int
    ) -> None:
        self.backend, self.stops, self.healed = backend, stops, healed
        self.n, self.prompt_length = len(healed) // len(stops), prompt_length
        self.done: set[int] = set()

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        new = input_ids[:, self.prompt_length :].tolist()
        for row, ids in enumerate(new):
            if row in self.done:
                continue
            text = self.backend.text_until_end(ids, self.healed[row])
            if self.stops[row // self.n].end(text) is not None:
                self.done.add(row)
        return torch.tensor(
            [row in self.done for row in range(len(new))], dtype=torch.bool, device=input_ids.device
        )
