"""HumanEval-X canonical solutions that do not (always) pass here, and why.

``geex eval humanevalx --canonical`` checks every other canonical solution passes and these
get one of their listed verdicts; the reasons are printed beside them.
"""

from __future__ import annotations

from geex.eval.verdicts import FAILED, PASSED, UNAVAILABLE

KNOWN_CANONICAL: dict[str, tuple[frozenset[str], str]] = {
    "JavaScript/112": (
        frozenset({FAILED}),
        "the canonical solution returns `(z, false)`: JavaScript's comma operator keeps only "
        "the boolean, while the tests expect [string, boolean]",
    ),
    "JavaScript/155": (
        frozenset({FAILED}),
        "the canonical solution counts no digits in 0; the tests expect [1, 0] "
        "(CodeGeeX2's copy of the data fixes it)",
    ),
    "JavaScript/162": (
        frozenset({UNAVAILABLE}),
        "needs the npm package js-md5; `geex eval prepare --npm` installs it, and then it passes",
    ),
    "Go/95": (
        frozenset({PASSED, FAILED}),
        "the canonical solution stops after the second key it sees, and Go iterates maps in a "
        "random order: it passes or fails by chance, here as in the reference harness",
    ),
    "Rust/50": (
        frozenset({UNAVAILABLE}),
        "its test calls rand 0.4's gen_range(low, high); Debian packages rand 0.8, whose "
        "gen_range takes a range",
    ),
}


def expected_canonical(task_id: str, *, js_md5: bool = False) -> frozenset[str]:
    """The verdicts a canonical solution may get here (``js_md5``: the package is there)."""
    if task_id == "JavaScript/162" and js_md5:
        return frozenset({PASSED})
    return KNOWN_CANONICAL.get(task_id, (frozenset({PASSED}), ""))[0]
