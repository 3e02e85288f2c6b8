"""The code assistant's tasks: what the model is asked for each, and where its answer ends.

CodeGeeX's IDE plugin offered these on top of completion: fill in the middle, code from a
comment, translation, explanation, adding comments, and questions. A base model is asked the
way it was trained, in code: CodeGeeX's language tag line, the code, and a request written as a
comment in the code's own language (the plugin's "Explain the code line by line" template), so
that the model continues with comments or code. Translation uses the evaluation's prompt
(:func:`geex.eval.tasks.code_translation_prompt`), so the server asks exactly what the
benchmark measured. A chat model gets one user message instead, and its reply's code block is
taken as the code.

Each request is a dataclass (the HTTP adapter validates JSON into it) whose ``prompt(chat)``
says what to generate from and how to cut the output. Cuts work on text only, so that they
are tested without a model; they read each piece of the output once, as it streams, and
only ever add to the answer, so that text already sent never has to be taken back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal, Protocol

from geex.errors import GeexError
from geex.eval.tasks import code_translation_prompt
from geex.languages import Language, get_language
from geex.serve.completion import with_language_tag

NaturalLanguage = Literal["en", "zh"]


class AnswerCut(Protocol):
    """One answer's cut, fed the output as it arrives. ``feed`` returns the answer's new text
    and whether the answer has ended; each piece is looked at once, so a long answer costs
    time in proportion to its length. While the output is incomplete the answer only grows:
    a stream never takes text back."""

    def feed(self, piece: str, final: bool) -> tuple[str, bool]: ...


# A fresh cut for each answer: cuts hold the state of the output they have seen.
MakeCut = Callable[[], AnswerCut]


class KeepAll:
    """The whole output is the answer; the engine's stop rules alone end it."""

    def feed(self, piece: str, final: bool) -> tuple[str, bool]:
        return piece, False


class LineCut:
    """A cut that looks at whole lines (all of them once the output is final), each once:
    subclasses say what a line adds to the answer in ``line`` and what is left in ``end``."""

    def __init__(self) -> None:
        self._partial: list[str] = []  # the line being written

    def feed(self, piece: str, final: bool) -> tuple[str, bool]:
        if "\n" not in piece and not final:
            self._partial.append(piece)
            return "", False
        lines = ("".join(self._partial) + piece).split("\n")
        self._partial = [] if final else [lines.pop()]
        added: list[str] = []
        for line in lines:
            text, ended = self.line(line)
            added.append(text)
            if ended:
                return "".join(added), True
        if final:
            added.append(self.end())
        return "".join(added), False

    def line(self, line: str) -> tuple[str, bool]:
        raise NotImplementedError

    def end(self) -> str:
        return ""


class FencedCode(LineCut):
    """A chat reply's first code block; a reply without a fence is taken as code whole."""

    def __init__(self) -> None:
        super().__init__()
        self._before: list[str] | None = []  # the reply's lines until a fence opens
        self._started = False  # has a line of code been sent?

    def line(self, line: str) -> tuple[str, bool]:
        if self._before is not None:
            if line.lstrip().startswith("```"):
                self._before = None
            else:
                self._before.append(line)
            return "", False
        if line.strip().startswith("```"):
            return "", True
        text = f"\n{line}" if self._started else line
        self._started = True
        return text, False

    def end(self) -> str:
        return "\n".join(self._before) if self._before is not None else ""


class CommentText(LineCut):
    """The comment lines that open the output, markers removed: an explanation written as
    comments ends at its first line of code (or a blank line after it has begun)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self._marker = marker
        self._started = False

    def line(self, line: str) -> tuple[str, bool]:
        stripped = line.strip()
        if stripped.startswith(self._marker):
            text = stripped[len(self._marker) :].removeprefix(" ")
            text = f"\n{text}" if self._started else text
            self._started = True
            return text, False
        return "", bool(stripped or self._started)


class TopLevelBlock:
    """For a brace language, the output up to the end of the line of the first ``}`` that
    brings the depth back to zero or below: the close of the first block the answer opened
    (one function, class or statement block, as asked), or of one the prompt opened (a
    translation's ``target_start`` may end with ``{``).

    It is not :func:`geex.serve.completion.closing_brace_end`, which ends a completion inside
    a body at the ``}`` that closes more than the completion opened and cuts right after it:
    a task asks for a whole definition, so the first block's close ends it, and the rest of
    its line (``};``, ``});``) belongs to it."""

    def __init__(self) -> None:
        self._depth = 0
        self._closed = False  # the ending brace is out; the answer ends with its line

    def feed(self, piece: str, final: bool) -> tuple[str, bool]:
        start = 0
        if not self._closed:
            for i, char in enumerate(piece):
                if char == "{":
                    self._depth += 1
                elif char == "}":
                    self._depth -= 1
                    if self._depth <= 0:
                        self._closed, start = True, i
                        break
            else:
                return piece, False
        newline = piece.find("\n", start)
        if newline >= 0:
            return piece[:newline], True
        return piece, final


def comment_text(marker: str) -> MakeCut:
    """The cut of an explanation written in comments that open with ``marker``."""
    return partial(CommentText, marker)


def top_level_block(language: Language | None) -> MakeCut:
    """Brace languages end with their first block; others on their stop sequences alone."""
    if language is None or not language.brace_delimited:
        return KeepAll
    return TopLevelBlock


@dataclass(frozen=True)
class TaskPrompt:
    """What to generate from, and the rules that end and trim the answer.

    Exactly one of ``text`` (a base model's prompt), ``messages`` (a chat) or ``fim``
    (prefix, suffix: the model's fill-in-the-middle prompt) is set. ``stop`` and
    ``language`` are the engine's text stop rules; ``cut`` trims what the engine returns;
    ``head`` is answer text that the prompt already holds (it is sent before the output).
    """

    text: str | None = None
    messages: tuple[dict, ...] | None = None
    fim: tuple[str, str] | None = None
    stop: tuple[str, ...] = ()
    language: Language | None = None
    cut: MakeCut = KeepAll
    head: str = ""


def _required(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GeexError(f"{name} is empty: give the text the task works on")
    return value


def _language(name: str | None, field_name: str = "language") -> Language | None:
    if name is None or name == "":
        return None
    try:
        return get_language(name)
    except GeexError as err:
        raise GeexError(f"{field_name}: {err}") from None


def _required_language(name: str, field_name: str = "language") -> Language:
    """The language a task cannot do without: an empty or unknown name is the caller's error."""
    if not isinstance(name, str) or not name.strip():
        raise GeexError(f"{field_name} is empty: name the code's language (python, cpp, go, ...)")
    return _language(name, field_name)


def _natural(value: str) -> str:
    if value not in ("en", "zh"):
        raise GeexError(f"natural_language must be 'en' or 'zh', got {value!r}")
    return value


def comment_lines(language: Language, text: str) -> str:
    """``text`` as a comment of ``language``, one comment line per line of text."""
    if language.line_comment:
        return "\n".join(f"{language.line_comment} {line}".rstrip() for line in text.split("\n"))
    if language.block_comment:
        opening, closing = language.block_comment
        return f"{opening} {text} {closing}"
    raise GeexError(f"{language.name} has no comment syntax to write a request in")


def fence(code: str, language: Language | None) -> str:
    """A Markdown code block, the form chat models read and write code in."""
    tag = language.key if language else ""
    return f"```{tag}\n{code.rstrip()}\n```"


def _chat_about_code(
    request: str, code: str, language: Language, cut: MakeCut = KeepAll
) -> TaskPrompt:
    """A chat model's prompt: one user message, the request and then the code fenced."""
    content = f"{request}\n\n{fence(code, language)}"
    return TaskPrompt(messages=({"role": "user", "content": content},), cut=cut)


def _explanation(language: Language, request: str, code: str) -> TaskPrompt:
    """The base-model prompt that asks for comment text after ``code``, and its cut."""
    head = f"{language.tag}\n{code.rstrip()}\n\n" if code.strip() else f"{language.tag}\n"
    if language.line_comment:
        prompt = head + comment_lines(language, request) + "\n"
        return TaskPrompt(text=prompt, language=None, cut=comment_text(language.line_comment))
    if language.block_comment:
        opening, closing = language.block_comment
        return TaskPrompt(text=f"{head}{opening}\n{request}\n", stop=(closing,))
    raise GeexError(f"{language.name} has no comment syntax to write an explanation in")


@dataclass(frozen=True)
class CompleteTask:
    """Continue ``prefix`` (the code before the cursor); with ``language``, its tag line and
    stop rules. Chat models continue the text too: completion is not a conversation."""

    name: ClassVar[str] = "complete"
    default_max_tokens: ClassVar[int] = 64
    prefix: str
    language: str | None = None

    def prompt(self, chat: bool) -> TaskPrompt:
        language = _language(self.language)
        if language is None:
            _required(self.prefix, "prefix")
        return TaskPrompt(text=with_language_tag(self.prefix, language), language=language)


@dataclass(frozen=True)
class InfillTask:
    """Fill the gap between ``prefix`` and ``suffix`` with the model's FIM tokens."""

    name: ClassVar[str] = "infill"
    default_max_tokens: ClassVar[int] = 64
    prefix: str
    suffix: str
    language: str | None = None

    def prompt(self, chat: bool) -> TaskPrompt:
        _language(self.language)
        if not (self.prefix.strip() or self.suffix.strip()):
            raise GeexError("prefix and suffix are both empty: give the code around the gap")
        # No language stop rules: text that would end a completion ("\ndef ") may sit in
        # the middle of a file; the model's end-of-middle token ends the fill.
        return TaskPrompt(fim=(self.prefix, self.suffix))


@dataclass(frozen=True)
class CommentToCodeTask:
    """Write code in ``language`` that does what ``comment`` describes."""

    name: ClassVar[str] = "comment-to-code"
    default_max_tokens: ClassVar[int] = 256
    comment: str
    language: str

    def prompt(self, chat: bool) -> TaskPrompt:
        _required(self.comment, "comment")
        language = _required_language(self.language)
        if chat:
            ask = (
                f"Write {language.name} code that does the following. Reply with the code in "
                f"one code block.\n\n{self.comment.strip()}"
            )
            return TaskPrompt(messages=({"role": "user", "content": ask},), cut=FencedCode)
        comment = self.comment.strip()
        marker = language.line_comment
        if not (marker and all(line.lstrip().startswith(marker) for line in comment.split("\n"))):
            comment = comment_lines(language, comment)
        return TaskPrompt(
            text=f"{language.tag}\n{comment}\n",
            stop=(f"\n{language.tag}",),
            language=language,
            cut=top_level_block(language),
        )


@dataclass(frozen=True)
class TranslateTask:
    """Translate ``code`` from ``language`` into ``target``; ``target_start`` (a signature,
    say) is where the translation begins, as the benchmark gives the target's declaration."""

    name: ClassVar[str] = "translate"
    default_max_tokens: ClassVar[int] = 512
    code: str
    language: str
    target: str
    target_start: str = ""

    def prompt(self, chat: bool) -> TaskPrompt:
        _required(self.code, "code")
        source = _required_language(self.language)
        target = _required_language(self.target, "target")
        if source == target:
            raise GeexError(f"code is already {source.name}: name another target language")
        if chat:
            ask = (
                f"Translate this {source.name} code into {target.name}. Reply with the "
                f"{target.name} code in one code block."
            )
            return _chat_about_code(ask, self.code, source, FencedCode)
        prompt = code_translation_prompt(source, self.code.rstrip(), target, self.target_start)
        return TaskPrompt(
            text=prompt,
            # The model may go on to another translation pair after this one.
            stop=("\ncode translation\n", f"\n{source.name}:\n"),
            language=target,
            cut=top_level_block(target),
            head=self.target_start,
        )


_EXPLAIN = {"en": "Explain the code above.", "zh": "用中文解释上面的代码。"}
_EXPLAIN_CHAT = {"en": "Explain this {name} code.", "zh": "用中文解释这段{name}代码。"}
_COMMENT = {"en": "Explain the code line by line", "zh": "用中文逐行注释代码"}
_COMMENT_CHAT = {
    "en": "Add a comment to each line of this {name} code. Reply with the commented code in "
    "one code block.",
    "zh": "为这段{name}代码逐行添加中文注释。用一个代码块回复注释后的代码。",
}
_ASK = {"en": ("Question:", "Answer:"), "zh": ("问题：", "回答：")}


@dataclass(frozen=True)
class _AboutCodeTask:
    """A request about ``code`` answered in English or Chinese. Explaining and commenting
    share their fields, their checks and the chat prompt; they differ in the request's words
    (``chat_request``), in the chat reply's cut and in the base model's prompt."""

    code: str
    language: str
    natural_language: NaturalLanguage = "en"
    chat_request: ClassVar[dict[str, str]]
    chat_cut: ClassVar[MakeCut] = KeepAll

    def prompt(self, chat: bool) -> TaskPrompt:
        _required(self.code, "code")
        language = _required_language(self.language)
        natural = _natural(self.natural_language)
        if chat:
            request = self.chat_request[natural].format(name=language.name)
            return _chat_about_code(request, self.code, language, self.chat_cut)
        return self.base_prompt(language, natural)

    def base_prompt(self, language: Language, natural: str) -> TaskPrompt:
        raise NotImplementedError


@dataclass(frozen=True)
class ExplainTask(_AboutCodeTask):
    """Explain ``code`` in English or Chinese, as plain text."""

    name: ClassVar[str] = "explain"
    default_max_tokens: ClassVar[int] = 256
    chat_request: ClassVar[dict[str, str]] = _EXPLAIN_CHAT

    def base_prompt(self, language: Language, natural: str) -> TaskPrompt:
        return _explanation(language, _EXPLAIN[natural], self.code)


@dataclass(frozen=True)
class CommentTask(_AboutCodeTask):
    """Return ``code`` with a comment on each line, in English or Chinese.

    The base-model prompt is the plugin's: the code, the request as a comment, then the
    code's first line again, so that the model rewrites the same code with comments."""

    name: ClassVar[str] = "comment"
    default_max_tokens: ClassVar[int] = 512
    chat_request: ClassVar[dict[str, str]] = _COMMENT_CHAT
    chat_cut: ClassVar[MakeCut] = FencedCode

    def base_prompt(self, language: Language, natural: str) -> TaskPrompt:
        code = self.code.strip("\n").rstrip()
        request = comment_lines(language, _COMMENT[natural])
        first_line = code.split("\n", 1)[0] + "\n"
        return TaskPrompt(
            text=f"{language.tag}\n{code}\n\n{request}\n{first_line}",
            stop=(f"\n{request}", f"\n{language.tag}"),
            language=language,
            head=first_line,
        )


@dataclass(frozen=True)
class AskTask:
    """Answer ``question``, about the code in ``context`` when there is some."""

    name: ClassVar[str] = "ask"
    default_max_tokens: ClassVar[int] = 512
    question: str
    context: str = ""
    language: str | None = None
    natural_language: NaturalLanguage = "en"

    def prompt(self, chat: bool) -> TaskPrompt:
        _required(self.question, "question")
        language, natural = _language(self.language), _natural(self.natural_language)
        question = self.question.strip()
        if chat:
            ask = question
            if self.context.strip():
                ask = f"{fence(self.context, language)}\n\n{question}"
            if natural == "zh":
                ask += "\n\n请用中文回答。"
            return TaskPrompt(messages=({"role": "user", "content": ask},))
        q_label, a_label = _ASK[natural]
        if language is not None:
            request = f"{q_label} {question}\n{a_label}"
            return _explanation(language, request, self.context)
        context = f"{self.context.rstrip()}\n\n" if self.context.strip() else ""
        return TaskPrompt(text=f"{context}{q_label} {question}\n{a_label}", stop=(f"\n{q_label}",))


TASKS: dict[str, type] = {
    task.name: task
    for task in (
        CompleteTask,
        InfillTask,
        CommentToCodeTask,
        TranslateTask,
        ExplainTask,
        CommentTask,
        AskTask,
    )
}


def task_class(name: str) -> type:
    """The request dataclass of the task called ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise GeexError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}") from None


class AnswerCutter:
    """Applies a task's cut to output arriving piece by piece: ``feed`` returns the answer's
    new text, ``done`` says the answer has ended (the rest of the generation is not needed)."""

    def __init__(self, make_cut: MakeCut) -> None:
        self._cut = make_cut()
        self._answer: list[str] = []
        self.done = False

    def feed(self, piece: str, final: bool = False) -> str:
        if self.done:
            return ""
        new, self.done = self._cut.feed(piece, final)
        self._answer.append(new)
        return new

    def finish(self) -> str:
        """The rest of the answer once the output is complete."""
        return self.feed("", final=True)

    @property
    def answer(self) -> str:
        return "".join(self._answer)
