"""Import the original CodeGeeX PyTorch checkpoints into Geex, and export Geex weights back.

CodeGeeX (THUDM) saved its weights as a pickle ``{"module": {"language_model": {...}}}`` with
``embedding`` (word and position tables), ``topQueryEmbedding`` and ``transformer`` (flat names
``layers.{i}.attention.query.weight``, ``topQueryLayer.*``, ``final_layernorm.*``). This module
reads every variant of that layout found in the wild:

* the plain layout, with separate query, key and value projections;
* the fused inference layout written by CodeGeeX's ``get_ckpt_qkv.py``:
  ``attention.query_key_value`` = cat(q, k, v) and the top query layer's
  ``attention.key_value`` = cat(k, v), both on the output dimension;
* Megatron tensor-parallel partitions (``mp_rank_XX_model_states.pt``), merged back the way
  CodeGeeX's ``convert_ckpt_parallel.py`` split them (see :func:`partition_dim`);
* nested dicts or dot-flattened keys, with or without the ``module``/``language_model`` levels.

Only ``n_head`` cannot be read from the tensors' shapes: it defaults to 40 for the 13B's width.

numpy is imported inside :func:`_safe_globals`: which module holds ``_reconstruct``
depends on its version.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from functools import reduce
from pathlib import Path

import torch
from safetensors import safe_open

from geex.atomic import atomic_write
from geex.errors import GeexError
from geex.model.checkpoint import (
    converted_checkpoint,
    finite_weights,
    load_state_dict,
    read_config,
)
from geex.model.config import ModelConfig
from geex.model.convert_output import (
    check_apart,
    check_free_space,
    tensor_bytes,
)
from geex.os_faults import describe_os_fault
from geex.tokenizer import load_tokenizer

CODEGEEX_13B_WIDTH, CODEGEEX_13B_HEADS = 5120, 40
CODEGEEX_VOCAB_SIZE = 50_400
GEEX_CONFIG_KEY = "geex_config"  # beside "module" in exported files

# CodeGeeX name prefix (below "language_model") -> Geex name prefix.
_RENAMES = (
    ("embedding.word_embeddings.", "word_embeddings."),
    ("embedding.position_embeddings.", "position_embeddings."),
    ("topQueryEmbedding.top_query_embeddings.", "top_query_embeddings."),
    ("transformer.topQueryLayer.", "top_query_layer."),
    ("transformer.final_layernorm.", "final_layernorm."),
    ("transformer.layers.", "layers."),
)
# Fused projections of the inference layout, and the parts they concatenate on dim 0.
_FUSED = {"query_key_value": ("query", "key", "value"), "key_value": ("key", "value")}
_RANK = re.compile(r"mp_rank_(\d+)(_\d+)?")
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")  # torch's weights_only error


# --- Reading files -------------------------------------------------------------------------


def checkpoint_files(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """The files holding one checkpoint, in tensor-parallel rank order.

    A source is a checkpoint file, or a folder of Megatron/DeepSpeed partitions
    (``mp_rank_XX_model_states.pt`` or ``mp_rank_XX/model_optim_rng.pt``, possibly below the
    tag named by a ``latest`` or ``latest_checkpointed_iteration.txt`` file).
    """
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            files += _partition_files_in(source)
        elif source.is_file():
            files.append(source)
        else:
            raise GeexError(f"{source} does not exist")
    if len(files) == 1:
        return files
    ranks = {}
    for path in files:
        rank = _rank_of(path)
        if rank is None:
            raise GeexError(
                f"{len(files)} files were given but {path} is not named mp_rank_XX...: "
                "cannot tell which tensor-parallel rank it holds"
            )
        ranks.setdefault(rank, path)
    if sorted(ranks) != list(range(len(files))):
        raise GeexError(
            f"partition ranks {sorted(ranks)} of {len(files)} files are not 0..{len(files) - 1}"
        )
    return [ranks[r] for r in range(len(files))]


def _rank_of(path: Path) -> int | None:
    """The tensor-parallel rank in ``mp_rank_03_model_states.pt`` or ``mp_rank_03/...``."""
    for name in (path.name, path.parent.name):
        match = _RANK.match(name)
        if match and match.group(2):
            raise GeexError(
                f"{path} is a pipeline-parallel partition; only tensor-parallel partitions "
                "(mp_rank_XX) can be merged"
            )
        if match:
            return int(match.group(1))
    return None


def _partition_files_in(folder: Path) -> list[Path]:
    found = sorted(folder.glob("mp_rank_*_model_states.pt")) or sorted(
        folder.glob("mp_rank_*/model_optim_rng.pt")
    )
    if found:
        return found
    if (folder / "latest").is_file():  # DeepSpeed: the tag of the newest checkpoint
        return _partition_files_in(folder / (folder / "latest").read_text().strip())
    if (folder / "latest_checkpointed_iteration.txt").is_file():  # Megatron-LM
        iteration = (folder / "latest_checkpointed_iteration.txt").read_text().strip()
        tag = "release" if iteration == "release" else f"iter_{iteration:0>7}"
        return _partition_files_in(folder / tag)
    raise GeexError(
        f"{folder} holds no mp_rank_XX_model_states.pt (or mp_rank_XX/model_optim_rng.pt) files"
    )


def load_checkpoint_file(path: str | os.PathLike, *, unsafe_pickle: bool = False) -> dict:
    """The dict pickled in a PyTorch checkpoint file (or stored in a safetensors file).

    By default only tensors, plain containers, ``argparse.Namespace`` (Megatron's saved args)
    and numpy arrays (its RNG states) are unpickled: a pickle can run any code on load.
    ``unsafe_pickle=True`` unpickles everything, for trusted files that need it. Zip-format
    files are memory-mapped, so a 26 GB checkpoint is not read into memory at once.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            with safe_open(path, framework="pt") as f:
                return {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
        except Exception as err:
            raise GeexError(f"{path} is not a readable safetensors file: {err}") from None
    is_zip = zipfile.is_zipfile(path)  # the legacy (pre-1.6) format cannot be memory-mapped
    try:
        if unsafe_pickle:
            loaded = torch.load(path, map_location="cpu", mmap=is_zip, weights_only=False)
        else:
            with torch.serialization.safe_globals(_safe_globals()):
                loaded = torch.load(path, map_location="cpu", mmap=is_zip, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = [] if unsafe_pickle else _unsafe_globals(path, err, is_zip=is_zip)
        if unsafe:
            raise GeexError(
                f"{path} holds Python objects that are not loaded without --unsafe-pickle "
                f"({', '.join(unsafe)}). Unpickling them can run arbitrary code: pass "
                "--unsafe-pickle only for a file from a source you trust"
            ) from None
        raise GeexError(
            f"{path} is not a PyTorch checkpoint, or is corrupt: {_first_line(err)}"
        ) from None
    except Exception as err:  # torch raises RuntimeError, KeyError, EOFError... on non-checkpoints
        raise GeexError(
            f"{path} is not a PyTorch checkpoint, or is truncated or corrupt: "
            f"{type(err).__name__}: {_first_line(err)}"
        ) from None
    if not isinstance(loaded, Mapping):
        raise GeexError(f"{path} holds a {type(loaded).__name__}, not a checkpoint dict")
    return dict(loaded)


def _safe_globals() -> list:
    """Classes that Megatron checkpoints hold besides tensors, and that build nothing else."""
    allowed: list = [argparse.Namespace]
    try:
        import numpy as np
    except ImportError:
        return allowed
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    allowed += [
        np.ndarray,
        np.dtype,
        _reconstruct,
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
    ]
    allowed += [type(np.dtype(code)) for code in "?bBhHiIlLqQefd"]
    return allowed


def _unsafe_globals(path: Path, err: Exception, *, is_zip: bool) -> list[str]:
    """The classes the safe loader refused: all of them for zip files, else the first one."""
    if is_zip:
        try:
            return torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            pass
    return _REFUSED_GLOBAL.findall(str(err))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else repr(err)


# --- From the CodeGeeX layout to Geex names --------------------------------------------------


def codegeex_to_geex(checkpoint: Mapping, *, source: str = "the checkpoint") -> dict:
    """The tensors of one CodeGeeX checkpoint (or one partition) under Geex names, unfused."""
    tensors = _language_model_tensors(checkpoint)
    renamed, unknown = {}, []
    for name, tensor in tensors.items():
        for old, new in _RENAMES:
            if name.startswith(old):
                renamed[new + name.removeprefix(old)] = tensor
                break
        else:
            unknown.append(name)
    if not renamed:
        raise GeexError(
            f"{source} holds no CodeGeeX weights: expected names like "
            "module.language_model.embedding.word_embeddings.weight"
        )
    if unknown:
        raise GeexError(f"{source} holds tensors this converter does not know: {_some(unknown)}")
    return _unfuse(renamed, source)


def _language_model_tensors(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """Tensors below the model root, named relative to it (``embedding.word_embeddings.weight``).

    Nested dicts and dot-flattened keys give the same names. Other top-level entries of a
    training checkpoint (args, RNG states, optimizer) sit outside ``module`` and are dropped.
    """
    tensors = _flatten(checkpoint)
    for wrapper in ("module.", "language_model."):
        inner = {k.removeprefix(wrapper): v for k, v in tensors.items() if k.startswith(wrapper)}
        if inner:
            tensors = inner
    return tensors


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, torch.Tensor]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, torch.Tensor):
            flat[name] = value
    return flat


def _unfuse(tensors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in tensors.items():
        module, projection, param = _split_name(name)
        if projection not in _FUSED:
            out[name] = tensor
            continue
        parts = _FUSED[projection]
        if tensor.shape[0] % len(parts):
            raise GeexError(
                f"{source}: {name} has {tensor.shape[0]} rows, not a multiple of {len(parts)}"
            )
        for part, chunk in zip(parts, tensor.chunk(len(parts), dim=0), strict=True):
            out[f"{module}.{part}.{param}"] = chunk
    return out


def _split_name(name: str) -> tuple[str, str, str]:
    """``layers.0.attention.query.weight`` -> (``layers.0.attention``, ``query``, ``weight``)."""
    module, projection, param = f".{name}".rsplit(".", 2)
    return module[1:], projection, param


# --- Tensor-parallel partitions --------------------------------------------------------------


def partition_dim(name: str) -> int | None:
    """The dim along which Megatron split a tensor over tensor-parallel ranks; None: replicated.

    Column-parallel projections (query, key, value, dense_h_to_4h) are split on their output
    rows, weights and biases alike; row-parallel ones (attention.dense, dense_4h_to_h) on their
    input columns, their bias replicated. CodeGeeX made the top query table a vocab-parallel
    embedding, so it is split by *position* rows, like the word table by vocabulary rows.
    """
    if name in ("word_embeddings.weight", "top_query_embeddings.weight"):
        return 0
    if name == "position_embeddings.weight" or "layernorm" in name:
        return None
    _, projection, param = _split_name(name)
    if projection in ("query", "key", "value", "dense_h_to_4h"):
        return 0
    if projection in ("dense", "dense_4h_to_h"):
        return 1 if param == "weight" else None
    raise GeexError(f"no tensor-parallel merge rule for {name}")


def merge_partitions(partitions: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One set of full tensors from the per-rank ones (Geex names, already unfused).

    Replicated tensors are taken from rank 0, as CodeGeeX's ``merge_ckpt_parallel.py`` does.
    """
    if len(partitions) == 1:
        return dict(partitions[0])
    names = list(partitions[0])
    for rank, partition in enumerate(partitions[1:], start=1):
        if set(partition) != set(names):
            differ = sorted(set(partition) ^ set(names))
            raise GeexError(
                f"partition {rank} holds other tensors than partition 0: {_some(differ)}"
            )
    merged = {}
    for name in names:
        dim = partition_dim(name)
        parts = [p[name] for p in partitions]
        try:
            merged[name] = parts[0] if dim is None else torch.cat(parts, dim=dim)
        except RuntimeError:
            shapes = ", ".join(str(tuple(p.shape)) for p in parts)
            raise GeexError(f"partitions of {name} do not fit together: {shapes}") from None
    return merged


# --- The config, from the shapes -------------------------------------------------------------


def infer_config(
    tensors: Mapping[str, torch.Tensor], *, n_head: int | None = None, vocab_size: int | None = None
) -> ModelConfig:
    """The model config that CodeGeeX weights (under Geex names) were trained with."""
    for required in ("word_embeddings.weight", "position_embeddings.weight"):
        if required not in tensors:
            raise GeexError(f"the checkpoint has no {required}: is it a CodeGeeX checkpoint?")
    padded_vocab_size, d_model = tensors["word_embeddings.weight"].shape
    layer_ids = {int(name.split(".")[1]) for name in tensors if name.startswith("layers.")}
    if not layer_ids:
        raise GeexError("the checkpoint has no transformer layers (transformer.layers.N.*)")
    if layer_ids != set(range(len(layer_ids))):
        missing = sorted(set(range(max(layer_ids) + 1)) - layer_ids)
        raise GeexError(f"the checkpoint lacks transformer layers {missing}")
    h_to_4h = tensors.get("layers.0.mlp.dense_h_to_4h.weight")
    if h_to_4h is None:
        raise GeexError("the checkpoint has no layers.0.mlp.dense_h_to_4h.weight")
    if n_head is None:
        if d_model != CODEGEEX_13B_WIDTH:
            raise GeexError(
                f"the number of attention heads cannot be read from the weights (d_model = "
                f"{d_model}): pass --n-head (CodeGeeX-13B: {CODEGEEX_13B_HEADS})"
            )
        n_head = CODEGEEX_13B_HEADS
    if vocab_size is None:
        vocab_size = min(CODEGEEX_VOCAB_SIZE, padded_vocab_size)
    if vocab_size > padded_vocab_size:
        raise GeexError(
            f"--vocab-size {vocab_size} exceeds the {padded_vocab_size} rows of the word embeddings"
        )
    return ModelConfig(
        n_layer=len(layer_ids),
        n_head=n_head,
        d_model=d_model,
        max_seq_len=tensors["position_embeddings.weight"].shape[0],
        vocab_size=vocab_size,
        padded_vocab_size=padded_vocab_size,
        d_ffn=h_to_4h.shape[0],
    )


# --- The converters ----------------------------------------------------------------------------


def convert_codegeex(
    sources: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    n_head: int | None = None,
    vocab_size: int | None = None,
    dtype: torch.dtype | None = None,
    tokenizer: str | os.PathLike | None = None,
    unsafe_pickle: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write the CodeGeeX checkpoint in ``sources`` (a file, or its partitions) as a Geex folder.

    ``dtype`` None keeps the checkpoint's, promoted to one dtype when its tensors mix several
    (CodeGeeX kept its position tables in fp16 whatever the rest). An existing Geex
    checkpoint at ``out_dir`` is replaced only with ``overwrite``.
    """
    files = checkpoint_files(sources)
    check_apart([*sources, *files], out_dir)
    loaded_tokenizer = load_tokenizer(tokenizer) if tokenizer is not None else None
    checkpoints = [load_checkpoint_file(f, unsafe_pickle=unsafe_pickle) for f in files]
    tensors = merge_partitions(
        [codegeex_to_geex(c, source=str(f)) for c, f in zip(checkpoints, files, strict=True)]
    )
    # A file written by export_codegeex remembers what the shapes cannot tell.
    hints = checkpoints[0].get(GEEX_CONFIG_KEY)
    hints = hints if isinstance(hints, Mapping) else {}
    for name, value in (("n_head", n_head), ("vocab_size", vocab_size)):
        if value is not None and value < 1:
            raise GeexError(f"{name} must be at least 1, got {value}")
    config = infer_config(
        tensors,
        n_head=n_head if n_head is not None else hints.get("n_head"),
        vocab_size=vocab_size if vocab_size is not None else hints.get("vocab_size"),
    )
    dtype = dtype or reduce(torch.promote_types, {t.dtype for t in tensors.values()})
    origin = {"format": "codegeex", "files": [str(f) for f in files]}
    with converted_checkpoint(
        tensors,
        out_dir,
        config=config,
        inputs=[*sources, *files],
        source=", ".join(map(str, files)),
        metadata={"converted_from": origin},
        dtype=dtype,
        tokenizer=loaded_tokenizer,
        overwrite=overwrite,
    ):
        pass  # the checkpoint, its tokenizer included, is all a CodeGeeX file gives
    return Path(out_dir)


def geex_to_codegeex(tensors: Mapping[str, torch.Tensor], *, fused_qkv: bool = False) -> dict:
    """Geex tensors in CodeGeeX's nested layout, ``{"module": {"language_model": {...}}}``.

    ``fused_qkv`` writes the inference layout of ``get_ckpt_qkv.py`` instead of the plain one.
    """
    flat = {}
    for name, tensor in tensors.items():
        for old, new in _RENAMES:
            if name.startswith(new):
                flat[old + name.removeprefix(new)] = tensor
                break
        else:
            raise GeexError(f"{name} has no place in the CodeGeeX layout")
    if fused_qkv:
        flat = _fuse(flat)
    language_model: dict = {"embedding": {}, "topQueryEmbedding": {}, "transformer": {}}
    for name, tensor in flat.items():
        group, rest = name.split(".", 1)
        if group == "transformer":
            language_model["transformer"][rest] = tensor  # flat names, as CodeGeeX saved them
        else:
            table, param = rest.split(".")
            language_model[group].setdefault(table, {})[param] = tensor
    return {"module": {"language_model": language_model}}


def _fuse(flat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(flat)
    attentions = {_split_name(n)[0] for n in flat if n.endswith(".attention.key.weight")}
    for module in sorted(attentions):
        # The top query layer's queries come from another input: only its keys and values fuse.
        fused = (
            "key_value" if module.startswith("transformer.topQueryLayer.") else "query_key_value"
        )
        for param in ("weight", "bias"):
            parts = [out.pop(f"{module}.{part}.{param}") for part in _FUSED[fused]]
            out[f"{module}.{fused}.{param}"] = torch.cat(parts, dim=0)
    return out


def export_codegeex(
    geex_dir: str | os.PathLike,
    out_file: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    fused_qkv: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a Geex checkpoint as one CodeGeeX ``.pt`` file, loadable by CodeGeeX's own code.

    CodeGeeX's model hard-codes d_ffn = 4 d_model and LayerNorm eps 1e-5; other shapes come
    from its command line (num layers, hidden size, heads, padded vocab, max positions).
    An existing ``out_file`` is replaced only with ``overwrite``.
    """
    check_apart([geex_dir], out_file)
    out_file = Path(out_file)
    if out_file.is_dir():
        raise GeexError(f"{out_file} is a folder; give the .pt file to write")
    if out_file.exists() and not overwrite:
        raise GeexError(
            f"{out_file} already exists: give --overwrite to replace it, or another output"
        )
    if out_file.exists() and not _is_torch_file(out_file):
        raise GeexError(
            f"{out_file} is not a PyTorch checkpoint: --overwrite replaces only an earlier "
            "checkpoint file, never another file; give another output"
        )
    config = read_config(geex_dir)
    tensors = finite_weights(load_state_dict(geex_dir), dtype=dtype, source=str(geex_dir))
    checkpoint = geex_to_codegeex(tensors, fused_qkv=fused_qkv)
    checkpoint[GEEX_CONFIG_KEY] = config.to_dict()  # outside "module": CodeGeeX ignores it
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(out_file.parent, tensor_bytes(tensors), out_file)
        atomic_write(out_file, lambda tmp: torch.save(checkpoint, tmp))
    except OSError as err:  # a full disk, a read-only folder: an existing file is untouched
        fault = describe_os_fault(err, path=str(out_file)) or err.strerror or err
        raise GeexError(f"cannot write {out_file}: {fault}") from None
    return out_file


def _is_torch_file(path: Path) -> bool:
    """Whether ``path`` is what torch.save writes: a zip archive, or a pickle (before torch 1.6,
    the format of CodeGeeX's own checkpoints)."""
    with open(path, "rb") as f:
        start = f.read(4)
    return start.startswith(b"PK\x03\x04") or start[:1] == b"\x80"


def _some(items: list[str], limit: int = 5) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
