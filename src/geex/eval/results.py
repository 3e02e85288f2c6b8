"""One judged sample, and the ``results.jsonl`` file that holds them and resumes a run.

Each line is one sample, written as soon as it is judged, so an interrupted run loses at most
the samples in flight: rerunning into the same folder reads the file back and judges only what
is missing. A line cut short by the interruption is ignored. Each line carries the fingerprints
of what it was judged from (``geex.eval.fingerprint``): a run resumes only the lines whose
fingerprints match its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from geex.errors import GeexError
from geex.eval.verdicts import PASSED, UNAVAILABLE

EXCERPT_CHARS = 2000


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The end of a long output, where compilers and runtimes put the cause."""
    if len(text) <= limit:
        return text
    return "..." + text[-limit:]


@dataclass
class SampleResult:
    task_id: str
    completion_id: int
    language: str  # language key: "python", "cpp", ...
    group: str  # what it is scored under: "C++", or "Python -> C++"
    verdict: str
    detail: str
    generation: str
    program: str
    stderr: str  # excerpt of stderr (and of stdout, which some tests write to)
    seconds: float  # compile + run
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    sandbox: str = ""
    missing_package: str = ""  # "unavailable" for want of this package (see geex.eval.libraries)
    install: str = ""  # the command that installs it
    # What the verdict was judged from (geex.eval.fingerprint); "" in lines of older runs.
    generation_fingerprint: str = ""
    judging_fingerprint: str = ""
    # Infilling: whether the middle is the canonical one (geex.eval.infill); None elsewhere.
    exact_match: bool | None = None
    # What users see (geex.eval.code_checks): whether the program parses, whether the text
    # stays in the prompt's language (None: blank, undecided); None in lines of older runs.
    parses: bool | None = None
    stays_in_language: bool | None = None
    checks_version: str = ""  # what marked them (CodeChecks.version); "" in older lines

    @property
    def key(self) -> tuple[str, int]:
        return self.task_id, self.completion_id

    @property
    def passed(self) -> bool:
        return self.verdict == PASSED

    @property
    def judged(self) -> bool:
        """Whether the sample was judged on its merits (pass@k counts only these)."""
        return self.verdict != UNAVAILABLE

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> SampleResult:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class ResultsFile:
    """``results.jsonl`` in an output folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[tuple[str, int], SampleResult]:
        """The results already there, by (task_id, completion_id); the last line wins."""
        results: dict[tuple[str, int], SampleResult] = {}
        for line in self._lines():
            result = _parse_line(line)
            if result is not None:  # else the line an interruption cut short
                results[result.key] = result
        return results

    def unreadable_lines(self) -> list[int]:
        """The numbers (from 1) of the lines that hold no result, which :meth:`load` skips."""
        return [number for number, line in enumerate(self._lines(), 1) if _parse_line(line) is None]

    def _lines(self) -> list[str | None]:
        """The file's lines: split at ``\\n`` only (a generation may hold U+2028, which
        ``str.splitlines`` would also split at); None for a line that is not UTF-8 (cut
        mid-character by an interruption), which holds no result."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes().split(b"\n")
        if raw[-1] == b"":
            raw.pop()
        return [_decoded(line) for line in raw]

    def append(self, result: SampleResult) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(result.to_json() + "\n")

    def rewrite(self, results: Iterable[SampleResult]) -> None:
        """Replace the file by ``results``, one line each, atomically."""
        partial = self.path.with_suffix(".jsonl.partial")
        with partial.open("w", encoding="utf-8") as out:
            for result in results:
                out.write(result.to_json() + "\n")
        os.replace(partial, self.path)


def check_results_folder(folder: Path) -> None:
    """Refuse an output folder that an evaluation would write over but did not make.

    An evaluation's folder holds its ``results.jsonl``. Without one, a ``report.md``,
    ``report.html`` or ``summary.json`` there is someone else's, which the reports would
    replace. Within ``results.jsonl``, a line of whole JSON that is no result is another
    program's data, which the file's rewrite would drop; a line that is not whole JSON is one
    an interruption cut short, which is skipped. Files an evaluation does not write (a samples
    file, a desktop's index) are left alone.
    """
    if folder.exists() and not folder.is_dir():
        raise GeexError(f"{folder} is a file, not a folder: give another --out")
    results = ResultsFile(folder / "results.jsonl")
    if not results.path.is_file():
        clash = [name for name in REPORTS if (folder / name).exists()]
        if clash:
            raise GeexError(
                f"{folder} holds {clash[0]}, which `geex eval` would write over, and no "
                "results.jsonl of an earlier evaluation: give another --out"
            )
        return
    lines = results._lines()
    for number in results.unreadable_lines():
        if not _whole_json(lines[number - 1]):
            continue  # cut short by an interruption (and perhaps run on by the next append)
        raise GeexError(
            f"{results.path}: line {number} holds no result of `geex eval`: give another --out"
        )


# The files an evaluation writes besides results.jsonl, replacing any there.
REPORTS = ("report.md", "report.html", "summary.json")


def _decoded(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _whole_json(line: str | None) -> bool:
    if line is None:
        return False
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _parse_line(line: str | None) -> SampleResult | None:
    """The result on one line of the file, or None where the line holds none."""
    if line is None:
        return None
    try:
        return SampleResult.from_dict(json.loads(line))
    except (json.JSONDecodeError, TypeError, AttributeError):
        return None
