"""The dataset card: what went in, what came out, and what each stage removed and why.

Written by the last stage as ``card.json`` (for programs) and ``card.md`` (for people) beside
the shards. The counts come from two places: every datatrove block's statistics, saved per
task under ``work/logs/<stage>/stats/`` (labels ``skipped_<reason>`` for files a reader could
not use, ``dropped_<rule>`` for documents a filter or dedup removed, ``redacted_<kind>`` for
secrets replaced), and the pack tasks' parts (files, bytes and tokens per language and split).

The decontamination report's reader (datatrove) is imported inside a function, so that
reading a card stays light.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from geex.atomic import atomic_write_text
from geex.data.fim import fim_record

CARD_JSON, CARD_MD = "card.json", "card.md"
_PREFIXES = {"skipped_": "removed", "dropped_": "removed", "redacted_": "redacted"}


def stage_statistics(logging_dir: str | os.PathLike) -> list[dict]:
    """Per block of a stage, in pipeline order: ``{"name", "time_s", "stats": {label: total}}``,
    summed over the stage's task files."""
    blocks: list[dict] = []
    for path in sorted(Path(logging_dir, "stats").glob("*.json")):
        for index, block in enumerate(json.loads(path.read_text())):
            if index == len(blocks):
                blocks.append({"name": block["name"], "time_s": 0.0, "stats": {}})
            merged = blocks[index]
            merged["time_s"] += _total(block.get("time_stats", {}))
            for label, value in block.get("stats", {}).items():
                merged["stats"][label] = merged["stats"].get(label, 0) + _total(value)
    return blocks


def _total(value) -> float:
    if isinstance(value, dict):
        return value.get("total", 0)
    return value or 0


def _block_name(name: str) -> str:
    """datatrove names a block "<type>: <name>"; the card shows the name."""
    return name.split(": ", 1)[-1]


def build_card(config, parts: list[dict]) -> dict:
    work = config.work_dir
    languages: dict[str, dict] = {}
    for part in parts:
        for split, rows in part.get("counts", {}).items():
            for language, row in rows.items():
                entry = languages.setdefault(
                    language,
                    {
                        "files": 0,
                        "bytes": 0,
                        "tokens": 0,
                        "train_tokens": 0,
                        "validation_tokens": 0,
                    },
                )
                entry["files"] += row["files"]
                entry["bytes"] += row["bytes"]
                entry["tokens"] += row["tokens"]  # each file once
                packed = row.get("packed_tokens", row["tokens"])  # every copy (weights)
                entry[f"{split}_tokens"] = entry.get(f"{split}_tokens", 0) + packed
    languages = dict(sorted(languages.items(), key=lambda kv: -kv[1]["tokens"]))
    totals = {k: sum(v[k] for v in languages.values()) for k in ("files", "bytes", "tokens")}
    for split in ("train", "validation"):
        totals[f"{split}_tokens"] = sum(v.get(f"{split}_tokens", 0) for v in languages.values())

    stages, time_s, read = [], {}, {"files": 0, "bytes": 0}
    for stage_dir in sorted((work / "logs").iterdir()) if (work / "logs").is_dir() else []:
        blocks = stage_statistics(stage_dir)
        time_s[stage_dir.name] = round(sum(b["time_s"] for b in blocks), 2)
        for block in blocks:
            if stage_dir.name == "clean" and _block_name(block["name"]) == "progress":
                read = {"files": int(block["stats"].get("documents", 0))}
                read["bytes"] = int(block["stats"].get("bytes", 0))
            entry = {"stage": stage_dir.name, "block": _block_name(block["name"])}
            for label, value in sorted(block["stats"].items()):
                for prefix, kind in _PREFIXES.items():
                    if label.startswith(prefix) and value:
                        entry.setdefault(kind, {})[label.removeprefix(prefix)] = int(value)
            if "removed" in entry or "redacted" in entry:
                stages.append(entry)
    card = {
        "format": "geex-data-card",
        "format_version": 1,
        "sources": config.sources or ["(embedded default: code on this machine)"],
        "options": config.output_fields(),
        "read": read,  # what the readers passed on, before filters and deduplication
        "totals": totals,
        "languages": languages,
        "fim": fim_record(parts),
        "removed": stages,
        "stage_time_s": time_s,
    }
    contaminated = _contaminated_tasks(work / "decontaminate")
    if contaminated is not None:
        card["contaminated_tasks"] = contaminated["tasks"]
        card["contaminated_task_files"] = contaminated["task_counts"]
    return card


def _contaminated_tasks(folder: Path) -> dict | None:
    """The benchmark tasks the decontamination block matched, and how many files matched each."""
    if not folder.is_dir():
        return None
    from geex.data.decontaminate import merge_reports

    report = merge_reports(str(folder))
    return {"tasks": report["tasks"], "task_counts": report["task_counts"]}


def write_card(config, parts: list[dict]) -> dict:
    card = build_card(config, parts)
    out = Path(config.out)
    atomic_write_text(out / CARD_JSON, json.dumps(card, indent=2) + "\n")
    atomic_write_text(out / CARD_MD, card_markdown(card))
    return card


def read_card(out: str | os.PathLike) -> dict | None:
    path = Path(out) / CARD_JSON
    return json.loads(path.read_text()) if path.is_file() else None


def _fim_lines(fim: dict | None) -> list[str]:
    """One sentence on the fill-in-the-middle layouts of the train files."""
    if not fim:
        return []
    files = fim["train_files"]
    return [
        f"Fill-in-the-middle (rate {fim['rate']:g}, suffix first {fim['spm_rate']:g}, seed "
        f"{fim['seed']}): {files['psm']:,} train files prefix-suffix-middle, {files['spm']:,} "
        f"suffix-prefix-middle, {files['plain']:,} left to right; validation files all left "
        "to right.",
        "",
    ]


def _weight_lines(options: dict) -> list[str]:
    """One sentence on the language weights, where any were given."""
    weights = options.get("language_weights")
    if not weights:
        return []
    listed = ", ".join(f"{language} x{weight:g}" for language, weight in weights.items())
    return [
        f"Language weights: {listed}. Each train file of a weighted language is packed that "
        "many times (a fraction: that share of its files once more). Files, bytes and tokens "
        "count each file once; train tokens and the fill-in-the-middle layouts count every "
        "copy, as training reads them.",
        "",
    ]


def card_markdown(card: dict) -> str:
    t = card["totals"]
    lines = [
        "# Dataset card",
        "",
        "Made by `geex data` from: " + ", ".join(f"`{s}`" for s in card["sources"]) + ".",
        "",
        f"Read {card['read']['files']:,} files ({card['read']['bytes']:,} bytes); kept "
        f"{t['files']:,} files, {t['bytes']:,} bytes, {t['tokens']:,} tokens "
        f"({t['train_tokens']:,} train, {t['validation_tokens']:,} validation).",
        "",
        *_fim_lines(card.get("fim")),
        *_weight_lines(card.get("options", {})),
        "## Languages",
        "",
        "| language | files | bytes | tokens | train tokens | validation tokens |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for language, row in card["languages"].items():
        lines.append(
            f"| {language} | {row['files']:,} | {row['bytes']:,} | {row['tokens']:,} | "
            f"{row.get('train_tokens', 0):,} | {row.get('validation_tokens', 0):,} |"
        )
    lines += [
        "",
        "## What each stage removed",
        "",
        "| stage | block | reason | files |",
        "| --- | --- | --- | ---: |",
    ]
    for entry in card["removed"]:
        for reason, n in entry.get("removed", {}).items():
            lines.append(f"| {entry['stage']} | {entry['block']} | {reason} | {n:,} |")
    redacted = [(e, k, n) for e in card["removed"] for k, n in e.get("redacted", {}).items()]
    if redacted:
        lines += [
            "",
            "## Secrets and personal data redacted",
            "",
            "| kind | count |",
            "| --- | ---: |",
        ]
        lines += [f"| {kind} | {n:,} |" for _, kind, n in redacted]
    if "contaminated_tasks" in card:
        tasks = card["contaminated_tasks"]
        lines += ["", "## Benchmark contamination", ""]
        lines.append(
            f"Files matching {len(tasks)} benchmark tasks were dropped: "
            + (", ".join(f"`{t}`" for t in tasks) if tasks else "none matched")
            + "."
        )
    lines += ["", "## Options", "", "```json", json.dumps(card["options"], indent=2), "```", ""]
    return "\n".join(lines)
