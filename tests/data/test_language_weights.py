"""Language weights: ``geex data --language-weight python=2`` packs each Python train file twice,
far apart, and leaves validation as it was. `pytest tests/data/test_language_weights.py`"""

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


def packed_files(out: Path, split: str) -> dict[str, dict[str, list[int]]]:
    """Per language, each file's text in reading order (FIM undone) and the stream offsets
    of its copies."""
    tokenizer, shards = load_tokenizer(out), TokenShards(out, split)
    files: dict[str, dict[str, list[int]]] = {}
    for row in shards.documents:
        ids = shards.read(int(row["offset"]), int(row["length"])).tolist()[:-1]
        language = shards.languages[row["language"]]
        text = undo_fim(ids, tokenizer)
        files.setdefault(language, {}).setdefault(text, []).append(int(row["offset"]))
    return files


def copies(files: dict[str, list[int]]) -> Counter:
    return Counter({text: len(offsets) for text, offsets in files.items()})


def card(out: Path) -> dict:
    return json.loads((out / "card.json").read_text())


@pytest.fixture(scope="module")
def code(tmp_path_factory) -> Path:
    return write_code_tree(tmp_path_factory.mktemp("src") / "code", n_python=20, n_c=16)


def packed_with(code: Path, tmp_path_factory, name: str, *weights: str) -> Path:
    """``geex data`` of ``code`` with ``--language-weight`` for each of ``weights``."""
    out = tmp_path_factory.mktemp(name) / "data"
    flags = [word for weight in weights for word in ("--language-weight", weight)]
    assert geex_data(code, "--out", out, *flags) == 0
    return out


@pytest.fixture(scope="module")
def unweighted(code, tmp_path_factory) -> Path:
    return packed_with(code, tmp_path_factory, "plain")


@pytest.fixture(scope="module")
def weighted(code, tmp_path_factory) -> Path:
    return packed_with(code, tmp_path_factory, "weighted", "py=2", "C=0")


@pytest.fixture(scope="module")
def fractional(code, tmp_path_factory) -> Path:
    return packed_with(code, tmp_path_factory, "fractional", "python=3", "c=0.5")


def test_a_weighted_language_packs_each_train_file_that_many_times(unweighted, weighted):
    plain, heavy = packed_files(unweighted, "train"), packed_files(weighted, "train")
    assert copies(heavy["python"]) == Counter({t: 2 for t in plain["python"]})
    assert "c" not in heavy and len(plain["c"]) > 0


def test_a_fraction_packs_that_share_of_the_files_once_more(unweighted, fractional):
    plain, light = packed_files(unweighted, "train"), packed_files(fractional, "train")
    assert copies(light["python"]) == Counter({t: 3 for t in plain["python"]})
    assert set(light["c"]) < set(plain["c"]) and set(copies(light["c"]).values()) == {1}
    assert 0 < len(light["c"]) < len(plain["c"])


def test_copies_of_a_file_lie_apart_in_the_stream(fractional):
    """Training cuts the stream into windows across files: copies side by side would share one,
    and the second would be read off the first. Every first copy comes before every second,
    every second before every third."""
    offsets = [sorted(o) for o in packed_files(fractional, "train")["python"].values()]
    for k in (1, 2):
        assert max(o[k - 1] for o in offsets) < min(o[k] for o in offsets)


def test_each_copy_draws_its_own_fill_in_the_middle_cut(weighted):
    """Two copies of one file laid out the same would teach the same infill twice."""
    tokenizer, train = load_tokenizer(weighted), TokenShards(weighted, "train")
    layouts: dict[str, set] = {}
    for row in train.documents:
        ids = tuple(train.read(int(row["offset"]), int(row["length"])).tolist())
        layouts.setdefault(undo_fim(list(ids[:-1]), tokenizer), set()).add(ids)
    # FIM rate 0.5: both copies are left to right for about a quarter of the files
    assert sum(len(packed) == 2 for packed in layouts.values()) >= len(layouts) // 2


def test_validation_is_never_weighted(unweighted, weighted, fractional):
    plain = TokenShards(unweighted, "validation")
    for out in (weighted, fractional):
        shards = TokenShards(out, "validation")
        assert shards.read(0, len(shards)).tolist() == plain.read(0, len(plain)).tolist()


def test_the_card_counts_files_once_and_train_tokens_every_copy(unweighted, weighted):
    plain, heavy = card(unweighted)["languages"], card(weighted)["languages"]
    for language in ("python", "c"):  # the first copy is what an unweighted pack packs
        for key in ("files", "bytes", "tokens", "validation_tokens"):
            assert heavy[language][key] == plain[language][key], (language, key)
    train = TokenShards(weighted, "train")
    assert heavy["python"]["train_tokens"] == sum(int(row["length"]) for row in train.documents)
    assert heavy["python"]["train_tokens"] > 1.9 * plain["python"]["train_tokens"]
    assert heavy["c"]["train_tokens"] == 0
    assert "Language weights: python x2, c x0." in (weighted / "card.md").read_text()


def test_a_rerun_with_other_weights_is_refused(weighted, code, capsys):
    capsys.readouterr()
    assert geex_data(code, "--out", weighted, "--language-weight", "python=3") == 2
    assert "language_weights" in capsys.readouterr().err


def test_a_folder_made_before_weights_existed_refuses_weights_on_resume(unweighted, code):
    """Its record lacks the field, and it was packed unweighted: adding weights on a resume
    would record weights its shards do not have."""
    path = unweighted / "work" / "config.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "language_weights"}))
    assert geex_data(code, "--out", unweighted, "--language-weight", "python=2") == 2
    assert geex_data(code, "--out", unweighted, "--language-weight", "python=1") == 0
    assert json.loads(path.read_text()) == record


def test_weights_that_leave_nothing_to_train_on_are_an_error(code, tmp_path, capsys):
    capsys.readouterr()
    zero = ["--language-weight", "python=0", "--language-weight", "c=0"]
    assert geex_data(code, "--out", tmp_path / "out", *zero) != 0
    assert "language weights (python=0, c=0) leave no train file" in capsys.readouterr().err


def test_a_language_weighted_twice_on_the_command_line_is_refused(code, tmp_path, capsys):
    twice = ["--language-weight", "python=2", "--language-weight", "python=3"]
    assert geex_data(code, "--out", tmp_path / "out", *twice) == 2
    assert "python is given twice (2 and 3)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_fractional_weights_draw_the_same_files_every_run():
    keys = [f"code::pkg/mod_{i}.py" for i in range(4000)]
    for weight in (0.25, 1.5, 2.75):
        drawn = [train_copies(key, weight) for key in keys]
        assert set(drawn) == {int(weight), int(weight) + 1}
        assert abs(sum(drawn) / len(keys) - weight) < 0.03
        assert drawn == [train_copies(key, weight) for key in keys]
    assert {train_copies(key, 0) for key in keys} == {0}
    assert {train_copies(key, 3) for key in keys} == {3}


def test_a_weight_of_one_is_no_weight():
    config = from_dict(DataConfig, {"out": "x", "language_weights": {"Python": 1, "go": 2}})
    assert config.language_weights == {"go": 2.0}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"language_weights": {"pyhton": 2}}, "unknown language 'pyhton'"),
        ({"language_weights": {"python": -1}}, "weight of python must be a number from 0 to 100"),
        ({"language_weights": {"python": 101}}, "weight of python must be a number from 0 to 100"),
        ({"language_weights": {"python": "nan"}}, "weight of python must be a number from 0"),
        ({"language_weights": {"python": "lots"}}, "language_weights.python' must be a number"),
        ({"language_weights": {"python": 2, "py": 3}}, "weight of python is given twice"),
        (
            {"language_weights": {"python": 2}, "languages": ["go", "rust"]},
            "python is not among the languages kept \\(go, rust\\)",
        ),
    ],
)
def test_bad_weights_are_refused_naming_the_problem(fields, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(DataConfig, {"out": "x", **fields})
