"""Text in, code out: the language tag, stop rules and streaming around token decoding.

Everything that turns a prompt string into finished completions lives here, so the CLI, the
server and the evaluation harness cut completions the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from geex.languages import Language, get_language
from geex.model.generation import generate
from geex.model.loader import check_tokenizer_fits
from geex.model.sampling import SamplingConfig
from geex.tokenizer.healing import heal_prompt


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int
    finish_reason: str  # "stop" (a stop rule), "eos" (end of document) or "length"


def with_language_tag(prompt: str, language: Language | None) -> str:
    """Prefix CodeGeeX's language tag line, as the model saw it at the top of every file."""
    if language is None or prompt.startswith(language.tag + "\n"):
        return prompt
    return f"{language.tag}\n{prompt}"


def closing_brace_end(text: str, depth: int = 0) -> int | None:
    """Where a brace language's body ends: just after the first ``}`` that closes more than the
    completion opened (CodeGeeX's HumanEval-X rule; braces in strings count too, as there).
    ``depth`` is the braces left open by text before ``text`` (a stream's earlier pieces)."""
    for i, char in enumerate(text):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                return i + 1
    return None


def completion_end(text: str, stop: Sequence[str], language: Language | None) -> int | None:
    """The length of ``text`` to keep, or None when no stop rule has fired yet."""
    ends = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if language is not None and language.brace_delimited:
        brace = closing_brace_end(text)
        if brace is not None:
            ends.append(brace)
    return min(ends) if ends else None


def held_back(text: str, stop: Sequence[str]) -> int:
    """How many trailing characters may still turn into a stop sequence or a split character."""
    hold = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence decodes as U+FFFD for now
        hold = max(hold, 1)
    return hold


def complete(
    model,
    tokenizer,
    prompts: str | Sequence[str],
    *,
    language: str | Language | None = None,
    sampling: SamplingConfig | None = None,
    stop: Sequence[str] = (),
    add_tag: bool = True,
    on_text: Callable[[int, str], None] | None = None,
    compile_step: bool = False,
) -> list[list[Completion]]:
    """Complete each prompt ``sampling.num_samples`` times: ``out[prompt][sample]``.

    Each prompt's last pre-token is healed (:mod:`geex.tokenizer.healing`): the samples spell
    it again first, and their text starts after it. Stop rules: the language's stop sequences
    and, for brace languages, the brace that closes the body; plus ``stop``. ``on_text(row, text)`` receives each row's new text as it is
    decoded (row = prompt * num_samples + sample), never text that a stop rule later cuts.
    ``compile_step`` decodes through ``torch.compile`` (faster per token, a compile first).
    """
    sampling = sampling or SamplingConfig()
    check_tokenizer_fits(tokenizer, model.config)
    if isinstance(prompts, str):
        prompts = [prompts]
    lang = get_language(language) if language is not None else None
    stop = [*stop, *(lang.stop_sequences if lang else ())]
    texts = [with_language_tag(p, lang) if add_tag else p for p in prompts]

    decoded: dict[int, str] = {}
    emitted: dict[int, int] = {}
    ended_by_eos: set[int] = set()

    def note_eos(rows: list[int], tokens: list[int]) -> None:
        ended_by_eos.update(r for r, t in zip(rows, tokens, strict=True) if t == tokenizer.eod_id)

    healed = [heal_prompt(tokenizer, tokenizer.encode(t)) for t in texts]

    def should_stop(row: int, ids: list[int]) -> bool:
        text = healed[row // sampling.num_samples].completion(tokenizer.decode_text(ids))
        decoded[row] = text
        end = completion_end(text, stop, lang)
        if on_text is not None:
            upto = end if end is not None else len(text) - held_back(text, stop)
            if upto > emitted.get(row, 0):
                on_text(row, text[emitted.get(row, 0) : upto])
                emitted[row] = upto
        return end is not None

    token_ids = generate(
        model,
        [h.ids for h in healed],
        sampling,
        vocab_size=tokenizer.vocab_size,
        eos_id=tokenizer.eod_id,
        pad_id=tokenizer.pad_id,
        should_stop=should_stop,
        on_tokens=note_eos,
        compile_step=compile_step,
        allowed_tokens=lambda row, ids: healed[row // sampling.num_samples].allowed(ids),
    )
    results = []
    for p, samples in enumerate(token_ids):
        row_results = []
        for s, ids in enumerate(samples):
            row = p * sampling.num_samples + s
            text = decoded.get(row, "")
            end = completion_end(text, stop, lang)
            reason = "stop" if end is not None else "eos" if row in ended_by_eos else "length"
            final = text[:end] if end is not None else text
            if on_text is not None and len(final) > emitted.get(row, 0):
                on_text(row, final[emitted.get(row, 0) :])
            row_results.append(Completion(final, len(ids), reason))
        results.append(row_results)
    return results
