"""The Geex checkpoint format: safetensors weights + a JSON config (+ the tokenizer).

A folder holds::

    config.json                   {"format": "geex", "format_version": 1, "model": {...}, "dtype": ...}
    model.safetensors             weights, or shards model-00001-of-0000N.safetensors
    model.safetensors.index.json  with shards: which tensor lives in which file (Hugging Face layout)
    tokenizer.json ...            when a tokenizer was saved alongside

Parameter names are the model's own (``layers.0.attention.query.weight``): wrappers added by
``torch.compile``, activation checkpointing or DDP are stripped on save. Every file is written
to a temporary name and renamed into place, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from geex.atomic import atomic_write, atomic_write_text
from geex.errors import GeexError
from geex.model.codegeex import CodeGeeX, build_model
from geex.model.config import ModelConfig
from geex.model.convert_output import config_field, output_folder, tensor_bytes

FORMAT = "geex"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_SHARD_BYTES = 5 * 2**30

# Name components that wrappers insert into the model's own parameter names; DDP's "module."
# is only ever a leading one.
_WRAPPER_COMPONENTS = {"_orig_mod", "_checkpoint_wrapped_module", "_fsdp_wrapped_module"}


def clean_name(name: str) -> str:
    """A parameter's name in the bare model, whatever wrapped it."""
    parts = name.removeprefix("module.").split(".")
    return ".".join(p for p in parts if p not in _WRAPPER_COMPONENTS)


def clean_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's own names and full, contiguous, CPU tensors, whatever wrapped it."""
    clean = {}
    for name, tensor in state_dict.items():
        if hasattr(tensor, "full_tensor"):  # a DTensor from tensor parallel or FSDP2
            tensor = tensor.full_tensor()
        clean[clean_name(name)] = tensor.detach().to("cpu").contiguous()
    return clean


def save_checkpoint(
    model: CodeGeeX | torch.nn.Module,
    folder: str | os.PathLike,
    *,
    config: ModelConfig | None = None,
    tokenizer=None,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    metadata: dict | None = None,
) -> Path:
    """Write ``model`` (and optionally its tokenizer) as a Geex checkpoint folder."""
    state = model.state_dict()
    if any(tensor.dtype == torch.int8 for tensor in state.values()):
        # Quantization happens at load (geex.model.quantize); rounded weights saved as a
        # checkpoint would be trained or re-quantized as if they were the originals.
        raise GeexError(
            "an int8-quantized model is not saved as a checkpoint: checkpoints hold "
            "full-precision weights; save the model before quantizing (it is quantized at load)"
        )
    return save_weights(
        clean_state_dict(state),
        folder,
        config=config or _unwrap(model).config,
        tokenizer=tokenizer,
        dtype=dtype,
        max_shard_bytes=max_shard_bytes,
        metadata=metadata,
    )


@contextmanager
def converted_checkpoint(
    tensors: dict[str, torch.Tensor],
    out_dir: str | os.PathLike,
    *,
    config: ModelConfig,
    inputs: Sequence[str | os.PathLike],
    source: str,
    metadata: dict,
    dtype: torch.dtype | None = None,
    tokenizer=None,
    overwrite: bool = False,
) -> Iterator[Path]:
    """Write weights read from another format as a Geex checkpoint at ``out_dir``.

    The weights are checked before anything is written: finite (in ``dtype``), and of the
    names and shapes of a model of ``config``, built on the meta device so that a 13B
    conversion holds one copy of its weights. The block gets the temporary folder with the
    checkpoint already in it, to add what the source carried (tokenizer files, decoding
    defaults); it becomes ``out_dir`` when the block ends, under the rules of
    :func:`geex.model.convert_output.output_folder` (apart from ``inputs``, all at once,
    replacing only an earlier checkpoint with ``overwrite``).
    """
    tensors = finite_weights(tensors, dtype=dtype, source=source)
    model = build_model(config, device="meta")
    load_weights(model, tensors, source=source)
    writing = output_folder(
        out_dir,
        inputs=inputs,
        kind="Geex checkpoint",
        is_kind=is_geex_checkpoint,
        needed_bytes=tensor_bytes(tensors),
        overwrite=overwrite,
    )
    with writing as tmp:
        save_checkpoint(model, tmp, config=config, tokenizer=tokenizer, metadata=metadata)
        yield tmp


def save_weights(
    tensors: dict[str, torch.Tensor],
    folder: str | os.PathLike,
    *,
    config: ModelConfig,
    tokenizer=None,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    metadata: dict | None = None,
) -> Path:
    """Write full tensors under the model's own names as a Geex checkpoint folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}
    saved_dtype = str(next(iter(tensors.values())).dtype).removeprefix("torch.")

    write_safetensors(tensors, folder, max_shard_bytes)

    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": "codegeex",
        "dtype": saved_dtype,
        "model": config.to_dict(),
        **(metadata or {}),
    }
    atomic_write_text(folder / CONFIG_FILE, json.dumps(header, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save(folder)
    return folder


def read_config(folder: str | os.PathLike) -> ModelConfig:
    """The model config of a Geex checkpoint folder."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise GeexError(f"{folder} is not a Geex checkpoint: {CONFIG_FILE} is missing")
    try:
        header = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GeexError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        hint = (
            " (a Hugging Face export? load it with transformers)"
            if isinstance(header, dict) and "model_type" in header
            else ""
        )
        raise GeexError(f"{path} is not a Geex checkpoint config{hint}")
    version = header.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise GeexError(
            f"{path} has format_version {version!r}; this Geex reads up to "
            f"{FORMAT_VERSION}: upgrade Geex"
        )
    if not isinstance(header.get("model"), dict):
        raise GeexError(
            f'{path} has no "model" object (the model\'s dimensions: n_layer, d_model, ...): '
            "the checkpoint is incomplete; save or convert it again"
        )
    try:
        return ModelConfig.from_dict(header["model"])
    except GeexError as err:
        raise GeexError(f"{path}: {err}") from None


def is_geex_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` holds a Geex checkpoint (its config.json says so)."""
    return config_field(folder, "format") == FORMAT


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder, each checked to be there."""
    if (folder / INDEX_FILE).is_file():
        names = _indexed_files(folder / INDEX_FILE)
    elif (folder / WEIGHTS_FILE).is_file():
        names = [WEIGHTS_FILE]
    else:
        raise GeexError(f"{folder} holds no weights ({WEIGHTS_FILE} or {INDEX_FILE})")
    for name in names:
        if not (folder / name).is_file():
            raise GeexError(f"{folder / name} is missing ({INDEX_FILE} names it): copy it in again")
    return [folder / name for name in names]


def load_state_dict(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder, single-file or sharded, as stored."""
    folder = Path(folder)
    tensors = {}
    for path in _weight_files(folder):
        try:
            with safe_open(path, framework="pt") as f:
                tensors.update({key: f.get_tensor(key) for key in f.keys()})  # noqa: SIM118
        except (SafetensorError, OSError) as err:
            # A truncated copy or download fails here, in the header or in the data it lists.
            raise GeexError(
                f"{path} is not a complete safetensors file ({err}): copy, download or save "
                "the checkpoint again"
            ) from None
    return tensors


def tensor_shapes(folder: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor of a checkpoint folder, read from the file headers."""
    shapes = {}
    for path in _weight_files(Path(folder)):
        try:
            with safe_open(path, framework="pt") as f:
                for key in f.keys():  # noqa: SIM118
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        except (SafetensorError, OSError) as err:
            raise GeexError(f"{path} is not a complete safetensors file ({err})") from None
    return shapes


# The dtypes of safetensors' header ("F32", ...) that a Geex checkpoint may hold.
_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip


@dataclass(frozen=True)
class _StoredTensor:
    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int  # of its first byte in the file


class SliceReader:
    """Rows and columns of a checkpoint's tensors, read from its safetensors files by offset.

    A sharded run's rank needs a few rows or columns of each tensor. ``safe_open`` maps the
    file, and the pages a slice touches count in the rank's resident memory until the file is
    closed: a column slice touches every row, so the whole tensor. Reading the bytes of the
    slice (safetensors stores each tensor row-major at an offset its JSON header names) costs
    the rank exactly its slice; the rest stays in the page cache, shared by the node's ranks.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.tensors: dict[str, _StoredTensor] = {}
        for path in _weight_files(self.folder):
            self.tensors.update(_safetensors_entries(path))

    def read(
        self, name: str, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Tensor ``name`` as stored, or its ``rows`` (and, for a matrix, ``cols``): global
        indices in the order wanted, as a DTensor shard lists them."""
        if name not in self.tensors:
            raise GeexError(f"{self.folder} holds no tensor {name!r}")
        stored = self.tensors[name]
        n_rows = stored.shape[0] if stored.shape else 1
        row_values = math.prod(stored.shape[1:])
        rows = torch.arange(n_rows) if rows is None else rows
        if len(stored.shape) != 2 or cols is None:
            cols = torch.arange(row_values)  # whole rows
        for what, index, size in (("rows", rows, n_rows), ("columns", cols, row_values)):
            if len(index) and not 0 <= int(index.min()) <= int(index.max()) < size:
                raise IndexError(
                    f"{what} of {name} run from 0 to {size - 1}; asked for "
                    f"{int(index.min())} to {int(index.max())}"
                )
        itemsize = stored.dtype.itemsize
        out = torch.empty(len(rows), len(cols) * itemsize, dtype=torch.uint8)
        buffer = out.numpy()
        whole_rows = len(cols) == row_values and bool((cols == torch.arange(row_values)).all())
        with open(stored.path, "rb", buffering=0) as file:
            for at, first, count in _runs(rows):
                if whole_rows:  # one read for the run's rows
                    start = stored.offset + first * row_values * itemsize
                    _read_into(file, start, buffer[at : at + count].reshape(-1), stored.path)
                    continue
                for i in range(count):
                    row_start = stored.offset + (first + i) * row_values * itemsize
                    for col_at, col, width in _runs(cols):
                        view = buffer[at + i, col_at * itemsize : (col_at + width) * itemsize]
                        _read_into(file, row_start + col * itemsize, view, stored.path)
        shape = (len(rows), *stored.shape[1:]) if whole_rows else (len(rows), len(cols))
        return out.view(stored.dtype).reshape(shape if stored.shape else ())


def _safetensors_entries(path: Path) -> dict[str, _StoredTensor]:
    """Each tensor of a safetensors file: 8 bytes of header length, a JSON header of
    {name: {dtype, shape, data_offsets}}, then the data those offsets are relative to."""
    broken = f"{path} is not a complete safetensors file"
    size = path.stat().st_size
    with open(path, "rb") as file:
        header_size = int.from_bytes(file.read(8), "little")
        if header_size > size - 8:
            raise GeexError(f"{broken} (its header runs past the end): copy or save it again")
        try:
            header = json.loads(file.read(header_size))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise GeexError(f"{broken} (header: {err})") from None
    entries = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in _SAFETENSORS_DTYPES:
            raise GeexError(f"{path}: tensor {name} has dtype {entry['dtype']}, not one of "
                            f"{', '.join(_SAFETENSORS_DTYPES)}")  # fmt: skip
        begin, end = entry["data_offsets"]
        if 8 + header_size + end > size:
            raise GeexError(f"{broken} ({name} runs past its end): copy or save it again")
        dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
        entries[name] = _StoredTensor(path, dtype, tuple(entry["shape"]), 8 + header_size + begin)
    return entries


def _runs(indices: torch.Tensor) -> list[tuple[int, int, int]]:
    """(position, first index, count) of each run of consecutive ``indices``."""
    if len(indices) == 0:
        return []
    breaks = (torch.nonzero(indices[1:] - indices[:-1] != 1).flatten() + 1).tolist()
    starts = [0, *breaks]
    ends = [*breaks, len(indices)]
    return [(a, int(indices[a]), b - a) for a, b in zip(starts, ends, strict=True)]


def _read_into(file, offset: int, view, path: Path) -> None:
    """Fill ``view`` with the bytes at ``offset`` (a read may return fewer: loop)."""
    view = memoryview(view).cast("B")
    done = 0
    while done < len(view):
        n = os.preadv(file.fileno(), [view[done:]], offset + done)
        if n == 0:
            raise GeexError(f"{path} ends early: copy or save the checkpoint again")
        done += n


def _indexed_files(index: Path) -> list[str]:
    """The shard files a Hugging Face index names."""
    try:
        weight_map = json.loads(index.read_bytes())["weight_map"]
        return sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        raise GeexError(
            f'{index} is not a shard index (JSON with a "weight_map" of tensor -> file): '
            "copy or save the checkpoint again"
        ) from None


def finite_weights(
    tensors: dict[str, torch.Tensor], *, dtype: torch.dtype | None = None, source: str
) -> dict[str, torch.Tensor]:
    """``tensors`` in ``dtype`` (None: as they are), refused unless every value is finite.

    One NaN or inf in a weight spreads through every activation after it: such a model
    generates nothing, so loading or converting it is an error, not a silent success. A
    value finite as stored may still overflow a narrower dtype (fp32 -> fp16 above 65504).
    The check is one pass over each tensor (``torch.isfinite(t).all()``), cheap beside
    reading the file.
    """
    cast = tensors if dtype is None else {k: v.to(dtype) for k, v in tensors.items()}
    bad = [name for name, t in cast.items() if t.is_floating_point() and not _all_finite(t)]
    if not bad:
        return cast
    overflow = dtype is not None and all(_all_finite(tensors[name]) for name in bad)
    if overflow:
        largest = torch.finfo(dtype).max
        raise GeexError(
            f"weights in {source} overflow {_dtype_name(dtype)} (largest {largest:g}) in "
            f"{_some(bad)}: use a wider dtype (bf16 or fp32)"
        )
    counts = [f"{name} ({_non_finite_count(cast[name])})" for name in bad]
    raise GeexError(
        f"weights in {source} are not finite: {_some(counts)}; such a model cannot generate: "
        "use a checkpoint saved before training diverged, or copy the file again"
    )


def _all_finite(tensor: torch.Tensor) -> bool:
    return bool(torch.isfinite(tensor).all())


def _non_finite_count(tensor: torch.Tensor) -> str:
    counts = {"NaN": int(torch.isnan(tensor).sum()), "inf": int(torch.isinf(tensor).sum())}
    return ", ".join(f"{n:,} {kind}" for kind, n in counts.items() if n)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def load_model(
    folder: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> CodeGeeX:
    """Rebuild the model saved in ``folder``, in eval mode, on ``device``; refused when a
    weight is NaN or inf (as stored, or once in ``dtype``)."""
    config = read_config(folder)
    model = build_model(config, device="meta")
    tensors = finite_weights(load_state_dict(folder), dtype=dtype, source=str(folder))
    load_weights(model, tensors, source=str(folder))
    return model.to(device=device, dtype=dtype).eval()


def shape_mismatches(
    expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]
) -> list[str]:
    """Why tensors ``found`` (name -> shape) cannot fill a model of ``expected``; [] if they can.

    The one comparison behind every load: a finished checkpoint into a model, a training
    checkpoint into a resumed run, fine-tuning weights into a new one.
    """
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        f"{k}: {tuple(found[k])} != {tuple(shape)}"
        for k, shape in expected.items()
        if k in found and tuple(found[k]) != tuple(shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected {_some(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes {_some(wrong)}")
    return problems


def load_weights(model: CodeGeeX, tensors: dict[str, torch.Tensor], *, source: str) -> None:
    """Assign ``tensors`` to ``model``'s parameters, checking names and shapes first."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = shape_mismatches(expected, {k: tuple(v.shape) for k, v in tensors.items()})
    if problems:
        raise GeexError(f"weights in {source} do not fit the model: " + "; ".join(problems))
    model.load_state_dict(tensors, assign=True)


def _some(items: list[str], limit: int = 5) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    while not hasattr(model, "config") and hasattr(model, "module"):
        model = model.module
    return getattr(model, "_orig_mod", model)


def write_safetensors(
    tensors: dict[str, torch.Tensor], folder: Path, max_shard_bytes: int = DEFAULT_SHARD_BYTES
) -> list[str]:
    """Weights as one safetensors file, or shards plus Hugging Face's index; files of an
    earlier save that the new one does not replace are removed (loaders would read them)."""
    shards = _split_into_shards(tensors, max_shard_bytes)
    names = (
        [WEIGHTS_FILE]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    for name, shard in zip(names, shards, strict=True):
        try:
            # transformers refuses safetensors files without {"format": "pt"}.
            atomic_write(
                folder / name, lambda tmp, shard=shard: save_file(shard, tmp, {"format": "pt"})
            )
        except SafetensorError as err:  # a full disk: "I/O error: No space left on device"
            raise GeexError(f"cannot write {folder / name}: {err}") from None
    if len(shards) > 1:
        index = {
            "metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
            "weight_map": {k: n for n, shard in zip(names, shards, strict=True) for k in shard},
        }
        atomic_write_text(folder / INDEX_FILE, json.dumps(index, indent=2) + "\n")
    keep = {*names, INDEX_FILE} if len(shards) > 1 else set(names)
    for path in [
        *folder.glob("model-*-of-*.safetensors"),
        folder / WEIGHTS_FILE,
        folder / INDEX_FILE,
    ]:
        if path.name not in keep:
            path.unlink(missing_ok=True)
    return names


def _split_into_shards(tensors: dict[str, torch.Tensor], max_bytes: int) -> list[dict]:
    shards, current, size = [], {}, 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensor
        size += nbytes
    return [*shards, current]
