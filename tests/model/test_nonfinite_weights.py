"""A model with NaN or inf weights is refused by the one loader (naming the tensors) and by every converter, which then writes nothing; weights that overflow fp16 are refused in fp16. `pytest tests/model/test_nonfinite_weights.py`."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from geex.errors import GeexError
from geex.model.checkpoint import load_model
from geex.model.convert_codegeex import convert_codegeex, export_codegeex
from geex.model.hf_export import export_hf, import_hf
from geex.model.loader import load_for_inference
from tests.conftest import one_line_error, run_geex

QUERY = "layers.0.attention.query.weight"
NORM = "final_layernorm.weight"


def with_weights(source, folder, change):
    """A copy of the checkpoint ``source`` with ``change(tensors)`` applied to its weights."""
    shutil.copytree(source, folder)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    change(tensors)
    save_file(tensors, weights, {"format": "pt"})
    return folder


def poison(tensors):
    tensors[QUERY][0, :3] = float("nan")
    tensors[NORM][1] = float("inf")


@pytest.fixture(scope="module")
def poisoned(tiny_checkpoint, tmp_path_factory):
    return with_weights(tiny_checkpoint, tmp_path_factory.mktemp("nan") / "model", poison)


def test_the_loader_names_the_non_finite_tensors(poisoned):
    message = rf"weights in {poisoned} are not finite: {NORM} \(1 inf\), {QUERY} \(3 NaN\)"
    with pytest.raises(GeexError, match=message):
        load_model(poisoned)
    with pytest.raises(GeexError, match=message):
        load_for_inference(poisoned, device="cpu")


def test_generate_refuses_them_in_one_line(poisoned):
    result = run_geex("generate", "--model", poisoned, "--prompt", "x", "--device", "cpu")
    assert f"{QUERY} (3 NaN)" in one_line_error(result)


def test_every_converter_refuses_them_and_writes_nothing(poisoned, tmp_path):
    error = one_line_error(run_geex("convert", "to-hf", poisoned, tmp_path / "hf"))
    assert f"weights in {poisoned} are not finite" in error
    with pytest.raises(GeexError, match="not finite"):
        export_codegeex(poisoned, tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []


def test_importers_refuse_them_from_other_formats(tiny_checkpoint, tmp_path):
    export_hf(tiny_checkpoint, tmp_path / "hf")
    export_codegeex(tiny_checkpoint, tmp_path / "model.pt")
    hf_weights = tmp_path / "hf" / "model.safetensors"
    tensors = load_file(hf_weights)
    tensors["transformer." + QUERY][0, 0] = float("nan")
    save_file(tensors, hf_weights, {"format": "pt"})
    with pytest.raises(GeexError, match=rf"not finite: transformer\.{QUERY}|not finite: {QUERY}"):
        import_hf(tmp_path / "hf", tmp_path / "from-hf")
    pt = torch.load(tmp_path / "model.pt", weights_only=True)
    pt["module"]["language_model"]["transformer"]["layers.0.attention.query.weight"][0, 0] = float(
        "inf"
    )
    torch.save(pt, tmp_path / "model.pt")
    with pytest.raises(GeexError, match=rf"not finite: {QUERY} \(1 inf\)"):
        convert_codegeex([tmp_path / "model.pt"], tmp_path / "from-pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "model.pt"]


def test_weights_beyond_fp16_are_refused_in_fp16_only(tiny_checkpoint, tmp_path):
    def enlarge(tensors):
        tensors[QUERY][0, 0] = 1e6

    big = with_weights(tiny_checkpoint, tmp_path / "big", enlarge)
    with pytest.raises(GeexError, match=rf"overflow float16 .* in {QUERY}: use a wider dtype"):
        load_model(big, dtype=torch.float16)
    with pytest.raises(GeexError, match="overflow float16"):
        export_hf(big, tmp_path / "hf", dtype=torch.float16)
    assert load_model(big, dtype=torch.bfloat16) is not None
