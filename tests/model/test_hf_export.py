"""A Geex checkpoint exported for transformers gives equal logits and greedy tokens, and imports back. `pytest tests/model/test_hf_export.py`."""

from __future__ import annotations

import ast
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # these tests only read local folders

import pytest
import tokenizers
import torch

from tests.conftest import required_module

transformers = required_module("transformers")

from geex.cli import main as geex_main  # noqa: E402
from geex.errors import GeexError  # noqa: E402
from geex.model import ModelConfig, build_model  # noqa: E402
from geex.model.checkpoint import load_state_dict, read_config, save_checkpoint  # noqa: E402
from geex.model.generation_defaults import (  # noqa: E402
    save_repetition_penalty,
    saved_repetition_penalty,
)
from geex.model.hf_export import export_hf, import_hf  # noqa: E402
from geex.model.loss import lm_loss  # noqa: E402
from geex.tokenizer import load_tokenizer  # noqa: E402

# Vocabulary padded 60 -> 64: the four padding rows must never be generated.
CONFIG = ModelConfig(
    n_layer=2, n_head=4, d_model=32, max_seq_len=32, vocab_size=60, padded_vocab_size=64
)
TIGHT = dict(atol=1e-6, rtol=1e-6)  # fp32, same operations on both sides


@pytest.fixture(scope="module")
def geex_model():
    model = build_model(CONFIG, seed=0).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # LayerNorms away from (1, 0), so that mixing them up shows
        for name, param in model.named_parameters():
            if "layernorm" in name:
                param.add_(0.2 * torch.randn(param.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def folders(geex_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    save_checkpoint(geex_model, root / "geex")
    export_hf(root / "geex", root / "hf")
    return root


@pytest.fixture(scope="module")
def hf_model(folders):
    return transformers.AutoModelForCausalLM.from_pretrained(
        folders / "hf", trust_remote_code=True
    ).eval()


def left_pad(prompts, pad_id=0):
    longest = max(map(len, prompts))
    ids = torch.full((len(prompts), longest), pad_id)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt) :] = torch.tensor(prompt)
        mask[row, longest - len(prompt) :] = 1
    return ids, mask


PROMPTS = [[5, 17, 42, 8, 33, 1, 9], [12, 40, 3], [7]]


def test_exported_folder_is_self_describing(folders):
    fields = json.loads((folders / "hf" / "config.json").read_text())
    assert fields["model_type"] == "codegeex" and fields["tie_word_embeddings"] is True
    assert fields["auto_map"]["AutoModelForCausalLM"] == "modeling_codegeex.CodeGeeXForCausalLM"
    assert (fields["vocab_size"], fields["unpadded_vocab_size"]) == (64, 60)
    assert fields["num_hidden_layers"] == CONFIG.n_layer + 1  # the top query layer counts
    for name in ("modeling_codegeex.py", "configuration_codegeex.py"):  # standalone code
        tree = ast.parse((folders / "hf" / name).read_text())
        imported = {
            (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        }
        roots = {module.split(".")[0] for module in imported}
        assert roots <= {"torch", "transformers", "typing", "configuration_codegeex"}, roots


def test_logits_equal_geex(geex_model, hf_model):
    ids = torch.randint(0, CONFIG.vocab_size, (3, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(hf_model(ids).logits, geex_model(ids), **TIGHT)
    assert hf_model.lm_head.weight is hf_model.transformer.word_embeddings.weight


def test_left_padded_batch_matches_each_prompt_alone(geex_model, hf_model):
    ids, mask = left_pad(PROMPTS)
    with torch.no_grad():
        batch = hf_model(ids, attention_mask=mask).logits
        for row, prompt in enumerate(PROMPTS):
            alone = geex_model(torch.tensor([prompt]))[0]
            torch.testing.assert_close(batch[row, -len(prompt) :], alone, atol=1e-5, rtol=1e-5)


def naive_greedy(model, prompt, steps):
    """Geex's full forward over the whole sequence for every token: slow, obviously right."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids]))[0, -1, : CONFIG.vocab_size].argmax()))
    return ids[len(prompt) :]


def test_greedy_generate_equals_geex_decoding(geex_model, hf_model):
    steps = 10
    ids, mask = left_pad(PROMPTS)
    out = hf_model.generate(
        ids, attention_mask=mask, max_new_tokens=steps, do_sample=False, pad_token_id=0
    )
    hf_tokens = out[:, ids.shape[1] :].tolist()
    assert hf_tokens == [naive_greedy(geex_model, p, steps) for p in PROMPTS]
    try:
        from geex.model.generation import generate
        from geex.model.sampling import SamplingConfig
    except ImportError:
        return
    geex_tokens = generate(geex_model, PROMPTS, SamplingConfig(max_new_tokens=steps))
    assert hf_tokens == [samples[0] for samples in geex_tokens]


def test_padding_rows_are_never_generated(folders, hf_model):
    fields = json.loads((folders / "hf" / "generation_config.json").read_text())
    assert fields["suppress_tokens"] == [60, 61, 62, 63]


def test_loss_and_gradient_checkpointing(folders):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folders / "hf", trust_remote_code=True
    )
    model.train()
    ids = torch.randint(0, CONFIG.vocab_size, (2, 12), generator=torch.Generator().manual_seed(3))
    out = model(ids, labels=ids)
    torch.testing.assert_close(out.loss, lm_loss(out.logits[:, :-1], ids[:, 1:]))
    out.loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x
    (enable or model.gradient_checkpointing_enable)()
    assert model.transformer.gradient_checkpointing
    model(ids, labels=ids).loss.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, plain[name], **TIGHT)


def test_from_hf_gives_back_the_same_tensors(folders):
    import_hf(folders / "hf", folders / "back")
    assert read_config(folders / "back") == CONFIG
    original, back = load_state_dict(folders / "geex"), load_state_dict(folders / "back")
    assert original.keys() == back.keys()
    assert all(torch.equal(original[k], back[k]) for k in original)


def test_the_models_repetition_penalty_goes_out_and_comes_back(geex_model, tmp_path):
    """transformers' generate() and geex serve both read it from generation_config.json."""
    save_checkpoint(geex_model, tmp_path / "geex")
    save_repetition_penalty(tmp_path / "geex", 1.2)
    export_hf(tmp_path / "geex", tmp_path / "hf")
    assert transformers.GenerationConfig.from_pretrained(tmp_path / "hf").repetition_penalty == 1.2
    import_hf(tmp_path / "hf", tmp_path / "back")
    assert saved_repetition_penalty(tmp_path / "back") == 1.2


def test_from_hf_reads_save_pretrained_output(folders, hf_model, tmp_path):
    hf_model.save_pretrained(tmp_path / "saved")
    import_hf(tmp_path / "saved", tmp_path / "back")
    original, back = load_state_dict(folders / "geex"), load_state_dict(tmp_path / "back")
    assert all(torch.equal(original[k], back[k]) for k in original)


def test_sharded_bf16_export_loads(folders, geex_model, tmp_path):
    export_hf(folders / "geex", tmp_path, dtype=torch.bfloat16, max_shard_bytes=20_000)
    assert (tmp_path / "model.safetensors.index.json").is_file()
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True)
    assert model.dtype == torch.bfloat16
    ids = torch.tensor([PROMPTS[0]])
    with torch.no_grad():
        expected = geex_model.to(torch.bfloat16)(ids).float()
        geex_model.float()
        torch.testing.assert_close(model(ids).logits.float(), expected, atol=2e-2, rtol=2e-2)


def test_tokenizer_files_travel_and_load(folders, tmp_path):
    vocab = {"<|endoftext|>": 0, "[UNK]": 1, "def": 2, "return": 3}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    geex_dir = tmp_path / "geex"
    save_checkpoint(build_model(CONFIG, seed=0), geex_dir)
    tokenizer.save(str(geex_dir / "tokenizer.json"))
    export_hf(geex_dir, tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["eos_token_id"] == 0
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tokenizer("def return")["input_ids"] == [2, 3]
    assert hf_tokenizer.eos_token == "<|endoftext|>"
    import_hf(tmp_path / "hf", tmp_path / "back")
    assert (tmp_path / "back" / "tokenizer.json").read_bytes() == (
        geex_dir / "tokenizer.json"
    ).read_bytes()


def test_the_codegeex_tokenizer_encodes_alike_after_export(codegeex_tokenizer_dir, tmp_path):
    tokenizer = load_tokenizer(codegeex_tokenizer_dir)
    save_checkpoint(build_model(CONFIG, seed=0), tmp_path / "geex", tokenizer=tokenizer)
    export_hf(tmp_path / "geex", tmp_path / "hf")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    code = "# language: Python\ndef add(a, b):\n        return a + b\n"
    assert hf_tokenizer(code)["input_ids"] == tokenizer.encode(code)
    fields = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert fields["eos_token_id"] == 50256  # <|endoftext|>


def test_from_hf_refuses_other_models(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(GeexError, match="not 'codegeex'"):
        import_hf(tmp_path, tmp_path / "out")
    with pytest.raises(GeexError, match="config.json is missing"):
        import_hf(tmp_path / "nowhere", tmp_path / "out")


def test_cli_round_trip(folders, tmp_path):
    assert geex_main(["convert", "to-hf", str(folders / "geex"), str(tmp_path / "hf")]) == 0
    assert geex_main(["convert", "from-hf", str(tmp_path / "hf"), str(tmp_path / "back")]) == 0
    assert read_config(tmp_path / "back") == CONFIG
