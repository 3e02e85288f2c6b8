"""A model's own repetition penalty, in its folder's ``generation_config.json``: read and
checked, used by `geex generate` and `geex eval` where none is given, carried through the
Hugging Face export and import, and written by `geex train` for the presets that set one.
`pytest tests/model/test_generation_defaults.py`."""

from __future__ import annotations

import json

import pytest

from geex.errors import GeexError
from geex.eval.backends import Sampling
from geex.eval.fingerprint import model_generator
from geex.model.generation_defaults import (
    GENERATION_CONFIG,
    resolve_penalty,
    saved_repetition_penalty,
    write_generation_defaults,
)
from geex.model.loader import load_for_inference
from geex.model.sampling import SamplingConfig
from geex.presets import GENERATION_PRESETS, generation_preset
from tests.conftest import run_geex
from tests.serve.editor_server import save_tiny_model

PENALTY = 3.0  # strong enough to change the tiny random model's greedy text


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = save_tiny_model(tmp_path_factory.mktemp("defaults") / "tiny")
    write_generation_defaults(folder, {"repetition_penalty": PENALTY})
    return folder


def test_a_folder_without_the_file_or_the_field_names_no_penalty(tmp_path):
    assert saved_repetition_penalty(tmp_path) is None
    (tmp_path / GENERATION_CONFIG).write_text('{"eos_token_id": 0}')
    assert saved_repetition_penalty(tmp_path) is None


def test_writing_keeps_the_fields_already_there(tmp_path):
    (tmp_path / GENERATION_CONFIG).write_text('{"eos_token_id": 0}')
    write_generation_defaults(tmp_path, {"repetition_penalty": 1.2})
    fields = json.loads((tmp_path / GENERATION_CONFIG).read_text())
    assert fields == {"eos_token_id": 0, "repetition_penalty": 1.2}
    assert saved_repetition_penalty(tmp_path) == 1.2


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


def test_geex_generate_uses_the_models_penalty(folder):
    def text(*flags):
        done = run_geex("generate", "--model", folder, "--device", "cpu", "--prompt",
                        "def add(a, b):\n", "--max-new-tokens", "16", "--json", *flags)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[0])["completion"]

    own = text()
    assert own == text("--repetition-penalty", str(PENALTY))
    assert own != text("--repetition-penalty", "1")


def test_eval_sampling_takes_a_local_models_penalty_into_its_fingerprint(folder, tmp_path):
    sampling = Sampling().with_model_defaults(folder)
    assert sampling.repetition_penalty == PENALTY
    assert Sampling(repetition_penalty=1.0).with_model_defaults(folder).penalty == 1.0
    assert Sampling().with_model_defaults(tmp_path / "elsewhere").repetition_penalty is None
    assert Sampling().with_model_defaults(None).repetition_penalty is None  # an endpoint
    own = model_generator("geex", folder, sampling)["sampling"]
    off = model_generator("geex", folder, Sampling(repetition_penalty=1.0))["sampling"]
    assert own["repetition_penalty"] == PENALTY and own != off
    assert sampling.describe() == f"n=1, temperature 0, repetition penalty {PENALTY:g}"
