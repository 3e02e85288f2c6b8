"""Instruction data for ``geex train --sft``: conversations read from JSONL or Parquet, row by row.

A row is one of two shapes:

- ``{"messages": [{"role": ..., "content": ...}, ...]}`` (OpenAI's): roles ``system`` (first
  only), ``user`` and ``assistant``, at least one assistant turn;
- ``{"instruction": ..., "input": ..., "output": ...}`` (Alpaca's; ``input`` optional): one user
  turn (the instruction, then the input after a blank line) and one assistant turn, the output.

``DATA`` is a ``.jsonl`` or ``.parquet`` file, or a folder of them (read in name order). A bad
row stops the run with its file, its line (or row) and what is wrong with it, rather than train
on a conversation the user did not mean: an answer silently dropped is a lesson not learned.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from geex.errors import GeexError
from geex.tokenizer.chat_template import check_messages

DATA_SUFFIXES = (".jsonl", ".parquet")


@dataclass(frozen=True)
class Conversation:
    messages: list[dict[str, str]]
    where: str  # "data.jsonl line 3": what an error about it names


def read_conversations(path: str | Path) -> list[Conversation]:
    """Every conversation in ``path`` (a file, or a folder of them), checked."""
    files = data_files(Path(path))
    conversations = [
        Conversation(conversation_of(row, where), where)
        for file in files
        for where, row in _rows(file)
    ]
    if not conversations:
        raise GeexError(f"{path}: no conversations to fine-tune on (the data files are empty)")
    return conversations


def data_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix not in DATA_SUFFIXES:
            raise GeexError(f"{path}: fine-tuning data must be .jsonl or .parquet")
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
        if not files:
            raise GeexError(f"{path}: no .jsonl or .parquet files in this folder")
        return files
    raise GeexError(f"{path}: no such file or folder (the --sft data)")


def conversation_of(row: object, where: str) -> list[dict[str, str]]:
    """The messages of one row in either shape, or a GeexError naming ``where`` and the problem."""
    if not isinstance(row, Mapping):
        raise GeexError(f"{where}: a row must be an object, got {type(row).__name__}")
    if row.get("messages") is not None:
        return _checked_messages(row["messages"], where)
    if row.get("instruction") is not None or row.get("output") is not None:
        return _alpaca_messages(row, where)
    raise GeexError(
        f"{where}: no `messages` and no `instruction`/`output` (fields: "
        f"{', '.join(map(str, row)) or 'none'})"
    )


def _checked_messages(messages: object, where: str) -> list[dict[str, str]]:
    """The shape a chat prompt needs (the server's own check), then what training needs."""
    try:
        checked = check_messages(messages)
    except GeexError as err:
        raise GeexError(f"{where}: {err}") from None
    for i, message in enumerate(checked):
        at = f"{where}: messages[{i}]"
        if message["role"] == "system" and i > 0:
            raise GeexError(f"{at}: a system message may only open the conversation")
        if message["role"] == "assistant" and not message["content"].strip():
            raise GeexError(f"{at}: an empty assistant turn (nothing to learn)")
    if not any(m["role"] == "assistant" for m in checked):
        raise GeexError(f"{where}: no assistant turn (nothing to learn)")
    return checked


def _alpaca_messages(row: Mapping, where: str) -> list[dict[str, str]]:
    for name in ("instruction", "output"):
        if not isinstance(row.get(name), str):
            raise GeexError(f"{where}: `{name}` must be text (an instruction row needs both)")
    extra = row.get("input") or ""
    if not isinstance(extra, str):
        raise GeexError(f"{where}: `input` must be text, got {type(extra).__name__}")
    if not row["output"].strip():
        raise GeexError(f"{where}: an empty `output` (nothing to learn)")
    request = row["instruction"] + (f"\n\n{extra}" if extra.strip() else "")
    return [{"role": "user", "content": request}, {"role": "assistant", "content": row["output"]}]


def _rows(file: Path) -> Iterator[tuple[str, object]]:
    if file.suffix == ".parquet":
        yield from _parquet_rows(file)
        return
    with open(file, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{file} line {number}"
            try:
                yield where, json.loads(line)
            except ValueError as err:
                raise GeexError(f"{where}: not JSON ({err})") from None


def _parquet_rows(file: Path) -> Iterator[tuple[str, object]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as err:  # pyarrow's errors share no base class worth naming
        raise GeexError(f"{file}: not a readable Parquet file ({err})") from None
    for number, row in enumerate(table.to_pylist(), 1):
        yield f"{file} row {number}", row
