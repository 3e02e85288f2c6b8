"""Language weights: ``geex data --language-weight python=2`` packs each Python train file twice
and leaves validation as it was. `pytest tests/data/test_language_weights.py`"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from geex.cli import main
from geex.config import from_dict
from geex.data.config import DataConfig
from geex.data.fim import undo_fim
from geex.data.shards import TokenShards
from geex.data.writer import train_copies
from geex.errors import ConfigError
from geex.tokenizer import load_tokenizer
from tests.data.trees import write_code_tree

FAST = ["--vocab-size", "600", "--validation-fraction", "0.2", "--workers", "2", "--tasks", "2"]


def geex_data(*args) -> int:
    return main(["data", *map(str, args), *FAST])


def texts_by_language(out: Path, split: str) -> dict[str, Counter]:
    """Each language's packed files as text in reading order (FIM undone), with repeats."""
    tokenizer, shards = load_tokenizer(out), TokenShards(out, split)
    texts: dict[str, Counter] = {}
    for row in shards.documents:
        ids = shards.read(int(row["offset"]), int(row["length"])).tolist()[:-1]
        language = shards.languages[row["language"]]
        texts.setdefault(language, Counter())[undo_fim(ids, tokenizer)] += 1
    return texts


@pytest.fixture(scope="module")
def code(tmp_path_factory) -> Path:
    return write_code_tree(tmp_path_factory.mktemp("src") / "code", n_python=20, n_c=10)


@pytest.fixture(scope="module")
def unweighted(code, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "data"
    assert geex_data(code, "--out", out) == 0
    return out


@pytest.fixture(scope="module")
def weighted(code, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("weighted") / "data"
    weights = ["--language-weight", "py=2", "--language-weight", "C=0"]
    assert geex_data(code, "--out", out, *weights) == 0
    return out


def test_a_weighted_language_packs_each_train_file_that_many_times(unweighted, weighted):
    plain, heavy = texts_by_language(unweighted, "train"), texts_by_language(weighted, "train")
    assert heavy["python"] == Counter({text: 2 * n for text, n in plain["python"].items()})
    assert "c" not in heavy and sum(plain["c"].values()) > 0


def test_each_copy_draws_its_own_fill_in_the_middle_cut(weighted):
    """Two copies of one file laid out the same would teach the same infill twice."""
    tokenizer, train = load_tokenizer(weighted), TokenShards(weighted, "train")
    layouts: dict[str, set] = {}
    for row in train.documents:
        ids = tuple(train.read(int(row["offset"]), int(row["length"])).tolist())
        layouts.setdefault(undo_fim(list(ids[:-1]), tokenizer), set()).add(ids)
    # FIM rate 0.5: both copies are left to right for about a quarter of the files
    assert sum(len(packed) == 2 for packed in layouts.values()) >= len(layouts) // 2


def test_validation_is_never_weighted(unweighted, weighted):
    for name in ("validation-00000-00000.bin", "validation-00001-00000.bin"):
        assert (weighted / name).read_bytes() == (unweighted / name).read_bytes()


def test_the_card_counts_files_once_and_tokens_every_copy(unweighted, weighted):
    plain = json.loads((unweighted / "card.json").read_text())["languages"]
    heavy = json.loads((weighted / "card.json").read_text())["languages"]
    assert heavy["python"]["files"] == plain["python"]["files"]
    assert heavy["python"]["bytes"] == plain["python"]["bytes"]
    train = TokenShards(weighted, "train")
    assert heavy["python"]["train_tokens"] == sum(int(row["length"]) for row in train.documents)
    assert heavy["python"]["train_tokens"] > 1.9 * plain["python"]["train_tokens"]
    assert heavy["c"]["train_tokens"] == 0
    assert heavy["c"]["validation_tokens"] == plain["c"]["validation_tokens"]
    markdown = (weighted / "card.md").read_text()
    assert "Language weights: python x2, c x0." in markdown


def test_a_rerun_with_other_weights_is_refused(weighted, code, capsys):
    capsys.readouterr()
    assert geex_data(code, "--out", weighted, "--language-weight", "python=3") == 2
    assert "language_weights" in capsys.readouterr().err


def test_fractional_weights_pack_that_share_of_the_files_once_more():
    keys = [f"code::pkg/mod_{i}.py" for i in range(4000)]
    for weight in (0.25, 1.5, 2.75):
        copies = [train_copies(key, weight) for key in keys]
        assert set(copies) == {int(weight), int(weight) + 1}
        assert abs(sum(copies) / len(keys) - weight) < 0.03
        assert copies == [train_copies(key, weight) for key in keys]  # the same every run
    assert {train_copies(key, 0) for key in keys} == {0}
    assert {train_copies(key, 3) for key in keys} == {3}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"pyhton": 2}, "unknown language 'pyhton'"),
        ({"python": -1}, "language weight of python must be a number of at least 0"),
        ({"python": "nan"}, "language weight of python must be a number of at least 0"),
        ({"python": "lots"}, "language_weights.python' must be a number"),
        ({"python": 2, "py": 3}, "language weight of python is given twice"),
    ],
)
def test_bad_weights_are_refused_naming_the_problem(weights, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(DataConfig, {"out": "x", "language_weights": weights})
