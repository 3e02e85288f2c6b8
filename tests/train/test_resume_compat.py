"""A run folder resumes only as the same run: the same model shape on the same tokenizer.

`pytest tests/train/test_resume_compat.py`
"""

from __future__ import annotations

import json

import pytest

from geex.errors import ConfigError, GeexError
from geex.train.run_folder import RECORD
from geex.train.trainer import train
from tests.train.corpus import write_tokenized_shards
from tests.train.runs import SMALL_MODEL
from tests.train.test_trainer import config


@pytest.fixture
def finished(byte_dataset, tmp_path):
    """A run of 4 steps with its checkpoint, its config.yaml and model/config.json as written."""
    run = tmp_path / "run"
    train(config(byte_dataset, run, eval_every=0), show_progress=False)
    written = {name: (run / name).read_bytes() for name in ("config.yaml", "model/config.json")}
    return run, written


def test_resuming_with_fewer_layers_is_refused_and_nothing_is_rewritten(byte_dataset, finished):
    run, written = finished
    fewer = config(byte_dataset, run, max_steps=6, model={**SMALL_MODEL, "n_layer": 1})
    with pytest.raises(ConfigError, match=r"trained with model.n_layer=2 \(this run: 1\)"):
        train(fewer, show_progress=False)
    assert {name: (run / name).read_bytes() for name in written} == written


def test_a_checkpoint_of_another_shape_is_refused_without_the_record(byte_dataset, finished):
    """Run folders written before the record: the checkpoint's own tensors are compared."""
    run, _ = finished
    (run / RECORD).unlink()
    wider = config(byte_dataset, run, max_steps=6, model={**SMALL_MODEL, "d_model": 128})
    with pytest.raises(ConfigError, match=r"word_embeddings.weight: \(384, 64\) != \(384, 128\)"):
        train(wider, show_progress=False)
    fewer = config(byte_dataset, run, max_steps=6, model={**SMALL_MODEL, "n_layer": 1})
    with pytest.raises(
        ConfigError, match=r"another model shape than this run's \(unexpected layers.1"
    ):
        train(fewer, show_progress=False)


def test_fine_tuning_weights_that_do_not_fit_their_config_are_refused(byte_dataset, finished):
    run, _ = finished
    config_file = run / "model" / "config.json"
    header = json.loads(config_file.read_text())
    header["model"]["d_ffn"] *= 2
    config_file.write_text(json.dumps(header))
    tuned = config(byte_dataset, run.parent / "tuned", init_from=str(run / "model"))
    with pytest.raises(GeexError, match=r"weights in .* do not fit .*wrong shapes layers.0.mlp"):
        train(tuned, show_progress=False)


def test_resuming_on_data_of_another_tokenizer_is_refused_naming_both(tmp_path):
    python_ids = write_tokenized_shards(tmp_path / "python-tokenizer", "python")
    c_ids = write_tokenized_shards(tmp_path / "c-tokenizer", "c")
    run = tmp_path / "run"
    train(config(python_ids, run, eval_every=0), show_progress=False)
    with pytest.raises(ConfigError, match="another tokenizer") as refused:
        train(config(c_ids, run, max_steps=6, eval_every=0), show_progress=False)
    assert str(python_ids) in str(refused.value) and str(c_ids) in str(refused.value)
    assert json.loads((run / RECORD).read_text())["tokenizer"]["data"] == str(python_ids)


def test_the_same_run_resumes_and_may_change_its_budget(byte_dataset, finished):
    run, _ = finished
    result = train(config(byte_dataset, run, max_steps=6, eval_every=0), show_progress=False)
    assert result.steps == 6
