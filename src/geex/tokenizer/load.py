"""``load_tokenizer``: one entry point for every tokenizer Geex reads."""

from __future__ import annotations

import os
from pathlib import Path

from geex.errors import GeexError
from geex.tokenizer.codegeex import codegeex_tokenizer
from geex.tokenizer.tokenizer import TOKENIZER_FILE, Tokenizer, read_saved


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer from any of the places Geex keeps one.

    - a ``tokenizer.json`` file, or a folder holding one (saved by ``Tokenizer.save``, e.g. in
      a checkpoint folder): that tokenizer, with the settings in ``tokenizer_config.json``;
    - a folder with CodeGeeX's ``vocab.json`` and ``merges.txt`` (+ ``added_tokens.json``):
      the CodeGeeX-13B tokenizer.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return read_saved(path)
    if path.is_dir():
        if (path / TOKENIZER_FILE).is_file():
            return read_saved(path / TOKENIZER_FILE)
        if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            return codegeex_tokenizer(path)
    what = "no such file or folder" if not path.exists() else "not a tokenizer"
    raise GeexError(
        f"{path}: {what}; expected a tokenizer.json file, or a folder with tokenizer.json "
        f"(saved by Geex) or with CodeGeeX's vocab.json and merges.txt"
    )
