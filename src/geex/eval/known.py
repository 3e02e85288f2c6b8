"""HumanEval-X canonical solutions that do not pass here, and why.

``geex eval humanevalx --canonical`` checks every other canonical solution passes and these
get exactly these verdicts; the reasons are printed beside them.
"""

from __future__ import annotations

from geex.eval.verdicts import FAILED, PASSED, UNAVAILABLE

KNOWN_CANONICAL: dict[str, tuple[str, str]] = {
    "JavaScript/112": (
        FAILED,
        "the canonical solution returns `(z, false)`: JavaScript's comma operator keeps only "
        "the boolean, while the tests expect [string, boolean]",
    ),
    "JavaScript/155": (
        FAILED,
        "the canonical solution counts no digits in 0; the tests expect [1, 0] "
        "(CodeGeeX2's copy of the data fixes it)",
    ),
    "JavaScript/162": (
        UNAVAILABLE,
        "needs the npm package js-md5; `geex eval prepare --npm` installs it, and then it passes",
    ),
    "Rust/50": (
        UNAVAILABLE,
        "its test calls rand 0.4's gen_range(low, high); Debian packages rand 0.8, whose "
        "gen_range takes a range",
    ),
}


def expected_canonical(task_id: str, *, js_md5: bool = False) -> str:
    """The verdict a canonical solution should get here (``js_md5``: the package is there)."""
    if task_id == "JavaScript/162" and js_md5:
        return PASSED
    return KNOWN_CANONICAL.get(task_id, (PASSED, ""))[0]
