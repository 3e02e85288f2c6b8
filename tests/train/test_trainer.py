"""The training loop in one process: precisions, budgets, fine-tuning, clear refusals.

`pytest tests/train/test_trainer.py`
"""

from __future__ import annotations

import math

import pytest
import torch

import geex
from geex.errors import ConfigError, GeexError
from geex.model.generation_defaults import save_repetition_penalty, saved_repetition_penalty
from geex.presets import generation_preset
from geex.train.config import TrainConfig
from geex.train.monitor import read_metrics
from geex.train.trainer import train
from tests.train.corpus import write_byte_shards
from tests.train.runs import SMALL_MODEL


def config(data, out, **fields):
    base = dict(
        data=str(data),
        out=str(out),
        preset="tiny",
        model=SMALL_MODEL,
        seq_len=64,
        global_batch_tokens=512,
        micro_batch_size=4,
        max_steps=4,
        eval_every=2,
        checkpoint_every=0,
        optim={"warmup_steps": 1, "lr": 1e-3},
        precision="fp32",  # the same numbers on every host; mixed precision is asked for by name
    )
    return TrainConfig(**{**base, **fields})


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_with_fp32_master_weights(byte_dataset, tmp_path, precision):
    result = train(config(byte_dataset, tmp_path, precision=precision), show_progress=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert all(math.isfinite(r["loss"]) for r in records) and result.steps == 4
    assert records[-1]["loss"] < records[0]["loss"]
    if precision == "fp16":
        assert records[0]["loss_scale"] == 2.0**16 and "skipped" in records[0]
    model = geex.load_model(tmp_path / "model")
    assert model.word_embeddings.weight.dtype == torch.float32


def test_metrics_have_one_line_per_step_with_throughput_and_validation(byte_dataset, tmp_path):
    train(config(byte_dataset, tmp_path), show_progress=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    first = records[0]
    assert {"loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu"} <= first.keys()
    assert first["mfu"] is None  # no peak FLOPs are known for a CPU
    assert set(records[1]["val_loss"]) == {"c", "python", "all"}
    assert records[-1]["tokens"] == 4 * 512


def test_the_model_is_saved_with_its_presets_decoding_default(byte_dataset, tmp_path):
    """tiny's repetition penalty goes into a tiny-shaped model's generation_config.json, for
    every decoder to use where none is asked for (geex.model.generation_defaults); another
    shape gets none, and a fine-tuned model keeps its base's."""
    quick = dict(max_steps=1, eval_every=0)
    train(config(byte_dataset, tmp_path / "tiny", model={}, **quick), show_progress=False)
    tiny_penalty = generation_preset("tiny")["repetition_penalty"]
    assert saved_repetition_penalty(tmp_path / "tiny" / "model") == tiny_penalty
    train(config(byte_dataset, tmp_path / "other", **quick), show_progress=False)  # SMALL_MODEL
    assert saved_repetition_penalty(tmp_path / "other" / "model") is None
    base = tmp_path / "tiny" / "model"
    save_repetition_penalty(base, 1.05)  # as a user may set it by hand
    tuned = config(byte_dataset, tmp_path / "tuned", model={}, init_from=str(base), **quick)
    train(tuned, show_progress=False)
    assert saved_repetition_penalty(tmp_path / "tuned" / "model") == 1.05


def test_a_dataset_without_a_validation_split_trains_and_says_it_cannot_validate(tmp_path, capsys):
    data = write_byte_shards(tmp_path / "data", n=40, validation_every=0)
    train(config(data, tmp_path / "run"), show_progress=False)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert len(records) == 4 and not any("val_loss" in r for r in records)
    assert "has no validation split" in capsys.readouterr().err


def test_token_budget_sets_the_number_of_steps(byte_dataset, tmp_path):
    result = train(
        config(byte_dataset, tmp_path, max_steps=None, max_tokens=1500), show_progress=False
    )
    assert result.steps == 3  # ceil(1500 / 512)


def test_time_budget_decays_the_rate_with_the_time_spent_and_stops(byte_dataset, tmp_path):
    result = train(
        config(byte_dataset, tmp_path, max_steps=None, max_time=12.0, eval_every=0),
        show_progress=False,
    )
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert result.steps == len(records) >= 3
    # The cosine follows the share of the 12 s spent: down to (near) the floor at the end.
    if len(records) > 6:
        assert records[-1]["lr"] < 0.3e-3 < records[2]["lr"]
    assert result.steps == len(records)


def test_fine_tuning_starts_from_the_given_weights(byte_dataset, tmp_path):
    train(config(byte_dataset, tmp_path / "base"), show_progress=False)
    tuned = config(byte_dataset, tmp_path / "tuned", init_from=str(tmp_path / "base" / "model"))
    train(tuned, show_progress=False)
    base_losses = [r["loss"] for r in read_metrics(tmp_path / "base" / "metrics.jsonl")]
    tuned_losses = [r["loss"] for r in read_metrics(tmp_path / "tuned" / "metrics.jsonl")]
    assert tuned_losses[0] < base_losses[0] - 0.5  # it did not start from scratch


def test_bad_batch_geometry_and_changed_resume_settings_are_refused(byte_dataset, tmp_path):
    with pytest.raises(ConfigError, match="not a multiple of micro_batch_size"):
        train(config(byte_dataset, tmp_path, micro_batch_size=3), show_progress=False)
    train(config(byte_dataset, tmp_path, checkpoint_every=2), show_progress=False)
    with pytest.raises(ConfigError, match="seq_len=64, this run asks for 32"):
        train(config(byte_dataset, tmp_path, seq_len=32, max_steps=6), show_progress=False)
    with pytest.raises(ConfigError, match="give a budget"):
        train(config(byte_dataset, tmp_path / "x", max_steps=None), show_progress=False)
    with pytest.raises(GeexError, match="not a Geex dataset"):
        train(config(tmp_path / "missing", tmp_path / "y"), show_progress=False)


def test_fp16_overflow_skips_the_step_and_lowers_the_scale(byte_dataset, tmp_path):
    from geex.train.distributed import init_world
    from geex.train.trainer import Trainer

    trainer = Trainer(
        config(byte_dataset, tmp_path, precision="fp16", max_steps=6, eval_every=0),
        init_world("cpu"),
    )
    trainer.scaler.scale = 2.0**40  # the fp16 backward overflows at once
    trainer.scaler.hysteresis = trainer.scaler._overflows_left = 1
    before = {n: p.detach().clone() for n, p in trainer.raw_model.named_parameters()}
    trainer.run()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert records[0]["skipped"] and records[0]["loss_scale"] == 2.0**40
    assert records[1]["loss_scale"] == 2.0**39  # halved after the overflow
    assert [r["skipped"] for r in records].count(True) == len(records)
    after = dict(trainer.raw_model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)  # no step was taken


def test_only_the_last_checkpoints_are_kept(byte_dataset, tmp_path):
    train(
        config(byte_dataset, tmp_path, max_steps=6, checkpoint_every=1, keep_checkpoints=2),
        show_progress=False,
    )
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-00000005", "step-00000006"]


def test_attention_reset_at_document_boundaries_trains(byte_dataset, tmp_path):
    train(config(byte_dataset, tmp_path / "reset", reset_at_documents=True), show_progress=False)
    train(config(byte_dataset, tmp_path / "packed"), show_progress=False)
    reset = [r["loss"] for r in read_metrics(tmp_path / "reset" / "metrics.jsonl")]
    packed = [r["loss"] for r in read_metrics(tmp_path / "packed" / "metrics.jsonl")]
    assert all(math.isfinite(x) for x in reset) and reset[-1] < reset[0]
    assert reset[0] != packed[0]  # the masks changed what the model saw


@pytest.mark.slow
def test_compiled_blocks_train_like_eager_ones(byte_dataset, tmp_path):
    train(config(byte_dataset, tmp_path / "eager"), show_progress=False)
    train(
        config(byte_dataset, tmp_path / "compiled", parallel={"compile": True}), show_progress=False
    )
    eager = [r["loss"] for r in read_metrics(tmp_path / "eager" / "metrics.jsonl")]
    compiled = [r["loss"] for r in read_metrics(tmp_path / "compiled" / "metrics.jsonl")]
    assert compiled == pytest.approx(eager, rel=1e-4)


def test_under_a_time_budget_the_decay_starts_where_warm_up_ends():
    """Warm-up took half the time: the first step after it is at the peak rate, and the
    cosine is half-way when half of the remaining time is spent."""
    from types import SimpleNamespace

    from geex.train.optim import OptimConfig, learning_rate
    from geex.train.trainer import Trainer

    optim = OptimConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10)
    run = SimpleNamespace(time_budget=True, step=10, config=SimpleNamespace(optim=optim),
                          warmup_seconds=None, trained_seconds=50.0, max_time=100.0)  # fmt: skip
    assert Trainer._decay_fraction(run) == 0.0
    assert learning_rate(10, optim, None, Trainer._decay_fraction(run)) == pytest.approx(1e-3)
    run.step, run.trained_seconds = 30, 75.0
    assert Trainer._decay_fraction(run) == pytest.approx(0.5)
    assert learning_rate(30, optim, None, 0.5) == pytest.approx(5.5e-4)
    run.step = 5  # still warming up: no decay yet
    assert Trainer._decay_fraction(run) is None
