"""CodeGeeX checkpoints (plain, fused, partitioned) convert to Geex with equal logits. `pytest tests/model/test_convert_codegeex.py`."""

from __future__ import annotations

import argparse
import fractions
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import geex
from geex.cli import main as geex_main
from geex.errors import GeexError
from geex.model import ModelConfig, build_model
from geex.model.checkpoint import load_state_dict, read_config, save_checkpoint
from geex.model.convert_codegeex import convert_codegeex, export_codegeex, infer_config
from geex.presets import model_preset

# Tiny, but every dimension a partition splits is divisible by 4.
N_LAYER, N_HEAD, D_MODEL, MAX_POS, PADDED_VOCAB = 2, 4, 32, 16, 64
LAYER_PARAMS = [
    f"{module}.{param}"
    for module in (
        "input_layernorm",
        "attention.query",
        "attention.key",
        "attention.value",
        "attention.dense",
        "post_attention_layernorm",
        "mlp.dense_h_to_4h",
        "mlp.dense_4h_to_h",
    )
    for param in ("weight", "bias")
]

# --- A CodeGeeX checkpoint, and CodeGeeX's forward over it, written from the layout alone -----


def random_codegeex_checkpoint(seed: int = 0) -> dict:
    """A Megatron-style training checkpoint in CodeGeeX's layout, with random weights."""
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape, mean=0.0, std=0.2):
        return mean + std * torch.randn(*shape, generator=gen)

    def layer(prefix: str) -> dict:
        d, f = D_MODEL, 4 * D_MODEL
        shapes = {
            "input_layernorm": (d,),
            "post_attention_layernorm": (d,),
            "attention.query": (d, d),
            "attention.key": (d, d),
            "attention.value": (d, d),
            "attention.dense": (d, d),
            "mlp.dense_h_to_4h": (f, d),
            "mlp.dense_4h_to_h": (d, f),
        }
        tensors = {}
        for module, shape in shapes.items():
            norm = "layernorm" in module
            tensors[f"{prefix}{module}.weight"] = normal(*shape, mean=1.0 if norm else 0.0)
            tensors[f"{prefix}{module}.bias"] = normal(shape[0], std=0.1)
        return tensors

    transformer = {}
    for i in range(N_LAYER):
        transformer.update(layer(f"layers.{i}."))
    transformer.update(layer("topQueryLayer."))
    transformer["final_layernorm.weight"] = normal(D_MODEL, mean=1.0)
    transformer["final_layernorm.bias"] = normal(D_MODEL, std=0.1)
    language_model = {
        "embedding": {
            "word_embeddings": {"weight": normal(PADDED_VOCAB, D_MODEL, std=0.5)},
            "position_embeddings": {"weight": normal(MAX_POS, D_MODEL, std=0.5)},
        },
        "topQueryEmbedding": {
            "top_query_embeddings": {"weight": normal(MAX_POS, D_MODEL, std=0.5)}
        },
        "transformer": transformer,
    }
    return {
        "module": {"language_model": language_model},
        # What Megatron saves beside the weights: the converter must load and ignore it.
        "args": argparse.Namespace(num_layers=N_LAYER, hidden_size=D_MODEL),
        "iteration": 1000,
        "np_rng_state": np.random.RandomState(0).get_state(),
        "torch_rng_state": torch.get_rng_state(),
    }


def fuse_qkv(checkpoint: dict) -> dict:
    """CodeGeeX's get_ckpt_qkv.py layout: cat(q, k, v) per layer, cat(k, v) in the top layer."""
    transformer = dict(checkpoint["module"]["language_model"]["transformer"])
    for prefix, parts, fused in [
        *((f"layers.{i}.attention.", "query key value", "query_key_value") for i in range(N_LAYER)),
        ("topQueryLayer.attention.", "key value", "key_value"),
    ]:
        for param in ("weight", "bias"):
            pieces = [transformer.pop(f"{prefix}{part}.{param}") for part in parts.split()]
            transformer[f"{prefix}{fused}.{param}"] = torch.cat(pieces, dim=0)
    language_model = {**checkpoint["module"]["language_model"], "transformer": transformer}
    return {**checkpoint, "module": {"language_model": language_model}}


def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def codegeex_fast_gelu(x):
    """As CodeGeeX wrote it (MindSpore's form), not as Geex does."""
    return x / (1 + torch.exp(-1.702 * torch.abs(x))) * torch.exp(0.851 * (x - torch.abs(x)))


def reference_logits(checkpoint: dict, input_ids: torch.Tensor) -> torch.Tensor:
    """CodeGeeX's forward straight over the nested dict: sequence-first, explicit attention."""
    lm = checkpoint["module"]["language_model"]
    w = lm["transformer"]

    def linear(x, name):
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    def attention(h, query_input, prefix):
        a = f"{prefix}attention."
        if f"{a}query_key_value.weight" in w:
            q, k, v = linear(h, f"{a}query_key_value").chunk(3, dim=-1)
        elif f"{a}key_value.weight" in w:
            q = linear(query_input, f"{a}query")
            k, v = linear(h, f"{a}key_value").chunk(2, dim=-1)
        else:
            q, k, v = (
                linear(query_input, f"{a}query"),
                linear(h, f"{a}key"),
                linear(h, f"{a}value"),
            )
        s, b, _ = q.shape
        head = D_MODEL // N_HEAD

        def heads(t):  # [s, b, h] -> [b, n, s, hn]
            return t.view(s, b, N_HEAD, head).permute(1, 2, 0, 3)

        scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(head)
        future = torch.triu(torch.ones(s, s), diagonal=1)  # 1 = masked, CodeGeeX's convention
        probs = torch.softmax((scores - future * 10000.0).float(), dim=-1)
        context = (probs @ heads(v)).permute(2, 0, 1, 3).reshape(s, b, D_MODEL)
        return linear(context, f"{a}dense")

    def block(x, query_input, prefix):
        h = layer_norm(x, w[f"{prefix}input_layernorm.weight"], w[f"{prefix}input_layernorm.bias"])
        x = x + attention(h, h if query_input is None else query_input, prefix)
        h = layer_norm(
            x,
            w[f"{prefix}post_attention_layernorm.weight"],
            w[f"{prefix}post_attention_layernorm.bias"],
        )
        return x + linear(
            codegeex_fast_gelu(linear(h, f"{prefix}mlp.dense_h_to_4h")),
            f"{prefix}mlp.dense_4h_to_h",
        )

    ids = input_ids.T  # [s, b]
    positions = torch.arange(ids.shape[0])
    word = lm["embedding"]["word_embeddings"]["weight"]
    x = word[ids] + lm["embedding"]["position_embeddings"]["weight"][positions][:, None]
    top_query = lm["topQueryEmbedding"]["top_query_embeddings"]["weight"][positions][:, None]
    n_layers = len({k.split(".")[1] for k in w if k.startswith("layers.")})
    for i in range(n_layers):
        x = block(x, None, f"layers.{i}.")
    x = layer_norm(x, w["final_layernorm.weight"], w["final_layernorm.bias"])
    x = block(x, top_query.expand_as(x), "topQueryLayer.")
    return (x @ word.T).transpose(0, 1)  # tied output, back to [b, s, vocab]


# --- Megatron partitions, split with CodeGeeX's convert_ckpt_parallel.py conventions ---------


def split_name_rule(name: str) -> int | None:
    """The dim CodeGeeX's splitter chunks a transformer tensor on; None: replicated."""
    if "layernorm" in name:
        return None
    if "attention" in name and name.endswith("weight"):
        return 1 if "dense" in name else 0
    if "dense" in name and name.endswith("weight"):
        return 0 if "h_to_4h" in name else 1
    if name.endswith("bias") and ("dense" not in name or "mlp" in name):
        return None if "4h_to_h" in name else 0
    return None


def split_partitions(checkpoint: dict, n: int, *, fused: bool = False) -> list[dict]:
    """Tensor-parallel partitions; ``fused`` then fuses each rank's own q, k, v slices."""
    lm = checkpoint["module"]["language_model"]
    embedding = lm["embedding"]
    words = embedding["word_embeddings"]["weight"].chunk(n, dim=0)
    # CodeGeeX's quirk: the top query table is chunked by position rows, like a vocab table.
    top = lm["topQueryEmbedding"]["top_query_embeddings"]["weight"].chunk(n, dim=0)
    ranks = []
    for r in range(n):
        transformer = {}
        for name, tensor in lm["transformer"].items():
            dim = split_name_rule(name)
            transformer[name] = tensor if dim is None else tensor.chunk(n, dim=dim)[r].clone()
        part = {
            "module": {
                "language_model": {
                    "embedding": {
                        "word_embeddings": {"weight": words[r].clone()},
                        "position_embeddings": {
                            "weight": embedding["position_embeddings"]["weight"]
                        },
                    },
                    "topQueryEmbedding": {"top_query_embeddings": {"weight": top[r].clone()}},
                    "transformer": transformer,
                }
            },
            "args": argparse.Namespace(tensor_model_parallel_size=n),
        }
        ranks.append(fuse_qkv(part) if fused else part)
    return ranks


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, torch.Tensor):
            flat[f"{prefix}{key}"] = value
    return flat


# --- Parity ----------------------------------------------------------------------------------

TOLERANCE = dict(atol=1e-5, rtol=1e-5)  # fp32; SDPA vs explicit softmax, two FastGELU forms


@pytest.fixture(scope="module")
def checkpoint():
    return random_codegeex_checkpoint()


@pytest.fixture(scope="module")
def input_ids():
    return torch.randint(0, PADDED_VOCAB, (2, MAX_POS), generator=torch.Generator().manual_seed(1))


def convert_and_compare(sources, out, checkpoint, input_ids, **options):
    convert_codegeex(sources, out, n_head=N_HEAD, **options)
    model = geex.load_model(out)
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids), reference_logits(checkpoint, input_ids), **TOLERANCE
        )
    return model


@pytest.mark.parametrize(
    "variant", ["plain", "fused", "flattened", "no-module-level", "safetensors"]
)
def test_single_file_converts_with_equal_logits(variant, checkpoint, input_ids, tmp_path):
    source = fuse_qkv(checkpoint) if variant == "fused" else checkpoint
    path = tmp_path / "ckpt.pt"
    if variant == "flattened":
        torch.save(flatten(source), path)
    elif variant == "no-module-level":
        torch.save(source["module"], path)
    elif variant == "safetensors":
        path = tmp_path / "ckpt.safetensors"
        save_file({k: v.contiguous() for k, v in flatten(source["module"]).items()}, path)
    else:
        torch.save(source, path)
    model = convert_and_compare([path], tmp_path / "geex", source, input_ids)
    config = model.config
    assert (config.n_layer, config.d_model, config.max_seq_len) == (N_LAYER, D_MODEL, MAX_POS)
    assert (config.padded_vocab_size, config.vocab_size, config.d_ffn) == (64, 64, 4 * D_MODEL)


@pytest.mark.parametrize("ranks,fused", [(2, False), (4, False), (2, True)])
def test_partitions_merge_with_equal_logits(ranks, fused, checkpoint, input_ids, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    for r, part in enumerate(split_partitions(checkpoint, ranks, fused=fused)):
        torch.save(part, folder / f"mp_rank_{r:02d}_model_states.pt")
    convert_and_compare([folder], tmp_path / "geex", checkpoint, input_ids)
    # The same files listed in any order merge by their rank numbers.
    files = sorted(folder.iterdir(), reverse=True)
    convert_and_compare(files, tmp_path / "geex2", checkpoint, input_ids)


def test_deepspeed_latest_tag_and_legacy_pickles_are_followed(checkpoint, input_ids, tmp_path):
    tagged = tmp_path / "run" / "global_step5"
    tagged.mkdir(parents=True)
    (tmp_path / "run" / "latest").write_text("global_step5\n")
    for r, part in enumerate(split_partitions(checkpoint, 2)):
        # The pre-1.6 pickle format, which cannot be memory-mapped.
        path = tagged / f"mp_rank_{r:02d}_model_states.pt"
        torch.save(part, path, _use_new_zipfile_serialization=False)
    convert_and_compare([tmp_path / "run"], tmp_path / "geex", checkpoint, input_ids)


def test_the_13b_shapes_give_the_13b_preset_without_options():
    """Shapes only (meta tensors): heads and vocabulary default to CodeGeeX-13B's."""
    d, f, layers = 5120, 20480, 39
    shapes = {
        "word_embeddings.weight": (52224, d),
        "position_embeddings.weight": (2048, d),
        "top_query_embeddings.weight": (2048, d),
        **{f"layers.{i}.mlp.dense_h_to_4h.weight": (f, d) for i in range(layers)},
    }
    tensors = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    assert infer_config(tensors) == model_preset("codegeex-13b")


def test_dtype_option_and_vocab_size(checkpoint, tmp_path):
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    convert_codegeex(
        [tmp_path / "ckpt.pt"], tmp_path / "geex", n_head=N_HEAD, vocab_size=60, dtype=torch.float16
    )
    tensors = load_state_dict(tmp_path / "geex")
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    assert read_config(tmp_path / "geex").vocab_size == 60


def test_mixed_dtypes_keep_the_widest(checkpoint, tmp_path):
    half_positions = random_codegeex_checkpoint()
    table = half_positions["module"]["language_model"]["embedding"]["position_embeddings"]
    table["weight"] = table["weight"].half()  # as CodeGeeX kept its position tables
    torch.save(half_positions, tmp_path / "ckpt.pt")
    convert_codegeex([tmp_path / "ckpt.pt"], tmp_path / "geex", n_head=N_HEAD)
    assert {t.dtype for t in load_state_dict(tmp_path / "geex").values()} == {torch.float32}


def test_tokenizer_is_saved_alongside(checkpoint, codegeex_tokenizer_dir, tmp_path):
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    convert_codegeex(
        [tmp_path / "ckpt.pt"], tmp_path / "geex", n_head=N_HEAD, tokenizer=codegeex_tokenizer_dir
    )
    assert (tmp_path / "geex" / "tokenizer.json").is_file()


# --- Bad inputs --------------------------------------------------------------------------------


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path):
    (tmp_path / "notes.pt").write_text("hello, world\n")
    with pytest.raises(GeexError, match="not a PyTorch checkpoint"):
        convert_codegeex([tmp_path / "notes.pt"], tmp_path / "out", n_head=N_HEAD)


def test_random_bytes_are_refused(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, 999, dtype=np.uint8).tobytes()
    (tmp_path / "noise.pt").write_bytes(b"\x80\x02" + noise)  # a pickle header, then noise
    with pytest.raises(GeexError, match="not a PyTorch checkpoint"):
        convert_codegeex([tmp_path / "noise.pt"], tmp_path / "out", n_head=N_HEAD)


def test_a_truncated_checkpoint_is_refused(checkpoint, tmp_path):
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    data = (tmp_path / "ckpt.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(GeexError, match="truncated or corrupt"):
        convert_codegeex([tmp_path / "cut.pt"], tmp_path / "out", n_head=N_HEAD)


def test_missing_tensors_are_named(checkpoint, tmp_path):
    broken = random_codegeex_checkpoint()
    del broken["module"]["language_model"]["transformer"]["layers.1.mlp.dense_4h_to_h.bias"]
    torch.save(broken, tmp_path / "ckpt.pt")
    with pytest.raises(GeexError, match=r"missing layers\.1\.mlp\.dense_4h_to_h\.bias"):
        convert_codegeex([tmp_path / "ckpt.pt"], tmp_path / "out", n_head=N_HEAD)


def test_a_dict_without_codegeex_weights_is_refused(tmp_path):
    torch.save({"module": {"encoder.weight": torch.zeros(2)}}, tmp_path / "ckpt.pt")
    with pytest.raises(GeexError, match="no CodeGeeX weights"):
        convert_codegeex([tmp_path / "ckpt.pt"], tmp_path / "out", n_head=N_HEAD)


def test_n_head_is_required_below_the_13b_width(checkpoint, tmp_path):
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    with pytest.raises(GeexError, match="--n-head"):
        convert_codegeex([tmp_path / "ckpt.pt"], tmp_path / "out")


def test_a_vocab_size_above_the_rows_is_refused(checkpoint, tmp_path):
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    with pytest.raises(GeexError, match="exceeds"):
        convert_codegeex([tmp_path / "ckpt.pt"], tmp_path / "out", n_head=N_HEAD, vocab_size=65)


@pytest.mark.parametrize("zipped", [True, False])
def test_arbitrary_objects_need_unsafe_pickle(zipped, checkpoint, input_ids, tmp_path):
    with_object = {**checkpoint, "custom": fractions.Fraction(1, 3)}
    torch.save(with_object, tmp_path / "ckpt.pt", _use_new_zipfile_serialization=zipped)
    with pytest.raises(GeexError, match=r"fractions\.Fraction.*--unsafe-pickle"):
        convert_codegeex([tmp_path / "ckpt.pt"], tmp_path / "out", n_head=N_HEAD)
    convert_and_compare(
        [tmp_path / "ckpt.pt"], tmp_path / "out", checkpoint, input_ids, unsafe_pickle=True
    )


def test_partitions_that_do_not_match_are_refused(checkpoint, tmp_path):
    parts = split_partitions(checkpoint, 2)
    del parts[1]["module"]["language_model"]["transformer"]["layers.0.attention.key.bias"]
    for r, part in enumerate(parts):
        torch.save(part, tmp_path / f"mp_rank_{r:02d}_model_states.pt")
    with pytest.raises(GeexError, match="partition 1"):
        convert_codegeex([tmp_path], tmp_path / "out", n_head=N_HEAD)


def test_the_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("hello")
    assert geex_main(["convert", "codegeex", str(tmp_path / "notes.pt"), str(tmp_path / "o")]) == 2
    assert "geex convert: error:" in capsys.readouterr().err


# --- Back to CodeGeeX's layout ---------------------------------------------------------------


@pytest.mark.parametrize("fused", [False, True])
def test_codegeex_to_geex_to_codegeex_gives_the_same_tensors(fused, checkpoint, tmp_path):
    source = fuse_qkv(checkpoint) if fused else checkpoint
    torch.save(source, tmp_path / "ckpt.pt")
    convert_codegeex([tmp_path / "ckpt.pt"], tmp_path / "geex", n_head=N_HEAD)
    export_codegeex(tmp_path / "geex", tmp_path / "back.pt", fused_qkv=fused)
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    expected, got = flatten(source["module"]), flatten(back["module"])
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_geex_to_codegeex_to_geex_via_the_cli(tmp_path):
    config = ModelConfig(n_layer=2, n_head=4, d_model=32, max_seq_len=16, vocab_size=60)
    model = build_model(config, seed=3)
    save_checkpoint(model, tmp_path / "geex")
    assert (
        geex_main(["convert", "to-codegeex", str(tmp_path / "geex"), str(tmp_path / "cg.pt")]) == 0
    )
    # No --n-head: the exported file remembers what the shapes cannot tell.
    assert geex_main(["convert", "codegeex", str(tmp_path / "cg.pt"), str(tmp_path / "again")]) == 0
    assert read_config(tmp_path / "again") == config
    original, again = load_state_dict(tmp_path / "geex"), load_state_dict(tmp_path / "again")
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)
