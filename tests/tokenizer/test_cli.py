"""`geex tokenizer train|encode|info|convert` work end to end and report user errors in one line. `pytest tests/tokenizer`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from geex.cli import main
from geex.tokenizer import load_tokenizer
from tests.conftest import shared_path

REPO = Path(__file__).resolve().parents[2]


def geex(command: str, **paths) -> int:
    """Run ``geex tokenizer ...`` given as one string; {name} fields are filled from paths."""
    return main(["tokenizer", *(word.format(**paths) for word in command.split())])


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    assert geex("train {src} --vocab-size 700 --out {out}", src=REPO / "src" / "geex", out=out) == 0
    return out


def test_train_writes_a_loadable_tokenizer_of_the_asked_size(trained_dir, capsys):
    tokenizer = load_tokenizer(trained_dir)
    assert tokenizer.kind == "trained" and tokenizer.vocab_size == 700
    text = "# language: Python\nimport os\n"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_train_with_a_language_subset(tmp_path, capsys):
    source = tmp_path / "a.py"
    source.write_text("def f():\n    return 1\n" * 50)
    out = tmp_path / "tok"
    command = "train {source} --vocab-size 400 --out {out} --languages python,go"
    assert geex(command, source=source, out=out) == 0
    assert set(load_tokenizer(out).language_tag_ids()) == {"# language: Python", "// language: Go"}
    assert "note: the text ran out of merges" in capsys.readouterr().out  # 400 > what it holds


def test_encode_prints_ids_then_tokens(trained_dir, capsys):
    assert (
        main(["tokenizer", "encode", "--tokenizer", str(trained_dir), "x = '<|endoftext|>'"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    ids = [int(i) for i in lines[0].split()]
    assert ids == load_tokenizer(trained_dir).encode("x = '<|endoftext|>'") and 0 not in ids
    assert lines[1] == f"{len(ids)} tokens, 19 bytes" and len(lines) == 2 + len(ids)
    command = "encode --tokenizer {tok} --allow-special --ids-only <|endoftext|>"
    assert geex(command, tok=trained_dir) == 0
    assert capsys.readouterr().out == "0\n"


def test_info_describes_special_ids(trained_dir, capsys):
    assert geex("info {tok}", tok=trained_dir) == 0
    out = capsys.readouterr().out
    assert "kind:                   trained" in out
    assert "<|endoftext|> = 0" in out and "prefix 1, middle 2, suffix 3, pad 4" in out


def test_convert_codegeex_files_to_tokenizer_json(tmp_path, capsys):
    codegeex_dir = shared_path("data", "codegeex-tokenizer")
    assert geex("convert {src} --out {out}", src=codegeex_dir, out=tmp_path) == 0
    assert (tmp_path / "tokenizer.json").is_file() and not (tmp_path / "vocab.json").exists()
    assert geex("info {out}", out=tmp_path) == 0
    out = capsys.readouterr().out
    assert "50,400" in out and "whitespace-run tokens:  9 (ids 50266..50274)" in out


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("train {empty} --out {tmp}/o", "no input files"),
        ("train {tmp}/missing.py --out {tmp}/o", "no such file or folder"),
        ("train {code} --vocab-size 100 --out {tmp}/o", "vocab size 100 is too small"),
        ("info {empty}", "not a tokenizer; expected a tokenizer.json"),
    ],
)
def test_user_errors_are_one_line(tmp_path, capsys, command, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.py").write_text("x = 1\n")
    assert geex(command, empty=tmp_path / "empty", code=tmp_path / "code", tmp=tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("geex tokenizer: error: ") and message in err and err.count("\n") == 1


def test_bare_tokenizer_command_prints_help(capsys):
    assert main(["tokenizer"]) == 2
    assert "train" in capsys.readouterr().out


def test_bad_text_and_flags_are_one_line_errors(trained_dir, tmp_path, capsys):
    # Python hands a command line's non-UTF-8 bytes over as surrogate escapes.
    assert main(["tokenizer", "encode", "--tokenizer", str(trained_dir), "abc\udcff"]) == 2
    assert "the text is not UTF-8 (byte 0xff at offset 3)" in capsys.readouterr().err
    (tmp_path / "a.py").write_text("x = 1\n")
    assert geex("train {src} --min-frequency -3 --out {out}", src=tmp_path, out=tmp_path / "t") == 2
    assert "--min-frequency must be >= 0, got -3" in capsys.readouterr().err
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"weights")
    assert geex("convert {tok} --out {out}", tok=trained_dir, out=tmp_path / "model") == 2
    assert "is not a `geex tokenizer` output folder" in capsys.readouterr().err


def test_a_reader_that_leaves_early_is_no_traceback(trained_dir):
    """`geex tokenizer encode ... | head -1`: the closed pipe ends the command quietly."""
    text = (REPO / "src" / "geex" / "languages.py").read_text()  # ~10^4 tokens: > a pipe's buffer
    command = [sys.executable, "-m", "geex", "tokenizer", "encode", "--tokenizer", str(trained_dir), text]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as geex_run:
        geex_run.stdout.readline()
        geex_run.stdout.close()
        stderr = geex_run.stderr.read().decode()
        assert geex_run.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr, stderr


def test_convert_writes_beside_the_vocabulary_it_converts(trained_dir, tmp_path):
    """`geex tokenizer convert codegeex-tok --out codegeex-tok`: the source's own folder."""
    folder = tmp_path / "tok"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).write_bytes((trained_dir / name).read_bytes())
    (folder / "vocab.json").write_text("{}")  # what a source folder holds besides
    assert geex("convert {tok} --out {tok}", tok=folder) == 0
