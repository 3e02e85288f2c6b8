"""The run report shows per language the shares of samples that parse and stay in their
language, the eval stage's line gives them, and each sample of the samples stage is marked;
records of older runs, without them, still render.

`pytest tests/pipeline/test_report_code_checks.py`
"""

from __future__ import annotations

import json

from geex.pipeline.report import write_report
from geex.pipeline.stage_eval import EvalStage
from geex.pipeline.stage_samples import sample_marks
from geex.pipeline.stages import stage_summary

PYTHON = {
    "problems": 10, "samples": 10, "judged": 10, "unavailable": 0, "pass@k": {"pass@1": 0.1},
    "verdicts": {"passed": 1, "failed": 9}, "parses": 0.6, "stays_in_language": 0.9,
}  # fmt: skip
GO = {**PYTHON, "parses": 0.3, "stays_in_language": 0.75}
OLDER = {k: v for k, v in PYTHON.items() if k not in ("parses", "stays_in_language")}
SUMMARY = {
    "title": "Geex embedded set, generation, n=1", "sandbox": "bwrap", "seconds": 1.0,
    "resumed": 0, "notes": [], "groups": {"Python": PYTHON, "Go": GO, "Rust": OLDER},
    "overall": PYTHON, "missing_packages": [],
}  # fmt: skip
CODE = {"embedded": {"Python": {"parses": 0.6, "stays_in_language": 0.9, "blank": 1,
                                "language_undecided": 2}}}  # fmt: skip
RECORD = {"seconds": 1.0, "finished": "now", "pass@k": {"embedded": {"pass@1": 0.1}},
          "missing_toolchains": {}, "missing_packages": {}, "code": CODE}  # fmt: skip
SAMPLES = {
    "sampling": {"temperature": 0.8, "top_p": 0.95, "seed": 0},
    "samples": [
        {"language": "python", "prompt": "def f(n):\n", "completion": "    return n\n",
         "parses": True, "stays_in_language": True},
        {"language": "go", "prompt": "func f() {\n", "completion": "    def g():\n",
         "parses": False, "stays_in_language": False},
        {"language": "rust", "prompt": "fn f() {\n", "completion": "x"},  # an older run's
    ],
}  # fmt: skip


def test_report_shows_the_shares_and_marks_each_sample(tmp_path):
    folder = tmp_path / "eval" / "embedded"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "samples.json").write_text(json.dumps(SAMPLES))
    (tmp_path / "run.json").write_text(json.dumps({"plan": {}, "stages": {"eval": RECORD}}))
    (tmp_path / "run.yaml").write_text("budget: 10m\n")
    html, markdown = write_report(tmp_path, stage_summary)
    text = markdown.read_text()
    assert "| Python | 10 | 10 | 10.0% | 60.0% | 90.0% |" in text
    assert "| Go | 10 | 10 | 10.0% | 30.0% | 75.0% |" in text
    assert "| Rust | 10 | 10 | 10.0% | - | - |" in text
    assert "*python (parses, stays in its language)*" in text
    assert "*go (does not parse, leaves its language)*" in text
    assert "*rust*" in text
    assert "leaves its language" in html.read_text()


def test_eval_stage_line_gives_the_shares_per_language():
    line = EvalStage().summary(RECORD)
    assert line == (
        "embedded pass@1 10.0%; Python parses 60%, stays 90%, 1 blank, 2 of undecided language"
    )
    older = {k: v for k, v in RECORD.items() if k != "code"}
    assert EvalStage().summary(older) == "embedded pass@1 10.0%"


def test_a_blank_sample_is_marked_blank():
    blank = {"parses": False, "stays_in_language": None}
    assert sample_marks(blank) == "does not parse, blank"


def test_a_sample_with_text_but_no_known_token_is_marked_undecided():
    digits = {"completion": "    42\n", "parses": False, "stays_in_language": None}
    assert sample_marks(digits) == "does not parse, language undecided"


def test_how_samples_were_decoded_is_said_in_words():
    from geex.pipeline.stage_samples import decoding_words

    now = {"temperature": 0.0, "top_p": 1.0, "seed": None, "repetition_penalty": 1.2}
    assert decoding_words(now) == "greedy, repetition penalty 1.2"
    assert decoding_words({**now, "repetition_penalty": 1.0}) == "greedy"
    older = SAMPLES["sampling"]  # an older run's record: sampled, no penalty
    assert decoding_words(older) == "sampled at temperature 0.8, top-p 0.95, seed 0"
