"""Benchmark problems: HumanEval-X files, the Hugging Face copy, and Geex's embedded set.

A problem is one record of a ``humaneval_<lang>.jsonl(.gz)`` file: ``task_id``, ``prompt``,
``declaration``, ``canonical_solution``, ``test`` and ``example_test``, plus Go's ``import``
and ``test_setup``. Any folder of files in that shape is a benchmark; the language comes from
the file name (``humaneval_js.jsonl.gz``) or a ``language`` field in each record.

``datasets`` is imported inside a function: heavy, and needed only for a Hub dataset.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from geex.errors import GeexError
from geex.languages import HUMANEVALX, Language, get_language

# The six HumanEval-X languages in the order of CodeGeeX's paper, Rust (added later) last.
LANGUAGE_ORDER = ("python", "cpp", "java", "js", "go", "rust")

_FILE_NAME = re.compile(r"^[a-z]+_(?P<lang>[a-z+#]+)\.jsonl(?:\.gz)?$")
HUB_DATASET = "THUDM/humaneval-x"


@dataclass(frozen=True)
class Problem:
    """One benchmark problem in one language."""

    task_id: str  # "CPP/12": a prefix naming the language, "/", the problem's number
    language: Language
    prompt: str
    declaration: str
    canonical_solution: str
    test: str
    example_test: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # Go: import, test_setup

    @property
    def prefix(self) -> str:
        return self.task_id.rsplit("/", 1)[0]

    @property
    def number(self) -> str:
        return self.task_id.rsplit("/", 1)[-1]

    def tests(self, example: bool = False) -> str:
        """The hidden tests, or the prompt's examples when asked and there are any (Rust's
        files hold the string "None" where the others hold "")."""
        if example and self.example_test.strip() not in ("", "None"):
            return self.example_test
        return self.test


def humanevalx_language(lang_id: str) -> Language:
    """``"js"`` -> JavaScript: a HumanEval-X language id, or any name of one of its languages."""
    language = HUMANEVALX.get(lang_id.lower())
    if language is None:
        language = get_language(lang_id)
        if language.humanevalx is None:
            known = ", ".join(LANGUAGE_ORDER)
            raise GeexError(f"{language.name} is not a HumanEval-X language ({known})")
    return language


_REQUIRED_FIELDS = ("prompt", "test")
# May be absent or null; the string "None" in Rust's example_test stays (see Problem.tests).
_OPTIONAL_FIELDS = ("declaration", "canonical_solution", "example_test", "import", "test_setup")
_TASK_ID = re.compile(r"^[^/]+/\d+$")


def problem_from_record(record: dict, language: Language, where: str = "") -> Problem:
    """The problem of one benchmark record; ``where`` ("file:line") names it in errors."""
    at = f"{where}: " if where else ""
    task_id = record.get("task_id")
    if not isinstance(task_id, str) or not _TASK_ID.match(task_id):
        raise GeexError(
            f"{at}a {language.name} problem needs a 'task_id' string PREFIX/NUMBER "
            f"(e.g. CPP/12), got {task_id!r}"
        )
    for name in (*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS):
        value = record.get(name)
        if name in _OPTIONAL_FIELDS and value is None:
            continue
        if name not in record:
            raise GeexError(f"{at}{task_id} lacks the field '{name}'")
        if not isinstance(value, str):
            kind = type(value).__name__
            raise GeexError(f"{at}{task_id}: '{name}' must be a string, got {kind} {value!r:.40}")
        surrogate = lone_surrogate(value)
        if surrogate:
            raise GeexError(
                f"{at}{task_id}: '{name}' holds a lone surrogate ({surrogate}), which no "
                "program file can hold: fix the benchmark"
            )
    return Problem(
        task_id=task_id,
        language=language,
        prompt=record["prompt"],
        declaration=record.get("declaration") or "",
        canonical_solution=record.get("canonical_solution") or "",
        test=record["test"],
        example_test=record.get("example_test") or "",
        extra={k: record[k] for k in ("import", "test_setup") if record.get(k) is not None},
    )


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text`` as JSON writes it (``\\ud800``), or None: JSON
    may spell one, but it is no character and cannot be written as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"\\u{ord(text[err.start]):04x}"
    return None


def numbered_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) of each JSON object of a ``.jsonl`` or ``.jsonl.gz`` file, blank
    lines skipped; a line that is not a JSON object, text that is not UTF-8, or a damaged or
    cut gzip stream is a :class:`GeexError` naming the file and line."""
    opener = gzip.open if path.name.endswith(".gz") else open
    number = 0
    try:
        with opener(path, "rb") as lines:
            for number, raw in enumerate(lines, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise GeexError(
                        f"{path}:{number}: not UTF-8 text (byte {raw[err.start]:#04x} at "
                        f"column {err.start + 1}): save the file as UTF-8"
                    ) from None
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise GeexError(f"{path}:{number}: not JSON: {err}") from None
                if not isinstance(record, dict):
                    raise GeexError(
                        f"{path}:{number}: expected a JSON object, got a JSON "
                        f"{_JSON_TYPES.get(type(record), type(record).__name__)}"
                    )
                yield number, record
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        # Only a damaged stream: any other OSError (permission denied, a folder) is the
        # machine's state, reported as such by the command line.
        after = f" after line {number}" if number else ""
        raise GeexError(f"cannot read {path}{after}: {err} (a damaged or cut file?)") from None


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}  # fmt: skip


def read_jsonl(path: Path) -> Iterator[dict]:
    """The records of a ``.jsonl`` or ``.jsonl.gz`` file (see :func:`numbered_records`)."""
    for _, record in numbered_records(path):
        yield record


def _file_language(path: Path) -> str | None:
    match = _FILE_NAME.match(path.name)
    if match and match["lang"] in HUMANEVALX:
        return match["lang"]
    return None


def load_problems(folder: str | Path, languages: Iterable[str] | None = None) -> list[Problem]:
    """Problems of a folder of ``<name>_<lang>.jsonl(.gz)`` files, in language order.

    ``languages`` (HumanEval-X ids or any language names) picks files; all by default.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GeexError(f"benchmark folder {folder} does not exist")
    wanted = _language_ids(languages)
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        lang = _file_language(path)
        if lang is not None and (wanted is None or lang in wanted):
            if lang in files and files[lang].name.endswith(".gz") and not path.name.endswith(".gz"):
                continue  # the same benchmark plain and compressed: either will do
            files[lang] = path
    if not files:
        expected = "humaneval_<lang>.jsonl(.gz) with <lang> in " + ", ".join(LANGUAGE_ORDER)
        picked = f" for {', '.join(sorted(wanted))}" if wanted else ""
        raise GeexError(f"no benchmark files{picked} in {folder} (expected {expected})")
    missing = sorted((wanted or set()) - files.keys())
    if missing:
        raise GeexError(f"{folder} has no benchmark file for {', '.join(missing)}")
    problems = []
    for lang in sorted(files, key=LANGUAGE_ORDER.index):
        before = len(problems)
        for number, record in numbered_records(files[lang]):
            where = f"{files[lang]}:{number}"
            named = record.get("language", lang)
            if not isinstance(named, str):
                raise GeexError(f"{where}: 'language' must be a string, got {named!r:.40}")
            try:
                language = humanevalx_language(named)
            except GeexError as err:
                raise GeexError(f"{where}: {err}") from None
            problems.append(problem_from_record(record, language, where))
        if len(problems) == before:
            raise GeexError(f"{files[lang]} holds no problems")
    _check_unique(problems)
    return problems


def load_embedded(languages: Iterable[str] | None = None) -> list[Problem]:
    """Geex's own small evaluation set, shipped in the package: nothing to download."""
    wanted = _language_ids(languages)
    problems = []
    root = resources.files("geex.eval") / "embedded"
    for lang in LANGUAGE_ORDER:
        if wanted is not None and lang not in wanted:
            continue
        text = (root / f"geex_{lang}.jsonl").read_text(encoding="utf-8")
        language = humanevalx_language(lang)
        problems += [problem_from_record(json.loads(x), language) for x in text.splitlines() if x]
    return problems


def load_hub(languages: Iterable[str] | None = None) -> list[Problem]:
    """HumanEval-X from the Hugging Face Hub (needs the ``datasets`` package and the network)."""
    try:
        import datasets
    except ImportError:
        raise GeexError(
            f"loading {HUB_DATASET} from the Hugging Face Hub needs the 'datasets' package "
            "(pip install datasets); or pass --data DIR, a folder of humaneval_<lang>.jsonl.gz"
        ) from None
    wanted = _language_ids(languages) or set(LANGUAGE_ORDER)
    problems = []
    for lang in sorted(wanted, key=LANGUAGE_ORDER.index):
        try:
            rows = datasets.load_dataset(HUB_DATASET, lang, split="test")
        except Exception as err:  # the Hub client raises many types; all mean "cannot load"
            raise GeexError(
                f"cannot load {HUB_DATASET} ({lang}) from the Hugging Face Hub: {err}; "
                "pass --data DIR instead"
            ) from None
        language = humanevalx_language(lang)
        problems += [problem_from_record(dict(row), language) for row in rows]
    _check_unique(problems)
    return problems


def _language_ids(languages: Iterable[str] | None) -> set[str] | None:
    if languages is None:
        return None
    return {humanevalx_language(name).humanevalx for name in languages}


def _check_unique(problems: list[Problem]) -> None:
    seen: set[str] = set()
    for problem in problems:
        if problem.task_id in seen:
            raise GeexError(f"task id {problem.task_id} appears twice in the benchmark")
        seen.add(problem.task_id)
