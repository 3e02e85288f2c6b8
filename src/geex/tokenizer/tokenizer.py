"""The tokenizer every stage uses: text <-> ids, exact both ways, batch encoding in Rust.

A ``Tokenizer`` wraps a Hugging Face ``tokenizers.Tokenizer`` (the "backend") whose whole
pipeline lives in one ``tokenizer.json``. What that file cannot say is kept in
``tokenizer_config.json`` beside it, under the ``"geex"`` key, and read back by
``read_saved``:

- ``literal_special_tokens_as_text``: a document that happens to contain the text
  ``<|endoftext|>`` (a tokenizer's own source code, say) is encoded as ordinary text by default,
  so that no false document boundary appears and decoding gives the text back. The backend
  flag for that, ``encode_special_tokens``, is not serialised by ``tokenizers``; Hugging Face
  ``transformers`` reads the same setting from the config's ``split_special_tokens``.
- ``marker_aliases``: names a reference tokenizer gives to tokens whose stored content is the
  text they stand for (CodeGeeX calls the token for four spaces ``<|extratoken_12|>``; here its
  content is the four spaces). ``encode(..., allow_special=True)`` matches those names too.

A model fine-tuned on conversations also keeps its Jinja ``chat_template`` in
``tokenizer_config.json`` (at the top level, where Hugging Face keeps it), so that whatever
loads the model renders prompts as it was trained (:mod:`geex.tokenizer.chat_template`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import tokenizers

from geex.atomic import atomic_write_text
from geex.errors import GeexError
from geex.languages import strip_tag
from geex.output_folder import claim_output_folder

EOD_TOKEN = "<|endoftext|>"
FIM_PREFIX_TOKEN = "<|fim_prefix|>"
FIM_MIDDLE_TOKEN = "<|fim_middle|>"
FIM_SUFFIX_TOKEN = "<|fim_suffix|>"
FIM_PAD_TOKEN = "<|fim_pad|>"
FIM_TOKENS = (FIM_PREFIX_TOKEN, FIM_MIDDLE_TOKEN, FIM_SUFFIX_TOKEN, FIM_PAD_TOKEN)

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
TOKENIZER_FILES = (TOKENIZER_FILE, CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE)
FORMAT_VERSION = 1
DEFAULT_MODEL_MAX_LENGTH = 2048  # CodeGeeX's context; only informs transformers' warnings


class Tokenizer:
    """Encodes text to ids and back; ``decode(encode(text)) == text`` for any text.

    ``kind`` says where the vocabulary came from: "codegeex" (CodeGeeX-13B's, rebuilt from its
    files), "trained" (``train_tokenizer``) or "external" (a tokenizer.json Geex did not write).
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        kind: str,
        eod_token: str = EOD_TOKEN,
        unk_token: str | None = None,
        marker_aliases: Mapping[str, int] | None = None,
        chat_template: str | None = None,
    ) -> None:
        self.kind = kind
        self.chat_template = chat_template  # None: a base model, not tuned on conversations
        self.eod_token = eod_token
        self.unk_token = unk_token
        self.marker_aliases = dict(marker_aliases or {})
        if backend.token_to_id(eod_token) is None:
            raise GeexError(f"the tokenizer has no end-of-document token {eod_token!r}")
        # Literal special-token text in a document is text (see the module docstring); a
        # second backend that matches it serves encode(..., allow_special=True).
        self._backend = backend
        self._backend.encode_special_tokens = True
        self._special_backend: tokenizers.Tokenizer | None = None
        self._alias_pattern = (
            re.compile("(" + "|".join(map(re.escape, sorted(self.marker_aliases))) + ")")
            if self.marker_aliases
            else None
        )

    # --- encoding -----------------------------------------------------------------------

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """The ids of ``text``. With ``allow_special``, special-token names in the text become
        those tokens (the reference tokenizers' behaviour); by default they stay text."""
        if allow_special:
            return self._encode_allowing_special([text])[0]
        return self._backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], *, allow_special: bool = False) -> list[list[int]]:
        """``encode`` over many texts at once, in parallel Rust threads."""
        texts = list(texts)
        if allow_special:
            return self._encode_allowing_special(texts)
        return [e.ids for e in self._backend.encode_batch_fast(texts, add_special_tokens=False)]

    def _encode_allowing_special(self, texts: list[str]) -> list[list[int]]:
        backend = self._special_token_backend()
        if self._alias_pattern is None:
            return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        # Split each text on the alias names (re.split with a group alternates text, name, text,
        # ...), encode all text pieces in one batch and put the alias ids back in between.
        # Equal to matching the names inside the backend because names never overlap.
        parts = [self._alias_pattern.split(text) for text in texts]
        pieces = [piece for split in parts for piece in split[::2]]
        encoded = iter(e.ids for e in backend.encode_batch_fast(pieces, add_special_tokens=False))
        batch = []
        for split in parts:
            ids = list(next(encoded))
            for name in split[1::2]:
                ids.append(self.marker_aliases[name])
                ids.extend(next(encoded))
            batch.append(ids)
        return batch

    def _special_token_backend(self) -> tokenizers.Tokenizer:
        if self._special_backend is None:
            self._special_backend = tokenizers.Tokenizer.from_str(self._backend.to_str())
            self._special_backend.encode_special_tokens = False
        return self._special_backend

    # --- decoding -----------------------------------------------------------------------

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``, special tokens written out; the exact inverse of ``encode``."""
        return self._backend.decode(_as_int_list(ids), skip_special_tokens=False)

    def decode_text(self, ids: Iterable[int]) -> str:
        """The text of generated ids as a reader sees it: special tokens (FIM markers a young
        model may emit mid-text, CodeGeeX's reserved ids) are not text and are skipped, as
        Hugging Face servers skip them; whitespace and language-tag tokens are kept."""
        return self._backend.decode(_as_int_list(ids), skip_special_tokens=True)

    def decode_batch(self, batch: Iterable[Iterable[int]]) -> list[str]:
        return self._backend.decode_batch(
            [_as_int_list(ids) for ids in batch], skip_special_tokens=False
        )

    # --- vocabulary ---------------------------------------------------------------------

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The ``tokenizers.Tokenizer`` underneath (literal special-token text encodes as text)."""
        return self._backend

    @property
    def vocab_size(self) -> int:
        """The number of ids, added tokens included (50,400 for CodeGeeX)."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        """The id of a token, given as stored or by its reference name (``<|extratoken_12|>``)."""
        found = self._backend.token_to_id(token)
        return found if found is not None else self.marker_aliases.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        """The token as stored (byte-level text such as ``Ġreturn``, or raw whitespace)."""
        return self._backend.id_to_token(token_id)

    @property
    def eod_id(self) -> int:
        """End of document: separates documents in training, stops generation."""
        return self._backend.token_to_id(self.eod_token)

    @property
    def pad_id(self) -> int:
        """Padding id; like CodeGeeX, the end-of-document token (padding is masked anyway)."""
        return self.eod_id

    @property
    def fim_prefix_id(self) -> int | None:
        return self._backend.token_to_id(FIM_PREFIX_TOKEN)

    @property
    def fim_middle_id(self) -> int | None:
        return self._backend.token_to_id(FIM_MIDDLE_TOKEN)

    @property
    def fim_suffix_id(self) -> int | None:
        return self._backend.token_to_id(FIM_SUFFIX_TOKEN)

    @property
    def fim_pad_id(self) -> int | None:
        return self._backend.token_to_id(FIM_PAD_TOKEN)

    def special_tokens(self) -> dict[str, int]:
        """Tokens marked special (never produced from plain text by default), name -> id."""
        return {
            t.content: i
            for i, t in sorted(self._backend.get_added_tokens_decoder().items())
            if t.special
        }

    def language_tag_ids(self) -> dict[str, int]:
        """Tag line (without its newline) -> id, for each language tag that is one token."""
        return {
            t.content[:-1]: i
            for i, t in sorted(self._backend.get_added_tokens_decoder().items())
            if not t.special and t.content.endswith("\n") and strip_tag(t.content)[0] is not None
        }

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, eod_id={self.eod_id})"

    # --- saving -------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``.

        ``load_tokenizer(folder)`` gives back a tokenizer that behaves identically, and
        ``transformers.AutoTokenizer.from_pretrained(folder)`` encodes and decodes the same ids.
        Each file is written whole or not at all (:func:`geex.atomic.atomic_write_text`), and
        ``tokenizer.json`` last: where it exists, so do the others, complete, and a command
        that finds it (``geex data`` run again after a full disk) may take it as saved.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        special_map = self._special_tokens_map()
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **special_map,
            "split_special_tokens": True,
            "clean_up_tokenization_spaces": False,
            "add_prefix_space": False,
            "model_max_length": DEFAULT_MODEL_MAX_LENGTH,
            **({"chat_template": self.chat_template} if self.chat_template is not None else {}),
            "geex": {
                "format_version": FORMAT_VERSION,
                "kind": self.kind,
                "literal_special_tokens_as_text": True,
                "marker_aliases": self.marker_aliases,
            },
        }
        _write_json(folder / CONFIG_FILE, config)
        _write_json(folder / SPECIAL_TOKENS_MAP_FILE, special_map)
        # Written from Python rather than by `tokenizers`' own save, whose write errors (a full
        # disk) arrive as a bare Exception instead of an OSError with its errno.
        atomic_write_text(folder / TOKENIZER_FILE, self._backend.to_str(pretty=True))
        return folder

    def _special_tokens_map(self) -> dict:
        special_map: dict = {
            "bos_token": self.eod_token,
            "eos_token": self.eod_token,
            "pad_token": self.eod_token,
        }
        if self.unk_token is not None:
            special_map["unk_token"] = self.unk_token
        fim = [t for t in FIM_TOKENS if self._backend.token_to_id(t) is not None]
        if fim:
            special_map["additional_special_tokens"] = fim
        return special_map


def read_saved(tokenizer_file: Path) -> Tokenizer:
    """A tokenizer from a ``tokenizer.json`` and the ``tokenizer_config.json`` beside it."""
    try:
        backend = tokenizers.Tokenizer.from_file(str(tokenizer_file))
    except Exception as err:  # tokenizers raises plain Exception for malformed files
        raise GeexError(f"{tokenizer_file}: not a readable tokenizer.json ({err})") from None
    config_file = tokenizer_file.parent / CONFIG_FILE
    config, geex = _read_config(config_file)
    return Tokenizer(
        backend,
        kind=geex.get("kind", "external"),
        eod_token=_token_text(config.get("eos_token")) or EOD_TOKEN,
        unk_token=_token_text(config.get("unk_token")),
        marker_aliases=geex.get("marker_aliases"),
        chat_template=_default_chat_template(config.get("chat_template")),
    )


def _read_config(config_file: Path) -> tuple[dict, dict]:
    """``tokenizer_config.json`` (none: ``{}``) and its ``geex`` section, checked: a damaged
    file is named, not a traceback."""
    if not config_file.is_file():
        return {}, {}
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GeexError(f"{config_file}: not readable JSON ({err})") from None
    geex = config.get("geex", {}) if isinstance(config, dict) else None
    if not isinstance(geex, dict):
        raise GeexError(f"{config_file}: not a tokenizer config (a JSON object with a `geex` one)")
    version = geex.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise GeexError(
            f"{config_file}: geex.format_version must be a whole number, got {version!r}"
        )
    if version > FORMAT_VERSION:
        raise GeexError(f"{config_file}: written by a newer Geex (format_version {version})")
    return config, geex


def _default_chat_template(template) -> str | None:
    """The template text; of transformers' list of named templates, the "default" one."""
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _token_text(value) -> str | None:
    """A special token as written in a Hugging Face config: a string or {"content": ...}."""
    return value.get("content") if isinstance(value, dict) else value


def _as_int_list(ids: Iterable[int]) -> list[int]:
    if isinstance(ids, list):
        return ids
    return ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]  # tensors, arrays


def _write_json(path: Path, value) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def check_tokenizer_out(folder: str | os.PathLike) -> None:
    """Refuse to save a tokenizer alone into a folder that holds more than a tokenizer (a
    model's or a dataset's): the model's own tokenizer would be replaced, and it would decode
    its ids into other text. An earlier tokenizer alone is replaced."""
    claim_output_folder(
        Path(folder), owned=False, command="geex tokenizer", ignored=TOKENIZER_FILES
    )
