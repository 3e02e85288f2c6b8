"""One bad input never aborts `geex data`, and a bad argument is one line: undecodable names, damaged zip members, an --out that is a file, a path that is not there. `pytest tests/data/test_bad_inputs.py`"""

from __future__ import annotations

import json
import re
import sys
import types
from collections import Counter

import orjson
import pytest

from geex.data.readers.datasets import CodeDatasetReader
from geex.data.readers.local import read_archive, read_tree
from geex.data.sources import classify_source
from geex.errors import GeexError
from tests.data.cli import one_line_error, run_geex_data
from tests.data.trees import (
    python_module,
    write_code_tree,
    write_undecodable_names,
    write_zip_with_damaged_member,
)

ESCAPED = "caf\\xe9_\\xff.py"  # UNDECODABLE_NAME with its bytes escaped


def counting():
    counts = Counter()
    return counts, lambda label: counts.update([label.removeprefix("skipped_")])


def test_a_name_that_is_not_utf8_is_read_with_its_bytes_escaped(tmp_path):
    tree, tar_path, zip_path = write_undecodable_names(tmp_path, python_module(1))
    (tree_doc,) = read_tree(tree)
    (tar_doc,) = read_archive(tar_path)
    (zip_doc,) = read_archive(zip_path)
    assert tree_doc.metadata["path"] == tar_doc.metadata["path"] == ESCAPED
    assert tree_doc.id == f"{tree}::{ESCAPED}"
    assert zip_doc.metadata["path"] == "caf\u0398_\u00a0.py"  # no UTF-8 flag: code page 437
    for doc in (tree_doc, tar_doc, zip_doc):
        orjson.dumps({"id": doc.id, "metadata": doc.metadata})  # what the cleaned files hold


def test_a_damaged_zip_member_is_skipped_and_counted_and_the_rest_read(tmp_path):
    files = {"a.py": python_module(1), "b.py": python_module(2), "c.py": python_module(3)}
    archive = write_zip_with_damaged_member(tmp_path / "code.zip", files, damaged="b.py")
    counts, on_skip = counting()
    docs = list(read_archive(archive, on_skip=on_skip))
    assert [d.metadata["path"] for d in docs] == ["a.py", "c.py"]
    assert counts == {"damaged_compressed_data": 1}


def test_a_run_reads_past_undecodable_names_and_damaged_members(tmp_path):
    code = write_code_tree(tmp_path / "code", n_python=8, n_c=2)
    tree, tar_path, zip_path = write_undecodable_names(tmp_path / "names", python_module(50))
    files = {"a.py": python_module(60), "b.py": python_module(61), "c.py": python_module(62)}
    damaged = write_zip_with_damaged_member(tmp_path / "damaged.zip", files, damaged="b.py")
    out = tmp_path / "out"
    sources = [code, tree, tar_path, zip_path, damaged]
    result = run_geex_data(*sources, "--out", out, "--no-dedup")
    assert result.returncode == 0, result.stderr
    card = json.loads((out / "card.json").read_text())
    reasons = Counter()
    for entry in card["removed"]:
        reasons.update(entry.get("removed", {}))
    assert reasons["damaged_compressed_data"] == 1, reasons
    # 8 modules and 2 copies, the same file under three names, 2 of the damaged zip's 3
    assert card["languages"]["python"]["files"] == 8 + 2 + 3 + 2


def test_an_out_that_is_a_file_is_one_line(tmp_path):
    code = write_code_tree(tmp_path / "code", n_python=2, n_c=0)
    (tmp_path / "taken").write_text("not a folder\n")
    error = one_line_error(run_geex_data(code, "--out", tmp_path / "taken"))
    assert str(tmp_path / "taken") in error and "not a folder" in error


@pytest.mark.parametrize(
    "spec", ["missing", "./missing", "~/missing-geex-source", "code/missing.py", "a/b/c", "x.tar"]
)
def test_a_path_that_is_not_there_is_named_as_missing(spec, tmp_path):
    with pytest.raises(GeexError, match=re.escape(f"no such file or folder: {spec}")):
        classify_source(spec)


def test_a_missing_relative_path_is_one_line_saying_so(tmp_path):
    error = one_line_error(run_geex_data("src/missing", "--out", tmp_path / "out", cwd=tmp_path))
    assert "no such file or folder: src/missing" in error
    assert not (tmp_path / "out").exists()  # nothing that would refuse the corrected command


def test_an_owner_name_that_is_neither_here_nor_on_the_hub_says_both(tmp_path):
    assert classify_source("bigcode/the-stack-smol").kind == "dataset"
    error = one_line_error(run_geex_data("owner/name", "--out", tmp_path / "out", cwd=tmp_path))
    assert "no such file or folder: owner/name" in error and "Hugging Face Hub" in error


def test_an_owner_name_the_hub_cannot_give_says_it_is_not_a_path_either(monkeypatch):
    hub = types.ModuleType("datasets")  # a Hub out of reach, without the network
    hub.distributed = types.ModuleType("datasets.distributed")
    hub.distributed.split_dataset_by_node = lambda stream, rank, world_size: stream

    def load_dataset(name, **options):
        raise ConnectionError(f"cannot reach huggingface.co for {name}")

    hub.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", hub)
    monkeypatch.setitem(sys.modules, "datasets.distributed", hub.distributed)
    either = CodeDatasetReader(classify_source("owner/name").spec)
    with pytest.raises(GeexError, match="no such file or folder: owner/name; .* cannot reach"):
        list(either.run())
    only_hub = CodeDatasetReader(classify_source("hf:owner/name").spec)
    with pytest.raises(GeexError, match="cannot reach") as raised:
        list(only_hub.run())
    assert "no such file or folder" not in str(raised.value)
