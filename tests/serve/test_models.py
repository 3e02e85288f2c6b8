"""load_served_model: a Hugging Face folder or a Geex checkpoint, told apart by config.json; the
FIM style detected or named; a model without FIM tokens refuses a suffix.

Run: pytest tests/serve/test_models.py -q
"""

from __future__ import annotations

import json

import pytest

from geex.errors import GeexError
from geex.serve.hf_runner import HFRunner
from geex.serve.models import load_served_model, model_kind
from geex.tokenizer.fim import FIM_STYLES
from tests.serve.hf_model_folder import CODE, STARCODER_FIM, save_tiny_hf_model


@pytest.fixture(scope="module")
def fim_folder(tmp_path_factory):
    return save_tiny_hf_model(tmp_path_factory.mktemp("fim"), special_tokens=STARCODER_FIM)


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory):
    return save_tiny_hf_model(tmp_path_factory.mktemp("plain"))


def load(folder, **options):
    return load_served_model(folder, device="cpu", dtype="fp32", max_slots=2, **options)


def test_hf_folder_is_loaded_with_its_detected_fim_style(fim_folder):
    served = load(fim_folder)
    assert served.kind == "hf" and isinstance(served.runner, HFRunner)
    assert served.name == fim_folder.name
    assert served.fim is FIM_STYLES["starcoder"]
    vocab = served.codec.vocab
    assert served.stop_token_ids >= {vocab["<|endoftext|>"], vocab["<fim_pad>"]}


def test_fim_prompt_is_the_styles_layout_and_fits_the_budget(fim_folder):
    served = load(fim_folder)
    vocab, codec = served.codec.vocab, served.codec
    prefix, suffix = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
    ids = served.fim_prompt_ids(prefix, suffix, max_prompt_tokens=1000)
    assert ids == [
        vocab["<fim_prefix>"],
        *codec.encode_text(prefix),
        vocab["<fim_suffix>"],
        *codec.encode_text(suffix),
        vocab["<fim_middle>"],
    ]
    short = served.fim_prompt_ids(prefix * 20, suffix * 20, max_prompt_tokens=40)
    assert len(short) == 40
    assert short[-1] == vocab["<fim_middle>"]
    # The prefix keeps its end (next to the cursor), the suffix its start.
    kept_prefix = short[1 : short.index(vocab["<fim_suffix>"])]
    assert kept_prefix == codec.encode_text(prefix * 20)[-len(kept_prefix) :]
    kept_suffix = short[short.index(vocab["<fim_suffix>"]) + 1 : -1]
    assert kept_suffix == codec.encode_text(suffix * 20)[: len(kept_suffix)]


def test_folder_without_fim_tokens_has_no_fim_and_refuses_a_suffix(plain_folder):
    served = load(plain_folder)
    assert served.fim is None
    with pytest.raises(GeexError, match="no fill-in-the-middle tokens"):
        served.fim_prompt_ids("def f():", "\n    return 1\n", max_prompt_tokens=100)
    # Without a suffix it is a plain completion prompt.
    assert served.fim_prompt_ids(CODE[0], "", max_prompt_tokens=100) == served.codec.encode(CODE[0])


def test_prefix_only_is_an_explicit_choice_that_drops_the_suffix(plain_folder):
    served = load(plain_folder, fim_style="prefix-only")
    assert served.fim is FIM_STYLES["prefix-only"]
    ids = served.fim_prompt_ids(CODE[0], "ignored()", max_prompt_tokens=5)
    assert ids == served.codec.encode(CODE[0])[-5:]


def test_named_style_overrides_and_missing_tokens_are_refused(fim_folder, plain_folder):
    with pytest.raises(GeexError, match="'deepseek' needs the tokens"):
        load(fim_folder, fim_style="deepseek")
    with pytest.raises(GeexError, match="unknown FIM style"):
        load(plain_folder, fim_style="fill")
    assert load(fim_folder, fim_style="none").fim is None


def test_name_override_and_quantize_refused_for_hf(fim_folder):
    assert load(fim_folder, name="coder").name == "coder"
    with pytest.raises(GeexError, match="for Geex checkpoints"):
        load(fim_folder, quantize="int8")
    with pytest.raises(GeexError, match="unknown quantization"):
        load(fim_folder, quantize="int3")


def test_folders_that_are_neither_kind_are_one_clear_error(tmp_path):
    with pytest.raises(GeexError, match="no such folder"):
        model_kind(tmp_path / "missing")
    with pytest.raises(GeexError, match="no config.json"):
        model_kind(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(GeexError, match="not valid JSON"):
        model_kind(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(GeexError, match="neither a Geex checkpoint"):
        load_served_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "geex"}))
    assert model_kind(tmp_path) == "geex"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert model_kind(tmp_path) == "hf"
    file = tmp_path / "config.json"
    with pytest.raises(GeexError, match="is a file"):
        model_kind(file)


def test_a_broken_hf_folder_is_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(GeexError, match="cannot load"):
        load(tmp_path)


def test_code_llama_layout_bos_first_and_the_suffix_without_a_leading_space(tmp_path):
    from tests.serve.hf_model_folder import save_sentencepiece_style_model

    served = load(save_sentencepiece_style_model(tmp_path))
    assert served.fim is FIM_STYLES["codellama"]
    tokenizer, vocab = served.codec.tokenizer, served.codec.vocab
    prefix, suffix = "def add(a, b):\n", "return a + b\n"
    plain = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(plain)[0].startswith("▁")  # the dummy prefix
    ids = served.fim_prompt_ids(prefix, suffix, max_prompt_tokens=100)
    assert ids[:2] == [tokenizer.bos_token_id, vocab["▁<PRE>"]]
    assert (
        ids[2 : ids.index(vocab["▁<SUF>"])]
        == tokenizer(prefix, add_special_tokens=False)["input_ids"]
    )
    suffix_ids = ids[ids.index(vocab["▁<SUF>"]) + 1 : -1]
    assert ids[-1] == vocab["▁<MID>"]
    assert not tokenizer.convert_ids_to_tokens(suffix_ids)[0].startswith("▁")
    assert tokenizer.decode(suffix_ids) == suffix
    assert vocab["▁<EOT>"] in served.stop_token_ids


@pytest.fixture(scope="module")
def geex_folder(tmp_path_factory):
    import torch

    from geex.model import ModelConfig, build_model
    from geex.model.checkpoint import save_checkpoint
    from geex.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(CODE * 10, vocab_size=400, languages=["python"])
    config = ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=64,
                         vocab_size=tokenizer.vocab_size, init_std=0.1)  # fmt: skip
    folder = tmp_path_factory.mktemp("geex")
    save_checkpoint(build_model(config, seed=0), folder, tokenizer=tokenizer, dtype=torch.float32)
    config_file = folder / "tokenizer_config.json"
    saved = json.loads(config_file.read_text())
    saved["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    config_file.write_text(json.dumps(saved))
    return folder


def test_geex_checkpoint_is_served_with_geex_fim_and_its_template(geex_folder):
    import torch

    from geex.model.loader import load_for_inference
    from geex.serve.geex_runner import GeexRunner

    served = load(geex_folder)
    assert served.kind == "geex" and isinstance(served.runner, GeexRunner)
    assert served.fim is FIM_STYLES["geex"]
    tokenizer = served.codec.tokenizer
    ids = served.fim_prompt_ids("def f(", "):\n", max_prompt_tokens=64)
    assert ids == [
        tokenizer.fim_prefix_id,
        *tokenizer.encode("def f("),
        tokenizer.fim_suffix_id,
        *tokenizer.encode("):\n"),
        tokenizer.fim_middle_id,
    ]
    assert served.stop_token_ids >= {tokenizer.eod_id, tokenizer.fim_pad_id}
    assert served.chat_prompt_ids([{"role": "user", "content": "hi"}]) == tokenizer.encode("hi")
    assert served.context_length == 64
    # The runner runs the checkpoint's model: its logits are the model's own.
    model = load_for_inference(geex_folder, device="cpu", dtype="fp32").model
    with torch.inference_mode():
        full = model(torch.tensor([ids])).float()[0, -1, : tokenizer.vocab_size]
    torch.testing.assert_close(served.runner.prefill(0, ids, 0), full, atol=1e-5, rtol=0)


def test_geex_checkpoint_with_a_named_style_it_lacks_is_refused(geex_folder):
    with pytest.raises(GeexError, match="'starcoder' needs the tokens"):
        load(geex_folder, fim_style="starcoder")


def test_a_geex_checkpoint_exported_to_hf_serves_the_same_logits(geex_folder, tmp_path):
    """``geex convert to-hf``'s folder (its own model code) through the Hugging Face path."""
    import torch

    from geex.model.hf_export import export_hf

    export_hf(geex_folder, tmp_path / "hf")
    with pytest.raises(GeexError, match="trust-remote-code"):
        load(tmp_path / "hf")
    hf = load(tmp_path / "hf", trust_remote_code=True)
    geex = load(geex_folder)
    assert hf.kind == "hf" and hf.fim is FIM_STYLES["geex"]
    assert hf.runner.vocab_size == geex.runner.vocab_size
    ids = geex.fim_prompt_ids("def f(", "):\n", max_prompt_tokens=64)
    assert hf.fim_prompt_ids("def f(", "):\n", max_prompt_tokens=64) == ids
    torch.testing.assert_close(
        hf.runner.prefill(0, ids, 0), geex.runner.prefill(0, ids, 0), atol=1e-4, rtol=0
    )
    # Two slots of different lengths decoded together (padded and masked in one forward).
    for served in (hf, geex):
        served.runner.prefill(1, ids[:3], 0)
    step_hf = hf.runner.decode([0, 1], [ids[0], ids[4]], [len(ids), 3])
    step_geex = geex.runner.decode([0, 1], [ids[0], ids[4]], [len(ids), 3])
    torch.testing.assert_close(step_hf, step_geex, atol=1e-4, rtol=0)
