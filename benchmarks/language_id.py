"""How often the language identifier (``geex.eval.language_id``) is wrong on real code.

HumanEval-X's canonical solutions are short, of one style, and part of what the identifier is
trained on; a model's completions look like the code it was trained on instead. So this takes
chunks of consecutive lines from the files of a ``geex data`` folder (the code ``geex run``
trained on: each file's language is known from its name) and counts

- **false leaves**: chunks of real code in a language judged to leave it;
- **splices found**: chunks with three code lines of another language's chunk inserted that
  are judged to leave, as a completion that wanders off and back.

Side by side: Geex's identifier, and the same classifier counting every repeat of a feature in
a window at the margin of 14 nats it used before, with no directive deciding alone (the
baseline).

    python benchmarks/language_id.py --data runs/geex/data --humanevalx ../humaneval-x
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

from geex.eval.language_id import LanguageIdentifier, identifier_for, training_texts
from geex.eval.problems import load_embedded, load_problems


class EveryRepeatCounted(LanguageIdentifier):
    """The identifier before features were counted once per window: each repeat counts,
    another language must win a window by 14 nats, and no directive decides alone."""

    evidence = staticmethod(list)
    margin = 14.0
    directives_decide = False


def code_chunks(data: Path, languages, per_language: int, lines: int, seed: int) -> dict:
    """``per_language`` chunks of ``lines`` lines, one from each of as many files."""
    cleaned = sorted((data / "work" / "cleaned").glob("*.jsonl"))
    if not cleaned:
        sys.exit(f"language_id: no documents under {data}/work/cleaned (a geex data folder?)")
    rng = random.Random(seed)
    chunks: dict[str, list[str]] = {key: [] for key in languages}
    for path in cleaned:
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line:
                continue
            document = json.loads(line)
            key = document.get("metadata", {}).get("language")
            text_lines = document["text"].split("\n")
            if key in chunks and len(text_lines) >= 2 * lines:
                start = rng.randrange(len(text_lines) - lines)
                chunks[key].append("\n".join(text_lines[start : start + lines]))
    for key in chunks:
        rng.shuffle(chunks[key])
        chunks[key] = chunks[key][:per_language]
    return chunks


def splice(chunk: str, other: str, rng: random.Random) -> str | None:
    """``chunk`` with three code lines of ``other`` inserted; None if ``other`` has too few."""
    code = [x.strip() for x in other.split("\n")]
    code = [x for x in code if x and not x.startswith(("//", "#", "/*", "*"))]
    if len(code) < 3:
        return None
    lines = chunk.split("\n")
    start, at = rng.randrange(len(code) - 2), rng.randrange(1, len(lines) + 1)
    return "\n".join([*lines[:at], *("    " + x for x in code[start : start + 3]), *lines[at:]])


def measure(identifier: LanguageIdentifier, chunks: dict, seed: int) -> dict:
    rng = random.Random(seed)
    keys = sorted(chunks)
    out = {}
    for key in keys:
        false_leaves = sum(identifier.stays(c, key) is False for c in chunks[key])
        found = tried = 0
        for chunk in chunks[key]:
            other = rng.choice([k for k in keys if k != key])
            spliced = splice(chunk, rng.choice(chunks[other]), rng)
            if spliced is not None:
                tried += 1
                found += identifier.stays(spliced, key) is False
        out[key] = (false_leaves, len(chunks[key]), found, tried)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a geex data folder")
    parser.add_argument("--humanevalx", type=Path, help="train as geex eval humanevalx does")
    parser.add_argument("--chunks", type=int, default=150, help="chunks per language")
    parser.add_argument("--lines", type=int, default=12, help="lines per chunk")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    problems = load_problems(args.humanevalx) if args.humanevalx else []
    geex = identifier_for(problems)
    baseline = EveryRepeatCounted.train(training_texts([*load_embedded(), *problems]))
    chunks = code_chunks(args.data, geex.languages, args.chunks, args.lines, args.seed)
    results = {name: measure(identifier, chunks, args.seed)
               for name, identifier in (("baseline", baseline), ("geex", geex))}  # fmt: skip
    print("| language | chunks | false leaves: baseline / Geex | splices found: baseline / Geex |")
    print("|---|---|---|---|")
    totals = Counter()
    for key in sorted(chunks):
        (bl, n, bf, t), (gl, _, gf, _) = results["baseline"][key], results["geex"][key]
        totals.update({"n": n, "bl": bl, "gl": gl, "bf": bf, "gf": gf, "t": t})
        print(f"| {key} | {n} | {bl} / {gl} | {bf} / {gf} of {t} |")
    t = totals
    leaves = f"{t['bl']} / {t['gl']} ({t['bl'] / t['n']:.1%} / {t['gl'] / t['n']:.1%})"
    found = f"{t['bf']} / {t['gf']} of {t['t']} ({t['bf'] / t['t']:.1%} / {t['gf'] / t['t']:.1%})"
    print(f"| all | {t['n']} | {leaves} | {found} |")


if __name__ == "__main__":
    main()
