"""The laptop sweep: which data, tokenizer, model shape and schedule make the best 10-minute model.

Each variant changes one setting of ``geex run``'s default (the ``tiny`` preset on the code on
this machine) and is trained for as many tokens as *it* would train in the default run's
training time on this machine: a short probe times each variant's steady-state steps against
the default's, alternating (default, variant, default, ...), so a bigger model gets fewer
tokens and a cheaper one more, as in a real 10-minute run. Training at a token count rather
than for a wall time makes every result reproducible whatever else the machine runs; only the
probes need a quiet-ish machine, and they report ratios.

Each trained model is then judged as a user sees it: validation bits per byte per language,
and per language the share of its HumanEval-X (or embedded) completions that parse without
error and that stay in the prompt's language, with pass@1 beside them.

    python benchmarks/laptop_sweep.py --out runs/sweep --humanevalx ../shared/data/humaneval-x
    python benchmarks/laptop_sweep.py --out runs/sweep --only default 'lr 4e-3'   # some variants

Results go to OUT/sweep.jsonl, one line per variant (a rerun skips the finished ones), and the
table to OUT/sweep.md. docs/training.md ("The laptop sweep") holds the measured table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from geex.presets import generation_preset
from geex.train.monitor import final_validation, read_metrics

# Tokens the default trains in `geex run --budget 10m` on a quiet 2-core machine, times each
# variant's measured speed ratio: 4,042,752 on a 2-core Xeon with AMX (bf16) when the default
# was AdamW at lr 2e-3, the tokens of docs/training.md's sweep tables. Muon's step costs more:
# its 10-minute run trained 3.79M in a busier hour (give --tokens to follow it).
DEFAULT_TOKENS = 4_040_000
# Steps per probe; the first ones (warm-up) are not counted. 14-step probes had put 3x384 at
# 0.84x the default's speed; full runs measured 0.6x (docs/training.md, "Checked in full runs").
PROBE_STEPS, PROBE_SKIP = 40, 8


@dataclass(frozen=True)
class Variant:
    """One setting changed from the default: ``data`` fields for ``geex data``, ``train`` for
    ``geex train`` (``model`` inside it changes the preset's shape)."""

    name: str
    axis: str
    data: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    same_cost: bool = False  # a step costs what the default's does: no probe (its noise is ~20%)
    # a step costs what this swept variant's does (the same shape): its measured speed, no probe
    cost_of: str = ""


EVALUATED = ("python", "cpp", "go", "java", "javascript", "rust")


def tiny(**shape) -> dict:
    return {"model": shape}


VARIANTS = [
    Variant("default", "default"),
    # model shape (the default: 3 blocks + top query layer, width 256, 4 heads)
    Variant("2x192", "shape", train=tiny(n_layer=2, d_model=192, n_head=4)),
    Variant("5x256", "shape", train=tiny(n_layer=5, d_model=256, n_head=4)),
    Variant("3x384", "shape", train=tiny(n_layer=3, d_model=384, n_head=6)),
    Variant("6x192", "shape", train=tiny(n_layer=6, d_model=192, n_head=4)),
    Variant("3x512", "shape", train=tiny(n_layer=3, d_model=512, n_head=8)),
    # tokenizer size (default 8,192)
    Variant("vocab 4k", "tokenizer", data={"vocab_size": 4096}),
    Variant("vocab 16k", "tokenizer", data={"vocab_size": 16384}),
    # context (default 256)
    Variant("context 128", "context", train={"seq_len": 128}),
    Variant("context 512", "context", train={"seq_len": 512, **tiny(max_seq_len=512)}),
    # batch (default 4,096 tokens)
    Variant("batch 2k", "batch", train={"global_batch_tokens": 2048, "micro_batch_size": 8}),
    Variant("batch 8k", "batch", train={"global_batch_tokens": 8192}),
    # peak learning rate (default 2e-3, with Muon); "seed 2" below is the default's second seed
    Variant("lr 5e-4", "lr", train={"optim": {"lr": 5e-4, "min_lr": 5e-5}}, same_cost=True),
    Variant("lr 1e-3", "lr", train={"optim": {"lr": 1e-3, "min_lr": 1e-4}}, same_cost=True),
    Variant("lr 4e-3", "lr", train={"optim": {"lr": 4e-3, "min_lr": 4e-4}}, same_cost=True),
    Variant("lr 2.5e-4", "lr", train={"optim": {"lr": 2.5e-4, "min_lr": 2.5e-5}}, same_cost=True),
    Variant(
        "lr 4e-3 seed 2",
        "seed",
        train={"optim": {"lr": 4e-3, "min_lr": 4e-4}, "seed": 2},
        same_cost=True,
    ),
    # optimizer (default: Muon for the hidden matrices, AdamW for the rest): AdamW at the rates
    # docs/training.md compares, the old default (2e-3) among them; AdamW steps faster
    *[
        Variant(
            f"AdamW lr {lr}",
            "optimizer",
            train={"optim": {"optimizer": "adamw", "lr": float(lr), "min_lr": float(lr) / 10}},
            cost_of="AdamW lr 5e-4" if lr != "5e-4" else None,
        )
        for lr in ("5e-4", "2e-3", "4e-3", "1e-3", "2.5e-4")
    ],
    Variant(
        "AdamW lr 5e-4 seed 2",
        "seed",
        cost_of="AdamW lr 5e-4",
        train={"optim": {"optimizer": "adamw", "lr": 5e-4, "min_lr": 5e-5}, "seed": 2},
    ),
    # combined: the wider shape with the lower learning rate
    Variant(
        "3x384 lr 1e-3",
        "combined",
        cost_of="3x384",
        train={**tiny(n_layer=3, d_model=384, n_head=6), "optim": {"lr": 1e-3, "min_lr": 1e-4}},
    ),
    # seed (default 1234): how far two runs of the same setting land apart
    Variant("seed 2", "seed", train={"seed": 2}, same_cost=True),
    Variant(
        "3x384 lr 1e-3 seed 2",
        "seed",
        cost_of="3x384",
        train={
            **tiny(n_layer=3, d_model=384, n_head=6),
            "optim": {"lr": 1e-3, "min_lr": 1e-4},
            "seed": 2,
        },
    ),
    # language mix (default: 8 MiB of each of python, c, cpp, go, java, javascript, rust)
    Variant("no C", "languages", data={"languages": [*EVALUATED]}, same_cost=True),
    Variant("4 MiB each", "languages", data={"per_language_mb": 4}, same_cost=True),
    Variant("Python x2", "languages", data={"language_weight": "python=2"}, same_cost=True),
    Variant("Python x3", "languages", data={"language_weight": "python=3"}, same_cost=True),
    Variant(
        "Python x2 seed 2",
        "seed",
        data={"language_weight": "python=2"},
        train={"seed": 2},
        same_cost=True,
    ),
    # fill-in-the-middle (default 0.5)
    Variant("FIM 0", "fim", data={"fim_rate": 0.0}, same_cost=True),
    Variant("FIM 0.25", "fim", data={"fim_rate": 0.25}, same_cost=True),
    Variant("FIM 0.9", "fim", data={"fim_rate": 0.9}, same_cost=True),
    Variant("FIM 0 seed 2", "seed", data={"fim_rate": 0.0}, train={"seed": 2}, same_cost=True),
    # precision (default auto: bf16 autocast on CPUs with AMX or AVX-512 BF16, fp32 elsewhere)
    Variant("fp32", "precision", train={"precision": "fp32"}),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="sweep folder (resumable)")
    parser.add_argument("--humanevalx", type=Path, help="judge on HumanEval-X from this folder")
    parser.add_argument("--limit", type=int, default=40, help="HumanEval-X problems per language")
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS, help="the default's tokens")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these variants")
    parser.add_argument("--geex", default=str(Path(sys.executable).with_name("geex")))
    return parser.parse_args()


def run(command: list[str], log: Path) -> None:
    """Run a geex command, its output to ``log``; a failure stops the sweep naming the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        sys.exit(f"laptop_sweep: {' '.join(command[:3])} failed ({done.returncode}); see {log}")


def data_folder(args, variant: Variant) -> Path:
    """``geex data`` for the variant's data fields, shared by every variant with the same."""
    key = json.dumps(variant.data, sort_keys=True)
    name = "data-" + ("default" if not variant.data else _slug(key))
    folder = args.out / name
    if not (folder / "dataset.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        flags = []
        for key, value in variant.data.items():
            value = ",".join(value) if isinstance(value, list) else str(value)
            flags += ["--" + key.replace("_", "-"), value]
        run([args.geex, "data", "--out", str(folder), *flags], args.out / "logs" / f"{name}.log")
    return folder


def train_file(args, variant: Variant) -> Path:
    path = args.out / "configs" / f"{_slug(variant.name)}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"preset": "tiny", **variant.train}))
    return path


def steady_tokens_per_s(metrics: Path) -> float:
    rates = [json.loads(line)["tokens_per_s"] for line in metrics.read_text().splitlines()]
    return statistics.median(rates[PROBE_SKIP:])


def probe(args, variant: Variant, data: Path) -> float:
    """The variant's steady training speed in tokens/s, from a short ``geex train``."""
    out = args.out / "probe"
    shutil.rmtree(out, ignore_errors=True)
    command = [args.geex, "train", "--data", str(data), "--out", str(out),
               "--config", str(train_file(args, variant)), "--max-steps", str(PROBE_STEPS),
               "--eval-every", "1000000", "--checkpoint-every", "1000000", "--no-progress"]  # fmt: skip
    run(command, args.out / "logs" / "probe.log")
    return steady_tokens_per_s(out / "metrics.jsonl")


def speed_ratio(args, variant: Variant, data: Path, default_data: Path) -> float:
    """Variant tokens/s over the default's, from alternating probes (default, variant, ...)."""
    if variant.name == "default" or variant.same_cost:
        return 1.0
    default = VARIANTS[0]
    ratios = []
    for _ in range(2):
        base = probe(args, default, default_data)
        ratios.append(probe(args, variant, data) / base)
    return statistics.mean(ratios)


def train(args, variant: Variant, data: Path, tokens: int) -> Path:
    out = args.out / "runs" / _slug(variant.name)
    shutil.rmtree(out, ignore_errors=True)
    command = [args.geex, "train", "--data", str(data), "--out", str(out),
               "--config", str(train_file(args, variant)), "--max-tokens", str(tokens),
               "--no-progress"]  # fmt: skip
    run(command, args.out / "logs" / f"train-{_slug(variant.name)}.log")
    return out


def evaluate(args, variant: Variant, model: Path) -> Path:
    out = args.out / "eval" / _slug(variant.name)
    shutil.rmtree(out, ignore_errors=True)
    if args.humanevalx:
        which = ["humanevalx", "--data", str(args.humanevalx), "--limit", str(args.limit)]
    else:
        which = ["embedded"]
    # Every variant decoded as the default's model is (greedy with tiny's repetition penalty):
    # a model of another shape is saved without one (geex.model.generation_defaults).
    penalty = generation_preset("tiny")["repetition_penalty"]
    command = [args.geex, "eval", *which, "--model", str(model), "--out", str(out),
               "--repetition-penalty", str(penalty), "--no-progress"]  # fmt: skip
    run(command, args.out / "logs" / f"eval-{_slug(variant.name)}.log")
    return out


def measures(run_folder: Path, eval_folder: Path) -> dict:
    """Validation bits per byte, and the evaluation's parse, stay and pass@1 per language."""
    validation = final_validation(read_metrics(run_folder / "metrics.jsonl")) or {}
    summary = json.loads((eval_folder / "summary.json").read_text())
    languages = {}
    for language, group in summary["groups"].items():
        languages[language] = {
            "parses": group.get("parses"),
            "stays": group.get("stays_in_language"),
            "pass@1": group["pass@k"].get("pass@1"),
        }
    return {"val_bpb": validation.get("val_bpb", {}), "eval": languages}


def markdown_table(lines: list[dict]) -> str:
    """One row per variant: speed, tokens, bits per byte, and parse / stay per language."""
    languages = list(lines[0]["eval"]) if lines else []
    header = ["variant", "speed", "tokens", "val bits/byte"]
    header += [f"{language} parse / stay %" for language in languages]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for line in lines:
        cells = [line["name"], f"{line['speed_ratio']:.2f}x", f"{line['tokens'] / 1e6:.2f}M",
                 _number(line["val_bpb"].get("all"), "{:.3f}")]  # fmt: skip
        for language in languages:
            shares = line["eval"].get(language, {})
            cells.append(f"{_number(shares.get('parses'), '{:.0%}')} / "
                         f"{_number(shares.get('stays'), '{:.0%}')}")  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _number(value, form: str) -> str:
    return "-" if value is None else form.format(value)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in text).strip("-")


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    record_path = args.out / "sweep.jsonl"
    done = {}
    if record_path.exists():
        done = {json.loads(line)["name"]: json.loads(line) for line in record_path.open()}
    chosen = [v for v in VARIANTS if not args.only or v.name in args.only]
    unknown = set(args.only or ()) - {v.name for v in VARIANTS}
    if unknown:
        sys.exit(f"laptop_sweep: no variant named {sorted(unknown)}; the variants: "
                 f"{[v.name for v in VARIANTS]}")  # fmt: skip
    default_data = data_folder(args, VARIANTS[0])
    for variant in chosen:
        if variant.name in done:
            continue
        data = data_folder(args, variant)
        if variant.cost_of:
            if variant.cost_of not in done:
                sys.exit(f"laptop_sweep: {variant.name} takes the speed of {variant.cost_of}: "
                         "run that variant first")  # fmt: skip
            ratio = done[variant.cost_of]["speed_ratio"]
        else:
            ratio = speed_ratio(args, variant, data, default_data)
        tokens = int(args.tokens * ratio)
        print(f"{variant.name}: speed {ratio:.2f}x the default -> {tokens:,} tokens", flush=True)
        run_folder = train(args, variant, data, tokens)
        eval_folder = evaluate(args, variant, run_folder / "model")
        line = {"name": variant.name, "axis": variant.axis, "data": variant.data,
                "train": variant.train, "speed_ratio": ratio, "tokens": tokens,
                **measures(run_folder, eval_folder)}  # fmt: skip
        with record_path.open("a") as out:
            out.write(json.dumps(line) + "\n")
        done[variant.name] = line
    table = markdown_table([done[v.name] for v in VARIANTS if v.name in done])
    (args.out / "sweep.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
