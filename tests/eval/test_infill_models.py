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
