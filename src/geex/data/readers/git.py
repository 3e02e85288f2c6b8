"""Git repositories: shallow clones, read file by file from git's object store.

:class:`GitRepoReader` takes a list of repository URLs (or local paths) and, for each repository
of its task's share, makes a bare shallow clone (``git clone --bare --depth 1 --single-branch``,
no tags, no submodules, never a password prompt, a time limit), checks its size while and after
it downloads, lists the commit's tree with ``git ls-tree`` and turns each file into a Document
with :func:`~geex.data.readers.local.document_from_bytes`, the same function every reader uses.

Why blobs and not a checkout: a checkout would double the disk used per repository, and a
repository may hold a symbolic link to ``/etc/passwd`` or ``~/.ssh``; walking the checked-out
folder would read the machine's files into the corpus. Read from the object store, a link is
just a blob of mode 120000, skipped and counted. Where the server supports partial clones
(GitHub does) the clone also leaves out, with ``--filter=blob:limit``, every file larger than
the reader's ``max_bytes``; those are counted as ``skipped_too_large`` without being downloaded.

Optional repository metadata (``metadata_file``, JSONL or CSV; the GitHub API's repository
objects fit as they are) gives stars, size and license per repository, so ``min_stars`` and
``max_size_kb`` can skip a repository before it is cloned.

Each repository is counted once: ``repos`` when read, or one of ``skipped_clone_failed``,
``skipped_clone_timeout``, ``skipped_repo_too_large``, ``skipped_empty_repo``,
``skipped_below_min_stars``, ``skipped_no_metadata``. Files inside are counted as the local
reader counts them, plus ``skipped_symlink`` and ``skipped_submodule``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger

from geex.data.readers.local import (
    DEFAULT_EXCLUDED_DIRS,
    DEFAULT_MAX_BYTES,
    document_from_bytes,
)
from geex.errors import ConfigError, GeexError
from geex.languages import detect_language

# A shallow clone of a large project (the Linux kernel: ~250 MB) fits; a repository of data
# dumps or media does not.
DEFAULT_MAX_REPO_BYTES = 512 * 2**20
DEFAULT_CLONE_TIMEOUT_S = 600.0
# How often a running clone's folder is measured against the size limit.
_SIZE_POLL_S = 0.25

_GIT_ENV = {
    # Never wait for a password: a private or deleted repository must fail, not hang.
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "true",
    "SSH_ASKPASS": "true",
    # git >= 2.44: never fetch a blob the partial clone left out (older git ignores this;
    # the reader never asks for those blobs anyway).
    "GIT_NO_LAZY_FETCH": "1",
    "LC_ALL": "C",
}


def _git_env() -> dict[str, str]:
    env = {**os.environ, **_GIT_ENV}
    # ssh asks for passphrases and host keys on the terminal; a user's own command is kept.
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


_MODE_SYMLINK = "120000"
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")
_MODE_SUBMODULE = "160000"


@dataclass(frozen=True)
class RepoInfo:
    """What a metadata file (or the GitHub API) says about one repository."""

    name: str | None = None  # "owner/name" as the host spells it
    stars: int | None = None
    size_kb: int | None = None  # GitHub's "size": the whole repository, in KiB
    license: str | None = None


def repo_name(url_or_path: str) -> str:
    """``owner/name`` of a repository URL or path, lowercased, without ``.git``.

    ``https://github.com/Owner/Name.git``, ``git@github.com:Owner/Name`` and
    ``/srv/mirrors/owner/name.git`` all give ``owner/name``; a metadata file may name a
    repository any of these ways.
    """
    text = url_or_path.strip().rstrip("/")
    if "://" in text:
        path = urlsplit(text).path
    elif _SCP_LIKE.match(text):  # git@host:owner/name
        path = text.split(":", 1)[1]
    else:
        path = text
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    parts[-1:] = [parts[-1].removesuffix(".git")] if parts else []
    return "/".join(parts[-2:]).lower()


def redact(url: str) -> str:
    """A URL without the user and password (or token) it may carry, for logs and metadata."""
    return re.sub(r"(://)[^/@\s]+@", r"\1", url)


# ---------------------------------------------------------------------------------------------
# Licenses


_LICENSE_FILE = re.compile(r"^(licen[cs]e|copying|unlicense)([-._][\w.-]*)?$", re.IGNORECASE)
_SPDX_LINE = re.compile(r"SPDX-License-Identifier:\s*([\w.+-]+(?:\s+(?:OR|AND|WITH)\s+[\w.+-]+)*)")


def detect_license(text: str) -> str | None:
    """An SPDX identifier for the text of a LICENSE file, or None when it is not recognised.

    Matches the wording every copy of each common license keeps (as GitHub's licensee does, in
    far fewer words); an ``SPDX-License-Identifier:`` line wins over the wording.
    """
    spdx = _SPDX_LINE.search(text)
    if spdx:
        return spdx.group(1)
    t = " ".join(text.split()).lower()
    if "gnu affero general public license" in t:
        return "AGPL-3.0"
    if "gnu lesser general public license" in t or "gnu library general public license" in t:
        return "LGPL-3.0" if "version 3" in t else "LGPL-2.1"
    if "gnu general public license" in t:
        if "version 3" in t:
            return "GPL-3.0"
        return "GPL-2.0" if "version 2" in t else "GPL"
    if "apache license" in t and "version 2.0" in t:
        return "Apache-2.0"
    if "mozilla public license" in t:
        return "MPL-2.0" if "version 2.0" in t else "MPL-1.1"
    if "eclipse public license" in t:
        return "EPL-2.0" if "v 2.0" in t or "version 2.0" in t else "EPL-1.0"
    if "boost software license" in t:
        return "BSL-1.0"
    if "this is free and unencumbered software released into the public domain" in t:
        return "Unlicense"
    if "permission is hereby granted, free of charge, to any person" in t:
        return "MIT"
    if "permission to use, copy, modify, and/or distribute this software for any purpose" in t:
        return "ISC"
    if "redistribution and use in source and binary forms" in t:
        return "BSD-3-Clause" if "neither the name" in t or "names of its" in t else "BSD-2-Clause"
    if "creative commons" in t and "cc0" in t:
        return "CC0-1.0"
    if "do what the fuck you want to" in t:
        return "WTFPL"
    return None


def _license_from_metadata(value) -> str | None:
    # GitHub's API gives {"key": "mit", "spdx_id": "MIT", ...}, and "NOASSERTION" for a
    # license file it could not classify: then the file itself is read.
    if isinstance(value, dict):
        value = value.get("spdx_id") or value.get("key")
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    return None if value.upper() in {"NOASSERTION", "NONE", "OTHER"} else value


# ---------------------------------------------------------------------------------------------
# Metadata files

_NAME_KEYS = ("full_name", "repo_name", "repo", "name", "clone_url", "url", "html_url")
_STAR_KEYS = ("stars", "stargazers_count", "max_stars_count", "stargazers", "watchers_count")
_SIZE_KEYS = ("size_kb", "size")


def _as_int(value) -> int | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def repo_info_from_record(record: dict) -> tuple[list[str], RepoInfo] | None:
    """Keys to look the repository up by, and what the record says; None without a name."""
    keys: list[str] = []
    for field in _NAME_KEYS:
        value = record.get(field)
        if isinstance(value, str) and value.strip():
            keys.append(repo_name(value))
    if not keys:
        return None
    stars = next((_as_int(record[k]) for k in _STAR_KEYS if record.get(k) not in (None, "")), None)
    size = next((_as_int(record[k]) for k in _SIZE_KEYS if record.get(k) not in (None, "")), None)
    name = record.get("full_name") or record.get("repo_name") or record.get("repo")
    info = RepoInfo(
        name=name if isinstance(name, str) and "/" in name else None,
        stars=stars,
        size_kb=size,
        license=_license_from_metadata(record.get("license") or record.get("license_spdx")),
    )
    return list(dict.fromkeys(keys)), info


def load_repo_metadata(path: str | os.PathLike) -> dict[str, RepoInfo]:
    """``owner/name`` -> RepoInfo from a JSONL (or JSON list) or CSV file of repositories.

    Recognised columns: a name (``full_name``, ``repo_name``, ``repo``, ``name`` or a URL in
    ``clone_url``, ``url``, ``html_url``), stars (``stars``, ``stargazers_count``,
    ``max_stars_count``), size in KiB (``size_kb``, or ``size`` as GitHub's API reports it) and
    ``license`` (a string or the API's license object). Rows without a name are ignored.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise GeexError(f"cannot read repository metadata {path}: {err}") from err
    records: list = []
    if path.suffix.lower() == ".csv":
        records = list(csv.DictReader(text.splitlines()))
    elif text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except ValueError as err:
            raise GeexError(f"{path} is not valid JSON: {err}") from err
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                logger.warning(f"{path}:{number}: not a JSON line, ignored")
    metadata: dict[str, RepoInfo] = {}
    for record in records:
        found = repo_info_from_record(record) if isinstance(record, dict) else None
        if found is None:
            continue
        keys, info = found
        for key in keys:
            metadata.setdefault(key, info)
    return metadata


def read_repo_list(path: str | os.PathLike) -> list[str]:
    """Repository URLs or paths, one per line; blank lines and ``#`` comments are ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise GeexError(f"cannot read the repository list {path}: {err}") from err
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


# ---------------------------------------------------------------------------------------------
# The reader


def _folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            with contextlib.suppress(OSError):  # git renames its temporary files as we walk
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _first_error(message: str) -> str | None:
    """The line of git's stderr that says what went wrong, credentials removed."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return redact(line)
    return redact(lines[-1]) if lines else None


def _clone_url(url_or_path: str) -> str:
    """Local paths become file:// URLs: git ignores --depth for a plain local path."""
    if "://" in url_or_path or _SCP_LIKE.match(url_or_path):
        return url_or_path
    return Path(url_or_path).expanduser().resolve().as_uri()


class GitRepoReader(PipelineStep):
    """Clones repositories and reads their files; tasks split the repositories between them.

    ``urls_or_paths`` is a list of URLs or local paths, one URL or repository folder, or the
    path of a file listing them one per line. A repository goes to task ``i % world_size`` by its position in the list, and its
    clone (under ``work_dir/clones``) is deleted once read. A datatrove task that finished is
    not run again, so its repositories are not cloned again; a complete clone left by a task
    that was killed is read without cloning it again.

    ``max_bytes`` caps one file (larger ones are skipped, and not downloaded where the server
    supports partial clones); ``max_repo_bytes`` caps the clone on disk, checked while it
    downloads. ``min_stars`` and ``max_size_kb`` need ``metadata_file``: a repository below the
    stars, or above GitHub's size, is skipped before cloning; with ``min_stars`` a repository the
    metadata does not list is skipped too (``skipped_no_metadata``), since its stars are unknown.
    Documents get ``repo``, and ``stars`` and ``license`` where known (the metadata's license,
    else the one recognised in a LICENSE or COPYING file at the repository's root).
    """

    name = "git repositories"
    type = "📖 - READER"

    def __init__(
        self,
        urls_or_paths: Sequence[str] | str | os.PathLike,
        work_dir: str | os.PathLike,
        *,
        max_repo_bytes: int = DEFAULT_MAX_REPO_BYTES,
        depth: int | None = 1,
        min_stars: int | None = None,
        max_size_kb: int | None = None,
        metadata_file: str | os.PathLike | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clone_timeout_s: float = DEFAULT_CLONE_TIMEOUT_S,
        partial_clone: bool = True,
        keep_clones: bool = False,
    ):
        super().__init__()
        if isinstance(urls_or_paths, (str, os.PathLike)):
            single = os.fspath(urls_or_paths)
            is_repo = "://" in single or _SCP_LIKE.match(single) or Path(single).is_dir()
            urls = [single] if is_repo else read_repo_list(single)
        else:
            urls = [str(u).strip() for u in urls_or_paths if str(u).strip()]
        self.repos: list[str] = list(dict.fromkeys(urls))  # a repository listed twice is read once
        self.work_dir = Path(work_dir)
        self.max_repo_bytes = max_repo_bytes
        self.depth = depth
        self.min_stars = min_stars
        self.max_size_kb = max_size_kb
        self.max_bytes = max_bytes
        self.clone_timeout_s = clone_timeout_s
        self.partial_clone = partial_clone
        self.keep_clones = keep_clones
        self.metadata: dict[str, RepoInfo] = {}
        if metadata_file is not None:
            self.metadata = load_repo_metadata(metadata_file)
        elif min_stars is not None or max_size_kb is not None:
            raise ConfigError(
                "min_stars and max_size_kb need metadata_file (a JSONL or CSV of repositories "
                "with their stars and size)"
            )

    # -- the pipeline step --------------------------------------------------------------------

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        if data:
            yield from data
        if self.repos and shutil.which("git") is None:
            raise GeexError("reading git repositories needs git on PATH; install git")
        for url in self.repos[rank::world_size]:
            yield from self.read_repo(url)

    def read_repo(self, url: str) -> Iterator[Document]:
        """The documents of one repository; a repository that cannot be read yields none."""
        info = self.metadata.get(repo_name(url), RepoInfo())
        skip = self._metadata_skip(url, info)
        if skip:
            self.stat_update(skip)
            return
        clone = self.work_dir / "clones" / self._clone_folder_name(url)
        try:
            if not (clone / "HEAD").is_file():
                skip = self._clone(url, clone)
                if skip:
                    self.stat_update(skip)
                    return
            yield from self._read_clone(clone, url, info)
        finally:
            if not self.keep_clones:
                shutil.rmtree(clone, ignore_errors=True)

    def _metadata_skip(self, url: str, info: RepoInfo) -> str | None:
        if self.min_stars is not None:
            if info.stars is None:
                logger.info(f"{redact(url)}: no stars in the metadata, skipped (min_stars is set)")
                return "skipped_no_metadata"
            if info.stars < self.min_stars:
                return "skipped_below_min_stars"
        too_big = self.max_size_kb is not None and (info.size_kb or 0) > self.max_size_kb
        if too_big:
            return "skipped_repo_too_large"
        return None

    @staticmethod
    def _clone_folder_name(url: str) -> str:
        slug = re.sub(r"[^\w.-]+", "_", repo_name(url))[:80]
        return f"{slug}-{hashlib.sha1(url.encode()).hexdigest()[:10]}.git"

    # -- cloning ------------------------------------------------------------------------------

    def _clone(self, url: str, dest: Path) -> str | None:
        """Clone into ``dest``; None on success, else the skip reason (nothing left on disk)."""
        partial = dest.with_name(dest.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        command = ["git", "clone", "--bare", "--single-branch", "--no-tags", "--quiet"]
        if self.depth:
            command += ["--depth", str(self.depth)]
        if self.partial_clone:
            # A server without partial clone support says so on stderr and sends everything;
            # the size checks below still hold.
            command += [f"--filter=blob:limit={self.max_bytes}"]
        command += ["--", _clone_url(url), str(partial)]
        env = _git_env()
        shown = redact(url)
        with tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # so that a kill reaches git's helpers too
            )
            reason = self._watch_clone(process, partial)
            stderr.seek(0)
            message = stderr.read().decode("utf-8", "replace").strip()
        if reason is None and process.returncode != 0:
            reason = "skipped_clone_failed"
        if reason is None and _folder_bytes(partial) > self.max_repo_bytes:
            reason = "skipped_repo_too_large"
        if reason is not None:
            shutil.rmtree(partial, ignore_errors=True)
            detail = _first_error(message) or f"exit {process.returncode}"
            logger.warning(f"{shown}: {reason.removeprefix('skipped_')} ({detail})")
            return reason
        os.replace(partial, dest)
        return None

    def _watch_clone(self, process: subprocess.Popen, folder: Path) -> str | None:
        deadline = time.monotonic() + self.clone_timeout_s
        while True:
            try:
                process.wait(timeout=_SIZE_POLL_S)
                return None
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                reason = "skipped_clone_timeout"
            elif _folder_bytes(folder) > self.max_repo_bytes:
                reason = "skipped_repo_too_large"
            else:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return reason

    # -- reading ------------------------------------------------------------------------------

    def _git(self, git_dir: Path, *args: str) -> subprocess.CompletedProcess:
        command = ["git", f"--git-dir={git_dir}", *args]
        try:
            return subprocess.run(
                command,
                env=_git_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.clone_timeout_s,
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(command, -1, b"", b"timed out")

    def _read_clone(self, git_dir: Path, url: str, info: RepoInfo) -> Iterator[Document]:
        if self._git(git_dir, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").returncode:
            self.stat_update("skipped_empty_repo")
            return
        listing = self._git(git_dir, "ls-tree", "-r", "-z", "--full-tree", "HEAD")
        # Objects the partial clone left out; asking for one would download it.
        missing = self._git(git_dir, "rev-list", "--objects", "--missing=print", "HEAD")
        if listing.returncode or missing.returncode:
            logger.warning(f"{redact(url)}: cannot list the tree ({listing.stderr.decode()!r})")
            self.stat_update("skipped_clone_failed")
            return
        absent = {
            line[1:].strip()
            for line in missing.stdout.decode().splitlines()
            if line.startswith("?")
        }
        entries = []
        for record in listing.stdout.split(b"\0"):
            if not record:
                continue
            header, _, path = record.partition(b"\t")
            mode, kind, oid = header.decode().split()
            entries.append((mode, kind, oid, path.decode("utf-8", "surrogateescape")))
        self.stat_update("repos")

        with _BlobReader(git_dir) as blobs:
            license_ = info.license or self._license_from_tree(entries, absent, blobs)
            extra = {"repo": info.name or repo_name(url)}
            if info.stars is not None:
                extra["stars"] = info.stars
            if license_:
                extra["license"] = license_
            source = redact(url)
            for mode, kind, oid, path in entries:
                with self.track_time():
                    document = self._read_entry(mode, kind, oid, path, absent, blobs, source, extra)
                if document is not None:
                    self.stat_update("documents")
                    self.stat_update("bytes", value=document.metadata["size_bytes"])
                    yield document

    def _read_entry(self, mode, kind, oid, path, absent, blobs, source, extra) -> Document | None:
        if mode == _MODE_SUBMODULE or kind == "commit":
            self.stat_update("skipped_submodule")
            return None
        if mode == _MODE_SYMLINK:
            self.stat_update("skipped_symlink")
            return None
        if DEFAULT_EXCLUDED_DIRS.intersection(path.split("/")[:-1]):
            return None
        language = detect_language(path)
        name = path.rsplit("/", 1)[-1]
        if language is None and "." in name.lstrip("."):
            # Only a file without an extension can still be named by its #! line.
            self.stat_update("skipped_unknown_language")
            return None
        if oid in absent:
            self.stat_update("skipped_too_large")  # left out by --filter=blob:limit
            return None
        size = blobs.size(oid)
        if size is None:
            self.stat_update("skipped_unreadable")
            return None
        if size > self.max_bytes:
            self.stat_update("skipped_too_large")
            return None
        data = blobs.read(oid)
        if data is None:
            self.stat_update("skipped_unreadable")
            return None
        return document_from_bytes(
            data,
            path,
            source,
            language=language,
            max_bytes=self.max_bytes,
            on_skip=self.stat_update,
            metadata=extra,
        )

    def _license_from_tree(self, entries, absent, blobs) -> str | None:
        for mode, kind, oid, path in entries:
            if "/" in path or kind != "blob" or mode == _MODE_SYMLINK or oid in absent:
                continue
            if not _LICENSE_FILE.match(path):
                continue
            size = blobs.size(oid)
            if size is None or size > 256 * 1024:
                continue
            data = blobs.read(oid)
            license_ = detect_license(data.decode("utf-8", "replace")) if data else None
            if license_:
                return license_
        return None


class _BlobReader:
    """Sizes and contents of blobs through two long-lived ``git cat-file`` processes."""

    def __init__(self, git_dir: Path):
        self._git_dir = git_dir
        self._check: subprocess.Popen | None = None
        self._batch: subprocess.Popen | None = None

    def __enter__(self) -> _BlobReader:
        def start(mode: str) -> subprocess.Popen:
            return subprocess.Popen(
                ["git", f"--git-dir={self._git_dir}", "cat-file", mode],
                env=_git_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )

        self._check = start("--batch-check")
        self._batch = start("--batch")
        return self

    def __exit__(self, *exc) -> None:
        for process in (self._check, self._batch):
            if process is None:
                continue
            with contextlib.suppress(OSError):
                process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()

    @staticmethod
    def _ask(process: subprocess.Popen, oid: str) -> list[str] | None:
        try:
            process.stdin.write(oid.encode() + b"\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        header = process.stdout.readline().decode().split()
        # "<oid> blob <size>", or "<oid> missing"
        if len(header) != 3 or header[1] != "blob":
            return None
        return header

    def size(self, oid: str) -> int | None:
        header = self._ask(self._check, oid)
        return int(header[2]) if header else None

    def read(self, oid: str) -> bytes | None:
        header = self._ask(self._batch, oid)
        if header is None:
            return None
        size = int(header[2])
        data = self._batch.stdout.read(size)
        self._batch.stdout.read(1)  # the newline after the contents
        return data if len(data) == size else None
