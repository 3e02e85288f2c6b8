"""A model's own repetition penalty, in its folder's ``generation_config.json``: read and
checked, used by `geex generate` and `geex eval` where none is given, carried through the
Hugging Face export and import, and written by `geex train` for the presets that set one.
`pytest tests/model/test_generation_defaults.py`."""

from __future__ import annotations

import json

import pytest

from geex.cli import main as geex_main
from geex.errors import GeexError
from geex.eval.backends import Sampling
from geex.eval.fingerprint import model_generator
from geex.model.generation_defaults import (
    GENERATION_CONFIG,
    resolve_penalty,
    save_repetition_penalty,
    saved_repetition_penalty,
)
from geex.model.loader import load_for_inference
from geex.model.sampling import SamplingConfig
from geex.presets import GENERATION_PRESETS, generation_preset
from tests.serve.editor_server import save_tiny_model

PENALTY = 3.0  # strong enough to change the tiny random model's greedy text


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = save_tiny_model(tmp_path_factory.mktemp("defaults") / "tiny")
    save_repetition_penalty(folder, PENALTY)
    return folder


def test_a_folder_without_the_file_or_the_field_names_no_penalty(tmp_path):
    assert saved_repetition_penalty(tmp_path) is None
    (tmp_path / GENERATION_CONFIG).write_text('{"eos_token_id": 0}')
    assert saved_repetition_penalty(tmp_path) is None


def test_saving_keeps_the_other_fields_and_none_removes_the_penalty(tmp_path):
    (tmp_path / GENERATION_CONFIG).write_text('{"eos_token_id": 0, "repetition_penalty": 2}')
    save_repetition_penalty(tmp_path, 1.2)
    fields = json.loads((tmp_path / GENERATION_CONFIG).read_text())
    assert fields == {"eos_token_id": 0, "repetition_penalty": 1.2}
    save_repetition_penalty(tmp_path, None)
    assert json.loads((tmp_path / GENERATION_CONFIG).read_text()) == {"eos_token_id": 0}
    (tmp_path / GENERATION_CONFIG).unlink()
    save_repetition_penalty(tmp_path, 1.2)
    save_repetition_penalty(tmp_path, None)  # nothing else in it: no file left
    assert not (tmp_path / GENERATION_CONFIG).exists()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"repetition_penalty": 0}', "repetition_penalty must be from 0.01 to 100"),
        ('{"repetition_penalty": "1.2"}', "repetition_penalty must be from 0.01 to 100"),
        ('{"repetition_penalty": NaN}', "repetition_penalty must be from 0.01 to 100"),
        ("{not json", "is not valid JSON"),
        ("[1.2]", "is not a JSON object"),
    ],
)
def test_a_bad_file_is_one_error_naming_it(tmp_path, text, says):
    (tmp_path / GENERATION_CONFIG).write_text(text)
    with pytest.raises(GeexError, match=says) as err:
        saved_repetition_penalty(tmp_path)
    assert GENERATION_CONFIG in str(err.value)


def test_the_asked_penalty_wins_then_the_models_then_the_fallback():
    assert resolve_penalty(1.0, 1.2) == 1.0
    assert resolve_penalty(None, 1.2) == 1.2
    assert resolve_penalty(None, None) == 1.0
    assert resolve_penalty(None, None, fallback=1.1) == 1.1


def test_only_the_tiny_preset_sets_a_penalty():
    assert generation_preset("tiny") == {"repetition_penalty": 1.2}
    assert set(GENERATION_PRESETS) == {"tiny"}
    assert generation_preset("small") == {} and generation_preset("no-such") == {}


def test_a_loaded_model_decodes_with_its_penalty_unless_told_otherwise(folder):
    loaded = load_for_inference(folder, device="cpu")
    assert loaded.repetition_penalty == PENALTY
    assert loaded.sampling(SamplingConfig()).penalty == PENALTY
    assert loaded.sampling(SamplingConfig(repetition_penalty=1.0)).penalty == 1.0
    assert SamplingConfig().penalty == 1.0  # a bare config, no model: off


def test_geex_generate_uses_the_models_penalty(folder, capsys):
    def text(*flags):
        code = geex_main(["generate", "--model", str(folder), "--device", "cpu", "--prompt",
                          "def add(a, b):\n", "--max-new-tokens", "16", "--json", *flags])  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out.splitlines()[0])["completion"]

    own = text()
    assert own == text("--repetition-penalty", str(PENALTY))
    assert own != text("--repetition-penalty", "1")


def test_eval_fills_in_the_models_penalty_and_fingerprints_it(folder):
    """The fingerprint names the penalty the samples were made with: the model's own when
    none is given; an endpoint's explicit 1 is kept apart from unset (the server's own)."""
    from geex.eval.backends_geex import GeexBackend

    backend = GeexBackend.load(folder, device="cpu")
    assert backend.repetition_penalty == PENALTY
    sampling = Sampling().with_default_penalty(backend.repetition_penalty)
    assert sampling.repetition_penalty == PENALTY
    assert Sampling(repetition_penalty=1.0).with_default_penalty(PENALTY).penalty == 1.0
    assert Sampling().with_default_penalty(None).repetition_penalty is None
    own = model_generator("geex", folder, sampling)["sampling"]
    off = model_generator("geex", folder, Sampling(repetition_penalty=1.0))["sampling"]
    assert own["repetition_penalty"] == PENALTY and "repetition_penalty" not in off
    assert sampling.describe() == f"n=1, temperature 0, repetition penalty {PENALTY:g}"
    unset = model_generator("openai", "http://x/v1", Sampling())["sampling"]
    one = model_generator("openai", "http://x/v1", Sampling(repetition_penalty=1.0))["sampling"]
    assert "repetition_penalty" not in unset and one["repetition_penalty"] == 1.0


def test_geex_eval_decodes_with_the_models_penalty(folder, tmp_path, capsys):
    """`geex eval --model` unset, then with 1: the report's title and the texts differ."""
    common = ["eval", "embedded", "--model", str(folder), "--device", "cpu", "--languages",
              "python", "--limit", "2", "--max-new-tokens", "16", "--no-progress"]  # fmt: skip
    for name, flags in (("own", []), ("off", ["--repetition-penalty", "1"])):
        code = geex_main([*common, *flags, "--out", str(tmp_path / name)])
        assert code == 0, capsys.readouterr().err
    title = json.loads((tmp_path / "own" / "summary.json").read_text())["title"]
    assert f"repetition penalty {PENALTY:g}" in title
    own, off = (
        [json.loads(line)["generation"] for line in (tmp_path / name / "results.jsonl").open()]
        for name in ("own", "off")
    )
    assert own != off
