"""`geex convert` never destroys its input: an output that is the input (however spelled) is refused, the output appears whole or not at all, and only an earlier output is replaced, only with --overwrite. `pytest tests/model/test_convert_safety.py`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from geex.errors import GeexError
from geex.model import hf_export
from geex.model.convert_codegeex import convert_codegeex, export_codegeex
from geex.model.hf_export import export_hf, import_hf
from tests.conftest import one_line_error, required_program, run_geex


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: equal snapshots, untouched folders."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def hf_folder(tiny_checkpoint, tmp_path_factory) -> Path:
    return export_hf(tiny_checkpoint, tmp_path_factory.mktemp("export") / "hf")


@pytest.mark.parametrize("verb", ["to-hf", "from-hf"])
def test_converting_a_folder_into_itself_is_refused_and_leaves_it_intact(
    verb, tiny_checkpoint, hf_folder
):
    folder = tiny_checkpoint if verb == "to-hf" else hf_folder
    before = snapshot(folder)
    error = one_line_error(run_geex("convert", verb, folder, folder))
    assert f"the output {folder} is the input {folder}" in error
    assert snapshot(folder) == before


def spellings(folder: Path, tmp_path: Path) -> list[tuple[str, Path]]:
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    return [
        ("the same path", folder),
        ("DIR/.", folder / "."),
        ("a path through ..", folder / "sub" / ".."),
        ("relative", Path(os.path.relpath(folder))),
        ("a symlink", link),
    ]


def test_every_spelling_of_the_input_is_refused(tiny_checkpoint, hf_folder, tmp_path):
    before = snapshot(tiny_checkpoint), snapshot(hf_folder)
    for how, output in spellings(tiny_checkpoint, tmp_path):
        with pytest.raises(GeexError, match="is the input"):
            export_hf(tiny_checkpoint, output)
        with pytest.raises(GeexError, match="is the input"):
            export_codegeex(tiny_checkpoint, output)
        assert snapshot(tiny_checkpoint) == before[0], how
    (tmp_path / "link").unlink()
    for how, output in spellings(hf_folder, tmp_path):
        with pytest.raises(GeexError, match="is the input"):
            import_hf(hf_folder, output)
        assert snapshot(hf_folder) == before[1], how


def test_an_output_holding_the_input_is_refused(tiny_checkpoint, hf_folder):
    before = snapshot(tiny_checkpoint.parent)
    with pytest.raises(GeexError, match="holds the input"):
        export_hf(tiny_checkpoint, tiny_checkpoint.parent)
    with pytest.raises(GeexError, match="holds the input"):
        import_hf(hf_folder, hf_folder.parent)
    assert snapshot(tiny_checkpoint.parent) == before


def test_a_codegeex_file_converted_onto_itself_is_refused(tiny_checkpoint, tmp_path):
    pt = export_codegeex(tiny_checkpoint, tmp_path / "model.pt")
    before = pt.read_bytes()
    error = one_line_error(run_geex("convert", "codegeex", pt, pt))
    assert "is the input" in error
    with pytest.raises(GeexError, match="holds the input"):
        convert_codegeex([pt], tmp_path)
    assert pt.read_bytes() == before


def test_a_failure_mid_write_leaves_the_earlier_output_and_no_leftovers(
    tiny_checkpoint, tmp_path, monkeypatch
):
    out = export_hf(tiny_checkpoint, tmp_path / "hf")
    before = snapshot(out)

    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(hf_export, "_copy_tokenizer", crash)  # after the weights are written
    with pytest.raises(RuntimeError, match="killed mid-write"):
        export_hf(tiny_checkpoint, out, overwrite=True)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        export_hf(tiny_checkpoint, tmp_path / "new")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_an_earlier_output_is_replaced_whole(tiny_checkpoint, tmp_path):
    out = export_hf(tiny_checkpoint, tmp_path / "hf", max_shard_bytes=20_000)
    assert (out / "model.safetensors.index.json").is_file()
    assert run_geex("convert", "to-hf", tiny_checkpoint, out, "--overwrite").returncode == 0
    assert not list(out.glob("model-*-of-*.safetensors"))
    assert not (out / "model.safetensors.index.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_a_trained_model_is_not_replaced_without_overwrite(tiny_checkpoint, hf_folder, tmp_path):
    model = tmp_path / "run" / "model"
    shutil.copytree(tiny_checkpoint, model)
    pt = export_codegeex(tiny_checkpoint, tmp_path / "model.pt")
    before, pt_before = snapshot(model), pt.read_bytes()
    for verb, source, out in [
        ("from-hf", hf_folder, model),
        ("codegeex", pt, model),
        ("to-hf", tiny_checkpoint, hf_folder),
        ("to-codegeex", tiny_checkpoint, pt),
    ]:
        error = one_line_error(run_geex("convert", verb, source, out))
        assert f"{out} already" in error and "--overwrite" in error, verb
    assert snapshot(model) == before
    assert pt.read_bytes() == pt_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "run"]


def test_overwrite_still_refuses_a_folder_of_other_files(hf_folder, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    error = one_line_error(run_geex("convert", "from-hf", hf_folder, tmp_path, "--overwrite"))
    assert "already holds files that are not a Geex checkpoint" in error
    assert snapshot(tmp_path) == {"notes.txt": b"mine"}


def test_overwrite_replaces_only_a_checkpoint_file(tiny_checkpoint, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    error = one_line_error(
        run_geex("convert", "to-codegeex", tiny_checkpoint, notes, "--overwrite")
    )
    assert "is not a PyTorch checkpoint" in error
    assert notes.read_text() == "mine"
    pt = export_codegeex(tiny_checkpoint, tmp_path / "model.pt")
    assert export_codegeex(tiny_checkpoint, pt, overwrite=True) == pt


def test_a_folder_holding_other_files_is_refused_not_emptied(tiny_checkpoint, hf_folder, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    error = one_line_error(run_geex("convert", "to-hf", tiny_checkpoint, tmp_path))
    assert "already holds files that are not a Hugging Face export" in error
    with pytest.raises(GeexError, match="not a Geex checkpoint"):
        import_hf(hf_folder, tmp_path)
    assert snapshot(tmp_path) == {"notes.txt": b"mine"}


def test_a_full_disk_is_a_one_line_error_and_leaves_nothing(tiny_checkpoint, tmp_path):
    bwrap = required_program("bwrap", package="bubblewrap")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f'"$@" convert to-hf {tiny_checkpoint} {disk}/hf; echo "rc=$?"; ls -A {disk}'
    for size in ("65536", "180000"):  # refused up front; out of space midway
        result = run_geex_in(bwrap, "--size", size, "--tmpfs", str(disk), script)
        lines = result.stdout.splitlines()
        assert lines == ["rc=2"], result.stdout  # nothing left on the disk, not even a temp
        assert "Traceback" not in result.stderr
        assert "space" in result.stderr and f"{disk}/hf" in result.stderr


def run_geex_in(bwrap: str, *options: str) -> subprocess.CompletedProcess:
    """A shell ``script`` inside bubblewrap with ``mount`` options, ``"$@"`` being ``geex``."""
    *mount, script = options
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [bwrap, "--dev-bind", "/", "/", *mount, "sh", "-c", script, "sh",
               sys.executable, "-m", "geex"]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
