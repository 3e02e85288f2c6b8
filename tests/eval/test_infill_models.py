"""`geex eval infill` with a model: a tiny Geex checkpoint fills holes in its FIM format and is
scored per language and kind with exact match; a rerun resumes; an endpoint gets the suffix
and answers as the checkpoint does; a model without FIM tokens is refused naming --fim-style.
Run: .venv/bin/python -m pytest tests/eval/test_infill_models.py -q"""

from __future__ import annotations

import json

import pytest

from geex.cli import main
from geex.errors import GeexError
from geex.eval.fim_prompts import resolve_infill_style
from geex.model import ModelConfig, build_model
from geex.model.checkpoint import save_checkpoint
from geex.tokenizer import load_tokenizer
from tests.conftest import required_module
from tests.eval.conftest import LANGUAGES

GROUPS = ["Python single-line", "Python multi-line", "Go single-line", "Go multi-line"]


def infill_with(capsys, out, *source) -> tuple[int, str, list[dict], dict]:
    """`geex eval infill` on the embedded set's first problem in Python and Go."""
    code = main(["eval", "infill", "--embedded", *source, "--languages", *LANGUAGES,
                 "--limit", "1", "--multi-per-problem", "2", "--max-new-tokens", "12",
                 "--device", "cpu", "--workers", "2", "--out", str(out),
                 "--no-progress"])  # fmt: skip
    printed, err = capsys.readouterr()
    if code != 0:
        return code, err, [], {}
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return code, printed, [json.loads(line) for line in lines], summary


def test_a_geex_checkpoint_is_scored_per_language_and_kind_and_resumes(
    checkpoint, capsys, tmp_path
):
    code, printed, results, summary = infill_with(capsys, tmp_path, "--model", str(checkpoint))
    assert code == 0, printed
    assert list(summary["groups"]) == GROUPS
    assert "FIM style geex" in summary["title"]
    for group in summary["groups"].values():
        assert set(group["pass@k"]) == {"pass@1"}
        assert 0.0 <= group["exact_match"] <= 1.0
    for result in results:
        assert isinstance(result["exact_match"], bool)
        assert result["verdict"] != "unavailable"
        middle = result["generation"]
        if result["group"].endswith("single-line"):
            assert "\n" not in middle.removesuffix("\n")  # one line, made whole
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| Python single-line |" in report and "exact match %" in report

    code, _, again, summary = infill_with(capsys, tmp_path, "--model", str(checkpoint))
    assert code == 0
    assert summary["resumed"] == len(results)
    assert again == results


def test_an_endpoint_gets_the_suffix_and_answers_as_the_checkpoint(checkpoint, capsys, tmp_path):
    from tests.serve.tiny_server import serving

    _, _, local, _ = infill_with(capsys, tmp_path / "local", "--model", str(checkpoint))
    with serving(checkpoint) as (server, _state):
        code, printed, remote, summary = infill_with(
            capsys, tmp_path / "remote", "--openai-url", server.url + "/v1"
        )
    assert code == 0, printed
    assert "the server's" in summary["title"]
    by_id = {r["task_id"]: r["generation"] for r in local}
    assert {r["task_id"]: r["generation"] for r in remote} == by_id


def test_a_style_whose_tokens_the_model_lacks_is_refused(checkpoint, capsys, tmp_path):
    code, err, _, _ = infill_with(
        capsys, tmp_path, "--model", str(checkpoint), "--fim-style", "deepseek"
    )
    assert code != 0
    assert "FIM style 'deepseek' needs the tokens" in err


def test_a_model_without_fim_tokens_is_refused_naming_the_flag(
    codegeex_tokenizer_dir, capsys, tmp_path
):
    """CodeGeeX-13B's tokenizer has no FIM tokens: its model cannot read a suffix."""
    tokenizer = load_tokenizer(codegeex_tokenizer_dir)
    config = ModelConfig(n_layer=1, n_head=2, d_model=16, max_seq_len=256,
                         vocab_size=tokenizer.vocab_size)  # fmt: skip
    folder = tmp_path / "no-fim"
    save_checkpoint(build_model(config, seed=0).eval(), folder, tokenizer=tokenizer)
    code, err, _, _ = infill_with(capsys, tmp_path / "out", "--model", str(folder))
    assert code != 0
    assert "has no fill-in-the-middle tokens" in err and "--fim-style" in err
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_detection_finds_no_style_in_a_plain_vocabulary():
    with pytest.raises(GeexError, match="name its format with --fim-style"):
        resolve_infill_style("auto", {"a": 0, "<|endoftext|>": 1}, None, "plain")


def test_a_hugging_face_export_fills_as_the_checkpoint(checkpoint, capsys, tmp_path):
    required_module("transformers")
    from geex.model.hf_export import export_hf

    export_hf(checkpoint, tmp_path / "hf")
    _, _, local, _ = infill_with(capsys, tmp_path / "local", "--model", str(checkpoint))
    code, printed, hf, summary = infill_with(
        capsys, tmp_path / "hf-run", "--hf-model", str(tmp_path / "hf"), "--trust-remote-code"
    )
    assert code == 0, printed
    assert "FIM style geex" in summary["title"]
    assert {r["task_id"]: r["generation"] for r in hf} == {
        r["task_id"]: r["generation"] for r in local
    }


def test_a_samples_file_of_middles_is_judged_and_matched(capsys, tmp_path):
    from geex.eval.infill import infill_tasks
    from geex.eval.problems import load_embedded

    tasks = infill_tasks(load_embedded(["python"])[:1], ["single-line"])
    right, wrong = tasks[0], tasks[1]
    samples = tmp_path / "middles.jsonl"
    samples.write_text(
        json.dumps({"task_id": right.task_id, "generation": right.middle.rstrip() + "  "}) + "\n"
        + json.dumps({"task_id": wrong.task_id, "generation": "raise ValueError()\nmore"}) + "\n"
    )  # fmt: skip
    code = main(["eval", "infill", "--embedded", "--samples", str(samples), "--languages",
                 "python", "--limit", "1", "--kinds", "single-line", "--out", str(tmp_path),
                 "--no-progress"])  # fmt: skip
    capsys.readouterr()
    assert code == 0
    results = {
        r["task_id"]: r
        for r in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())
    }
    assert results[right.task_id]["verdict"] == "passed"
    assert results[right.task_id]["exact_match"] is True
    assert results[wrong.task_id]["generation"] == "raise ValueError()\n"  # cut to one line
    assert results[wrong.task_id]["exact_match"] is False
    assert results[wrong.task_id]["verdict"] != "passed"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["overall"]["exact_match"] == 0.5


def test_fim_style_without_a_model_is_refused(capsys):
    code = main(["eval", "infill", "--embedded", "--canonical", "--fim-style", "starcoder"])
    assert code != 0
    assert "--fim-style goes with a model" in capsys.readouterr().err
