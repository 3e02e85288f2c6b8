"""Readers: where the data stage's documents come from.

``local`` reads folders, files and archives and holds the two functions every other reader
reuses (:func:`~geex.data.readers.local.document_from_bytes` and
:func:`~geex.data.readers.local.read_tree`); ``git`` clones repositories, ``github`` finds
them, ``datasets`` reads The Stack and CodeParrot style JSONL and Parquet files.
"""

from geex.data.readers.local import (
    LocalReader,
    document_from_bytes,
    read_archive,
    read_source,
    read_tree,
    walk_tree,
)

__all__ = [
    "LocalReader",
    "document_from_bytes",
    "read_archive",
    "read_source",
    "read_tree",
    "walk_tree",
]
