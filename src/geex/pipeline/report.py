"""The report of a ``geex run``: ``report.md`` and a self-contained ``report.html``.

Everything in it is read back from the run folder (the dataset card, the tokenizer, the
model's config, ``metrics.jsonl``, the evaluation summaries and results, the samples), so it
shows what the stages wrote, and ``write_report`` can draw it again at any time. The HTML
file carries its figures inline (PNG, base64) and fetches nothing; the Markdown file links
the same figures, written beside it under ``report/``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from geex.atomic import atomic_write_text
from geex.pipeline.budget import format_duration as _duration
from geex.pipeline.reference import CODEGEEX_13B_HUMANEVALX, REFERENCE_NOTE
from geex.pipeline.stages import stage_summary

_NUMBER = re.compile(r"[-+]?[\d,.]+\s*(%|s|min|h|MB|[kMGT])?|-|(\d+ (h|min) )?\d+ (min|s)")


@dataclass
class Section:
    title: str
    markdown: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)

    def text(self, line: str) -> None:
        self.markdown.append(line + "\n")
        self.html.append(f"<p>{_inline(line)}</p>")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        """Text columns align left, numbers right; an all-blank header is a key-value list."""
        numeric = [
            i > 0 and all(_NUMBER.fullmatch(row[i]) for row in rows if row[i])
            for i in range(len(header))
        ]
        self.markdown.append("| " + " | ".join(header) + " |")
        self.markdown.append("|" + "|".join("--:" if n else "---" for n in numeric) + "|")
        self.markdown += ["| " + " | ".join(row) + " |" for row in rows]
        self.markdown.append("")

        def cell(tag: str, text: str, i: int) -> str:
            return f"<{tag}{' class=num' if numeric[i] else ''}>{html.escape(text)}</{tag}>"

        head = ""
        if any(header):
            head = (
                "<thead><tr>"
                + "".join(cell("th", h, i) for i, h in enumerate(header))
                + "</tr></thead>"
            )
        body = "".join(
            "<tr>" + "".join(cell("td", c, i) for i, c in enumerate(row)) + "</tr>" for row in rows
        )
        self.html.append(f"<table>{head}<tbody>{body}</tbody></table>")

    def figure(self, name: str, png: bytes, caption: str, folder: Path) -> None:
        path = folder / f"{name}.png"
        path.write_bytes(png)
        self.markdown.append(f"![{caption}](report/{path.name})\n")
        data = base64.b64encode(png).decode("ascii")
        self.html.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def code(self, text: str, caption: str) -> None:
        self.markdown += [f"*{caption}*\n", "```", text.rstrip("\n"), "```\n"]
        self.html.append(
            f"<figure class=code><figcaption>{html.escape(caption)}</figcaption>"
            f"<pre>{html.escape(text.rstrip())}</pre></figure>"
        )


def write_report(out: str | Path) -> tuple[Path, Path]:
    """Draw ``OUT/report.html`` and ``OUT/report.md`` (figures in ``OUT/report/``)."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    figures = out / "report"
    figures.mkdir(parents=True, exist_ok=True)
    run = _read_json(out / "run.json") or {}
    sections = [
        _overview(out, run),
        _data(out, figures),
        _tokenizer(out),
        _model(out),
        _training(out, figures),
        _evaluation(out, figures),
        _samples(out),
        _next_commands(out),
    ]
    sections = [s for s in sections if s is not None]
    title = f"Geex run: {out.name}"
    markdown = "\n".join([f"# {title}\n", *(_md(s) for s in sections)])
    page = _html_page(title, sections)
    atomic_write_text(out / "report.md", markdown)
    atomic_write_text(out / "report.html", page)
    return out / "report.html", out / "report.md"


# -- sections ------------------------------------------------------------------------------------


def _overview(out: Path, run: dict) -> Section:
    section = Section("Overview")
    config = _read_yaml(out / "run.yaml") or {}
    stages = run.get("stages", {})
    section.text(
        f"Budget: **{config.get('budget', '?')}**. The stages, their wall time and what they "
        "made (the report itself is written last):"
    )
    rows = [[name, _duration(r["seconds"]), stage_summary(name, r)] for name, r in stages.items()]
    total = sum(r["seconds"] for r in stages.values())
    rows.append(["all", _duration(total), ""])
    section.table(["stage", "time", "result"], rows)
    plan = run.get("plan", {})
    if plan.get("train_seconds"):
        section.text(
            f"Training was given {_duration(plan['train_seconds'])} of the budget, "
            f"{_duration(plan.get('reserve_seconds', 0))} being kept for evaluation, export "
            "and the report."
        )
    return section


def _data(out: Path, folder: Path) -> Section | None:
    card = _read_json(out / "data" / "card.json")
    if card is None:
        return None
    section = Section("Data")
    totals = card["totals"]
    read = card.get("read", {})
    section.text(
        f"Sources: {', '.join(card.get('sources', [])) or '?'}. Read {read.get('files', 0):,} "
        f"files ({read.get('bytes', 0) / 1e6:,.1f} MB); kept {totals['files']:,} files "
        f"({totals['bytes'] / 1e6:,.1f} MB), {totals['tokens']:,} tokens, of which "
        f"{totals.get('validation_tokens', 0):,} held out for validation."
    )
    rows = [
        [
            lang,
            f"{row['files']:,}",
            f"{row['bytes'] / 1e6:,.2f}",
            f"{row['tokens']:,}",
            f"{row.get('validation_tokens', 0):,}",
        ]
        for lang, row in card["languages"].items()
    ]
    section.table(["language", "files", "MB", "tokens", "validation tokens"], rows)
    removed = []
    for entry in card.get("removed", []):
        block = entry["block"].encode("ascii", "ignore").decode().strip()
        for reason, n in entry.get("removed", {}).items():
            removed.append([entry["stage"], block, reason.replace("_", " "), f"{n:,}"])
        for kind, n in entry.get("redacted", {}).items():
            removed.append([entry["stage"], block, f"redacted {kind.replace('_', ' ')}", f"{n:,}"])
    if removed:
        section.text("What each stage removed (files) or redacted (occurrences):")
        section.table(["stage", "block", "reason", "count"], removed)
    if card["languages"]:
        section.figure("data", _data_png(card), "tokens per language", folder)
    return section


def _tokenizer(out: Path) -> Section | None:
    from geex.tokenizer import load_tokenizer

    card = _read_json(out / "data" / "card.json")
    if card is None or not (out / "data" / "tokenizer.json").is_file():
        return None
    section = Section("Tokenizer")
    tokenizer = load_tokenizer(out / "data")
    vocab, special = tokenizer.vocab_size, list(tokenizer.special_tokens())
    trained = card.get("options", {}).get("tokenizer") is None
    section.text(
        f"{'Byte-level BPE trained on this corpus' if trained else 'Given tokenizer'}: "
        f"{vocab:,} tokens, {len(special)} special ({', '.join(special[:6])}"
        f"{', ...' if len(special) > 6 else ''}). Bytes per token on the packed corpus "
        "(each file with its language tag line), higher is a tighter code:"
    )
    rows = [
        [lang, f"{row['bytes'] / max(row['tokens'], 1):.2f}"]
        for lang, row in card["languages"].items()
    ]
    totals = card["totals"]
    rows.append(["all", f"{totals['bytes'] / max(totals['tokens'], 1):.2f}"])
    section.table(["language", "bytes per token"], rows)
    return section


def _model(out: Path) -> Section | None:
    from geex.model.checkpoint import read_config
    from geex.model.info import human_count, model_info

    folder = out / "train" / "model"
    if not (folder / "config.json").is_file():
        return None
    config = read_config(folder)
    info = model_info(config)
    meta = _read_json(folder / "config.json") or {}
    trained = meta.get("trained_tokens")
    section = Section("Model")
    rows = [
        ["architecture", f"CodeGeeX: {config.n_layer} blocks + the top query layer"],
        ["hidden / heads / FFN", f"{config.d_model} / {config.n_head} / {config.d_ffn}"],
        ["context", f"{config.max_seq_len} tokens"],
        ["vocabulary", f"{config.vocab_size:,} padded to {config.padded_vocab_size:,}"],
        ["parameters", f"{info.params:,} ({human_count(info.params)})"],
        [
            "FLOPs per token (training)",
            f"{info.flops_per_token:,} ({human_count(info.flops_per_token)})",
        ],
    ]
    if trained:
        rows.append(["trained tokens", f"{trained:,}"])
        rows.append(["training FLOPs", human_count(trained * info.flops_per_token)])
    rows.append(["checkpoints", f"Geex: {folder}; Hugging Face: {out / 'hf'}"])
    section.table(["", ""], rows)
    return section


def _training(out: Path, folder: Path) -> Section | None:
    from geex.train.plot import loss_figure, read_run_metrics, run_summary, throughput_figure

    if not (out / "train" / "metrics.jsonl").is_file():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = read_run_metrics(out / "train")
    section = Section("Training")
    section.table(["", ""], [[k, v] for k, v in run_summary(records).items()])
    section.figure(
        "loss", _png(loss_figure(records)), "loss: training, and validation per language", folder
    )
    section.figure("throughput", _png(throughput_figure(records)), "throughput", folder)
    return section


def _evaluation(out: Path, folder: Path) -> Section | None:
    summaries = {
        name: _read_json(out / "eval" / name / "summary.json")
        for name in ("embedded", "humanevalx")
    }
    summaries = {k: v for k, v in summaries.items() if v}
    run = _read_json(out / "run.json") or {}
    missing = run.get("stages", {}).get("eval", {}).get("missing_toolchains", {})
    if not summaries and not missing:
        return None
    section = Section("Evaluation")
    for name, summary in summaries.items():
        ks = sorted({k for g in summary["groups"].values() for k in g["pass@k"]},
                    key=lambda k: int(k.split("@")[1]))  # fmt: skip
        section.text(f"**{summary['title']}** (sandbox: {summary['sandbox']}):")
        header = ["language", "problems", "samples", *ks, "verdicts"]
        if name == "humanevalx":
            header.append("CodeGeeX-13B pass@1")
        rows = []
        for group, g in summary["groups"].items():
            verdicts = ", ".join(f"{v} {n}" for v, n in g["verdicts"].items() if n)
            row = [group, str(g["problems"]), str(g["samples"]),
                   *[_percent(g["pass@k"].get(k)) for k in ks], verdicts]  # fmt: skip
            if name == "humanevalx":
                row.append(_percent(CODEGEEX_13B_HUMANEVALX.get(group)))
            rows.append(row)
        section.table(header, rows)
        section.figure(f"eval-{name}", _eval_png(summary, name == "humanevalx"),
                       f"pass@1 per language, {summary['title']}", folder)  # fmt: skip
    section.text(REFERENCE_NOTE)
    for language, why in missing.items():
        section.text(f"{language}: not evaluated: {why}.")
    return section


def _samples(out: Path) -> Section | None:
    record = _read_json(out / "samples.json") or {}
    judged = _first_results(out / "eval" / "embedded" / "results.jsonl")
    samples = record.get("samples", [])
    if not samples and not judged:
        return None
    section = Section("Samples")
    if samples:
        how = record.get("sampling", {})
        section.text(
            f"Completions of a short prompt per language, sampled at temperature "
            f"{how.get('temperature')}, top-p {how.get('top_p')}, seed {how.get('seed')} "
            "(prompt, then the model's text):"
        )
    for s in samples:
        section.code(s["prompt"] + s["completion"], s["language"])
    if judged:
        section.text("The first problem of the embedded set per language, as judged:")
        for r in judged:
            section.code(r.program[-1500:], f"{r.task_id}: {r.verdict}")
    return section


def _next_commands(out: Path) -> Section:
    section = Section("Next")
    model = out / "train" / "model"
    section.code(
        "\n".join([
            f"geex generate --model {model} --language python --prompt 'def add(a, b):'",
            f"geex serve --model {model}",
            f"geex eval humanevalx --model {model} --data HUMANEVAL_X_DIR --out {out}/eval/hx",
            f"geex train --data {out}/data --out {out}/train --max-steps 5000   # train further",
            f"geex plot {out}/train",
        ]),
        "commands",
    )  # fmt: skip
    return section


# -- figures ---------------------------------------------------------------------------------------


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _data_png(card: dict) -> bytes:
    import matplotlib.pyplot as plt

    languages = list(card["languages"])[::-1]
    tokens = [card["languages"][lang]["tokens"] for lang in languages]
    figure, axes = plt.subplots(figsize=(7, 0.35 * len(languages) + 1))
    axes.barh(languages, tokens, color="#1f77b4")
    axes.set_xlabel("tokens")
    axes.set_title("training data per language")
    figure.tight_layout()
    return _png(figure)


def _eval_png(summary: dict, with_reference: bool) -> bytes:
    import matplotlib.pyplot as plt

    groups = list(summary["groups"])
    ours = [100 * summary["groups"][g]["pass@k"].get("pass@1", 0) for g in groups]
    figure, axes = plt.subplots(figsize=(7, 3.2))
    width = 0.4 if with_reference else 0.6
    positions = range(len(groups))
    axes.bar([p - (width / 2 if with_reference else 0) for p in positions], ours, width,
             label="this model", color="#1f77b4")  # fmt: skip
    if with_reference:
        reference = [100 * CODEGEEX_13B_HUMANEVALX.get(g, 0) for g in groups]
        axes.bar([p + width / 2 for p in positions], reference, width,
                 label="CodeGeeX-13B (850B tokens)", color="#ff7f0e")  # fmt: skip
    axes.set_xticks(list(positions), groups)
    axes.set_ylabel("pass@1 (%)")
    axes.set_ylim(0, max([5, *ours] + ([25] if with_reference else [])) * 1.15)
    axes.legend(loc="upper right")
    if not any(ours):
        axes.text(0.5, 0.5, "no problem solved", transform=axes.transAxes, ha="center",
                  color="#555")  # fmt: skip
    figure.tight_layout()
    return _png(figure)


# -- rendering ---------------------------------------------------------------------------------------


def _md(section: Section) -> str:
    return "\n".join([f"## {section.title}\n", *section.markdown])


STYLE = """
body { font-family: system-ui, -apple-system, sans-serif; margin: 0 auto; max-width: 60em;
       padding: 1.5em; color: #222; line-height: 1.45; }
h1 { border-bottom: 3px solid #1f77b4; padding-bottom: 0.2em; }
h2 { margin-top: 1.6em; color: #1f4e79; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #eef3f8; }
figure { margin: 0.6em 0 1.4em; }
figcaption { color: #555; font-size: 0.9em; margin: 0.2em 0; }
img { max-width: 100%; }
pre { background: #f6f8fa; padding: 0.8em; font-size: 0.85em; border-radius: 4px;
      white-space: pre-wrap; overflow-wrap: anywhere; }
code { background: #f6f8fa; padding: 0 0.2em; }
"""


def _html_page(title: str, sections: list[Section]) -> str:
    nav = " ".join(f'<a href="#{_anchor(s.title)}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{_anchor(s.title)}"><h2>{html.escape(s.title)}</h2>\n'
        + "\n".join(s.html)
        + "</section>"
        for s in sections
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1><nav>{nav}</nav>\n{body}\n</body></html>\n"
    )


def _inline(text: str) -> str:
    """Markdown's **bold** as HTML, the rest escaped."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def _anchor(title: str) -> str:
    return title.lower().replace(" ", "-")


# -- reading -----------------------------------------------------------------------------------------


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_yaml(path: Path):
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def _first_results(path: Path) -> list:
    """The first judged sample of each language; the results file is in task order, which
    is the evaluation's language order."""
    from geex.eval.results import ResultsFile

    first = {}
    for result in ResultsFile(path).load().values():
        first.setdefault(result.language, result)
    return list(first.values())


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
