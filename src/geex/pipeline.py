"""``geex run``: the whole path from local code to a model that completes code.

Stages, each skipped when its output is already there, so an interrupted run continues:

1. data: ``geex data``'s pipeline (``geex.data.pipeline``) on the given code or, by default, the
   code on this machine (the running Python's standard library, C/C++ headers and the Go,
   Java, JavaScript and Rust sources that are installed), training a tokenizer on it;
2. train: the ``tiny`` preset (or another) for a time or token budget, resuming from its last
   checkpoint;
3. samples: a completion per language from the trained model, written to ``samples.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from geex.errors import ConfigError

SAMPLE_PROMPTS = {
    "python": "def fibonacci(n):\n",
    "cpp": "#include <vector>\n\nint sum(const std::vector<int>& xs) {\n",
    "java": "public class Main {\n    public static int max(int a, int b) {\n",
    "javascript": "function isPalindrome(text) {\n",
    "go": "package main\n\nfunc reverse(s string) string {\n",
    "rust": "fn factorial(n: u64) -> u64 {\n",
}


@dataclass
class Budget:
    seconds: float | None = None
    tokens: int | None = None

    def __str__(self) -> str:
        if self.seconds is not None:
            return f"{self.seconds / 60:g} min"
        return f"{self.tokens:,} tokens"


def parse_budget(text: str) -> Budget:
    """A training time (``90s``, ``10m``, ``2h``) or a token count (``500k tokens``, ``2M tokens``:
    the word "tokens" is required, since "10m" means ten minutes)."""
    spec = text.strip().lower()
    if spec.endswith("tokens"):
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)", spec.removesuffix("tokens").strip())
        if match:
            scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match[2]]
            return Budget(tokens=int(float(match[1]) * scale))
    else:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|h)", spec)
        if match:
            return Budget(seconds=float(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]])
    raise ConfigError(
        f"budget {text!r} is neither a time (90s, 10m, 2h) nor a token count "
        f"(500k tokens, 2M tokens)"
    )


def run_pipeline(
    out: str | Path,
    *,
    budget: Budget,
    sources: list[Path] | None = None,
    preset: str = "tiny",
    vocab_size: int = 8192,
    console=None,
) -> dict:
    """Run (or finish) every stage into ``out``; return the paths of what was made."""
    from rich.console import Console

    from geex.data.pipeline import DataConfig, run_data_pipeline
    from geex.data.shards import MANIFEST
    from geex.train.config import TrainConfig
    from geex.train.trainer import train

    console = console or Console(stderr=True)
    out = Path(out)
    data, run = out / "data", out / "train"

    console.rule("[bold]1/3 data")
    if (data / MANIFEST).is_file():
        console.print(f"already packed: {data}")
    else:
        from geex.data.embedded import EMBEDDED_LANGUAGES, PER_LANGUAGE_BYTES

        config = DataConfig(
            out=str(data),
            sources=[str(s) for s in sources or []],
            vocab_size=vocab_size,
            per_language_bytes=None if sources else PER_LANGUAGE_BYTES,
            languages=None if sources else list(EMBEDDED_LANGUAGES),
        )
        card = run_data_pipeline(config)
        console.print(f"packed {card['totals']['tokens']:,} tokens into {data}")

    console.rule(f"[bold]2/3 train ({preset}, {budget})")
    fields = {"data": str(data), "out": str(run), "preset": preset}
    if budget.seconds is not None:
        fields["max_time"] = budget.seconds
    else:
        fields["max_tokens"] = budget.tokens
    result = train(TrainConfig.from_dict(fields))
    console.print(f"{result.steps} steps, {result.tokens:,} tokens, last loss {result.last_loss}")

    console.rule("[bold]3/3 samples")
    samples = write_samples(run / "model", out / "samples.md")
    console.print(f"completions per language: {samples}")
    return {"data": data, "run": run, "model": run / "model", "samples": samples}


def write_samples(model_dir: Path, path: Path) -> Path:
    """Greedy completions of a short prompt per language, as Markdown."""
    import geex
    from geex.model.generation import SamplingConfig
    from geex.serve.completion import complete
    from geex.tokenizer import load_tokenizer

    model, tokenizer = geex.load_model(model_dir), load_tokenizer(model_dir)
    sampling = SamplingConfig(max_new_tokens=min(128, model.config.max_seq_len // 2))
    lines = [f"# Samples from {model_dir}\n", "Greedy completions, after the language tag line.\n"]
    for language, prompt in SAMPLE_PROMPTS.items():
        (completion,) = complete(model, tokenizer, prompt, language=language, sampling=sampling)
        lines += [f"## {language}\n", "```", prompt + completion[0].text, "```\n"]
    path.write_text("\n".join(lines))
    return path
