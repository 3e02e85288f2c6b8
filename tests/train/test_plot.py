"""`geex plot` draws valid PNGs and a self-contained report from metrics.jsonl, and refuses broken logs clearly. `pytest tests/train/test_plot.py`"""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from geex.cli import main
from geex.errors import GeexError
from geex.train.config import TrainConfig
from geex.train.plot import (
    MetricsWarning,
    loss_figure,
    plot_run,
    read_run_metrics,
    run_summary,
    smoothed,
)
from geex.train.trainer import train
from tests.train.runs import SMALL_MODEL

PNGS = ("loss.png", "throughput.png", "optimizer.png")


def metric_records(steps=60, validation=True, mfu=True, fp16=False, bits_per_byte=False):
    records = []
    for step in range(steps):
        loss = 2.0 + 6.0 * math.exp(-step / 15) + 0.05 * math.sin(step)
        record = {
            "step": step,
            "loss": loss,
            "lr": 3e-4 * min(1.0, (step + 1) / 10),
            "grad_norm": 2.0 * math.exp(-step / 30) + 0.2,
            "tokens": (step + 1) * 4096,
            "tokens_per_s": 9000.0 + 50 * math.cos(step),
            "mfu": 0.4 if mfu else None,
            "step_time": 0.45,
        }
        if validation and step % 10 == 9:
            record["val_loss"] = {"c": loss + 0.1, "python": loss - 0.1, "all": loss}
            if bits_per_byte:
                record["val_bpb"] = {"c": loss / 2 + 0.1, "python": loss / 2, "all": loss / 2}
        if fp16:
            record.update(loss_scale=2.0**16 if step < 30 else 2.0**15, skipped=step == 30)
        records.append(record)
    return records


def write_run(folder, records, tail=""):
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (folder / "metrics.jsonl").write_text(text)
    return folder


def assert_png(path):
    assert path.stat().st_size > 10_000, f"{path.name} is suspiciously small"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 600 and image.height >= 300


@pytest.mark.parametrize(
    "kind", [dict(validation=True, mfu=True, fp16=True), dict(validation=False, mfu=False)]
)
def test_plot_run_writes_pngs_and_a_self_contained_report(tmp_path, kind):
    run = write_run(tmp_path / "run", metric_records(**kind))
    (run / "config.yaml").write_text("preset: tiny\nprecision: bf16\noptim: {grad_clip: 1.0}\n")
    paths = plot_run(run)
    assert [p.name for p in paths] == [*PNGS, "report.html"]
    assert all(p.parent == run / "plots" for p in paths)
    for name in PNGS:
        assert_png(run / "plots" / name)
    report = (run / "plots" / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3
    assert 'src="http' not in report and "<script" not in report and "<link" not in report
    assert "run: preset tiny, bf16" in report
    assert "median tokens/s" in report
    if kind["validation"]:
        assert "best validation loss, python" in report
    if not kind["mfu"]:
        assert "unknown device" in report


def test_validation_gets_its_own_panel_and_mfu_only_when_known():
    with_validation = loss_figure(metric_records(validation=True))
    without = loss_figure(metric_records(validation=False))
    assert len(with_validation.axes) > len(without.axes)
    panel = with_validation.axes[-1]
    assert {line.get_label() for line in panel.get_lines()} == {"all", "c", "python"}


def test_bits_per_byte_gets_a_panel_and_its_final_value_a_summary_line():
    records = metric_records(bits_per_byte=True)
    figure = loss_figure(records)
    assert len(figure.axes) == len(loss_figure(metric_records()).axes) + 1
    panel = figure.axes[-1]
    assert panel.get_title() == "validation bits per byte per language"
    assert {line.get_label() for line in panel.get_lines()} == {"all", "c", "python"}
    final = records[59]["val_bpb"]["all"]
    assert run_summary(records)["final validation bits per byte"] == f"{final:.4f} at step 59"
    assert "final validation bits per byte" not in run_summary(metric_records())


def test_summary_reports_best_validation_and_medians():
    summary = run_summary(metric_records(fp16=True))
    assert summary["steps"] == "60" and summary["tokens"] == f"{60 * 4096:,}"
    assert summary["best validation loss, python"].endswith("at step 59")
    assert summary["median MFU"] == "40.0%"
    assert summary["steps skipped (fp16 overflow)"] == "1"


def test_smoothing_is_centred_and_keeps_a_flat_series_flat():
    assert smoothed([3.0] * 50) == [3.0] * 50
    ramp = [float(i) for i in range(100)]
    assert smoothed(ramp, window=5)[50] == 50.0  # centred: no lag on a straight line


def test_cli_writes_to_out_and_warns_about_a_half_written_last_line(tmp_path, capsys):
    run = write_run(tmp_path / "run", metric_records(steps=20), tail='{"step": 20, "lo')
    assert main(["plot", str(run), "--out", str(tmp_path / "pictures")]) == 0
    captured = capsys.readouterr()
    assert "skipped a half-written last line" in captured.err
    assert (tmp_path / "pictures" / "report.html").is_file()
    assert not (run / "plots").exists()
    with pytest.warns(MetricsWarning):
        assert len(read_run_metrics(run)) == 20


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "run folder .* does not exist"),
        (lambda d: d.mkdir(), "metrics.jsonl does not exist"),
        (lambda d: write_run(d, []), "holds no steps yet"),
        (lambda d: write_run(d, [], tail="\n\n"), "holds no steps yet"),
        (
            lambda d: write_run(d, metric_records(steps=2), tail="garbage\n" + '{"step": 3}\n'),
            r"metrics.jsonl:3 is not a JSON record",
        ),
        (lambda d: write_run(d, [{"step": 0}]), "needs 'step' and 'loss'"),
        (lambda d: write_run(d, [{"step": 1, "loss": "x"}]), "'loss' must be a number, got 'x'"),
        (lambda d: write_run(d, [{"step": "a", "loss": 1.0}]), "'step' must be a number"),
        (lambda d: write_run(d, [{"step": 1, "loss": 1.0, "lr": [1]}]), "'lr' must be a number"),
    ],
)
def test_broken_runs_are_refused_with_the_reason(tmp_path, setup, message):
    run = tmp_path / "run"
    setup(run)
    with pytest.raises(GeexError, match=message):
        plot_run(run)


def test_plots_a_real_training_run(byte_dataset, tmp_path):
    config = TrainConfig(
        data=str(byte_dataset),
        out=str(tmp_path / "run"),
        model=SMALL_MODEL,
        seq_len=64,
        global_batch_tokens=512,
        micro_batch_size=4,
        max_steps=2,
        eval_every=2,
        eval_tokens=1024,
        checkpoint_every=0,
        optim={"warmup_steps": 1, "lr": 1e-3},
    )
    train(config, show_progress=False)
    paths = plot_run(tmp_path / "run")
    for path in paths[:-1]:
        assert_png(path)
    assert "best validation loss, all" in paths[-1].read_text()
