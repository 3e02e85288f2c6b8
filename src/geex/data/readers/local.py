"""Source files on this machine: folders, single files, tar and zip archives.

Every reader of the data stage ends here: a cloned repository is a folder, a dataset row is
the bytes of one file. Two functions do the work and the remote readers reuse them:

- :func:`document_from_bytes` turns one file's bytes into a :class:`Document` (language, text,
  metadata), or into a counted skip;
- :func:`read_tree` walks a folder in a stable order and yields its documents.

Bad input never raises. A file name that is not UTF-8 (file systems and tar allow any bytes)
is kept with those bytes escaped (``caf\\xe9.py``, by :func:`utf8_name`), since ids and paths
go into UTF-8 JSON. Each skipped file is reported once, through ``on_skip``, as a stat label
``skipped_<reason>``; a pipeline step passes its own ``stat_update`` so the counts land in the
step's statistics and, from there, in the dataset card. The reasons:

``unknown_language``  no language from the file name, extension or ``#!`` line
``binary``            a NUL byte in the first 8 KiB (git's test)
``not_utf8``          bytes that do not decode as UTF-8
``too_large``         larger than ``max_bytes`` (checked before the file is read)
``empty``             zero bytes, or only whitespace
``symlink_loop``      a link that resolves to itself or to a folder already being walked
``broken_symlink``    a link to nothing
``special_file``      a FIFO, socket or device: reading it could block forever
``unreadable``        the operating system refused to open or read it
``corrupt_archive``   a tar or zip file that cannot be opened or read to its end
``damaged_compressed_data``  a zip member whose compressed bytes do not decompress (the
                      archive's other members are still read)
``encrypted``         a zip member that needs a password
``unsupported_compression``  a zip member compressed by a method Python cannot undo
``empty_repo``        a git working tree with nothing but its ``.git`` folder
"""

from __future__ import annotations

import errno
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger

from geex.languages import Language, detect_language

# Above this a "source file" is data or generated code; the filters are stricter still
# (100 KB for the codegeex preset), but this cap keeps a 2 GB dump out of memory.
DEFAULT_MAX_BYTES = 8 * 2**20
BINARY_SNIFF_BYTES = 8192
# Version-control metadata and caches are never source files.
DEFAULT_EXCLUDED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".tox", ".mypy_cache"})
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")

SkipCounter = Callable[[str], object]
_NOT_SELECTED = object()  # an archive member whose language was not asked for


def _ignore(_label: str) -> None:
    return None


def is_archive(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(ARCHIVE_SUFFIXES)


def utf8_name(name: str) -> str:
    """``name`` as text any UTF-8 writer accepts, with the bytes that are not UTF-8 escaped.

    Python keeps the undecodable bytes of a file name as lone surrogates (``surrogateescape``),
    which JSON encoders refuse. ``\\xe9`` escapes keep the name readable, and two names that
    differ only in such bytes keep distinct document ids (``errors="replace"`` would merge them).
    """
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file system made ("\ud800" in a JSON row)
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _first_line(data: bytes) -> str:
    return data[:256].split(b"\n", 1)[0].decode("utf-8", errors="replace")


def document_from_bytes(
    data: bytes,
    path: str,
    source: str,
    *,
    language: Language | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_skip: SkipCounter | None = None,
    metadata: dict | None = None,
) -> Document | None:
    """One file as a Document, or None (counted through ``on_skip``) when it is not usable code.

    ``path`` is the file's path inside ``source`` (a folder, archive, repository URL or dataset
    file); the pair is the document's id, so the same file read twice gets the same id.
    ``language`` skips detection (a dataset row that names its language); ``metadata`` adds
    keys such as ``repo``, ``stars`` or ``license``.
    """
    on_skip = on_skip or _ignore
    path, source = utf8_name(path), utf8_name(source)
    if len(data) > max_bytes:
        on_skip("skipped_too_large")
        return None
    if language is None:
        language = detect_language(path, _first_line(data))
        if language is None:
            on_skip("skipped_unknown_language")
            return None
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        on_skip("skipped_binary")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        on_skip("skipped_not_utf8")
        return None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        on_skip("skipped_empty")
        return None
    meta = {"language": language.key, "path": path, "source": source, "size_bytes": len(data)}
    if metadata:
        meta.update(metadata)
    return Document(text=text, id=f"{source}::{path}", metadata=meta)


@dataclass(frozen=True)
class TreeEntry:
    """A file found by :func:`walk_tree`: its path relative to the root, or why it is skipped."""

    relpath: str
    size: int = 0
    language: Language | None = None
    skip: str | None = None  # a stat label, "skipped_<reason>"


def walk_tree(
    root: str | os.PathLike,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    excluded_dirs: Iterable[str] = DEFAULT_EXCLUDED_DIRS,
) -> Iterator[TreeEntry]:
    """Every file under ``root`` in sorted order, with its size and language or a skip reason.

    Folder links are followed unless they lead back into a folder being walked (a loop). Only
    ``stat`` is called here; files without a known extension are opened for their first line.
    """
    root = Path(root)
    excluded = frozenset(excluded_dirs)
    try:
        root_stat = root.stat()
    except OSError as err:
        yield TreeEntry(root.name, skip=_oserror_reason(err, root))
        return
    if not stat.S_ISDIR(root_stat.st_mode):
        yield _file_entry(root, root.name, root_stat, max_bytes)
        return
    yield from _walk_folder(root, "", {(root_stat.st_dev, root_stat.st_ino)}, excluded, max_bytes)


def _walk_folder(
    folder: Path, prefix: str, ancestors: set, excluded: frozenset, max_bytes: int
) -> Iterator[TreeEntry]:
    try:
        names = sorted(os.listdir(folder))
    except OSError as err:
        yield TreeEntry(prefix.rstrip("/") or folder.name, skip=_oserror_reason(err, folder))
        return
    if names == [".git"]:  # a repository with nothing checked out: no commits yet
        yield TreeEntry(prefix.rstrip("/") or folder.name, skip="skipped_empty_repo")
        return
    for name in names:
        path, relpath = folder / name, prefix + name
        try:
            st = path.stat()  # follows links
        except OSError as err:
            yield TreeEntry(relpath, skip=_oserror_reason(err, path))
            continue
        if stat.S_ISDIR(st.st_mode):
            if name in excluded:
                continue
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                yield TreeEntry(relpath, skip="skipped_symlink_loop")
                continue
            yield from _walk_folder(path, relpath + "/", ancestors | {key}, excluded, max_bytes)
        else:
            yield _file_entry(path, relpath, st, max_bytes)


def _file_entry(path: Path, relpath: str, st: os.stat_result, max_bytes: int) -> TreeEntry:
    if not stat.S_ISREG(st.st_mode):
        return TreeEntry(relpath, skip="skipped_special_file")
    language = detect_language(relpath)
    if language is None and "." not in path.name.lstrip("."):
        language = detect_language(relpath, _peek_first_line(path))
    if language is None:
        return TreeEntry(relpath, st.st_size, skip="skipped_unknown_language")
    if st.st_size > max_bytes:
        return TreeEntry(relpath, st.st_size, language, skip="skipped_too_large")
    return TreeEntry(relpath, st.st_size, language)


def _peek_first_line(path: Path) -> str | None:
    try:
        with open(path, "rb") as file:
            return _first_line(file.read(256))
    except OSError:
        return None


def _oserror_reason(err: OSError, path: Path) -> str:
    if err.errno == errno.ELOOP:
        return "skipped_symlink_loop"
    if err.errno == errno.ENOENT and path.is_symlink():
        return "skipped_broken_symlink"
    return "skipped_unreadable"


def read_tree(
    root: str | os.PathLike,
    source: str | None = None,
    *,
    rank: int = 0,
    world_size: int = 1,
    max_bytes: int = DEFAULT_MAX_BYTES,
    excluded_dirs: Iterable[str] = DEFAULT_EXCLUDED_DIRS,
    on_skip: SkipCounter | None = None,
    metadata: dict | None = None,
    entries: Iterable[TreeEntry] | None = None,
) -> Iterator[Document]:
    """The source files under ``root`` (a folder or one file) as Documents, in sorted order.

    With ``world_size`` > 1 this task takes every ``world_size``-th file from position
    ``rank``, skipped files included, so each skip is counted by exactly one task. ``source``
    defaults to ``root``; paths in the documents are relative to ``root``. ``entries`` replaces
    the walk (a caller that has already listed and capped the tree).
    """
    root = Path(root)
    source = str(root) if source is None else source
    on_skip = on_skip or _ignore
    if entries is None:
        entries = walk_tree(root, max_bytes=max_bytes, excluded_dirs=excluded_dirs)
    base = root if root.is_dir() else root.parent
    for position, entry in enumerate(entries):
        if position % world_size != rank:
            continue
        if entry.skip:
            on_skip(entry.skip)
            continue
        try:
            with open(base / entry.relpath, "rb") as file:
                data = file.read(max_bytes + 1)
        except OSError as err:
            on_skip(_oserror_reason(err, base / entry.relpath))
            continue
        document = document_from_bytes(
            data,
            entry.relpath,
            source,
            language=entry.language,
            max_bytes=max_bytes,
            on_skip=on_skip,
            metadata=metadata,
        )
        if document is not None:
            yield document


def read_archive(
    archive: str | os.PathLike,
    source: str | None = None,
    *,
    rank: int = 0,
    world_size: int = 1,
    max_bytes: int = DEFAULT_MAX_BYTES,
    excluded_dirs: Iterable[str] = DEFAULT_EXCLUDED_DIRS,
    on_skip: SkipCounter | None = None,
    metadata: dict | None = None,
    per_language_bytes: int | None = None,
    used: dict[str, int] | None = None,
    languages: frozenset[str] | None = None,
) -> Iterator[Document]:
    """The source files in a tar (plain or compressed) or zip archive, in archive order.

    Tasks split the members as :func:`read_tree` splits files. An archive that cannot be
    opened, or breaks part-way, counts one ``skipped_corrupt_archive``; the documents read
    before the break are kept (the same ones on every run, so a rerun gives the same output).
    ``per_language_bytes`` and ``used`` cap each language as :class:`LocalReader` does.
    """
    archive = Path(archive)
    used = {} if used is None else used
    source = str(archive) if source is None else source
    on_skip = on_skip or _ignore
    excluded = frozenset(excluded_dirs)
    try:
        if archive.name.lower().endswith(".zip"):
            members = _zip_members(archive)
        else:
            members = _tar_members(archive)
        position = -1
        for name, size, read in members:
            if excluded.intersection(name.split("/")[:-1]):
                continue
            language = detect_language(name) if read is not None else None
            if language is not None and languages is not None and language.key not in languages:
                language, read = None, _NOT_SELECTED
            if language is not None and per_language_bytes is not None:
                spent = used.get(language.key, 0)
                if spent >= per_language_bytes:
                    continue
                used[language.key] = spent + size
            position += 1
            if position % world_size != rank:
                continue
            if read is None:
                on_skip("skipped_special_file")
                continue
            if read is _NOT_SELECTED:
                on_skip("skipped_language_not_selected")
                continue
            if language is None and "." in name.rsplit("/", 1)[-1].lstrip("."):
                on_skip("skipped_unknown_language")
                continue
            if size > max_bytes:
                on_skip("skipped_too_large")
                continue
            try:
                data = read()
            except SkippedMember as skipped:  # the other members can still be read
                logger.warning(f"{utf8_name(source)}: {utf8_name(name)}: {skipped}, skipped")
                on_skip(f"skipped_{skipped.reason}")
                continue
            document = document_from_bytes(
                data,
                name,
                source,
                language=language,
                max_bytes=max_bytes,
                on_skip=on_skip,
                metadata=metadata,
            )
            if document is not None:
                yield document
    except _BROKEN_ARCHIVE:
        if rank == 0:  # every task walks the whole archive and meets the same break
            on_skip("skipped_corrupt_archive")


# What a tar or zip raises when its own structure, or a compressed tar's one stream, is broken:
# nothing after that point can be read.
_BROKEN_ARCHIVE = (
    OSError,
    EOFError,
    tarfile.TarError,
    zipfile.BadZipFile,
    ValueError,
    zlib.error,
    lzma.LZMAError,
)


class SkippedMember(Exception):
    """One archive member that cannot be read while the others can (zip compresses each alone)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _zip_members(path: Path):
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            yield info.filename, info.file_size, lambda info=info: _read_zip_member(archive, info)


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.flag_bits & 0x1:
        raise SkippedMember("encrypted", "encrypted (needs a password)")
    try:
        return archive.read(info)
    except NotImplementedError as err:  # a compression method zipfile lacks
        raise SkippedMember("unsupported_compression", str(err)) from err
    except (zlib.error, lzma.LZMAError, zipfile.BadZipFile, EOFError, OSError) as err:
        # a bad CRC, an invalid deflate block, a truncated member
        raise SkippedMember("damaged_compressed_data", f"damaged compressed data ({err})") from err


def _tar_members(path: Path):
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            if member.isdir():
                continue
            if not member.isfile():  # links and devices inside an archive
                yield member.name, 0, None
                continue
            yield member.name, member.size, lambda m=member: archive.extractfile(m).read()


def read_source(
    path: str | os.PathLike,
    source: str | None = None,
    **options,
) -> Iterator[Document]:
    """A folder, a single file or an archive, whichever ``path`` is."""
    if is_archive(path) and Path(path).is_file():
        return read_archive(path, source, **options)
    return read_tree(path, source, **options)


class LocalReader(PipelineStep):
    """Reads local folders, files and archives; each task takes its share of every source.

    ``languages`` (keys of ``geex.languages``) keeps only those languages; other files count as
    ``skipped_language_not_selected``. ``per_language_bytes`` caps how much of each language is read, across all sources in the
    order given (the embedded default uses it so that a run on any machine stays short); the
    cap is applied to the sorted listing before files are split among tasks, so the selected
    files do not depend on the number of tasks.
    """

    name = "local files"
    type = "📖 - READER"

    def __init__(
        self,
        sources: Iterable[str | os.PathLike],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        excluded_dirs: Iterable[str] = DEFAULT_EXCLUDED_DIRS,
        per_language_bytes: int | None = None,
        languages: Iterable[str] | None = None,
    ):
        super().__init__()
        self.sources = [str(s) for s in sources]
        self.languages = frozenset(languages) if languages is not None else None
        self.max_bytes = max_bytes
        self.excluded_dirs = frozenset(excluded_dirs)
        self.per_language_bytes = per_language_bytes

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        used: dict[str, int] = {}
        for source in self.sources:
            options = dict(
                rank=rank,
                world_size=world_size,
                max_bytes=self.max_bytes,
                excluded_dirs=self.excluded_dirs,
                on_skip=self.stat_update,
            )
            if is_archive(source) and Path(source).is_file():
                documents = read_archive(
                    source,
                    per_language_bytes=self.per_language_bytes,
                    used=used,
                    languages=self.languages,
                    **options,
                )
            else:
                entries = walk_tree(
                    source, max_bytes=self.max_bytes, excluded_dirs=self.excluded_dirs
                )
                if self.languages is not None:
                    entries = _selected(entries, self.languages)
                if self.per_language_bytes is not None:
                    entries = _capped(entries, used, self.per_language_bytes)
                documents = read_tree(source, entries=entries, **options)
            for document in documents:
                with self.track_time():
                    self.stat_update("documents")
                    self.stat_update("bytes", value=document.metadata["size_bytes"])
                yield document


def _selected(entries: Iterable[TreeEntry], languages: frozenset[str]) -> Iterator[TreeEntry]:
    for entry in entries:
        if entry.skip is None and entry.language.key not in languages:
            yield TreeEntry(entry.relpath, entry.size, skip="skipped_language_not_selected")
        else:
            yield entry


def _capped(entries: Iterable[TreeEntry], used: dict[str, int], cap: int) -> Iterator[TreeEntry]:
    """Entries past a language's byte budget are left out (not skipped: never counted)."""
    for entry in entries:
        if entry.skip is None and entry.language is not None:
            spent = used.get(entry.language.key, 0)
            if spent >= cap:
                continue
            used[entry.language.key] = spent + entry.size
        yield entry
