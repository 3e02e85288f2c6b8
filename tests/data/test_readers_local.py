"""Local reading: languages, archives, task splits, and bad input skipped and counted by reason. `pytest tests/data/test_readers_local.py`"""

from __future__ import annotations

from collections import Counter

from geex.data.readers.local import (
    LocalReader,
    document_from_bytes,
    read_archive,
    read_tree,
)
from tests.data.trees import python_module, write_archives, write_bad_tree, write_code_tree


def counting():
    counts = Counter()
    return counts, lambda label: counts.update([label.removeprefix("skipped_")])


def test_document_from_bytes_sets_the_contract_metadata():
    doc = document_from_bytes(b"#!/usr/bin/env python3\nprint(1)\n", "bin/tool", "repo")
    assert doc.id == "repo::bin/tool" and doc.text.startswith("#!")
    assert doc.metadata == {
        "language": "python",
        "path": "bin/tool",
        "source": "repo",
        "size_bytes": 32,
    }
    counts, on_skip = counting()
    assert document_from_bytes(b"\xef\xbb\xbfx = 1\n", "a.py", "s").text == "x = 1\n"  # BOM off
    assert document_from_bytes(b"\x00\x01", "a.py", "s", on_skip=on_skip) is None
    assert document_from_bytes(b"\xff\xfe\xfa", "a.py", "s", on_skip=on_skip) is None
    assert document_from_bytes(b"x" * 11, "a.py", "s", max_bytes=10, on_skip=on_skip) is None
    assert document_from_bytes(b"hello", "README", "s", on_skip=on_skip) is None
    assert counts == {"binary": 1, "not_utf8": 1, "too_large": 1, "unknown_language": 1}


def test_bad_input_in_a_tree_is_skipped_and_counted_by_reason(tmp_path):
    expected = write_bad_tree(tmp_path / "bad")
    (tmp_path / "bad" / "good.py").write_text("print('fine')\n")
    counts, on_skip = counting()
    docs = list(read_tree(tmp_path / "bad", on_skip=on_skip))
    assert [d.metadata["path"] for d in docs] == ["good.py"]
    assert dict(counts) == expected


def test_a_task_split_reads_every_file_once_in_sorted_order(tmp_path):
    write_code_tree(tmp_path / "code")
    whole = [d.id for d in read_tree(tmp_path / "code")]
    assert whole == sorted(whole, key=lambda i: i.split("::")[1])
    parts = [[d.id for d in read_tree(tmp_path / "code", rank=r, world_size=3)] for r in range(3)]
    assert sorted(i for part in parts for i in part) == sorted(whole) and all(parts)


def test_tar_and_zip_archives_are_read_and_a_corrupt_one_is_counted(tmp_path):
    files = {"src/a.py": python_module(1), "src/b.go": "package main\n", "data.bin": "\x00"}
    tar_path, zip_path = write_archives(tmp_path, files)
    for archive in (tar_path, zip_path):
        counts, on_skip = counting()
        docs = list(read_archive(archive, on_skip=on_skip))
        assert [(d.metadata["path"], d.metadata["language"]) for d in docs] == [
            ("src/a.py", "python"),
            ("src/b.go", "go"),
        ]
        assert counts == {"unknown_language": 1}
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    counts, on_skip = counting()
    assert list(read_archive(tmp_path / "bad.zip", on_skip=on_skip)) == []
    assert counts == {"corrupt_archive": 1}


def test_the_per_language_cap_picks_the_same_files_for_any_number_of_tasks(tmp_path):
    write_code_tree(tmp_path / "code", n_python=10, n_c=8)
    cap = 6000  # a few files of each language

    def read(world_size):
        ids = []
        for rank in range(world_size):
            reader = LocalReader([tmp_path / "code"], per_language_bytes=cap)
            ids += [d.id for d in reader.run(None, rank, world_size)]
        return sorted(ids)

    one = read(1)
    assert one == read(3)
    languages = Counter(i.rsplit(".", 1)[1] for i in one)
    assert 1 <= languages["py"] < 12 and 1 <= languages["c"] < 8  # 12 and 8 in the tree


def test_a_file_the_system_refuses_to_read_is_counted_as_unreadable(tmp_path, monkeypatch):
    """Tests run as root, so chmod 000 cannot make a file unreadable: open() is made to refuse."""
    import builtins

    (tmp_path / "locked.py").write_text("x = 1\n")
    (tmp_path / "open.py").write_text("y = 2\n")
    real_open = builtins.open

    def refusing_open(path, *args, **kwargs):
        if str(path).endswith("locked.py") and "b" in (
            args[0] if args else kwargs.get("mode", "r")
        ):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    counts, on_skip = counting()
    assert [d.metadata["path"] for d in read_tree(tmp_path, on_skip=on_skip)] == ["open.py"]
    assert counts == {"unreadable": 1}
