"""The model a server serves: a Geex checkpoint or any Hugging Face causal LM, with its prompts.

:func:`load_served_model` reads a folder and tells which it is from its ``config.json``:

- ``"format": "geex"``: a Geex checkpoint (a converted CodeGeeX-13B is one), loaded by
  :func:`geex.model.loader.load_for_inference` and run by ``geex.serve.geex_runner``;
- a ``model_type``: a Hugging Face folder, loaded with ``AutoModelForCausalLM`` and run by
  :class:`geex.serve.hf_runner.HFRunner` (``geex[hf]``).

A :class:`ServedModel` knows the model's own prompt conventions, so the protocol adapters never
need to: its fill-in-the-middle style (:mod:`geex.tokenizer.fim`; detected from the
vocabulary, or named), its chat template (:mod:`geex.serve.chat`), and the tokens that end an
infill or a chat turn. A model without FIM tokens has ``fim=None``: a request with a suffix is
refused rather than answered as if the suffix had been read.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from geex.config import read_json_object
from geex.errors import GeexError
from geex.model.generation_defaults import resolve_penalty, saved_repetition_penalty
from geex.model.load_options import check_quantize
from geex.serve.chat import (
    PLAIN_CHAT_STOP,
    chat_end_ids,
    check_messages,
    plain_chat_prompt,
    render_chat_template,
)
from geex.serve.engine import Runner, TextCodec
from geex.tokenizer.fim import (
    FimStyle,
    FimTokenIds,
    build_fim_ids,
    detect_fim_style,
    encode_without_leading_space,
    get_fim_style,
)

KINDS = ("geex", "hf")


class PromptTokens(Protocol):
    """What building FIM and chat prompts needs of a tokenizer, beyond the engine's codec."""

    vocab: Mapping[str, int]
    leading_ids: tuple[int, ...]  # ids the tokenizer puts before every prompt (a BOS)

    def encode_text(self, text: str) -> list[int]: ...  # no BOS; special names stay text
    def encode_rendered(self, text: str) -> list[int]: ...  # special names become tokens
    def render_chat(self, template: str, messages: list[dict]) -> str: ...


@dataclass
class ServedModel:
    """A model ready to serve: its runner and codec for the engine, its prompt conventions."""

    name: str
    runner: Runner
    codec: TextCodec
    fim: FimStyle | None  # None: no FIM tokens, a request with a suffix is refused
    chat_template: str | None  # None: a base model, chatted with as a plain transcript
    kind: str  # "geex" | "hf"
    # Set by load_served_model: the tokenizer's side of prompts, and the FIM style's ids.
    tokens: PromptTokens = field(repr=False, default=None)
    fim_ids: FimTokenIds | None = field(repr=False, default=None)
    created: int = field(default_factory=lambda: int(time.time()))
    # The folder's generation_config.json penalty (geex.model.generation_defaults); None: none
    repetition_penalty: float | None = None

    def penalty(self, asked: float | None, fallback: float = 1.0) -> float:
        """The repetition penalty a request decodes with: its own, else the model's, else the
        protocol's default ``fallback`` (1, off; Ollama's is 1.1)."""
        return resolve_penalty(asked, self.repetition_penalty, fallback)

    @property
    def context_length(self) -> int:
        """Positions one sequence may use, prompt and answer together."""
        return self.runner.context_length

    def fim_prompt_ids(self, prefix: str, suffix: str, *, max_prompt_tokens: int) -> list[int]:
        """The infill prompt of the text before and after the cursor, at most
        ``max_prompt_tokens`` long: the prefix cut from the left, the suffix from the right
        (:func:`geex.tokenizer.fim.build_fim_ids` says how the budget is split)."""
        if self.fim is None and suffix:
            raise GeexError(
                f"model {self.name} has no fill-in-the-middle tokens, so it cannot read a "
                "suffix; send the prefix alone, or serve it with --fim-style prefix-only "
                "to drop suffixes"
            )
        # No style and no suffix: a plain completion prompt, cut as prefix-only cuts it.
        style = self.fim or get_fim_style("prefix-only")
        ids = self.fim_ids or style.token_ids({})
        suffix_ids = []
        if suffix and not style.drops_suffix:
            suffix_ids = (
                self.tokens.encode_text(suffix)
                if style.suffix_leading_space
                else encode_without_leading_space(self.tokens.encode_text, suffix)
            )
        return build_fim_ids(
            self.tokens.encode_text(prefix),
            suffix_ids,
            ids,
            order=style.order,
            max_tokens=max_prompt_tokens,
            leading_ids=self.tokens.leading_ids,
        )

    def chat_prompt_ids(self, messages: list[dict]) -> list[int]:
        """The prompt of a conversation, ending where the assistant's answer starts."""
        messages = check_messages(messages)
        if self.chat_template is not None:
            return self.tokens.encode_rendered(
                self.tokens.render_chat(self.chat_template, messages)
            )
        return [*self.tokens.leading_ids, *self.tokens.encode_text(plain_chat_prompt(messages))]

    @property
    def chat_stop(self) -> tuple[str, ...]:
        """Text that ends an answer: the next turn of a plain transcript; none with a template."""
        return () if self.chat_template is not None else PLAIN_CHAT_STOP

    @property
    def stop_token_ids(self) -> frozenset[int]:
        """Tokens that end an infill or a chat turn (besides the codec's end of text)."""
        fim_end = self.fim_ids.end if self.fim_ids is not None else frozenset()
        return fim_end | chat_end_ids(self.tokens.vocab)


def load_served_model(
    path: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | None = None,
    device: str = "auto",
    dtype: str = "auto",
    name: str | None = None,
    fim_style: str = "auto",
    quantize: str | None = None,
    max_slots: int = 16,
    trust_remote_code: bool = False,
) -> ServedModel:
    """The Geex checkpoint or Hugging Face model folder at ``path``, ready to serve.

    ``tokenizer``: another tokenizer than the one saved with the model. ``fim_style``: "auto"
    (detected from the vocabulary), "none", or a style name from
    :data:`geex.tokenizer.fim.FIM_STYLES` (refused when the vocabulary lacks its tokens).
    ``quantize``: "int8" for weight-only INT8 (Geex checkpoints). ``max_slots``: sequences
    decoded at once, each with its KV cache. ``trust_remote_code``: run the model code a
    Hugging Face folder carries (``geex convert to-hf`` writes CodeGeeX's that way).
    """
    folder = Path(path)
    kind = model_kind(folder)
    if fim_style not in ("auto", "none"):
        get_fim_style(fim_style)  # a mistyped name fails before any weight is read
    check_quantize(quantize)
    if kind == "geex":
        served = _load_geex(folder, tokenizer, device, dtype, quantize, max_slots)
    else:
        if quantize is not None:
            raise GeexError("--quantize int8 is for Geex checkpoints, not Hugging Face models")
        served = _load_hf(folder, tokenizer, device, dtype, max_slots, trust_remote_code)
    served.repetition_penalty = saved_repetition_penalty(folder)
    hint = "geex" if kind == "geex" else _config(folder).get("model_type")
    served.fim, served.fim_ids = resolve_fim_style(fim_style, served.tokens.vocab, hint)
    if name is not None:
        served.name = name
    return served


def model_kind(folder: Path) -> str:
    """The folder's kind, "geex" or "hf", from its ``config.json``; anything else is one
    clear error."""
    if not folder.exists():
        raise GeexError(f"model folder {folder}: no such folder")
    if not folder.is_dir():
        raise GeexError(f"model {folder} is a file; expected a model folder")
    config = _config(folder)
    if config.get("format") == "geex":
        return "geex"
    if isinstance(config.get("model_type"), str):
        return "hf"
    raise GeexError(
        f'{folder} is neither a Geex checkpoint (config.json with "format": "geex") nor a '
        "Hugging Face model (config.json with a model_type)"
    )


def resolve_fim_style(
    choice: str, vocab: Mapping[str, int], kind_hint: str | None = None
) -> tuple[FimStyle | None, FimTokenIds | None]:
    """The style ``choice`` names ("auto" detects, "none" turns FIM off) and its token ids."""
    if choice == "none":
        return None, None
    if choice == "auto":
        style = detect_fim_style(vocab, kind_hint)
        return (style, style.token_ids(vocab)) if style is not None else (None, None)
    style = get_fim_style(choice)
    ids = style.token_ids(vocab)
    if ids is None:
        wanted = ", ".join(" or ".join(s) for s in (style.prefix, style.suffix, style.middle))
        raise GeexError(
            f"FIM style {choice!r} needs the tokens {wanted}; this tokenizer lacks them"
        )
    return style, ids


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise GeexError(
            f"{folder} has no config.json: not a Geex checkpoint nor a Hugging Face model folder"
        )
    return read_json_object(path)


# --- Hugging Face --------------------------------------------------------------------------


def _load_hf(folder, tokenizer, device, dtype, max_slots, trust_remote_code) -> ServedModel:
    from geex.model.hf_loading import load_causal_lm
    from geex.serve.hf_runner import HFCodec, HFRunner

    model, tok = load_causal_lm(
        folder, tokenizer=tokenizer, device=device, dtype=dtype, trust_remote_code=trust_remote_code
    )
    codec = HFCodec(tok, getattr(model, "generation_config", None))
    runner = HFRunner(model, max_slots, vocab_size=codec.vocab_size)
    template = getattr(tok, "chat_template", None)
    if isinstance(template, dict):  # named templates (a tool-use one beside the default)
        template = template.get("default")
    return ServedModel(
        name=folder.resolve().name,
        runner=runner,
        codec=codec,
        fim=None,
        chat_template=template if isinstance(template, str) else None,
        kind="hf",
        tokens=codec,
    )


# --- Geex ----------------------------------------------------------------------------------


class GeexPromptTokens:
    """:class:`PromptTokens` over Geex's own tokenizer (no BOS: documents are separated by
    the end-of-document token, which ends a prompt's predecessor, not starts the prompt)."""

    leading_ids: tuple[int, ...] = ()

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab = {
            **tokenizer.backend.get_vocab(with_added_tokens=True),
            **tokenizer.marker_aliases,
        }

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_rendered(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, allow_special=True)

    def render_chat(self, template: str, messages: list[dict]) -> str:
        eod = self.tokenizer.eod_token
        return render_chat_template(template, messages, {"bos_token": eod, "eos_token": eod})


def _load_geex(folder, tokenizer, device, dtype, quantize, max_slots) -> ServedModel:
    from geex.model.loader import load_for_inference
    from geex.serve.geex_runner import GeexCodec, GeexRunner

    loaded = load_for_inference(
        folder, tokenizer=tokenizer, device=device, dtype=dtype, quantize=quantize
    )
    model = loaded.model
    return ServedModel(
        name=loaded.name,
        runner=GeexRunner(model, max_slots, vocab_size=loaded.tokenizer.vocab_size),
        codec=GeexCodec(loaded.tokenizer),
        fim=None,
        chat_template=saved_chat_template(Path(tokenizer) if tokenizer else folder),
        kind="geex",
        tokens=GeexPromptTokens(loaded.tokenizer),
    )


def saved_chat_template(where: Path) -> str | None:
    """The ``chat_template`` saved beside a tokenizer (``tokenizer_config.json``, or
    ``chat_template.jinja`` as transformers now writes it); None when there is none."""
    folder = where if where.is_dir() else where.parent
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    config_file = folder / "tokenizer_config.json"
    if not config_file.is_file():
        return None
    try:
        template = json.loads(config_file.read_text(encoding="utf-8")).get("chat_template")
    except (ValueError, UnicodeDecodeError, AttributeError) as err:
        raise GeexError(f"{config_file} is not a valid tokenizer config: {err}") from None
    if template is not None and not isinstance(template, str):
        # A list of named templates (transformers' multi-template form): the default one.
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None
