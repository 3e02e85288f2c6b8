"""Hugging Face format: export a Geex checkpoint for ``transformers``, and import one back.

No standard transformers architecture has CodeGeeX's top query layer, so the exported folder
carries its own model code (``trust_remote_code=True``)::

    config.json                    model_type "codegeex", auto_map -> the two files below
    configuration_codegeex.py      copied from geex/model/hf_remote: torch + transformers only,
    modeling_codegeex.py           no geex import
    model.safetensors              or model-0000N-of-0000M.safetensors + .index.json
    generation_config.json         special tokens; the padded vocabulary rows suppressed; the
                                   model's repetition penalty, if it has one
    tokenizer.json ...             when the Geex folder has a tokenizer

Tensor names are ``transformer.`` + the Geex name; ``lm_head.weight`` is tied to
``transformer.word_embeddings.weight`` and not stored. ``vocab_size`` in config.json is the
*padded* vocabulary (the embedding rows, the number of logits); ``unpadded_vocab_size`` the
tokenizer's. ``num_hidden_layers`` counts the top query layer too (13B: 40).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from geex.atomic import atomic_write_text
from geex.errors import GeexError
from geex.model.checkpoint import (
    converted_checkpoint,
    finite_weights,
    load_state_dict,
    read_config,
    write_safetensors,
)
from geex.model.config import ModelConfig
from geex.model.convert_output import check_apart, config_field, output_folder, tensor_bytes
from geex.model.generation_defaults import save_repetition_penalty, saved_repetition_penalty

REMOTE_CODE_DIR = Path(__file__).parent / "hf_remote"
REMOTE_CODE_FILES = ("configuration_codegeex.py", "modeling_codegeex.py")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
MODEL_TYPE = "codegeex"
HF_PREFIX = "transformer."
TIED_OUTPUT = "lm_head.weight"
END_OF_TEXT = "<|endoftext|>"  # CodeGeeX's end-of-document, BOS and padding token
SPECIAL_ROLES = ("bos", "eos", "pad")
DEFAULT_SHARD_BYTES = 5 * 2**30


def hf_config(
    config: ModelConfig, *, dtype: str, special_token_ids: dict[str, int | None] | None = None
) -> dict:
    """config.json for :class:`CodeGeeXConfig`, from a Geex model config.

    ``special_token_ids``: ``bos_token_id``, ``eos_token_id``, ``pad_token_id`` (None: unset).
    """
    return {
        "model_type": MODEL_TYPE,
        "architectures": ["CodeGeeXForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_codegeex.CodeGeeXConfig",
            "AutoModel": "modeling_codegeex.CodeGeeXModel",
            "AutoModelForCausalLM": "modeling_codegeex.CodeGeeXForCausalLM",
        },
        "vocab_size": config.padded_vocab_size,
        "unpadded_vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "num_hidden_layers": config.n_attention_layers,
        "num_attention_heads": config.n_head,
        "intermediate_size": config.d_ffn,
        "max_position_embeddings": config.max_seq_len,
        "layer_norm_eps": config.layernorm_eps,
        "initializer_range": config.init_std,
        "dropout": config.dropout,
        "tie_word_embeddings": True,
        "use_cache": True,
        **{f"{role}_token_id": None for role in SPECIAL_ROLES},
        **(special_token_ids or {}),
        "dtype": dtype,  # transformers 5 reads "dtype", 4.x "torch_dtype"
        "torch_dtype": dtype,
    }


def model_config_from_hf(fields: dict) -> ModelConfig:
    """The Geex model config of a CodeGeeX config.json."""
    if fields.get("model_type") != MODEL_TYPE:
        raise GeexError(f"model_type is {fields.get('model_type')!r}, not {MODEL_TYPE!r}")
    try:
        return ModelConfig(
            n_layer=fields["num_hidden_layers"] - 1,
            n_head=fields["num_attention_heads"],
            d_model=fields["hidden_size"],
            max_seq_len=fields["max_position_embeddings"],
            vocab_size=fields.get("unpadded_vocab_size") or fields["vocab_size"],
            padded_vocab_size=fields["vocab_size"],
            d_ffn=fields["intermediate_size"],
            layernorm_eps=fields.get("layer_norm_eps", 1e-5),
            init_std=fields.get("initializer_range", 0.02),
            dropout=fields.get("dropout", 0.0),
        )
    except KeyError as err:
        raise GeexError(f"config.json lacks {err}") from None


def export_hf(
    geex_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
) -> Path:
    """Write a Geex checkpoint as a folder ``AutoModelForCausalLM`` loads with remote code.

    ``out_dir`` is written whole or not at all, and replaces only an earlier export, with
    ``overwrite`` (see :mod:`geex.model.convert_output`); weights that are NaN or inf are
    refused.
    """
    geex_dir = Path(geex_dir)
    check_apart([geex_dir], out_dir)
    config = read_config(geex_dir)
    tensors = finite_weights(load_state_dict(geex_dir), dtype=dtype, source=str(geex_dir))
    saved_dtype = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    writing = output_folder(
        out_dir,
        inputs=[geex_dir],
        kind="Hugging Face export",
        is_kind=is_hf_export,
        needed_bytes=tensor_bytes(tensors),
        overwrite=overwrite,
    )
    with writing as tmp:
        write_safetensors(
            {HF_PREFIX + k: v.contiguous() for k, v in tensors.items()}, tmp, max_shard_bytes
        )
        for name in REMOTE_CODE_FILES:
            shutil.copyfile(REMOTE_CODE_DIR / name, tmp / name)
        _copy_tokenizer(geex_dir, tmp, config)
        special = _special_token_ids(tmp)
        fields = hf_config(config, dtype=saved_dtype, special_token_ids=special)
        atomic_write_text(tmp / "config.json", json.dumps(fields, indent=2) + "\n")
        generation = {k: v for k, v in special.items() if v is not None}
        penalty = saved_repetition_penalty(geex_dir)  # the model's own decoding default
        if penalty is not None:
            generation["repetition_penalty"] = penalty
        if config.padded_vocab_size > config.vocab_size:
            # Padding rows of the embedding are no tokens: never generate them.
            generation["suppress_tokens"] = list(range(config.vocab_size, config.padded_vocab_size))
        atomic_write_text(tmp / "generation_config.json", json.dumps(generation, indent=2) + "\n")
    return Path(out_dir)


def is_hf_export(folder: Path) -> bool:
    """Whether ``folder`` holds a CodeGeeX Hugging Face folder (an earlier export)."""
    return config_field(folder, "model_type") == MODEL_TYPE


def import_hf(
    hf_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a CodeGeeX Hugging Face folder (as :func:`export_hf` makes) as a Geex checkpoint.

    ``out_dir`` is written whole or not at all, and replaces only an earlier Geex checkpoint,
    with ``overwrite`` (see :mod:`geex.model.convert_output`); weights that are NaN or inf
    are refused.
    """
    hf_dir = Path(hf_dir)
    check_apart([hf_dir], out_dir)
    path = hf_dir / "config.json"
    if not path.is_file():
        raise GeexError(f"{hf_dir} is not a Hugging Face model folder: config.json is missing")
    try:
        config = model_config_from_hf(json.loads(path.read_bytes()))
    except (GeexError, ValueError, TypeError, AttributeError) as err:
        raise GeexError(f"{path}: {err}") from None
    hf_tensors = load_state_dict(hf_dir)
    output = hf_tensors.pop(TIED_OUTPUT, None)  # a save_pretrained() copy of the tied weights
    word = hf_tensors.get(HF_PREFIX + "word_embeddings.weight")
    if output is not None and (word is None or not torch.equal(output, word)):
        raise GeexError(f"{hf_dir}: {TIED_OUTPUT} differs from the word embeddings; Geex ties them")
    unexpected = sorted(name for name in hf_tensors if not name.startswith(HF_PREFIX))
    if unexpected:
        raise GeexError(f"{hf_dir}: unexpected tensors {', '.join(unexpected[:5])}")
    tensors = {name.removeprefix(HF_PREFIX): t for name, t in hf_tensors.items()}
    with converted_checkpoint(
        tensors,
        out_dir,
        config=config,
        inputs=[hf_dir],
        source=str(hf_dir),
        metadata={"converted_from": {"format": "hf", "folder": str(hf_dir)}},
        dtype=dtype,
        overwrite=overwrite,
    ) as tmp:
        for name in TOKENIZER_FILES:
            if (hf_dir / name).is_file():
                shutil.copyfile(hf_dir / name, tmp / name)
        penalty = saved_repetition_penalty(hf_dir)  # the model's own decoding default, kept
        if penalty is not None:
            save_repetition_penalty(tmp, penalty)
    return Path(out_dir)


def _copy_tokenizer(geex_dir: Path, out_dir: Path, config: ModelConfig) -> None:
    """Copy the tokenizer files; without tokenizer_config.json, write one for the fast class."""
    if not (geex_dir / "tokenizer.json").is_file():
        return
    for name in TOKENIZER_FILES:
        if (geex_dir / name).is_file():
            shutil.copyfile(geex_dir / name, out_dir / name)
    if not (out_dir / "tokenizer_config.json").is_file():
        fields = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": config.max_seq_len,
        }
        if _token_id(json.loads((out_dir / "tokenizer.json").read_text()), END_OF_TEXT) is not None:
            fields.update(bos_token=END_OF_TEXT, eos_token=END_OF_TEXT)
        atomic_write_text(out_dir / "tokenizer_config.json", json.dumps(fields, indent=2) + "\n")


def _special_token_ids(folder: Path) -> dict[str, int | None]:
    """``{bos,eos,pad}_token_id`` of the tokenizer in ``folder``, from tokenizer_config.json."""
    ids: dict[str, int | None] = {f"{role}_token_id": None for role in SPECIAL_ROLES}
    spec_file, settings_file = folder / "tokenizer.json", folder / "tokenizer_config.json"
    if not spec_file.is_file() or not settings_file.is_file():
        return ids
    spec, settings = json.loads(spec_file.read_text()), json.loads(settings_file.read_text())
    for role in SPECIAL_ROLES:
        token = settings.get(f"{role}_token")
        if isinstance(token, dict):  # an AddedToken written out
            token = token.get("content")
        if token:
            ids[f"{role}_token_id"] = _token_id(spec, token)
    return ids


def _token_id(spec: dict, token: str) -> int | None:
    """The id of ``token`` in a parsed tokenizers JSON file, if it has it."""
    for added in spec.get("added_tokens") or []:
        if added.get("content") == token:
            return added.get("id")
    vocab = (spec.get("model") or {}).get("vocab")
    return vocab.get(token) if isinstance(vocab, dict) else None
