"""Several shard writers fill one dataset folder; the manifest lists their parts and TokenShards reads them. `pytest tests/data/test_shards_parts.py`"""

from __future__ import annotations

import pytest
from datatrove.data import Document

from geex.data.shards import ShardWriter, TokenShards, write_manifest
from geex.data.writer import is_validation, split_key
from geex.errors import GeexError


def test_parts_of_several_writers_make_one_dataset(tmp_path):
    languages = ["python", "go"]
    parts = []
    for task, docs in enumerate([[([1, 2], "python"), ([3], "go")], [([4, 5, 6], "go")]]):
        writer = ShardWriter(
            tmp_path,
            vocab_size=10,
            eod_id=0,
            languages=languages,
            shard_prefix=f"{task:05d}",
            shard_tokens=3,
        )
        for tokens, language in docs:
            writer.add(tokens, language)
        parts.append(writer.close_part())
    write_manifest(tmp_path, parts, vocab_size=10, eod_id=0, languages=languages)
    train = TokenShards(tmp_path)
    assert train.read(0, len(train)).tolist() == [1, 2, 0, 3, 0, 4, 5, 6, 0]
    assert train.manifest["splits"]["train"]["shards"] == [
        "train-00000-00000",
        "train-00000-00001",
        "train-00001-00000",
    ]
    assert [train.languages[i] for i in train.documents["language"]] == ["python", "go", "go"]
    with pytest.raises(GeexError, match="one language list"):
        write_manifest(tmp_path, parts, vocab_size=10, eod_id=0, languages=["go", "python"])


def test_the_validation_split_is_stable_and_near_its_fraction():
    keys = [f"src::file_{i}.py" for i in range(20000)]
    chosen = [k for k in keys if is_validation(k, 0.05)]
    assert 0.045 < len(chosen) / len(keys) < 0.055
    assert chosen == [k for k in keys if is_validation(k, 0.05)]
    assert not any(is_validation(k, 0.0) for k in keys)


def test_the_split_key_keeps_the_source_folder_name_not_where_it_lies():
    def document(source: str, path: str) -> Document:
        return Document(text="x", id=f"{source}::{path}", metadata={"source": source})

    assert split_key(document("/home/a/code", "src/x.py")) == "code::src/x.py"
    assert split_key(document("/tmp/b/code/", "src/x.py")) == "code::src/x.py"
    assert split_key(document("bigcode/the-stack", "7")) == "the-stack::7"
    assert split_key(Document(text="x", id="plain", metadata={})) == "plain"
