"""The report of a ``geex run``: ``report.md`` and a self-contained ``report.html``.

Everything in it is read back from the run folder (the dataset card, the tokenizer, the
model's config, ``metrics.jsonl``, the evaluation summaries and results, the samples), so it
shows what the stages wrote, and ``write_report`` can draw it again at any time. A damaged
file is named at the top of the report with what it left out (see
:mod:`~geex.pipeline.report_files`). The HTML
file carries its figures inline (PNG, base64) and fetches nothing; the Markdown file links
the same figures, written beside it under ``report/``.

torch (through :mod:`geex.model`) and matplotlib are imported inside functions, so that
importing :mod:`geex.pipeline` stays light.
"""

from __future__ import annotations

import base64
import html
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from geex.atomic import atomic_write_text
from geex.eval.results import ResultsFile
from geex.pipeline.benchmarks import TITLES
from geex.pipeline.budget import format_duration as _duration
from geex.pipeline.reference import CODEGEEX_13B_HUMANEVALX, REFERENCE_NOTE
from geex.pipeline.report_files import RunFolder
from geex.pipeline.stage_data import DataStage
from geex.pipeline.stage_eval import EvalStage
from geex.pipeline.stage_export import ExportStage
from geex.pipeline.stage_samples import SamplesStage, decoding_words, sample_marks
from geex.pipeline.stage_train import TrainStage
from geex.tokenizer import load_tokenizer

REPORT_FILES = ("report.html", "report.md", "report")  # the page, its text, its figures
# What the report reads, besides the run file: declared by the report stage.
REPORT_READS = (DataStage.card, DataStage.tokenizer, TrainStage.model, TrainStage.metrics,
                EvalStage.folder, SamplesStage.record)  # fmt: skip
RUN_FILE, RUN_CONFIG = "run.json", "run.yaml"  # written by `geex run` itself, not a stage

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


def write_report(out: str | Path, stage_summary: Callable[[str, dict], str]) -> tuple[Path, Path]:
    """Draw ``OUT/report.html`` and ``OUT/report.md`` (figures in ``OUT/report/``);
    ``stage_summary(name, record)`` is the line on what a finished stage made."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    html_file, markdown_file, figures_folder = REPORT_FILES
    figures = out / figures_folder
    figures.mkdir(parents=True, exist_ok=True)
    run = RunFolder(out)
    record = run.json(RUN_FILE, "the stage table and the budget plan are left out") or {}
    card = run.json(DataStage.card, "the data and tokenizer sections are left out")
    data = card and run.section(
        DataStage.card, "the data section is left out", _data, card, figures
    )
    sections = [
        _overview(run, record, stage_summary),
        data,
        data and run.section(DataStage.tokenizer, "the tokenizer section is left out",
                             _tokenizer, run, card),
        run.section(f"{TrainStage.model}/config.json", "the model section is left out",
                    _model, run),
        run.section(TrainStage.metrics, "the training section is left out",
                    _training, run, figures),
        _evaluation(run, record, figures),
        _samples(run),
        _next_commands(out),
    ]  # fmt: skip
    sections = [s for s in sections if s]
    if run.notes:
        damaged = Section("Damaged files")
        for note in run.notes:
            damaged.text(note)
        sections.insert(0, damaged)
    title = f"Geex run: {out.name}"
    markdown = "\n".join([f"# {title}\n", *(_md(s) for s in sections)])
    page = _html_page(title, sections)
    atomic_write_text(out / markdown_file, markdown)
    atomic_write_text(out / html_file, page)
    return out / html_file, out / markdown_file


# -- sections ------------------------------------------------------------------------------------


def _overview(run: RunFolder, record: dict, stage_summary) -> Section:
    section = Section("Overview")
    config = run.yaml(RUN_CONFIG, "the budget is not shown") or {}
    stages = record.get("stages", {})
    section.text(
        f"Budget: **{config.get('budget', '?')}**. The stages, their wall time and what they "
        "made (the report itself is written last):"
    )
    table = run.section(RUN_FILE, "the stage table is left out",
                        lambda: _stage_rows(stages, stage_summary))  # fmt: skip
    if table is not None:
        section.table(["stage", "time", "result"], table)
    plan = record.get("plan", {})
    if plan.get("train_seconds"):
        section.text(
            f"Training was given {_duration(plan['train_seconds'])} of the budget, "
            f"{_duration(plan.get('reserve_seconds', 0))} being kept for evaluation, export "
            "and the report."
        )
    return section


def _stage_rows(stages: dict, stage_summary) -> list[list[str]]:
    rows = [[name, _duration(r["seconds"]), stage_summary(name, r)] for name, r in stages.items()]
    total = sum(r["seconds"] for r in stages.values())
    return [*rows, ["all", _duration(total), ""]]


def _data(card: dict, folder: Path) -> Section:
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
        section.figure("data", _data_png(card), "train tokens per language", folder)
    return section


def _tokenizer(run: RunFolder, card: dict) -> Section | None:
    if not run.path(DataStage.tokenizer).is_file():
        return None
    section = Section("Tokenizer")
    tokenizer = load_tokenizer(run.path(DataStage.tokenizer).parent)
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


def _model(run: RunFolder) -> Section | None:
    from geex.model.checkpoint import read_config
    from geex.model.info import human_count, model_info

    folder = run.path(TrainStage.model)
    if not (folder / "config.json").is_file():
        return None
    config = read_config(folder)
    info = model_info(config)
    meta = run.json(f"{TrainStage.model}/config.json", "the trained tokens are not shown") or {}
    trained = meta.get("trained_tokens")
    # The trainer writes the config it ran: "auto" precision resolved to what the chip had.
    trained_with = run.yaml(f"{TrainStage.folder}/config.yaml", "the precision is not shown") or {}
    section = Section("Model")
    rows = [
        ["preset", str(trained_with.get("preset", "unknown"))],
        ["training precision", str(trained_with.get("precision", "unknown"))],
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
    rows.append(["checkpoints", f"Geex: {folder}; Hugging Face: {run.path(ExportStage.folder)}"])
    section.table(["", ""], rows)
    return section


def _training(run: RunFolder, folder: Path) -> Section | None:
    from geex.train.monitor import final_validation
    from geex.train.plot import loss_figure, read_run_metrics, run_summary, throughput_figure

    metrics = run.path(TrainStage.metrics)
    if not metrics.is_file():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = read_run_metrics(metrics.parent)
    section = Section("Training")
    section.table(["", ""], [[k, v] for k, v in run_summary(records).items()])
    validation = final_validation(records)
    if validation is not None:
        _validation_table(section, validation)
    section.figure(
        "loss", _png(loss_figure(records)), "loss: training, and validation per language", folder
    )
    section.figure("throughput", _png(throughput_figure(records)), "throughput", folder)
    return section


def _validation_table(section: Section, validation: dict) -> None:
    """The last validation per language: loss per token, and bits per byte of text, which
    compares across tokenizers (:mod:`geex.train.validate`)."""
    losses, bits = validation["val_loss"], validation["val_bpb"]
    section.text(
        f"Validation on the held-out split after {validation['step'] + 1:,} steps: loss in nats "
        "per token, and bits per byte of text, which does not depend on the tokenizer"
        + ("" if bits else " (not measured: the data has no byte-level tokenizer)")
        + ":"
    )
    rows = [
        [language, f"{loss:.4f}", f"{bits[language]:.4f}" if language in bits else "-"]
        for language, loss in losses.items()
    ]
    section.table(["language", "loss (nats/token)", "bits per byte"], rows)


def _evaluation(run: RunFolder, record: dict, folder: Path) -> Section | None:
    scores = []
    for name, title in TITLES.items():
        relative = f"{EvalStage.folder}/{name}/summary.json"
        left_out = f"the {title} scores are left out"
        summary = run.json(relative, left_out)
        if summary is not None:
            part = run.section(relative, left_out, _scores, name, summary, folder)
            scores += [part] if part else []
    missing = record.get("stages", {}).get("eval", {}).get("missing_toolchains", {})
    if not scores and not missing:
        return None
    section = Section("Evaluation")
    for part in scores:
        section.markdown += part.markdown
        section.html += part.html
    section.text(REFERENCE_NOTE)
    for language, why in missing.items():
        section.text(f"{language}: not evaluated: {why}.")
    return section


def _scores(name: str, summary: dict, folder: Path) -> Section:
    """One benchmark's scores: a table per language, what could not be judged, a figure."""
    section = Section(name)
    ks = sorted({k for g in summary["groups"].values() for k in g["pass@k"]},
                key=lambda k: int(k.split("@")[1]))  # fmt: skip
    section.text(f"**{summary['title']}** (sandbox: {summary['sandbox']}):")
    header = ["language", "problems", "samples", *ks, "parses", "stays", "verdicts"]
    if name == "humanevalx":
        header.append("CodeGeeX-13B pass@1")
    rows, partial = [], False
    for group, g in summary["groups"].items():
        verdicts = ", ".join(f"{v} {n}" for v, n in g["verdicts"].items() if n)
        covered = g.get("pass@k problems", {})  # absent before samples could go unjudged
        row = [group, str(g["problems"]), str(g["samples"]),
               *[_percent(g["pass@k"].get(k)) + _covered(covered, k, g) for k in ks],
               _percent(g.get("parses")), _percent(g.get("stays_in_language")),  # absent before
               verdicts]  # fmt: skip
        partial = partial or bool(covered)
        if name == "humanevalx":
            # Over fewer problems than CodeGeeX-13B's, pass@1 is no like-for-like comparison.
            mark = " (fewer problems)" if "pass@1" in covered else ""
            row.append(_percent(CODEGEEX_13B_HUMANEVALX.get(group)) + mark)
        rows.append(row)
    section.table(header, rows)
    if partial:
        section.text(
            "A pass@k marked (a/b) counts only the a of b problems with at least k judged "
            "samples: the others had samples that could not be judged here"
            + (", so it does not compare one for one with CodeGeeX-13B's." if name ==
               "humanevalx" else ".")
        )  # fmt: skip
    section.text(
        "parses: the share of samples whose program, less its tests, parses with tree-sitter; "
        "stays: the share that stays in the prompt's language (blank samples and those of undecided language left out)."
    )
    _unjudged(section, summary)
    _reference_bits_per_byte(section, summary)
    section.figure(f"eval-{name}", _eval_png(summary, name == "humanevalx"),
                   f"pass@1 per language, {summary['title']}", folder)  # fmt: skip
    return section


def _reference_bits_per_byte(section: Section, summary: dict) -> None:
    """The model's bits per byte of the benchmark's reference programs, per language."""
    bits = summary.get("bits_per_byte")  # absent in summaries of older runs
    if not bits:
        return
    section.text(
        "Bits per byte of the reference programs (prompt and canonical solution) under the "
        "model, without sampling; lower is better:"
    )
    rows = [[group, str(row["problems"]), f"{row['bits_per_byte']:.4f}"]
            for group, row in bits.items()]  # fmt: skip
    section.table(["language", "problems", "bits per byte"], rows)


def _covered(covered: dict, k: str, group: dict) -> str:
    return f" ({covered[k]}/{group['problems']})" if k in covered else ""


def _unjudged(section: Section, summary: dict) -> None:
    """How many samples a missing package left unjudged, and the commands that install them."""
    packages = summary.get("missing_packages") or []
    if not packages:
        return
    unjudged = sum(p["samples"] for p in packages)
    section.text(
        f"{unjudged} of {summary['overall']['samples']} samples could not be judged for want "
        "of a package and are left out of pass@k; install it and run `geex run` again:"
    )
    section.table(
        ["package", "samples", "install"],
        [[p["package"], str(p["samples"]), p["install"]] for p in packages],
    )


def _samples(run: RunFolder) -> Section | None:
    record = run.json(SamplesStage.record, "the sampled completions are left out") or {}
    judged = _first_results(run, f"{EvalStage.folder}/embedded/results.jsonl")
    samples = record.get("samples", [])
    if not samples and not judged:
        return None
    section = Section("Samples")
    if samples:
        how = record.get("sampling", {})
        section.text(
            f"Completions of a short prompt per language, {decoding_words(how)} (prompt, then "
            "the model's text):"
        )
    for s in samples:
        marks = sample_marks(s)
        section.code(s["prompt"] + s["completion"],
                     f"{s['language']} ({marks})" if marks else s["language"])  # fmt: skip
    if judged:
        section.text("The first problem of the embedded set per language, as judged:")
        for r in judged:
            section.code(r.program[-1500:], f"{r.task_id}: {r.verdict}")
    return section


def _next_commands(out: Path) -> Section:
    section = Section("Next")
    model, data, train = (out / TrainStage.model, out / DataStage.folder,
                          out / TrainStage.folder)  # fmt: skip
    section.code(
        "\n".join([
            f"geex generate --model {model} --language python --prompt 'def add(a, b):'",
            f"geex serve --model {model}",
            f"geex eval humanevalx --model {model} --data HUMANEVAL_X_DIR --out {out}/eval/hx",
            f"geex train --data {data} --out {train} --max-steps 5000   # train further",
            f"geex plot {train}",
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
    tokens = [card["languages"][lang].get("train_tokens", 0) for lang in languages]
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


def _first_results(run: RunFolder, relative: str) -> list:
    """The first judged sample of each language; the results file is in task order, which
    is the evaluation's language order."""
    results = ResultsFile(run.path(relative))
    unreadable = results.unreadable_lines()
    if unreadable:
        lines = f"line {unreadable[0]}" if len(unreadable) == 1 else f"{len(unreadable)} lines"
        run.damaged(relative, f"{lines} not a result", "the judged completions are left out")
        return []
    first = {}
    for result in results.load().values():
        first.setdefault(result.language, result)
    return list(first.values())


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
