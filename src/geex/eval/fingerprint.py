"""What a verdict was judged from, as two hashes stored beside it in ``results.jsonl``.

A run resumed into a folder reuses a stored verdict only if it answers the same question:

- the **generation fingerprint** hashes who wrote the completion (the generator: a model
  folder's model files and load options, a Hugging Face name, an endpoint and its model, a
  samples file, or the canonical solutions), how it was sampled (all but n), and the prompt it
  was given. A stored result whose generation fingerprint differs (or is absent: a line written
  before fingerprints) is dropped: its sample is made or read again and judged afresh.
- the **judging fingerprint** hashes the program the completion goes into (the problem's prompt,
  declaration, Go's setup), its tests, and the judge's settings (example tests, limits, the
  sandbox mode). A result whose generation matches but whose judging fingerprint differs is judged
  again from its stored completion, without asking the model again.

Hashing a model folder reads its model files once (seconds per gigabyte); later runs into the
same output folder only stat them (``DigestCache``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geex.eval.problems import Problem
from geex.eval.runners.base import RunSettings
from geex.eval.tasks import Task

CANONICAL = {"source": "canonical"}
# A samples file is known by no path or hash: each stored sample's text is compared with the
# file's (``geex.eval.run``), so an added or changed sample is judged and the rest reused.
SAMPLES = {"source": "samples"}


def digest(value: Any) -> str:
    """The sha256 of ``value`` as canonical JSON (lone surrogates in texts included)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    with open(path, "rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


# The files that make a model: weights, configs and tokenizer files (and the code of a Hugging
# Face model that brings its own); README files, .git/ and training logs do not shape its text.
_MODEL_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".py")
_MODEL_PREFIXES = ("merges", "vocab")


def model_files(folder: Path) -> list[Path]:
    """The files under ``folder`` that make the model, in a stable order; hidden folders
    (``.git``, caches) left out."""
    return sorted(
        path
        for path in folder.rglob("*")
        if not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and (path.suffix in _MODEL_SUFFIXES or path.name.startswith(_MODEL_PREFIXES))
        and path.is_file()
    )


# The file, in an evaluation's output folder, of the model files' digests (``DigestCache``).
DIGESTS = "model_digests.json"


class DigestCache:
    """Each file's sha256 kept in a small JSON file (under the evaluation's ``--out``), keyed by
    the file's resolved path and checked against its size, mtime and inode: a rerun only
    stats a 13B model's files instead of reading them all again. ``path`` None: no cache."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None
        self.entries: dict[str, dict] = {}
        self.changed = False
        if self.path and self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                loaded = None  # a damaged cache is only slower: every file is read again
            if isinstance(loaded, dict):
                self.entries = {k: v for k, v in loaded.items() if isinstance(v, dict)}

    def digest(self, path: Path) -> str:
        stat = path.stat()
        key = str(path.resolve())
        seen = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}
        entry = self.entries.get(key)
        if entry and all(entry.get(k) == v for k, v in seen.items()) and entry.get("sha256"):
            return entry["sha256"]
        sha = file_digest(path)
        self.entries[key] = {**seen, "sha256": sha}
        self.changed = True
        return sha

    def save(self) -> None:
        if not (self.path and self.changed):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.entries, indent=1) + "\n", encoding="utf-8")
        os.replace(partial, self.path)
        self.changed = False


def folder_digest(folder: str | os.PathLike, cache: DigestCache | None = None) -> str:
    """The sha256 of the model files under ``folder`` (``model_files``): their relative
    paths and contents, so that a moved or copied folder keeps its identity."""
    folder = Path(folder)
    cache = cache or DigestCache(None)
    sha = hashlib.sha256()
    for path in model_files(folder):
        sha.update(str(path.relative_to(folder)).encode("utf-8", "surrogateescape") + b"\0")
        sha.update(cache.digest(path).encode() + b"\0")
    cache.save()
    return sha.hexdigest()


def path_identity(name: str | os.PathLike, cache: DigestCache | None = None) -> dict[str, str]:
    """A model named by a folder or file (the hash of its model files, not its path: moving
    it keeps the identity) or by a name that is not a local path (a Hub name: only the name
    can be known)."""
    path = Path(name)
    if path.is_dir():
        return {"sha256": folder_digest(path, cache)}
    if path.is_file():
        digest_of = (cache or DigestCache(None)).digest(path)
        if cache:
            cache.save()
        return {"sha256": digest_of}
    return {"name": str(name)}


def loaded_dtype(backend) -> str:
    """The dtype a backend's model computes in, as loaded: ``--dtype auto`` is fp32 on a CPU and
    bf16 on most GPUs, which sample differently, so the flag alone does not identify it. A model
    quantized at load (``--quantize int8``: int8 weights) samples differently again: ``+int8``."""
    dtype = str(next(backend.model.parameters()).dtype).removeprefix("torch.")
    int8 = any(str(b.dtype) == "torch.int8" for b in backend.model.buffers())
    return f"{dtype}+int8" if int8 else dtype


def model_generator(
    source: str,
    name: str | os.PathLike,
    sampling,
    *,
    cache: str | os.PathLike | None = None,
    **options: Any,
) -> dict:
    """A model backend's identity: ``source`` ("geex", "hf", "openai"), the model (a folder is
    hashed), the sampling settings and whatever else shapes its text (``options``: tokenizer,
    dtype, the endpoint's model name...); a folder named in ``options`` is hashed too.
    ``cache``: the JSON file that keeps the files' digests between runs (``DigestCache``).

    The number of samples ``n`` is left out: sample i is drawn the same way whatever n is
    (no seed; ``generate_samples`` asks only for the missing ids), so a larger n reuses the
    samples made and draws only the new ones. Where the model runs (``--device``) is left
    out too; its dtype is not.
    """
    digests = DigestCache(cache)
    shaped = {
        key: path_identity(value, digests) if isinstance(value, os.PathLike) else value
        for key, value in options.items()
    }
    return {
        "source": source,
        "model": path_identity(name, digests) if source != "openai" else {"url": str(name)},
        "sampling": _sampling_identity(sampling, endpoint=source == "openai"),
        **shaped,
    }


def _sampling_identity(sampling, *, endpoint: bool = False) -> dict:
    """The sampling settings that shape a text. ``n`` is left out (see above), and so is a
    repetition penalty of 1 (off) or unset: results made before the setting existed keep their
    fingerprints. A model's own penalty is filled in before (``Sampling.with_default_penalty``).
    An endpoint (``endpoint``) is sent a penalty of 1 when it is asked for and nothing when it is
    unset, which may decode otherwise (the server's default), so its 1 is kept."""
    fields = {k: v for k, v in dataclasses.asdict(sampling).items() if k != "n"}
    off = (None,) if endpoint else (None, 1)  # an endpoint is sent 1 and decodes otherwise
    if fields.get("repetition_penalty") in off:  # unset: an endpoint's own default
        fields.pop("repetition_penalty", None)
    return fields


def generation_fingerprint(generator: Mapping, task: Task) -> str:
    """An infilling task's suffix is part of what the model read."""
    suffix = getattr(task, "suffix", None)
    if suffix is None:
        return digest([dict(generator), task.prompt])
    return digest([dict(generator), task.prompt, suffix])


def judging_fingerprint(problem: Problem, judge: Mapping) -> str:
    """``judge``: the settings of the evaluator that shape a verdict (``judge_identity``)."""
    program = [problem.language.key, problem.prompt, problem.declaration, problem.extra]
    tests = problem.tests(bool(judge.get("example_test")))
    return digest([program, tests, dict(judge)])


def judge_identity(example_test: bool, settings: RunSettings, sandbox_mode: str) -> dict:
    return {
        "example_test": example_test,
        "settings": dataclasses.asdict(settings),
        "sandbox": sandbox_mode,
    }
