"""Whether a completion stays in its prompt's language: a naive Bayes classifier over the shape
of code, as GitHub Linguist's classifier tells languages apart by their tokens.

A young model wanders: a Python prompt continued with a few lines of Go or C++. Those lines
need not be a whole program, so the classifier looks at windows of consecutive lines
(:data:`WINDOW` features each) and says a completion *leaves* its language when the log
likelihood of some window under another language exceeds that under the prompt's language by
more than :data:`MARGIN` nats, or some window holds a preprocessor directive its language
cannot (below). The prompt's language thus wins every window that is ambiguous (``return x;``
is C++, Java and JavaScript alike): leaving needs evidence.

Features are what tells languages apart whatever the program does (Linguist's tokenizer
likewise drops string contents and numbers):

- per line, its tokens: the words the six tree-sitter grammars reserve (``def``, ``func``,
  ``fn``, ``let``), operators (``:=``, ``->``, ``=>``, ``::``), brackets; any other
  identifier becomes one placeholder, as problem-specific names say nothing of the language;
  a string is its quote character, a comment its opening delimiter (a line of comment alone
  is prose: that delimiter is its only feature, and a window of such lines is not judged:
  ``//`` is five languages' delimiter); a preprocessor line is its directive (``#include``),
  but only where ``#`` opens the line and the directive's name follows it at once: C allows
  ``# include``, rarely written, while Python's ``# define the base case`` is a comment;
- the pairs of adjacent tokens, with the line's start and end (``if (``, ``) {``, ``: $``):
  the shape of a line (``if x {`` in Go and Rust, ``if (x) {`` in C++, ``if x:`` in Python),
  without its closing semicolon (``x = 1;`` and JavaScript's ``x = 1`` have one shape).

Each feature counts once per window, in training and in judging (binarized multinomial naive
Bayes, as in Wang and Manning, 2012): a young model's loop repeats one token until the length
limit (``f.f.f.f``, ``"string", "string", ...``), and counted every time, a
feature that leans a little towards another language outweighed the whole window by a hundred
nats or more.

One feature decides by itself: a preprocessor directive that, of the six grammars, only C++'s
has as a token (``#include``, ``#define``, ``#ifdef``, ``#ifndef``, ``#endif``; ``#undef`` and
``#pragma`` are no token of it, and ``#if``, ``#else`` are read as comments) makes its window
leave any other language but Python (where ``#`` opens a comment, so such a line may be a
comment). By the counts it weighs little: the C++ the identifier learns from has ``#include``
and hardly another directive, so a young model's answer to a Rust signature in C header lines
(``#ifndef _X_INT32``, ``#define X 0x00`` again and again) had no known feature and stayed.
Lines are read one by one, so a directive inside a block comment or a string of many lines
decides too: Go's cgo preambles (C in a ``/* */`` comment) leave.

Trained (add-half smoothing) on the prompts and canonical solutions of Geex's embedded set and
of the problems being evaluated: its verdicts, and so the shares ``geex eval`` reports,
compare between runs of the same problems (the same folder, ``--task`` and ``--languages``);
each stored verdict carries the identifier's :meth:`LanguageIdentifier.fingerprint`, and a
resumed run makes again those of another. A completion with no token at all (blank) is
*undecided*: ``None``, left out of the share that stays, and counted apart. One whose tokens
the identifier never saw has no evidence against its language, and stays.

Measured (``tests/eval/test_language_id.py``, HumanEval-X, 164 problems per language),
trained on the embedded set and the even-numbered problems, tested on the 82 odd-numbered
canonical solutions of each language: 0 to 4 of them are taken to leave their language (7 of
492 in all, 1.4%; Python the most); of Python canonical solutions with three lines of another
problem's Go (C++) solution spliced in, 87% (95%) are found to leave. Trained on the embedded
set alone (what ``geex run``'s samples are checked with), it names the language of 84% of
whole held-out HumanEval-X programs (JavaScript 66%), and takes 24 of the 984 to leave their
language (Rust 10 of 164). Trained on the embedded set less one problem, 8 of its 60 canonical
solutions are taken to leave (nine problems a language are little to learn from; character
literals such as ``'a'`` make C++ and Java alike). On real code (``benchmarks/language_id.py``:
chunks of 12 lines from the files of a ``geex data`` folder, the code a ``geex run`` model
learns from) it errs more: trained as for HumanEval-X, 15% of the chunks are taken to leave
(C++ a third: HumanEval-X's C++ has little ``const``, ``template`` or preprocessing), and 64%
of chunks with three lines of another language spliced in are found. The margin of 9 nats was
chosen with these measures: every one of them is as good as or better than with each repeat
counted at the 14 nats used before (16 of 492, 84% and 89%; 82% named and 61 of 984 taken to
leave; 18% of real chunks taken to leave and 63% of splices found), but two: the held-out
embedded solutions (8 of 60 against 7) and, trained on the embedded set alone, the splices
found in real code (45% against 46%). The cost of the semicolon-free shapes: two C++
statements after Python lines (``std::vector<int> out;`` and a one-line ``for``) are no longer enough to leave;
a braced loop is.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import ClassVar

from geex.eval.problems import Problem, load_embedded

WINDOW = 20  # features per window: about two lines
MARGIN = 9.0  # nats: chosen on HumanEval-X and real code (see the docstring)
SMOOTHING = 0.5
HASH_COMMENT_LANGUAGES = frozenset({"python"})  # of the six, where ``#`` opens a comment
# Raised whenever line_tokens or line_features change what they return, or how features are
# counted or a window judged: stored verdicts of another version are made again
# (geex.eval.code_checks).
FEATURES_VERSION = 4

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`[^`]*`)
    |(?P<directive>^\s*\#(?:include|define|undef|ifn?def|endif|pragma)\b)
    |(?P<comment>//|/\*|\#)
    |(?P<word>[A-Za-z_][A-Za-z_0-9]*!?)
    |(?P<number>\d[\w.]*)
    |(?P<operator>::|:=|->|=>|===|!==|==|!=|<=|>=|&&|\|\||\+\+|--|<<|>>|\+=|-=
        |[{}()\[\];:,.<>=+\-*/%&|^!?~@$\\])
    """,
    re.X,
)


def _unnamed_kinds(language_key: str) -> set[str]:
    """The literal tokens of a language's tree-sitter grammar: its unnamed node kinds."""
    from geex.eval.parse_check import parser

    language = parser(language_key).language
    kinds = (language.node_kind_for_id(kind) for kind in range(language.node_kind_count)
             if not language.node_kind_is_named(kind))  # fmt: skip
    return {name for name in kinds if name}


@cache
def reserved_words() -> frozenset[str]:
    """The words any of the six grammars reserves."""
    from geex.eval.parse_check import GRAMMARS

    return frozenset(w for key in GRAMMARS for w in _unnamed_kinds(key) if w[0].isalpha())


@cache
def directive_languages() -> dict[str, frozenset[str]]:
    """Each preprocessor directive (``#include``) -> the languages whose grammar has it as a
    token: of the six, C++ alone."""
    from geex.eval.parse_check import GRAMMARS

    owners: dict[str, set[str]] = {}
    for key in GRAMMARS:
        for name in _unnamed_kinds(key):
            if name[0] == "#" and name[1:].isalpha():
                owners.setdefault(name, set()).add(key)
    return {name: frozenset(keys) for name, keys in owners.items()}


def line_tokens(line: str) -> list[str]:
    tokens = []
    reserved = reserved_words()
    for match in _TOKEN.finditer(line):
        kind, text = match.lastgroup, match.group()
        if kind == "string":
            tokens.append("STRING" + text[0])
        elif kind == "directive":
            tokens.append(text.strip())
        elif kind == "comment":
            tokens.append("COMMENT" + text)
            break  # the rest of the line is prose
        elif kind == "word":
            tokens.append(text if text in reserved else "NAME")
        elif kind == "operator":
            tokens.append(text)
    return tokens


def line_features(line: str) -> list[str]:
    """A line's tokens and its pairs of adjacent tokens, from its start to its end."""
    tokens = line_tokens(line)
    if len(tokens) == 1 and tokens[0].startswith("COMMENT"):
        return tokens  # a line of prose: its delimiter alone
    if not tokens:
        return []
    # A line's shape leaves out its closing semicolon, which JavaScript may omit: Geex's
    # embedded JavaScript writes none, and the HumanEval-X JavaScript most lines end with it
    # would otherwise look like another language's. The semicolon stays a token of its own.
    shape = tokens[:-1] if tokens[-1] == ";" else tokens
    edged = ["^", *shape, "$"]
    return tokens + [f"{a} {b}" for a, b in itertools.pairwise(edged)]


def windows(text: str) -> list[list[str]]:
    """The features of ``text`` in runs of whole lines of at least :data:`WINDOW` each (the
    last may be shorter)."""
    out, current = [], []
    for line in text.split("\n"):
        current += line_features(line)
        if len(current) >= WINDOW:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def distinct(window: list[str]) -> list[str]:
    """A window's features, each once (sorted, so that sums of their scores come out the
    same in every process): a loop that repeats one token (``f.f.f.f``) is one piece of
    evidence, not a hundred (binarized naive Bayes)."""
    return sorted(set(window))


@dataclass
class LanguageIdentifier:
    counts: dict[str, Counter]  # language key -> feature counts
    # How a window's features count (in training, naming and judging alike), and by how many
    # nats another language must win a window: class attributes, so that a variant of the
    # rule (benchmarks/language_id.py's baseline) changes them and nothing else.
    evidence: ClassVar[Callable[[list[str]], list[str]]] = staticmethod(distinct)
    margin: ClassVar[float] = MARGIN
    # Whether a preprocessor directive outside the languages whose grammar has it makes its
    # window leave, whatever the scores (see the module's docstring).
    directives_decide: ClassVar[bool] = True

    @classmethod
    def train(cls, texts: Iterable[tuple[str, str]]) -> LanguageIdentifier:
        """From (language key, code) pairs."""
        counts: dict[str, Counter] = {}
        for key, code in texts:
            features = counts.setdefault(key, Counter())
            for window in windows(code):
                features.update(cls.evidence(window))
        return cls(counts)

    def __post_init__(self) -> None:
        self._vocabulary = set().union(*self.counts.values()) if self.counts else set()
        size = len(self._vocabulary) + 1
        self._denominator = {k: sum(c.values()) + SMOOTHING * size for k, c in self.counts.items()}

    def fingerprint(self) -> str:
        """What its verdicts follow from: the feature format, the rules of judging (the
        margin, which directives decide where) and the training counts."""
        counts = {key: sorted(c.items()) for key, c in sorted(self.counts.items())}
        directives = {
            d: sorted(keys) for d, keys in sorted(directive_languages().items())
        } if self.directives_decide else {}  # fmt: skip
        rules = [self.margin, directives, sorted(HASH_COMMENT_LANGUAGES), SMOOTHING]
        text = json.dumps([FEATURES_VERSION, WINDOW, rules, counts])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def languages(self) -> list[str]:
        return list(self.counts)

    def log_likelihoods(self, features: list[str]) -> dict[str, float]:
        """Per language, the log likelihood of ``features`` (those never seen are left out:
        they say nothing of any language)."""
        known = [f for f in features if f in self._vocabulary]
        return {
            key: sum(math.log((counts[f] + SMOOTHING) / self._denominator[key]) for f in known)
            for key, counts in self.counts.items()
        }

    def identify(self, code: str) -> str | None:
        """The likeliest language of ``code`` as a whole; None when it has no token."""
        features = [f for window in windows(code) for f in self.evidence(window)]
        if not features:
            return None
        scores = self.log_likelihoods(features)
        return max(scores, key=scores.__getitem__)

    def stays(self, completion: str, language_key: str) -> bool | None:
        """Whether no window of ``completion`` is clearly another language's (by the scores,
        or by a directive its language cannot hold); None when it has no token (a blank
        completion), or ``language_key`` is unknown here."""
        if language_key not in self.counts:
            return None
        parts = windows(completion)
        if not parts:
            return None
        for window in parts:
            if all(f.startswith("COMMENT") for f in window):
                continue  # prose says little of a language; its delimiter is shared
            if self.directives_decide and foreign_directive(window, language_key):
                return False
            scores = self.log_likelihoods(self.evidence(window))
            own = scores.pop(language_key)
            if scores and max(scores.values()) - own > self.margin:
                return False
        return True


def foreign_directive(window: list[str], language_key: str) -> bool:
    """Whether ``window`` holds a preprocessor directive that ``language_key``'s grammar
    does not have (``#define`` in a Rust completion). Never in a language whose comments
    ``#`` opens: there a line that reads like a directive may be a comment
    (``#define the base case``)."""
    if language_key in HASH_COMMENT_LANGUAGES:
        return False
    owners = directive_languages()
    return any(feature in owners and language_key not in owners[feature] for feature in window)


def training_texts(problems: Iterable[Problem]) -> list[tuple[str, str]]:
    return [(p.language.key, p.prompt + p.canonical_solution) for p in problems]


def identifier_for(problems: Iterable[Problem]) -> LanguageIdentifier:
    """Trained on the embedded set and ``problems`` (those not already in it)."""
    embedded = load_embedded()
    names = {p.task_id for p in embedded}
    more = [p for p in problems if p.task_id not in names]
    return LanguageIdentifier.train(training_texts([*embedded, *more]))


@cache
def embedded_identifier() -> LanguageIdentifier:
    """Trained on the embedded set alone: for samples of no benchmark (``geex run``'s)."""
    return identifier_for([])
