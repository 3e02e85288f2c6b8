"""Fine-tuning rows in OpenAI's and Alpaca's shapes, from JSONL and Parquet; every bad row is
refused with its file, line and problem. `pytest tests/train/test_conversations.py`."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geex.errors import GeexError
from geex.train.conversations import read_conversations

CHAT = {
    "messages": [
        {"role": "system", "content": "Answer in Python."},
        {"role": "user", "content": "Add two numbers."},
        {"role": "assistant", "content": "def add(a, b):\n    return a + b"},
    ]
}
ALPACA = {"instruction": "Reverse a list.", "input": "[1, 2]", "output": "[2, 1]"}


def jsonl(path, *rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_both_shapes_from_jsonl_and_parquet_in_a_folder(tmp_path):
    jsonl(tmp_path / "a.jsonl", CHAT, "", {"instruction": "Say hi.", "output": "hi"})
    pq.write_table(pa.Table.from_pylist([ALPACA]), tmp_path / "b.parquet")
    conversations = read_conversations(tmp_path)
    assert [c.messages for c in conversations] == [
        CHAT["messages"],
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}],
        [
            {"role": "user", "content": "Reverse a list.\n\n[1, 2]"},
            {"role": "assistant", "content": "[2, 1]"},
        ],
    ]
    assert conversations[1].where == f"{tmp_path / 'a.jsonl'} line 3"
    assert conversations[2].where == f"{tmp_path / 'b.parquet'} row 1"


def messages(*turns):
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"prompt": "x", "completion": "y"}, "no `messages` and no `instruction`/`output`"),
        ({"instruction": "Say hi."}, "`output` must be text"),
        ({"instruction": "Say hi.", "output": "  "}, "an empty `output`"),
        ({"instruction": "Say hi.", "input": 3, "output": "hi"}, "`input` must be text"),
        ({"messages": []}, "`messages` must be a non-empty list"),
        (messages(("user", "hi"), ("bot", "hello")), r"messages\[1\].role is 'bot'"),
        (messages(("user", "hi"), ("assistant", "")), r"messages\[1\]: an empty assistant turn"),
        (messages(("user", "hi")), "no assistant turn"),
        (messages(("user", "a"), ("system", "b"), ("assistant", "c")), "may only open"),
        ({"messages": [{"role": "user", "content": ["x"]}]}, r"content must be text, got list"),
        ([1, 2], "a row must be an object, got list"),
    ],
)
def test_a_bad_row_is_refused_naming_its_line_and_problem(tmp_path, row, problem):
    data = jsonl(tmp_path / "data.jsonl", CHAT, row)
    with pytest.raises(GeexError, match=f"data.jsonl line 2: .*{problem}"):
        read_conversations(data)


def test_unreadable_inputs_are_clear_errors(tmp_path):
    with pytest.raises(GeexError, match="line 1: not JSON"):
        read_conversations(jsonl(tmp_path / "bad.jsonl", "{not json"))
    with pytest.raises(GeexError, match="must be .jsonl or .parquet"):
        read_conversations(jsonl(tmp_path / "data.csv", CHAT))
    with pytest.raises(GeexError, match="no such file or folder"):
        read_conversations(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeexError, match="no .jsonl or .parquet files"):
        read_conversations(tmp_path / "empty")
    with pytest.raises(GeexError, match="no conversations"):
        read_conversations(jsonl(tmp_path / "blank.jsonl", ""))
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(GeexError, match="not a readable Parquet file"):
        read_conversations(tmp_path / "broken.parquet")
