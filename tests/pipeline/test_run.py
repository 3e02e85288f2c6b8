"""`geex run` end to end on a small corpus: every stage, the report, skipping and resuming.

`pytest tests/pipeline/test_run.py`
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from geex.data.config import LATER_OUTPUT_FIELDS
from geex.errors import GeexError
from geex.pipeline import STAGES, RunInterrupted, run_config, run_pipeline, stage_eval
from geex.pipeline.stage_eval import EvalStage
from geex.train.precision import resolve_precision
from tests.pipeline.conftest import SMALL_RUN, small_config
from tests.pipeline.corpus import write_corpus


def test_every_stage_runs_and_is_recorded(finished_run):
    _, result = finished_run
    assert list(result.state.stages) == list(STAGES)
    out = result.out
    assert (out / "data" / "dataset.json").is_file()
    assert (out / "train" / "model" / "model.safetensors").is_file()
    assert (out / "hf" / "config.json").is_file()
    summary = json.loads((out / "eval" / "embedded" / "summary.json").read_text())
    assert summary["groups"]["Python"]["samples"] == 10
    assert result.state.stages["train"]["tokens"] == 8192


def test_the_report_holds_every_section_with_real_content(finished_run):
    _, result = finished_run
    markdown = (result.out / "report.md").read_text()
    for heading in ("Overview", "Data", "Tokenizer", "Model", "Training", "Evaluation", "Samples"):
        assert f"## {heading}" in markdown
    assert "| python | 40 |" in markdown  # files per language from the dataset card
    assert "bytes per token" in markdown
    # The final validation per language, and the eval set's reference programs, in bits per byte.
    validation = result.state.stages["train"]["val_bpb"]
    assert set(validation) == {"python", "all"}
    assert f"| python | {result.state.stages['train']['val_loss']['python']:.4f} | " in markdown
    assert f"| {validation['python']:.4f} |" in markdown
    reference = json.loads((result.out / "eval" / "embedded" / "summary.json").read_text())
    assert f"| Python | 10 | {reference['bits_per_byte']['Python']['bits_per_byte']:.4f} |" in (
        markdown
    )
    assert "22.9%" in markdown  # the CodeGeeX-13B reference beside the scores
    assert "def fibonacci(n):" in markdown  # a sample completion
    # Greedy with the tiny preset's own repetition penalty, which the model was saved with.
    assert "greedy, repetition penalty 1.2" in markdown
    assert "generation, n=1, temperature 0, repetition penalty 1.2" in markdown  # the eval's
    exported = json.loads((result.out / "hf" / "generation_config.json").read_text())
    assert exported["repetition_penalty"] == 1.2
    assert "Python/0: " in markdown  # a judged completion with its verdict
    assert "| pass@1 | parses | stays |" in markdown  # what users see, per language
    assert "*python (" in markdown  # the sample marked: parses or not, stays or not
    html = (result.out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4  # data, loss, throughput, eval
    assert "<script" not in html and "http://" not in html and "https://" not in html
    for figure in ("data", "loss", "throughput", "eval-embedded"):
        assert (result.out / "report" / f"{figure}.png").stat().st_size > 1000


def test_a_second_run_skips_every_finished_stage(finished_run, capsys):
    config, result = finished_run
    report = (result.out / "report.html").stat().st_mtime_ns
    shards = (result.out / "data" / "dataset.json").stat().st_mtime_ns
    run_pipeline(config)
    assert (result.out / "report.html").stat().st_mtime_ns == report
    assert (result.out / "data" / "dataset.json").stat().st_mtime_ns == shards
    assert capsys.readouterr().err.count("done before, skipped") == len(STAGES)


def test_an_interrupted_run_finishes_without_redoing_finished_stages(tmp_path, monkeypatch):
    config = small_config(tmp_path)
    real_eval = EvalStage.run

    def interrupted(self, context):
        raise RunInterrupted("stopped by a test")

    monkeypatch.setattr(EvalStage, "run", interrupted)
    with pytest.raises(RunInterrupted):
        run_pipeline(config)
    state = json.loads((tmp_path / "run" / "run.json").read_text())
    assert list(state["stages"]) == ["data", "train", "export"]
    model = tmp_path / "run" / "train" / "model" / "model.safetensors"
    trained = model.stat().st_mtime_ns

    monkeypatch.setattr(EvalStage, "run", real_eval)
    result = run_pipeline(config)
    assert list(result.state.stages) == list(STAGES)
    assert model.stat().st_mtime_ns == trained  # not trained again


def test_a_missing_toolchain_leaves_its_language_out_and_says_what_to_install(
    tmp_path, monkeypatch, capsys
):
    config = small_config(tmp_path, eval={**SMALL_RUN["eval"], "languages": ["python", "go"]})
    monkeypatch.setattr(
        stage_eval,
        "missing_toolchains",
        lambda languages: {"go": "go not found: install the Debian package golang-go"},
    )
    result = run_pipeline(config, only=["data", "train", "eval", "report"])
    assert "go is left out of the evaluation" in capsys.readouterr().err
    summary = json.loads((result.out / "eval" / "embedded" / "summary.json").read_text())
    assert list(summary["groups"]) == ["Python"]
    assert (
        "go: not evaluated: go not found: install the Debian package golang-go"
        in (result.out / "report.md").read_text()
    )


def test_no_disk_space_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    config = small_config(tmp_path)

    class Usage:
        free = 10 * 2**20

    monkeypatch.setattr("geex.pipeline.checks.shutil.disk_usage", lambda path: Usage)
    with pytest.raises(GeexError, match=r"not enough disk space under .*10\.0 MB free"):
        run_pipeline(config)
    assert not (tmp_path / "run").exists()


def test_an_unreadable_source_is_named(tmp_path):
    link = tmp_path / "gone"
    link.symlink_to(tmp_path / "nowhere")
    config = run_config({**SMALL_RUN, "out": str(tmp_path / "run"),
                         "data": {"sources": [str(link)]}})  # fmt: skip
    with pytest.raises(GeexError, match="broken symbolic link"):
        run_pipeline(config)


def test_an_unreadable_source_folder_says_permission_denied(tmp_path, monkeypatch):
    code = write_corpus(tmp_path / "code", files=1)
    monkeypatch.setattr("geex.pipeline.checks.os.access", lambda path, mode: False)
    config = run_config({**SMALL_RUN, "out": str(tmp_path / "run"),
                         "data": {"sources": [str(code)]}})  # fmt: skip
    with pytest.raises(GeexError, match=r"cannot be read \(permission denied\)"):
        run_pipeline(config)


def test_the_model_section_shows_the_trained_tokens_and_flops(finished_run):
    _, result = finished_run
    markdown = (result.out / "report.md").read_text()
    assert "| trained tokens | 8,192 |" in markdown
    assert "| training FLOPs |" in markdown
    # The run's default preset, and "auto" precision as the trainer resolved it on this CPU.
    assert "| preset | tiny |" in markdown
    chosen = resolve_precision("auto", torch.device("cpu"))
    assert f"| training precision | {chosen} |" in markdown


def test_under_torchrun_only_the_train_stage_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(GeexError, match="runs the train stage only: add --stage train"):
        run_pipeline(small_config(tmp_path))


@pytest.mark.slow
def test_nproc_trains_under_torchrun(tmp_path):
    config = small_config(tmp_path, nproc=2)
    result = run_pipeline(config, only=["data", "train"])
    assert result.state.stages["train"]["tokens"] == 8192
    assert (result.out / "train" / "model" / "model.safetensors").is_file()
    assert (result.out / "train.yaml").is_file()


def test_humanevalx_is_judged_and_shown_beside_codegeex(tmp_path, humanevalx_dir):
    config = small_config(
        tmp_path,
        eval={**SMALL_RUN["eval"], "embedded": False, "humanevalx": str(humanevalx_dir),
              "limit": 3},
    )  # fmt: skip
    assert config.data_config().decontaminate == [f"humanevalx:{humanevalx_dir}"]
    result = run_pipeline(config, only=["data", "train", "eval", "report"])
    summary = json.loads((result.out / "eval" / "humanevalx" / "summary.json").read_text())
    assert summary["groups"]["Python"]["problems"] == 3
    markdown = (result.out / "report.md").read_text()
    assert "CodeGeeX-13B pass@1" in markdown and "| 22.9% |" in markdown


def test_changed_data_or_train_settings_are_refused_and_changed_eval_runs_again(
    finished_run, tmp_path, capsys
):
    shared_config, shared = finished_run
    out = tmp_path / "copy"  # the shared run stays as it is for the other tests
    shutil.copytree(shared.out, out)
    config = run_config({**shared_config.to_dict(), "out": str(out)})
    result = run_pipeline(config)  # every stage done: nothing runs
    other_preset = run_config({**config.to_dict(), "train": {**config.train, "preset": "small"}})
    with pytest.raises(GeexError, match=r"other train settings \(train.preset\)"):
        run_pipeline(other_preset)
    other_data = run_config({**config.to_dict(), "data": {**config.data, "dedup": "exact"}})
    with pytest.raises(GeexError, match=r"other data settings \(data.dedup\)"):
        run_pipeline(other_data)
    # A run made before --languages and the repository options were recorded goes on.
    state = json.loads((out / "run.json").read_text())
    for key in LATER_OUTPUT_FIELDS:
        del state["settings"]["data"][key]
    (out / "run.json").write_text(json.dumps(state))
    assert list(run_pipeline(config).state.stages) == list(STAGES)
    trained = (result.out / "train" / "model" / "model.safetensors").stat().st_mtime_ns
    more_tokens = run_config(
        {**config.to_dict(), "eval": {**config.to_dict()["eval"], "max_new_tokens": 16}}
    )
    again = run_pipeline(more_tokens)
    assert "evaluating again" in capsys.readouterr().err
    assert list(again.state.stages) == list(STAGES)
    assert (result.out / "train" / "model" / "model.safetensors").stat().st_mtime_ns == trained


# Slow (about 80 s: a real run's data, training and a signal); the trainer's own SIGTERM test
# (tests/train/test_resume.py) covers the checkpoint in the default suite.
@pytest.mark.slow
def test_a_signal_mid_training_stops_cleanly_and_the_same_command_finishes(tmp_path):
    """The README's promise, with a real process: SIGTERM during training, then run again.

    The budget leaves training room for several steps on a loaded 2-core machine, so that the
    signal sent after the second step lands in training, not after it."""
    code = write_corpus(tmp_path / "code")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "geex", "run", str(code), "--out", str(out),
               "--budget", "90s", "--languages", "python"]  # fmt: skip
    metrics = out / "train" / "metrics.jsonl"
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 3, err
    assert "run the same command again to continue" in err
    state = json.loads((out / "run.json").read_text())
    assert list(state["stages"]) == ["data"]
    packed = (out / "data" / "dataset.json").stat().st_mtime_ns

    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "1/6 data: done before, skipped" in finished.stderr
    assert (out / "data" / "dataset.json").stat().st_mtime_ns == packed
    assert (out / "report.html").is_file()
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(len(steps)))  # resumed where it stopped: no step lost or repeated
    state = json.loads((out / "run.json").read_text())
    assert state["stages"]["train"]["seconds"] > state["plan"]["train_seconds"] * 0.9  # both parts
    assert state["plan"]["partial_seconds"] == {}
