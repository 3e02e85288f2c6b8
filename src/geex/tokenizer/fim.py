"""Fill-in-the-middle prompt formats: which tokens a code model was trained to infill with.

Every model family that infills marks the text before the cursor, the text after it and the
place to write with three special tokens, and ends the middle with a token of its own. The
layouts, as their publishers document them (the token spellings are those of the published
tokenizer configs; llama.cpp's vocabulary loader recognises the same spellings):

- ``geex``: Geex's trained tokenizers (``geex.tokenizer.train``), StarCoder's names in pipes:
  ``<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>``, ended by ``<|endoftext|>``.
- ``starcoder``: bigcode/starcoder's ``special_tokens_map.json``:
  ``<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>``, ended by ``<|endoftext|>``
  (StarCoder2 adds ``<file_sep>``).
- ``santacoder``: bigcode/santacoder's README, the same with dashes: ``<fim-prefix>`` ...
- ``codellama``: facebookresearch/codellama ``llama/generation.py`` (``infilling_prompt_tokens``)
  formats ``<PRE> {prefix} <SUF>{suffix} <MID>``: the SentencePiece tokens are ``▁<PRE>``,
  ``▁<SUF>``, ``▁<MID>`` (the space before each is part of the token), the prefix is encoded
  with SentencePiece's leading space and the suffix without; the middle ends with ``▁<EOT>``.
- ``deepseek``: deepseek-ai/DeepSeek-Coder's README:
  ``<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>`` (full-width bars, ``▁``),
  ended by ``<｜end▁of▁sentence｜>`` (``<|EOT|>`` in the instruct models).
- ``qwen``: QwenLM/Qwen2.5-Coder's README (file-level FIM):
  ``<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>``; the vocabulary also has
  ``<|repo_name|>``, ``<|file_sep|>`` and ``<|im_start|>``; ends at ``<|endoftext|>``,
  ``<|fim_pad|>``, ``<|file_sep|>``.
- ``codegemma``: Google's CodeGemma prompt-structure guide: the same three tokens as Qwen, and
  ``<|file_separator|>`` ends the middle (``<eos>`` too).
- ``prefix-only``: no tokens; the suffix is dropped and the prefix completed, as CodeGeeX-13B's
  own editor plugin did. Never detected: only chosen by name.

All published formats put the prefix first (PSM). ``order="spm"`` puts the suffix first, in
the layout StarCoder trains with (Bavarian et al., 2022, "Efficient Training of Language Models
to Fill in the Middle", appendix D's second variant): ``<prefix-marker><suffix-marker>{suffix}
<middle-marker>{prefix}``, so that the middle continues the prefix as plain text does.
:mod:`geex.data.fim` builds training files with this function, so both orders are trained
exactly as they are prompted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from geex.errors import GeexError


@dataclass(frozen=True)
class FimStyle:
    """One model family's infilling format.

    ``prefix``, ``suffix``, ``middle``: the spellings of each marker token, the first one found
    in a vocabulary wins (Code Llama's is ``▁<PRE>`` in Hugging Face's conversion, ``<PRE>`` in
    others). ``end``: tokens that end an infill, where the vocabulary has them.
    ``suffix_leading_space``: False where the suffix must be encoded without the implicit
    leading space a SentencePiece tokenizer adds (Code Llama).
    """

    name: str
    prefix: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()
    middle: tuple[str, ...] = ()
    end: tuple[str, ...] = ()
    order: str = "psm"
    suffix_leading_space: bool = True

    @property
    def drops_suffix(self) -> bool:
        """A style without marker tokens completes the prefix alone."""
        return not self.prefix

    def token_ids(self, vocab: Mapping[str, int]) -> FimTokenIds | None:
        """The ids of this style's tokens in ``vocab``, None when a marker is missing."""
        if self.drops_suffix:
            return FimTokenIds(None, None, None, frozenset(_ids(vocab, self.end)))
        found = [next(iter(_ids(vocab, spellings)), None) for spellings in (
            self.prefix, self.suffix, self.middle
        )]  # fmt: skip
        if None in found:
            return None
        prefix_id, suffix_id, middle_id = found
        return FimTokenIds(prefix_id, suffix_id, middle_id, frozenset(_ids(vocab, self.end)))


@dataclass(frozen=True)
class FimTokenIds:
    """A style's tokens resolved in one vocabulary (None markers: ``prefix-only``)."""

    prefix: int | None
    suffix: int | None
    middle: int | None
    end: frozenset[int]


def _ids(vocab: Mapping[str, int], spellings: Sequence[str]) -> list[int]:
    return [vocab[s] for s in spellings if s in vocab]


_PIPES = ("<|fim_prefix|>",), ("<|fim_suffix|>",), ("<|fim_middle|>",)

FIM_STYLES: dict[str, FimStyle] = {
    style.name: style
    for style in (
        FimStyle("geex", *_PIPES, end=("<|endoftext|>", "<|fim_pad|>")),
        FimStyle(
            "starcoder",
            ("<fim_prefix>",),
            ("<fim_suffix>",),
            ("<fim_middle>",),
            end=("<|endoftext|>", "<file_sep>", "<fim_pad>"),
        ),
        FimStyle(
            "santacoder",
            ("<fim-prefix>",),
            ("<fim-suffix>",),
            ("<fim-middle>",),
            end=("<|endoftext|>", "<fim-pad>"),
        ),
        FimStyle(
            "codellama",
            ("▁<PRE>", "<PRE>"),
            ("▁<SUF>", "<SUF>"),
            ("▁<MID>", "<MID>"),
            end=("▁<EOT>", "<EOT>", "</s>"),
            suffix_leading_space=False,
        ),
        FimStyle(
            "deepseek",
            ("<｜fim▁begin｜>",),
            ("<｜fim▁hole｜>",),
            ("<｜fim▁end｜>",),
            end=("<｜end▁of▁sentence｜>", "<|EOT|>"),
        ),
        FimStyle(
            "qwen",
            *_PIPES,
            end=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>"),
        ),
        FimStyle("codegemma", *_PIPES, end=("<|file_separator|>", "<eos>")),
        FimStyle("prefix-only"),
    )
}

# Hints (a style name, or a Hugging Face ``model_type``) that pick among the styles sharing
# the pipe tokens.
_PIPE_STYLE_HINTS = {"geex": "geex", "codegeex": "geex", "qwen": "qwen", "qwen2": "qwen",
                     "codegemma": "codegemma", "gemma": "codegemma"}  # fmt: skip


def get_fim_style(name: str) -> FimStyle:
    """The style called ``name``; an unknown name lists the known ones."""
    if name not in FIM_STYLES:
        raise GeexError(f"unknown FIM style {name!r}; choose one of {', '.join(FIM_STYLES)}")
    return FIM_STYLES[name]


def detect_fim_style(
    vocab: Mapping[str, int] | set[str], kind_hint: str | None = None
) -> FimStyle | None:
    """The infilling style whose marker tokens ``vocab`` holds, or None (no infilling).

    Qwen2.5-Coder, CodeGemma and Geex share ``<|fim_prefix|>``-style tokens and build the same
    prompt; they differ in the tokens that end the middle, so the rest of the vocabulary
    decides: ``<|file_separator|>`` is CodeGemma's, ``<|repo_name|>``/``<|file_sep|>``/
    ``<|im_start|>`` Qwen's, neither Geex's. ``kind_hint`` (a style name or a ``model_type``
    such as ``"qwen2"``) settles it first when its tokens are present.
    """
    names = vocab if isinstance(vocab, Mapping) else dict.fromkeys(vocab, 0)
    if kind_hint is not None:
        hinted = FIM_STYLES.get(_PIPE_STYLE_HINTS.get(kind_hint, kind_hint))
        if hinted is not None and not hinted.drops_suffix and hinted.token_ids(names):
            return hinted
    if FIM_STYLES["geex"].token_ids(names):
        if "<|file_separator|>" in names:
            return FIM_STYLES["codegemma"]
        if any(t in names for t in ("<|repo_name|>", "<|file_sep|>", "<|im_start|>")):
            return FIM_STYLES["qwen"]
        return FIM_STYLES["geex"]
    for name in ("deepseek", "codellama", "starcoder", "santacoder"):
        if FIM_STYLES[name].token_ids(names):
            return FIM_STYLES[name]
    return None


def suffix_budget(prefix_len: int, suffix_len: int, budget: int) -> int:
    """How many suffix tokens to keep when prefix and suffix share ``budget`` tokens.

    The text before the cursor matters most, so the suffix keeps at most a quarter of the
    budget when both are long; a short prefix leaves the rest of its share to the suffix,
    and a short suffix leaves its share to the prefix.
    """
    budget = max(budget, 0)
    if prefix_len + suffix_len <= budget:
        return suffix_len
    keep = max(budget // 4, budget - prefix_len)
    return min(suffix_len, keep)


def build_fim_ids(
    prefix_ids: Sequence[int],
    suffix_ids: Sequence[int],
    tokens: FimTokenIds,
    *,
    order: str = "psm",
    max_tokens: int | None = None,
    leading_ids: Sequence[int] = (),
) -> list[int]:
    """The prompt ids of an infill: markers, prefix and suffix in the style's order.

    ``leading_ids`` (a BOS token the model's tokenizer puts first) come before everything.
    ``max_tokens`` bounds the whole prompt: the prefix is cut from the left (the text nearest
    the cursor stays), the suffix from the right, split as :func:`suffix_budget` says. With no
    markers (``prefix-only``) the prompt is the prefix alone.
    """
    markers = [t for t in (tokens.prefix, tokens.suffix, tokens.middle) if t is not None]
    if max_tokens is not None:
        room = max_tokens - len(leading_ids) - len(markers)
        if room < 1:
            raise GeexError(
                f"a budget of {max_tokens} prompt tokens leaves no room for the infill's text"
            )
        if not markers:
            suffix_ids = ()
        keep_suffix = suffix_budget(len(prefix_ids), len(suffix_ids), room)
        keep_prefix = min(len(prefix_ids), room - keep_suffix)
        prefix_ids = prefix_ids[len(prefix_ids) - keep_prefix :]
        suffix_ids = suffix_ids[:keep_suffix]
    if not markers:
        return [*leading_ids, *prefix_ids]
    if order == "psm":
        body = [tokens.prefix, *prefix_ids, tokens.suffix, *suffix_ids, tokens.middle]
    elif order == "spm":
        body = [tokens.prefix, tokens.suffix, *suffix_ids, tokens.middle, *prefix_ids]
    else:
        raise GeexError(f"unknown FIM order {order!r}; choose psm or spm")
    return [*leading_ids, *body]


def encode_without_leading_space(encode: Callable[[str], list[int]], text: str) -> list[int]:
    """``text``'s ids without the space a SentencePiece tokenizer puts before a text's start.

    Code Llama's own ``encode_infilling`` does it this way: encode a rare character before the
    text and drop that character's ids. Should a tokenizer merge the character into the text,
    which the check below would show, the text is encoded plainly.
    """
    anchor = encode(_ANCHOR)
    ids = encode(_ANCHOR + text)
    if ids[: len(anchor)] == anchor:
        return ids[len(anchor) :]
    return encode(text)


_ANCHOR = "☺"
