"""`geex generate` and `geex eval --model` refuse bad sampling values, a prompt that is not text and a damaged checkpoint with one line naming the value or file, never a traceback; the sampling rules are one function shared by decoding and evaluation. `pytest tests/model/test_generate_bad_input.py`."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from geex.errors import ConfigError
from geex.eval.backends import Sampling
from geex.model.sampling import MAX_SEED, SamplingConfig
from tests.conftest import one_line_error, run_geex


def generate(model, *flags):
    return run_geex("generate", "--model", model, "--device", "cpu", *flags)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--temperature", "nan"], "temperature must be from 0 (greedy) to 100, got nan"),
        (["--temperature", "inf"], "temperature must be from 0 (greedy) to 100, got inf"),
        (["-t", "1", "--seed", "1e23"], "seed must be an integer from 0 to"),
        (["--top-k", "many"], "'top_k' must be an integer, got 'many'"),
    ],
)
def test_bad_sampling_values_are_one_line_errors(tiny_checkpoint, flags, says):
    error = one_line_error(generate(tiny_checkpoint, "--prompt", "x", *flags))
    assert says in error


def test_eval_refuses_a_nan_temperature_in_one_line(tiny_checkpoint):
    result = run_geex("eval", "embedded", "--model", tiny_checkpoint, "--languages", "python",
                      "--temperature", "nan", "--no-progress")  # fmt: skip
    assert "--temperature must be from 0 (greedy) to 100" in one_line_error(result)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\x89PNG\r\n\x1a\n\xae\x00\xff", "is not UTF-8 text (byte 0x89 at offset 0)"),
        (b"def f():\x00\x00", "holds a NUL byte (offset 8)"),
    ],
)
def test_a_binary_prompt_file_is_named(tiny_checkpoint, tmp_path, content, says):
    prompt = tmp_path / "prompt.bin"
    prompt.write_bytes(content)
    error = one_line_error(generate(tiny_checkpoint, "--prompt-file", prompt))
    assert f"--prompt-file {prompt} {says}" in error


def test_a_truncated_weights_file_is_named(tiny_checkpoint, tmp_path):
    for keep in (2000, -100):  # a cut header; a cut data section
        folder = tmp_path / f"cut{keep}"
        shutil.copytree(tiny_checkpoint, folder)
        weights = folder / "model.safetensors"
        data = weights.read_bytes()
        weights.write_bytes(data[:keep])
        error = one_line_error(generate(folder, "--prompt", "x"))
        assert f"{weights} is not a complete safetensors file" in error


def test_a_config_without_its_model_key_is_named(tiny_checkpoint, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    header = json.loads((folder / "config.json").read_text())
    del header["model"]
    (folder / "config.json").write_text(json.dumps(header))
    error = one_line_error(generate(folder, "--prompt", "x"))
    assert f'{folder / "config.json"} has no "model" object' in error


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", math.nan), ("temperature", math.inf), ("top_p", math.nan),
     ("top_p", 0.0), ("max_new_tokens", 0), ("top_k", -1), ("seed", -1),
     ("seed", MAX_SEED + 1), ("seed", 1.5)],
)  # fmt: skip
def test_sampling_config_refuses_each_value_outside_its_rule(field, value):
    with pytest.raises(ConfigError, match=f"^{field} must be"):
        SamplingConfig(**{"temperature": 1.0, field: value})


def test_the_largest_seed_is_accepted():
    assert SamplingConfig(seed=MAX_SEED).seed == MAX_SEED


@pytest.mark.parametrize(
    ("sampling", "says"),
    [
        (Sampling(temperature=math.inf), "eval.temperature must be from 0 (greedy) to 100"),
        (Sampling(top_p=math.nan), "eval.top_p must be in (0, 1]"),
        (Sampling(n=3), "eval.n 3 with temperature 0 draws 3 identical greedy completions"),
        (Sampling(max_new_tokens=0), "eval.max_new_tokens must be"),
        (Sampling(repetition_penalty=-1.0), "eval.repetition_penalty must be from 0.01 to 100"),
    ],
)
def test_eval_sampling_follows_the_decoding_rules_under_its_own_names(sampling, says):
    with pytest.raises(ConfigError, match="^" + says.replace("(", r"\(").replace(")", r"\)")):
        sampling.check(8, name=lambda key: f"eval.{key}")


def test_a_prompt_argument_is_taken_as_given():
    """No escape is rewritten: a C string's \\n in the prompt stays a backslash and an n."""
    from geex.cli.generate import _read_prompt

    args = argparse.Namespace(prompt='printf("hi\\n");', prompt_file=None)
    assert _read_prompt(args) == 'printf("hi\\n");'


def test_a_prompt_argument_that_is_not_utf8_is_one_line(tiny_checkpoint):
    command = [sys.executable, "-m", "geex", "generate", "--model", str(tiny_checkpoint),
               "--device", "cpu", "--prompt", b"def f(\xff):"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert "--prompt is not UTF-8 text (byte 0xff at offset 6)" in one_line_error(result)
