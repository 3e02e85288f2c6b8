"""Small source trees for the data-stage tests: distinct code files, duplicates and bad input."""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
import zipfile
from pathlib import Path

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "total",
    "count",
    "index",
    "value",
    "items",
    "result",
    "scale",
    "offset",
    "buffer",
    "window",
    "parser",
    "token",
    "stream",
    "record",
    "column",
    "matrix",
    "vector",
    "handle",
    "config",
]


def python_module(seed: int, functions: int = 10) -> str:
    """A distinct ~2.5 KB Python module (the codegeex preset drops files under 1 KB)."""
    rng = random.Random(seed)
    parts = [f'"""Module {seed}: helpers for {rng.choice(WORDS)} handling."""\n']
    for f in range(functions):
        a, b, c = rng.sample(WORDS, 3)
        parts.append(
            f"def {a}_{b}_{seed}_{f}({a}, {b}):\n"
            f'    """Combine {a} and {b} into a {c}."""\n'
            f"    {c} = {a} * {rng.randint(2, 99)} + {b} - {rng.randint(1, 999)}\n"
            f"    return [{c} + step for step in range({rng.randint(3, 50)})]\n"
        )
    return "\n\n".join(parts)


def c_file(seed: int, functions: int = 10) -> str:
    rng = random.Random(1000 + seed)
    parts = [f"#include <stdio.h>\n\n/* File {seed}: {rng.choice(WORDS)} routines. */\n"]
    for f in range(functions):
        a, b = rng.sample(WORDS, 2)
        parts.append(
            f"int {a}_{b}_{seed}_{f}(int {a}, int {b}) {{\n"
            f"    int total = {a} * {rng.randint(2, 99)} + {b};\n"
            f"    for (int i = 0; i < {rng.randint(3, 50)}; i++) total += i;\n"
            f"    return total;\n}}\n"
        )
    return "\n".join(parts)


def write_code_tree(root: Path, n_python: int = 12, n_c: int = 6, seed: int = 0) -> Path:
    """Distinct Python and C files, plus one exact copy and one near copy of a Python file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pkg").mkdir(exist_ok=True)
    for i in range(n_python):
        (root / "pkg" / f"mod_{i:02d}.py").write_text(python_module(seed * 100 + i))
    for i in range(n_c):
        (root / f"lib_{i:02d}.c").write_text(c_file(seed * 100 + i))
    original = python_module(seed * 100)
    (root / "copy_exact.py").write_text(original)
    (root / "copy_near.py").write_text(original.replace("step", "k", 1) + "\n# edited copy\n")
    return root


def write_bad_tree(root: Path) -> dict[str, int]:
    """A tree of things a reader must skip without failing; returns the skip counts expected."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "blob.py").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    (root / "latin1.py").write_bytes("x = 'caf\xe9'\n".encode("latin-1") * 200)
    (root / "huge.py").write_text("x = 1\n" * (2 * 2**20))  # 12 MiB > the 8 MiB cap
    (root / "loop").symlink_to(".", target_is_directory=True)
    (root / "self.py").symlink_to("self.py")  # resolves to itself: ELOOP
    (root / "dangling.py").symlink_to("does-not-exist.py")
    os.mkfifo(root / "pipe.py")  # reading it would block forever
    (root / "notes.xyz").write_text("not code\n")
    (root / "empty.py").write_text("")
    empty_repo = root / "empty_repo"
    empty_repo.mkdir()
    subprocess.run(["git", "init", "-q", str(empty_repo)], check=True)
    (root / "broken.tar.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    return {
        "binary": 1,
        "not_utf8": 1,
        "too_large": 1,
        "symlink_loop": 2,
        "broken_symlink": 1,
        "special_file": 1,
        "unknown_language": 2,  # notes.xyz and broken.tar.gz (an archive inside a tree is a file)
        "empty": 1,
        "empty_repo": 1,
    }


def write_archives(folder: Path, files: dict[str, str]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    tar_path, zip_path = folder / "code.tar.gz", folder / "code.zip"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return tar_path, zip_path


# Latin-1 bytes in a file name: valid for the file system, not UTF-8.
UNDECODABLE_NAME = b"caf\xe9_\xff.py"


def write_undecodable_names(folder: Path, text: str) -> tuple[Path, Path, Path]:
    """A folder, a tar and a zip, each holding one file named ``UNDECODABLE_NAME``.

    The zip member has no UTF-8 flag, so by the zip format its name is code page 437.
    """
    tree = folder / "tree"
    tree.mkdir(parents=True, exist_ok=True)
    Path(os.fsdecode(os.path.join(os.fsencode(tree), UNDECODABLE_NAME))).write_text(text)
    data = text.encode()
    tar_path = folder / "names.tar"
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(os.fsdecode(UNDECODABLE_NAME))
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    placeholder = b"x" * len(UNDECODABLE_NAME)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(placeholder.decode(), data)
    zip_path = folder / "names.zip"
    zip_path.write_bytes(buffer.getvalue().replace(placeholder, UNDECODABLE_NAME))
    return tree, tar_path, zip_path


def write_zip_with_damaged_member(path: Path, files: dict[str, str], damaged: str) -> Path:
    """A deflated zip whose member ``damaged`` has its compressed bytes overwritten."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    raw = bytearray(buffer.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(raw))).getinfo(damaged)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start : start + info.compress_size] = b"\xff" * info.compress_size  # an invalid block
    path.write_bytes(bytes(raw))
    return path
