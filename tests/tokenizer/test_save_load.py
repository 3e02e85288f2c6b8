"""A saved tokenizer reloads with identical behaviour, in Geex and in transformers; bad paths fail clearly. `pytest tests/tokenizer`."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from geex.errors import GeexError
from geex.tokenizer import load_tokenizer, train_tokenizer
from tests.conftest import required_module, shared_path

REPO = Path(__file__).resolve().parents[2]

SAMPLES = [
    "# language: Python\ndef f(x):\n    return x  # done\n",
    "// language: C++\nint main() {\r\n\tint  y = 0;\r\n" + " " * 23 + "return y;\r\n}\r\n",
    "literal '<|endoftext|>' and '<|extratoken_12|>' and '<|fim_prefix|>' stay text",
    "  <|extratoken_12|>   <|endoftext|><|extratoken_1|>",
    "ünïcode 世界 🙂\u3000\u00a0\x0b\x00 end  ",
    "",
]


@pytest.fixture(scope="module")
def codegeex():
    return load_tokenizer(shared_path("data", "codegeex-tokenizer"))


@pytest.fixture(scope="module")
def trained():
    sources = sorted((REPO / "src" / "geex").rglob("*.py"))
    return train_tokenizer((p.read_text(encoding="utf-8") for p in sources), vocab_size=1024)


@pytest.fixture(params=["codegeex", "trained"])
def tokenizer(request):
    return request.getfixturevalue(request.param)


def behaviour(tokenizer) -> tuple:
    """Everything a caller can observe, on the samples."""
    return (
        tokenizer.kind,
        tokenizer.vocab_size,
        tokenizer.eod_id,
        tokenizer.pad_id,
        (tokenizer.fim_prefix_id, tokenizer.fim_middle_id, tokenizer.fim_suffix_id),
        tokenizer.special_tokens(),
        tokenizer.language_tag_ids(),
        tokenizer.token_to_id("<|extratoken_12|>"),
        tokenizer.encode_batch(SAMPLES),
        tokenizer.encode_batch(SAMPLES, allow_special=True),
        tokenizer.decode_batch(tokenizer.encode_batch(SAMPLES)),
    )


def test_reload_from_folder_or_file_behaves_identically(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == [
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    for path in (tmp_path / "tok", tmp_path / "tok" / "tokenizer.json"):
        assert behaviour(load_tokenizer(path)) == behaviour(tokenizer)
    assert tokenizer.decode_batch(tokenizer.encode_batch(SAMPLES)) == SAMPLES


def test_saving_again_writes_the_same_files(tokenizer, tmp_path):
    load_tokenizer(tokenizer.save(tmp_path / "a")).save(tmp_path / "b")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_transformers_autotokenizer_gives_the_same_ids(tokenizer, tmp_path):
    transformers = required_module("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(tokenizer.save(tmp_path)))
    for text in SAMPLES:
        ids = tokenizer.encode(text)
        assert hf(text, add_special_tokens=False)["input_ids"] == ids
        assert hf.decode(ids) == text
    assert hf.eos_token_id == hf.pad_token_id == tokenizer.eod_id
    assert len(hf) == tokenizer.vocab_size


def test_transformers_from_tokenizer_file_gives_the_same_ids(tokenizer, tmp_path):
    transformers = required_module("transformers")
    tokenizer_file = str(tokenizer.save(tmp_path) / "tokenizer.json")
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_file=tokenizer_file, split_special_tokens=True
    )
    for text in SAMPLES:
        assert hf(text, add_special_tokens=False)["input_ids"] == tokenizer.encode(text)
    # The file alone cannot carry split_special_tokens (tokenizers does not serialise it):
    # without the flag, special-token names in the text are matched as in CodeGeeX.
    bare = transformers.PreTrainedTokenizerFast(tokenizer_file=tokenizer_file)
    text = SAMPLES[2]
    assert bare(text, add_special_tokens=False)["input_ids"] != tokenizer.encode(text)
    plain = SAMPLES[0]
    assert bare(plain, add_special_tokens=False)["input_ids"] == tokenizer.encode(plain)


def test_saved_config_records_what_tokenizer_json_cannot(codegeex, tmp_path):
    config = json.loads((codegeex.save(tmp_path) / "tokenizer_config.json").read_text())
    assert config["split_special_tokens"] is True
    assert config["eos_token"] == config["pad_token"] == "<|endoftext|>"
    assert config["geex"]["kind"] == "codegeex"
    assert config["geex"]["marker_aliases"]["<|extratoken_12|>"] == 50268


# --- refusing what is not a tokenizer -------------------------------------------------------


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(GeexError, match="no such file or folder; expected a tokenizer.json"):
        load_tokenizer(tmp_path / "nowhere")


def test_folder_without_tokenizer_files_is_refused(tmp_path):
    (tmp_path / "vocab.json").write_text("{}")  # merges.txt missing
    with pytest.raises(GeexError, match="not a tokenizer; expected"):
        load_tokenizer(tmp_path)


def test_malformed_tokenizer_json_is_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(GeexError, match="not a readable tokenizer.json"):
        load_tokenizer(tmp_path)


def test_tokenizer_from_a_newer_geex_is_refused(trained, tmp_path):
    trained.save(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["geex"]["format_version"] = 99
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(GeexError, match="newer Geex"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{bad", "not readable JSON"),
        ("[1]", "not a tokenizer config"),
        ('{"geex": {"format_version": "1"}}', "format_version must be a whole number"),
    ],
)
def test_a_damaged_tokenizer_config_is_named(trained, tmp_path, text, says):
    trained.save(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(text)
    with pytest.raises(GeexError, match=says):
        load_tokenizer(tmp_path)


def test_a_tokenizer_is_not_saved_over_a_model_or_dataset(trained, tmp_path):
    """`geex tokenizer train/convert --out` into a model's folder would replace its tokenizer."""
    from geex.tokenizer.tokenizer import check_tokenizer_out

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(GeexError, match="is not a `geex tokenizer` output folder"):
        check_tokenizer_out(tmp_path / "model")
    trained.save(tmp_path / "tok")
    check_tokenizer_out(tmp_path / "tok")  # an earlier tokenizer alone is replaced
    check_tokenizer_out(tmp_path / "new")


def test_a_failing_write_leaves_no_tokenizer_json_or_the_old_one(tmp_path, monkeypatch):
    """A full disk mid-write must not leave a truncated tokenizer.json: `geex data`, run again,
    takes an existing one as saved."""
    small = train_tokenizer(SAMPLES * 20, vocab_size=300, languages=["python", "cpp"])
    old = small.save(tmp_path / "old")
    before = (old / "tokenizer.json").read_bytes()
    write_text = Path.write_text

    def half_then_full(path, text, *args, **kwargs):
        if "tokenizer.json" not in path.name:
            return write_text(path, text, *args, **kwargs)
        write_text(path, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", half_then_full)
    for folder in (tmp_path / "new", old):
        with pytest.raises(OSError) as raised:
            small.save(folder)
        assert raised.value.errno == errno.ENOSPC
        assert raised.value.filename == str(folder / "tokenizer.json")
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [
        "special_tokens_map.json",
        "tokenizer_config.json",
    ]
    assert (old / "tokenizer.json").read_bytes() == before
    monkeypatch.undo()
    assert load_tokenizer(old).encode(SAMPLES[0]) == small.encode(SAMPLES[0])
