"""Neovim 0.11 with the Geex config users copy (editors/neovim/geex.lua), end to end against
`geex serve`: tabby-agent as its language server completes a line with the model's text, and
:GeexTranslate and the `geex task` filter put the server's translation in the editor. Needs node,
Neovim and `scripts/setup.sh --dev`. `pytest tests/editors/test_neovim.py`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import required_module
from tests.editors.neovim_program import nvim_program

required_module("fastapi")

from tests.editors.conftest import REPO, as_shown, geex_program, write_docs_captures  # noqa: E402
from tests.serve.editor_server import served  # noqa: E402
from tests.serve.tabby_agent_client import AFTER, BEFORE, agent_command, agent_home  # noqa: E402

PLUGIN = REPO / "editors" / "neovim" / "geex.lua"
SESSION = Path(__file__).parent / "neovim_session.lua"
COMPLETE_KEY = "<M-\\>"  # the plugin's default
TARGET = "go"
FUNCTION_LINES = (4, 5)  # `def add(a, b):` and its return line, 1-based


# Neovim's filetype and geex's detection disagree on these files (Neovim's guess for .as is a
# language the server does not know).
AMBIGUOUS = {"x.as": "atlas, not actionscript", "x.dpr": "pascal, not delphi",
             "x.el": "lisp, not emacs-lisp"}  # fmt: skip
LANGUAGE_OF_FILES = """
local geex = dofile(os.getenv('GEEX_PLUGIN'))
geex.setup({ languages = { mylang = 'python' } })
local out = { table = geex.languages, files = {} }
for _, name in ipairs(vim.json.decode(os.getenv('GEEX_FILES'))) do
  local filetype = vim.filetype.match({ filename = name })
  if filetype then
    out.files[name] = { filetype, geex.language(filetype) }
  end
end
out.named = vim.tbl_map(geex.language, { 'javascriptreact', 'typescriptreact', 'javascript.jsx',
  'mylang', 'cs', 'sh' })
io.stdout:write(vim.json.encode(out))
"""


def test_neovim_asks_the_server_for_a_language_by_a_name_it_knows():
    from geex.languages import LANGUAGES, detect_language, get_language

    files = sorted({"x" + ext for lang in LANGUAGES.values() for ext in lang.extensions}
                   | {name for lang in LANGUAGES.values() for name in lang.filenames})  # fmt: skip
    env = {**os.environ, "GEEX_PLUGIN": str(PLUGIN), "GEEX_FILES": json.dumps(files)}
    done = subprocess.run([nvim_program(), "--headless", "--clean", "-c", "lua " + LANGUAGE_OF_FILES,
                           "-c", "qa!"], env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout, done.stderr
    out = json.loads(done.stdout)
    for name in out["table"].values():
        get_language(name)  # raises "unknown language" as the server answers it
    assert len(out["files"]) > 100, "Neovim knew almost none of the files: the test proves little"
    for name, (filetype, language) in out["files"].items():
        if name not in AMBIGUOUS:
            assert get_language(language) == detect_language(name), (name, filetype, language)
    assert out["named"] == ["javascript", "typescript", "javascript", "python", "cs", "sh"]


def run_session(nvim: str, settings: dict, tmp_path: Path, home: Path, key: str) -> dict:
    """The session script in headless Neovim, `geex task` given ``key``; its JSON report."""
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(settings))
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "NVIM", "VIM"))}
    bin_dir = str(Path(geex_program()).parent)
    env = {**keep, "HOME": str(home), "PATH": os.pathsep.join([bin_dir, "/usr/bin", "/bin"]),
           "GEEX_API_KEY": key, "GEEX_NVIM_SESSION": str(settings_file)}  # fmt: skip
    command = [nvim, "--headless", "--clean", "-c", f"luafile {SESSION}"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    out = Path(settings["out"])
    assert out.exists(), f"Neovim wrote no report (exit {done.returncode}):\n{done.stderr}"
    report = json.loads(out.read_text())
    log = home / ".local" / "state" / "nvim" / "lsp.log"
    log_tail = log.read_text()[-3000:] if log.exists() else "(no LSP log)"
    assert not report["errors"], "\n".join(report["errors"]) + "\nLSP log:\n" + log_tail
    return report


def test_neovim_completes_and_translates_with_geex_serve(node, server, api_key, tmp_path):
    nvim = nvim_program()
    completion = served(server, "/v1/completions",
                        {"language": "python", "segments": {"prefix": BEFORE, "suffix": AFTER}},
                        api_key)  # fmt: skip
    expected_completion = completion["choices"][0]["text"].strip()
    assert expected_completion, "the tiny model completed nothing: the test proves nothing"

    source = tmp_path / "add.py"
    source.write_text(BEFORE + AFTER)
    home = agent_home(tmp_path / "home", server)
    last_before = BEFORE.rsplit("\n", 1)[1]
    filter_command = f"geex task translate - -l python --to {TARGET} --url {server}"
    report = run_session(
        nvim,
        {
            "plugin": str(PLUGIN),
            "agent": agent_command(node),
            "url": server,
            "file": str(source),
            "cursor": [BEFORE.count("\n") + 1, len(last_before)],  # on the space after "return"
            "complete_key": COMPLETE_KEY,
            "translate": FUNCTION_LINES,
            "target": TARGET,
            "filter": filter_command,
            "out": str(tmp_path / "report.json"),
            "wait_ms": 60_000,
        },
        tmp_path,
        home,
        api_key,
    )

    # tabby-agent 1.5.0 offers textDocument/completion only; Neovim's inline completion
    # request is answered "method not found".
    assert report["filetype"] == "python"
    assert report["capabilities"] == {"completion": True, "inline_completion": False}
    assert report["inline_completion"]["error"]["code"] == -32601

    # The key, typed in insert mode, inserted the model's text at the cursor; the file was saved.
    completed = BEFORE + expected_completion + AFTER
    assert report["completed_in_insert_mode"] is True
    assert report["before"] == (BEFORE + AFTER).splitlines()
    assert report["after"] == completed.splitlines()
    assert source.read_text() == completed

    # :GeexTranslate put the server's translation of the (completed) function in a new split,
    # and the filter put the same text in place of the lines.
    first, last = FUNCTION_LINES
    function = "\n".join(completed.splitlines()[first - 1 : last]) + "\n"
    translation = served(server, "/v1/tasks/translate",
                         {"code": function, "language": "python", "target": TARGET}, api_key)  # fmt: skip
    expected_lines = translation["text"].removesuffix("\n").split("\n")
    assert "".join(expected_lines).strip(), "the tiny model translated to nothing"
    assert report["translation"] == expected_lines
    assert report["translation_filetype"] == TARGET and report["windows"] == 2
    assert report["filter_shell_error"] == 0
    lines = completed.splitlines()
    assert report["filtered"] == lines[: first - 1] + expected_lines + lines[last:]

    # Closing the split while the answer is on its way stopped the task (SIGTERM), quietly.
    assert report["closed_task"] == {"signal": 15, "buffer_left": False, "errmsg": "",
                                     "messages": 0}  # fmt: skip

    # A refused task names the problem and closes its empty split.
    refusal, not_installed = report["messages"]
    assert refusal["message"].startswith(
        "geex task: error: the server answered 400: target: unknown language 'klingon'"
    ), refusal
    assert refusal["level"] == 4  # vim.log.levels.ERROR
    assert report["windows_after_refusal"] == 2
    assert not_installed == {
        "message": "geex: cannot run geex-not-installed (not found): install Geex, or name its "
        "command in setup({ geex = ... })",
        "level": 4,
    }
    assert report["windows_without_geex"] == 2

    # The captures show the buffers as the screen does, the cursor's line marked.
    marked = [line for line in report["capture_after"].splitlines() if line.startswith("> ")]
    assert marked == ["> " + as_shown(completed.splitlines()[BEFORE.count("\n")])]
    write_docs_captures({"neovim-completion.txt": report["capture_before"] + "\n\n"
                         + report["capture_after"],
                         "neovim-translation.txt": report["capture_translation"]})  # fmt: skip
