"""What a verdict was judged from, as two hashes stored beside it in ``results.jsonl``.

A run resumed into a folder reuses a stored verdict only if it answers the same question:

- the **generation fingerprint** hashes who wrote the completion (the generator: a model
  folder's files and load options, a Hugging Face name, an endpoint and its model, a samples
  file's path and contents, or the canonical solutions), how it was sampled, and the prompt it
  was given. A stored result whose generation fingerprint differs (or is absent: a line written
  before fingerprints) is dropped: its sample is made or read again and judged afresh.
- the **judging fingerprint** hashes the program the completion goes into (the problem's prompt,
  declaration, Go's setup), its tests, and the judge's settings (example tests, limits, the
  sandbox mode). A result whose generation matches but whose judging fingerprint differs is judged
  again from its stored completion, without asking the model again.

Hashing a model folder reads every file in it once per run (seconds per gigabyte).
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

_CHUNK = 1 << 20

CANONICAL = {"source": "canonical"}


def digest(value: Any) -> str:
    """The sha256 of ``value`` as canonical JSON (lone surrogates in texts included)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as data:
        while chunk := data.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def folder_digest(folder: str | os.PathLike) -> str:
    """The sha256 of every file under ``folder``: relative paths and contents."""
    folder = Path(folder)
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(folder)).encode("utf-8", "surrogateescape") + b"\0")
        sha.update(file_digest(path).encode() + b"\0")
    return sha.hexdigest()


def path_identity(name: str | os.PathLike) -> dict[str, str]:
    """A model named by a folder (its resolved path and the hash of its files) or by a name
    that is not a local path (a Hub name: only the name can be known)."""
    path = Path(name)
    if path.is_dir():
        return {"path": str(path.resolve()), "sha256": folder_digest(path)}
    if path.is_file():
        return {"path": str(path.resolve()), "sha256": file_digest(path)}
    return {"name": str(name)}


def samples_file_generator(path: str | os.PathLike) -> dict:
    return {"source": "samples", **path_identity(path)}


def model_generator(source: str, name: str | os.PathLike, sampling, **options: Any) -> dict:
    """A model backend's identity: ``source`` ("geex", "hf", "openai"), the model (a folder is
    hashed), the sampling settings and whatever else shapes its text (``options``: tokenizer,
    dtype, the endpoint's model name...); a folder named in ``options`` is hashed too."""
    shaped = {
        key: path_identity(value) if isinstance(value, os.PathLike) else value
        for key, value in options.items()
    }
    return {
        "source": source,
        "model": path_identity(name) if source != "openai" else {"url": str(name)},
        "sampling": dataclasses.asdict(sampling),
        **shaped,
    }


def generation_fingerprint(generator: Mapping, task: Task) -> str:
    return digest([dict(generator), task.prompt])


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
