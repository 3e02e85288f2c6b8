"""The assistant's task prompts (base and chat) and the cuts that end their answers, on text alone. `pytest tests/serve/test_tasks.py`."""

from __future__ import annotations

import random

import pytest

from geex.errors import GeexError
from geex.eval.problems import load_embedded
from geex.eval.tasks import translation_tasks
from geex.languages import get_language
from geex.serve.tasks import (
    AnswerCutter,
    AskTask,
    CommentTask,
    CommentToCodeTask,
    CompleteTask,
    ExplainTask,
    FencedCode,
    InfillTask,
    TranslateTask,
    comment_text,
    task_class,
    top_level_block,
)

ADD_PY = "def add(a, b):\n    return a + b\n"


def cut_in_pieces(cut, output: str, size: int = 3) -> tuple[str, bool]:
    """The answer a stream would send, feeding ``output`` a few characters at a time."""
    cutter = AnswerCutter(cut)
    sent = ""
    for i in range(0, len(output), size):
        sent += cutter.feed(output[i : i + size])
        if cutter.done:
            break
    sent += cutter.finish()
    return sent, cutter.done


def cut_whole(make_cut, output: str, final: bool) -> tuple[str, bool]:
    """The answer of ``output`` fed in one piece."""
    cutter = AnswerCutter(make_cut)
    answer = cutter.feed(output, final)
    return answer, cutter.done


def test_translation_prompt_is_the_evaluation_prompt():
    problems = load_embedded(["python", "go"])
    task = next(t for t in translation_tasks(problems) if t.task_id == "Geex-Python-to-Geex-Go/3")
    source_code = task.source.declaration + "\n" + task.source.canonical_solution
    request = TranslateTask(source_code, "python", "go", target_start=task.problem.declaration)
    prompt = request.prompt(chat=False)
    assert prompt.text == task.prompt
    assert prompt.language.key == "go" and prompt.head == task.problem.declaration
    assert "\ncode translation\n" in prompt.stop and "\nPython:\n" in prompt.stop


def test_translation_into_a_brace_language_ends_with_the_first_block():
    prompt = TranslateTask(ADD_PY, "python", "cpp").prompt(chat=False)
    assert prompt.text.endswith("\nC++:\n")
    output = "int add(int a, int b) {\n    return a + b;\n}\nint main() {\n}\n"
    answer, done = cut_in_pieces(prompt.cut, output)
    assert answer == "int add(int a, int b) {\n    return a + b;\n}" and done


def test_translation_refuses_the_same_language_and_unknown_ones():
    with pytest.raises(GeexError, match="already Python"):
        TranslateTask(ADD_PY, "py", "python").prompt(chat=False)
    with pytest.raises(GeexError, match="target: unknown language 'klingon'"):
        TranslateTask(ADD_PY, "python", "klingon").prompt(chat=False)
    with pytest.raises(GeexError, match="code is empty"):
        TranslateTask("  \n", "python", "go").prompt(chat=False)


def test_complete_adds_the_tag_and_the_language_stop_rules():
    prompt = CompleteTask("def f():\n", "python").prompt(chat=True)
    assert prompt.text == "# language: Python\ndef f():\n" and prompt.language.key == "python"
    assert CompleteTask("x = ").prompt(chat=False).text == "x = "
    with pytest.raises(GeexError, match="prefix is empty"):
        CompleteTask("").prompt(chat=False)


def test_infill_asks_for_fim_without_language_stops():
    prompt = InfillTask("def f():\n    ", "\n\ndef g():\n", "python").prompt(chat=False)
    assert prompt.fim == ("def f():\n    ", "\n\ndef g():\n")
    assert prompt.text is None and prompt.language is None and prompt.stop == ()
    with pytest.raises(GeexError, match="both empty"):
        InfillTask("", " ").prompt(chat=False)


def test_comment_to_code_writes_the_comment_in_the_language():
    prompt = CommentToCodeTask("add two numbers\nreturn the sum", "cpp").prompt(chat=False)
    assert prompt.text == "// language: C++\n// add two numbers\n// return the sum\n"
    already = CommentToCodeTask("# add two numbers", "python").prompt(chat=False)
    assert already.text == "# language: Python\n# add two numbers\n"
    assert already.language.key == "python"  # "\ndef " after the function ends it
    html = CommentToCodeTask("a red title", "html").prompt(chat=False)
    assert html.text == "<!--language: HTML-->\n<!-- a red title -->\n"


def test_explain_is_a_comment_request_and_the_answer_is_the_comment_text():
    prompt = ExplainTask(ADD_PY, "python").prompt(chat=False)
    assert prompt.text == f"# language: Python\n{ADD_PY}\n# Explain the code above.\n"
    output = "\n# Adds two numbers\n#  and returns the sum.\ndef other():\n    pass\n"
    answer, done = cut_in_pieces(prompt.cut, output)
    assert answer == "Adds two numbers\n and returns the sum." and done
    zh = ExplainTask("int x;", "cpp", "zh").prompt(chat=False)
    assert zh.text.endswith("int x;\n\n// 用中文解释上面的代码。\n")


def test_explanation_in_a_block_comment_language_stops_at_the_closing_marker():
    prompt = ExplainTask("<p>hi</p>", "html").prompt(chat=False)
    assert prompt.text.endswith("<p>hi</p>\n\n<!--\nExplain the code above.\n")
    assert prompt.stop == ("-->",)


def test_comment_repeats_the_first_line_as_the_plugin_did():
    prompt = CommentTask(ADD_PY, "python").prompt(chat=False)
    assert prompt.text == (
        f"# language: Python\n{ADD_PY}\n# Explain the code line by line\ndef add(a, b):\n"
    )
    assert prompt.head == "def add(a, b):\n" and prompt.language.key == "python"
    assert "\n# Explain the code line by line" in prompt.stop
    zh = CommentTask("int f() {\n  return 1;\n}", "c", "zh").prompt(chat=False)
    assert "\n// 用中文逐行注释代码\nint f() {\n" in zh.text


def test_natural_language_is_en_or_zh():
    with pytest.raises(GeexError, match="'en' or 'zh'"):
        ExplainTask(ADD_PY, "python", "fr").prompt(chat=False)


def test_ask_with_a_language_is_a_comment_question():
    prompt = AskTask("what does it return?", ADD_PY, "python").prompt(chat=False)
    assert prompt.text.endswith(f"{ADD_PY}\n# Question: what does it return?\n# Answer:\n")
    no_context = AskTask("what is a closure?", language="go").prompt(chat=False)
    assert no_context.text == "// language: Go\n// Question: what is a closure?\n// Answer:\n"
    plain = AskTask("what is a closure?").prompt(chat=False)
    assert plain.text == "Question: what is a closure?\nAnswer:" and plain.stop == ("\nQuestion:",)


def test_chat_prompts_are_one_user_message_with_the_code_fenced():
    (message,) = TranslateTask(ADD_PY, "python", "go").prompt(chat=True).messages
    assert message["role"] == "user"
    assert (
        "into Go" in message["content"]
        and f"```python\n{ADD_PY.rstrip()}\n```" in message["content"]
    )
    (zh,) = AskTask("它返回什么？", ADD_PY, "python", "zh").prompt(chat=True).messages
    assert zh["content"].endswith("请用中文回答。") and "```python" in zh["content"]
    explain = ExplainTask(ADD_PY, "python", "zh").prompt(chat=True)
    assert explain.messages[0]["content"].startswith("用中文解释这段Python代码")


def test_explain_and_comment_ask_a_chat_model_the_same_way_and_cut_differently():
    code = "int x;"
    comment = CommentTask(code, "cpp", "zh").prompt(chat=True)
    (message,) = comment.messages
    assert message["content"] == (
        "为这段C++代码逐行添加中文注释。用一个代码块回复注释后的代码。\n\n```cpp\nint x;\n```"
    )
    reply = "Here:\n```cpp\nint x;  // x\n```\nDone."
    assert cut_in_pieces(comment.cut, reply) == ("int x;  // x", True)
    explain = ExplainTask(code, "cpp").prompt(chat=True)
    assert explain.messages[0]["content"] == "Explain this C++ code.\n\n```cpp\nint x;\n```"
    assert cut_in_pieces(explain.cut, reply) == (reply, False)


def test_fenced_code_takes_the_first_block_of_a_reply():
    reply = "Here it is:\n```go\nfunc add(a, b int) int {\n\treturn a + b\n}\n```\nMore text\n"
    assert cut_in_pieces(FencedCode, reply) == (
        "func add(a, b int) int {\n\treturn a + b\n}",
        True,
    )
    assert cut_in_pieces(FencedCode, "x = 1\ny = 2") == ("x = 1\ny = 2", False)


def test_top_level_block_keeps_the_closing_line():
    cut = top_level_block(get_language("cpp"))
    assert cut_whole(cut, "struct A {\n  int x;\n};\nint y;\n", False) == (
        "struct A {\n  int x;\n};",
        True,
    )
    assert cut_whole(cut, "int f() {\n", False) == ("int f() {\n", False)
    assert cut_whole(top_level_block(get_language("python")), "def f(): {}\n", False) == (
        "def f(): {}\n",
        False,
    )


def test_top_level_block_ends_at_a_brace_the_prompt_opened():
    cut = top_level_block(get_language("cpp"))
    assert cut_whole(cut, "}\nint y;\n", False) == ("}", True)
    assert cut_in_pieces(cut, "  return 1;\n} // f\n}\n", size=1) == ("  return 1;\n} // f", True)


def test_translation_into_a_signature_that_opens_a_block_ends_with_its_body():
    start = "int add(int a, int b) {\n"
    prompt = TranslateTask(ADD_PY, "python", "cpp", target_start=start).prompt(chat=False)
    answer, done = cut_in_pieces(prompt.cut, "    return a + b;\n}\nint main() {\n}\n")
    assert (prompt.head + answer, done) == (start + "    return a + b;\n}", True)


def test_comment_text_ends_at_a_blank_line_after_the_comment():
    answer, done = cut_in_pieces(comment_text("//"), "// one\n// two\n\n// not this\n", size=1)
    assert (answer, done) == ("one\ntwo", True)


def test_unknown_task_names_the_tasks():
    with pytest.raises(GeexError, match="unknown task 'fix'; tasks: complete, infill"):
        task_class("fix")
    assert task_class("comment-to-code") is CommentToCodeTask


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda lang: CommentToCodeTask("add two numbers", lang), "language"),
        (lambda lang: TranslateTask(ADD_PY, lang, "go"), "language"),
        (lambda lang: TranslateTask(ADD_PY, "python", lang), "target"),
        (lambda lang: ExplainTask(ADD_PY, lang), "language"),
        (lambda lang: CommentTask(ADD_PY, lang), "language"),
    ],
    ids=["comment-to-code", "translate-source", "translate-target", "explain", "comment"],
)
@pytest.mark.parametrize("chat", [False, True])
def test_a_task_that_needs_a_language_names_the_field_when_it_is_empty_or_unknown(
    make, field, chat
):
    for empty in ("", "  "):
        with pytest.raises(GeexError, match=f"^{field} is empty: name the code's language"):
            make(empty).prompt(chat=chat)
    with pytest.raises(GeexError, match=f"^{field}: unknown language 'klingon'"):
        make("klingon").prompt(chat=chat)


def test_a_task_with_an_optional_language_takes_an_empty_one_as_none():
    assert CompleteTask("x = ", "").prompt(chat=False).language is None
    assert AskTask("what is a closure?", language="").prompt(chat=False).text.startswith("Question")


# The cuts as functions of the whole output so far: the rules of the module's docstrings,
# written plainly, that the incremental cuts must agree with on any split of the output.


def _whole_lines(text: str, final: bool) -> list[str]:
    lines = text.split("\n")
    return lines if final else lines[:-1]


def whole_fenced_code(text: str, final: bool) -> tuple[str, bool]:
    inside = None
    for line in _whole_lines(text, final):
        if inside is None:
            if line.lstrip().startswith("```"):
                inside = []
        elif line.strip().startswith("```"):
            return "\n".join(inside), True
        else:
            inside.append(line)
    if inside is None:
        return (text, False) if final else ("", False)
    return "\n".join(inside), False


def whole_comment_text(text: str, final: bool) -> tuple[str, bool]:
    kept = []
    for line in _whole_lines(text, final):
        if line.strip().startswith("//"):
            kept.append(line.strip()[2:].removeprefix(" "))
        elif line.strip() or kept:
            return "\n".join(kept), True
    return "\n".join(kept), False


def whole_top_level_block(text: str, final: bool) -> tuple[str, bool]:
    depth = 0
    for i, char in enumerate(text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "}" and depth <= 0:
            newline = text.find("\n", i)
            return (text[:newline], True) if newline >= 0 else (text, final)
    return text, False


@pytest.mark.parametrize(
    ("make_cut", "whole"),
    [
        (FencedCode, whole_fenced_code),
        (comment_text("//"), whole_comment_text),
        (top_level_block(get_language("cpp")), whole_top_level_block),
    ],
    ids=["fenced_code", "comment_text", "top_level_block"],
)
def test_a_cut_fed_in_random_pieces_agrees_with_the_cut_of_the_whole_text(make_cut, whole):
    parts = ["{", "}", "};", "\n", "\n\n", "// ", "//", "```", "```go", " ", "x = 1", "中", "  "]
    rng = random.Random(0)
    for _ in range(300):
        output = "".join(rng.choice(parts) for _ in range(rng.randint(0, 30)))
        cuts = sorted(rng.sample(range(1, len(output)), min(len(output) - 1, 6))) if output else []
        pieces = [output[a:b] for a, b in zip([0, *cuts], [*cuts, len(output)], strict=True)]
        cutter, seen = AnswerCutter(make_cut), ""
        for piece in pieces:
            cutter.feed(piece)
            seen += piece
            if cutter.done:
                break
            assert (cutter.answer, cutter.done) == whole(seen, False), (pieces, seen)
        cutter.finish()
        assert (cutter.answer, cutter.done) == whole(output, True), pieces
