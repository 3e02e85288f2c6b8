"""Emacs with the Geex config users copy (editors/emacs/geex.el), end to end against `geex serve`:
eglot runs tabby-agent, completion-at-point inserts the model's text, and M-x geex-translate
shows the server's translation beside. Needs emacs (with eglot), node and `scripts/setup.sh
--dev`. `pytest tests/editors/test_emacs.py`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import missing, required_program
from tests.editors.conftest import REPO, as_shown, geex_program, write_docs_captures
from tests.serve.editor_server import served
from tests.serve.tabby_agent_client import AFTER, BEFORE, agent_command, agent_home

PLUGIN = REPO / "editors" / "emacs" / "geex.el"
SESSION = Path(__file__).parent / "emacs_session.el"
TARGET = "go"
FUNCTION_LINES = (4, 5)  # `def add(a, b):` and its return line, 1-based


FIND_EGLOT_FIRST = '(unless (locate-library "eglot") (package-activate-all))'
FIND_EGLOT = '(progn (unless (locate-library "eglot") (package-activate-all)) (princ (locate-library "eglot")))'


def emacs_with_eglot() -> str:
    """Emacs, with eglot (built in from Emacs 29, Debian's elpa-eglot before), or `missing`."""
    emacs = required_program("emacs", package="emacs-nox")
    found = subprocess.run([emacs, "--batch", "--eval", FIND_EGLOT], capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    if "eglot" not in found.stdout:
        missing(f"needs eglot in {emacs}: install the Debian package elpa-eglot (or Emacs 29)")
    return emacs


def run_session(settings: dict, tmp_path: Path, home: Path, key: str) -> dict:
    """The session script in batch Emacs, `geex task` given ``key``; its JSON report."""
    emacs = emacs_with_eglot()
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(settings))
    bin_dir = str(Path(geex_program()).parent)
    env = {**os.environ, "HOME": str(home), "PATH": os.pathsep.join([bin_dir, "/usr/bin", "/bin"]),
           "GEEX_API_KEY": key, "GEEX_EMACS_SESSION": str(settings_file)}  # fmt: skip
    # --batch skips the user's init file; not -Q, which would skip the site start files through
    # which Debian's elpa-eglot reaches Emacs 28.
    # Killing a task's buffer hangs its process up (SIGHUP), as a user's Emacs does; a suite
    # launched under nohup would hand every child SIGHUP ignored, so Emacs gets the default.
    done = subprocess.run([emacs, "--batch", "-l", str(SESSION)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=180,
                          preexec_fn=hangup_by_default)  # fmt: skip
    out = Path(settings["out"])
    assert out.exists(), f"Emacs wrote no report (exit {done.returncode}):\n{done.stderr}"
    report = json.loads(out.read_text())
    assert "error" not in report, f"{report['error']}\n{done.stderr[-3000:]}"
    return report


def test_emacs_completes_and_translates_with_geex_serve(node, server, api_key, tmp_path):
    completion = served(server, "/v1/completions",
                        {"language": "python", "segments": {"prefix": BEFORE, "suffix": AFTER}},
                        api_key)  # fmt: skip
    expected_completion = completion["choices"][0]["text"].strip()
    assert expected_completion, "the tiny model completed nothing: the test proves nothing"

    source = tmp_path / "add.py"
    source.write_text(BEFORE + AFTER)
    report = run_session(
        {
            "plugin": str(PLUGIN),
            "agent": agent_command(node),
            "url": server,
            "file": str(source),
            "cursor": [BEFORE.count("\n") + 1, len(BEFORE.rsplit("\n", 1)[1])],  # 0-based column
            "translate": FUNCTION_LINES,
            "target": TARGET,
            "out": str(tmp_path / "report.json"),
            "wait_ms": 60_000,
        },
        tmp_path,
        agent_home(tmp_path / "home", server),
        api_key,
    )

    assert report["mode"] == "python-mode" and report["server_info"] == "tabby-agent"
    assert report["completion_provider"] is True
    completed = BEFORE + expected_completion + AFTER
    assert report["before"] == (BEFORE + AFTER).split("\n")
    assert report["after"] == completed.split("\n")
    assert source.read_text() == completed

    first, last = FUNCTION_LINES
    function = "\n".join(completed.splitlines()[first - 1 : last]) + "\n"
    translation = served(server, "/v1/tasks/translate",
                         {"code": function, "language": "python", "target": TARGET}, api_key)  # fmt: skip
    # The buffer holds geex task's output: the answer and a newline.
    assert report["translation"] == (translation["text"].removesuffix("\n") + "\n").split("\n")
    assert report["translation_shown"] is True
    assert report["returned_while_running"] is True
    assert report["refusal"].startswith(
        "geex task: error: the server answered 400: target: unknown language 'klingon'"
    ), report["refusal"]
    assert "\n" not in report["refusal"], "the message is geex's one line, nothing else"
    assert report["refusal_buffer_left"] is False
    assert report["killed_task"] == {"status": "signal", "messages": 0}

    marked = [line for line in report["capture_after"].splitlines() if line.startswith("> ")]
    assert marked == ["> " + as_shown(completed.splitlines()[BEFORE.count("\n")])]
    write_docs_captures({"emacs-completion.txt": report["capture_before"] + "\n\n"
                         + report["capture_after"],
                         "emacs-translation.txt": report["capture_translation"]})  # fmt: skip


LANGUAGE_OF_MODES = """
(progn
  (load (getenv "GEEX_PLUGIN") nil t)
  (princ (json-encode
          (mapcar (lambda (mode) (cons mode (geex-language-of mode)))
                  (delete-dups (append geex-modes (mapcar #'car geex-languages)
                                       '(tsx-ts-mode js2-mode rustic-mode python-ts-mode
                                         c++-ts-mode bash-ts-mode)))))))
"""


def test_emacs_asks_the_server_for_a_language_by_a_name_it_knows():
    from geex.languages import get_language

    emacs = emacs_with_eglot()
    done = subprocess.run([emacs, "--batch", "--eval", f"(progn (require 'json) {FIND_EGLOT_FIRST} {LANGUAGE_OF_MODES})"],
                          env={**os.environ, "GEEX_PLUGIN": str(PLUGIN)}, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout, done.stderr
    languages = json.loads(done.stdout)
    for mode, language in languages.items():
        assert get_language(language), mode  # raises "unknown language", as the server answers
    assert {mode: languages[mode] for mode in ("tsx-ts-mode", "js2-mode", "rustic-mode",
            "python-ts-mode", "c++-ts-mode", "bash-ts-mode")} == {
        "tsx-ts-mode": "typescript", "js2-mode": "javascript", "rustic-mode": "rust",
        "python-ts-mode": "python", "c++-ts-mode": "c++", "bash-ts-mode": "shell"}  # fmt: skip


def hangup_by_default() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
