"""The run's reports: ``report.md`` and a self-contained ``report.html`` with an inline SVG plot.

Both hold a table per language (or translation pair, or language and infilling kind):
problems, samples, pass@k (and exact match, for infilling), the shares of samples that parse
and that stay in their prompt's language (``geex.eval.code_checks``) and the verdict counts
("unavailable": the samples not judged, which pass@k leaves out); where a model made the
samples, the bits per byte of the reference programs per language; then the packages whose
absence left samples unjudged, with the commands that install them; then the samples that did
not pass (with the reason) when there are few enough to read, and the problems no sample
solved.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from geex.eval.scores import GroupScore
from geex.eval.verdicts import PASSED, VERDICTS

if TYPE_CHECKING:
    from geex.eval.run import EvalRun

MAX_LISTED = 200  # non-passing samples listed one by one
COLORS = {
    "passed": "#2e7d32",
    "failed": "#c62828",
    "timeout": "#ef6c00",
    "compile error": "#6a1b9a",
    "runtime error": "#ad1457",
    "sandbox violation": "#37474f",
    "unavailable": "#9e9e9e",
}


def _ks(run: EvalRun) -> list[int]:
    ks = sorted({k for g in run.scores.groups.values() for k in g.pass_at})
    return ks or sorted(run.scores.overall.pass_at)


def _row(name: str, g: GroupScore, ks: list[int], exact: bool = False) -> list[str]:
    cells = [name, str(g.problems), str(g.samples)]
    cells += [f"{100 * g.pass_at[k]:.2f}{g.coverage(k)}" if k in g.pass_at else "-" for k in ks]
    if exact:
        cells.append(f"{100 * g.exact_match:.2f}" if g.exact_match is not None else "-")
    cells += g.code_cells()
    cells += [str(g.verdicts.get(v, 0)) for v in VERDICTS]
    return cells


def has_exact_match(run: EvalRun) -> bool:
    """Whether the run is an infilling one, whose samples have an expected text."""
    return run.scores.overall.exact_match is not None


def _partial_sentence(run: EvalRun) -> str:
    """What "(a/b)" after a pass@k means, where some pass@k left problems out."""
    groups = [*run.scores.groups.values(), run.scores.overall]
    if not any(g.partial(k) for g in groups for k in g.covered):
        return ""
    return (
        "A pass@k marked (a/b) averages the a of b problems with at least k judged samples; "
        "the others had too many samples that could not be judged here."
    )


def _header(ks: list[int], exact: bool = False) -> list[str]:
    exact_column = ["exact match %"] if exact else []
    tasks = "tasks" if exact else "problems"  # an infilling task is a hole in a problem
    return ["", tasks, "samples", *[f"pass@{k} %" for k in ks], *exact_column, *CODE_COLUMNS,
            *VERDICTS]  # fmt: skip


CODE_COLUMNS = ["parses %", "stays %"]


def code_sentence(run: EvalRun) -> str:
    """What the parse and stay columns mean, how many samples were blank, and how many had
    text whose language could not be told."""
    overall = run.scores.overall
    notes = []
    if overall.blank:
        notes.append(f"{overall.blank} blank sample(s) count as not parsing and are left out "
                     "of stays")  # fmt: skip
    if overall.language_undecided:
        notes.append(f"{overall.language_undecided} sample(s) whose language could not be told "
                     "(no token the classifier knows) are left out of stays")  # fmt: skip
    return (
        "parses: the share of samples whose program (prompt and completion, without the tests) "
        "parses with tree-sitter, with no error or missing node, and whose completion holds "
        "code (comments or punctuation alone do not count); stays: the share that stays "
        "in the prompt's language, by a naive Bayes classifier of code lines trained on Geex's "
        "embedded problems and this run's problems, so it compares between runs of the same "
        "problems (docs/eval.md)" + ("; " + "; ".join(notes) + "." if notes else ".")
    )


def _missing_rows(run: EvalRun) -> list[list[str]]:
    return [
        [item["package"], str(item["samples"]), item["install"]]
        for item in run.scores.overall.missing_package_list()
    ]


def _unjudged_sentence(run: EvalRun) -> str:
    overall = run.scores.overall
    return (
        f"pass@k counts only the {overall.judged} judged samples; {overall.unavailable} "
        f"could not be judged here"
        + (", for want of these packages:" if overall.missing_packages else ".")
    )


def _not_passed(run: EvalRun):
    return [r for r in run.results if r.verdict != PASSED]


def _unsolved(run: EvalRun) -> list[str]:
    solved = {r.task_id for r in run.results if r.verdict == PASSED}
    seen = dict.fromkeys(r.task_id for r in run.results)
    return [t for t in seen if t not in solved]


BITS_PER_BYTE_HEADER = ["", "problems", "bytes", "tokens", "bits per byte"]


BITS_PER_BYTE_SENTENCE = (
    "Bits per byte of the reference programs (each problem's prompt and canonical solution) "
    "under the model: no sampling, and comparable across tokenizers; lower is better."
)


def _bits_per_byte_rows(run: EvalRun) -> list[list[str]]:
    return [
        [group, str(row["problems"]), f"{row['bytes']:,}", f"{row['tokens']:,}",
         f"{row['bits_per_byte']:.4f}"]
        for group, row in (run.bits_per_byte or {}).items()
    ]  # fmt: skip


def markdown(run: EvalRun) -> str:
    ks = _ks(run)
    exact = has_exact_match(run)
    unit = "tasks" if exact else "problems"
    lines = [f"# {run.title}", ""]
    lines.append(
        f"{len(run.results)} samples of {len({r.task_id for r in run.results})} {unit}, "
        f"judged in {run.seconds:.1f} s; sandbox: {run.sandbox}"
        + (f"; {run.resumed} results resumed from an earlier run" if run.resumed else "")
        + "."
    )
    lines += [f"\n> {note}" for note in run.notes]
    header = _header(ks, exact)
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, g in run.scores.groups.items():
        lines.append("| " + " | ".join(_row(name, g, ks, exact)) + " |")
    lines.append("| " + " | ".join(_row("**all**", run.scores.overall, ks, exact)) + " |")
    lines.append(f"\n{code_sentence(run)}")
    missing_k = [k for k in (1, 10, 100) if k not in run.scores.overall.pass_at]
    if missing_k:
        lines.append(
            f"\npass@k is given only where every problem has at least k samples "
            f"(the fewest here: {run.scores.overall.min_samples})."
        )
    if _partial_sentence(run):
        lines.append(f"\n{_partial_sentence(run)}")
    if run.bits_per_byte:
        lines += ["", BITS_PER_BYTE_SENTENCE, ""]
        lines += ["| " + " | ".join(BITS_PER_BYTE_HEADER) + " |", "|" + "---|" * 5]
        lines += ["| " + " | ".join(row) + " |" for row in _bits_per_byte_rows(run)]
    if run.scores.overall.unavailable:
        lines += ["", "## Samples not judged", "", _unjudged_sentence(run)]
        missing = _missing_rows(run)
        if missing:
            lines += ["", "| package | samples | install |", "|---|---|---|"]
            lines += [f"| {p} | {n} | `{install}` |" for p, n, install in missing]
    failing = _not_passed(run)
    if failing and len(failing) <= MAX_LISTED:
        lines += [
            "",
            "## Samples that did not pass",
            "",
            "| task | sample | verdict | reason |",
            "|---|---|---|---|",
        ]
        for r in failing:
            reason = r.detail.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r.task_id} | {r.completion_id} | {r.verdict} | {reason} |")
    unsolved = _unsolved(run)
    if unsolved and len(failing) > MAX_LISTED:
        heading = f"## {unit.capitalize()} no sample solved ({len(unsolved)})"
        lines += ["", heading, "", ", ".join(unsolved)]
    return "\n".join(lines) + "\n"


def svg_chart(run: EvalRun) -> str:
    """A stacked bar per group: the share of each verdict, labelled with pass@1."""
    groups = list(run.scores.groups.items())
    bar_w, label_w, row_h, top = 520, 190, 26, 30
    height = top + row_h * len(groups) + 40
    width = label_w + bar_w + 90
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12" role="img" aria-label="verdicts per group">',
        f'<text x="{label_w}" y="18" font-weight="bold">share of samples by verdict</text>',
    ]
    for i, (name, g) in enumerate(groups):
        y = top + i * row_h
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{html.escape(name)}</text>'
        )
        x = float(label_w)
        total = max(g.samples, 1)
        for verdict in VERDICTS:
            count = g.verdicts.get(verdict, 0)
            if not count:
                continue
            w = bar_w * count / total
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" '
                f'fill="{COLORS[verdict]}"><title>{verdict}: {count}</title></rect>'
            )
            x += w
        p1 = g.pass_at.get(1)
        label = f"pass@1 {100 * p1:.1f}%" if p1 is not None else ""
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 15}">{label}</text>')
    y = top + row_h * len(groups) + 14
    x = label_w
    for verdict in VERDICTS:
        parts.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{COLORS[verdict]}"/>')
        parts.append(f'<text x="{x + 14}" y="{y + 9}" font-size="10">{verdict}</text>')
        x += 14 + 6 * len(verdict) + 8
    parts.append("</svg>")
    return "\n".join(parts)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(run: EvalRun) -> str:
    ks = _ks(run)
    exact = has_exact_match(run)
    rows = [_row(name, g, ks, exact) for name, g in run.scores.groups.items()]
    rows.append(_row("all", run.scores.overall, ks, exact))
    notes = "".join(f"<p class=note>{html.escape(n)}</p>" for n in run.notes)
    partial = _partial_sentence(run)
    partial = f"<p>{html.escape(partial)}</p>" if partial else ""
    bits_per_byte = ""
    if run.bits_per_byte:
        bits_per_byte = f"<p>{html.escape(BITS_PER_BYTE_SENTENCE)}</p>" + _html_table(
            BITS_PER_BYTE_HEADER, _bits_per_byte_rows(run)
        )
    unjudged = ""
    if run.scores.overall.unavailable:
        unjudged = f"<h2>Samples not judged</h2><p>{html.escape(_unjudged_sentence(run))}</p>"
        if run.scores.overall.missing_packages:
            unjudged += _html_table(["package", "samples", "install"], _missing_rows(run))
    failing = _not_passed(run)
    details = ""
    if failing and len(failing) <= MAX_LISTED:
        items = []
        for r in failing:
            items.append(
                f"<details><summary>{html.escape(r.task_id)} #{r.completion_id}: "
                f"{html.escape(r.verdict)} ({html.escape(r.detail)})</summary>"
                f"<pre>{html.escape(r.stderr)}</pre><pre>{html.escape(r.program)}</pre></details>"
            )
        details = "<h2>Samples that did not pass</h2>" + "".join(items)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(run.title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
tr:last-child td {{ font-weight: bold; }}
pre {{ background: #f6f6f6; padding: 8px; overflow-x: auto; max-height: 30em; }}
.note {{ background: #fff3e0; padding: 6px; }}
</style></head><body>
<h1>{html.escape(run.title)}</h1>
<p>{len(run.results)} samples judged in {run.seconds:.1f} s; sandbox: {html.escape(run.sandbox)}.</p>
{notes}
{_html_table(_header(ks, exact), rows)}
<p>{html.escape(code_sentence(run))}</p>
{partial}
{bits_per_byte}
{svg_chart(run)}
{unjudged}
{details}
</body></html>
"""


def write_reports(run: EvalRun, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(markdown(run), encoding="utf-8")
    (folder / "report.html").write_text(html_report(run), encoding="utf-8")
