"""The samples stage: a completion per language of a short prompt (greedy, with the model's
own repetition penalty), for the report, each marked with whether it parses and stays in its
language (``geex.eval.code_checks``).

The model and its tokenizer are loaded, and torch imported, inside :meth:`SamplesStage.run`,
so that importing :mod:`geex.pipeline` stays light.
"""

from __future__ import annotations

import json

from geex.atomic import atomic_write_text
from geex.pipeline.stage import RunContext, Stage
from geex.pipeline.stage_train import TrainStage

SAMPLE_PROMPTS = {
    "python": "def fibonacci(n):\n",
    "cpp": "#include <vector>\n\nint sum(const std::vector<int>& xs) {\n",
    "java": "public class Main {\n    public static int max(int a, int b) {\n",
    "javascript": "function isPalindrome(text) {\n",
    "go": "package main\n\nfunc reverse(s string) string {\n",
    "rust": "fn factorial(n: u64) -> u64 {\n",
}
# Greedy, with the model's own repetition penalty (geex.model.generation_defaults; tiny's is
# 1.2), which breaks the loops plain greedy decoding falls into. On a 10-minute model's embedded
# completions, 20% parsed so against 3% sampled at temperature 0.8, whose text read as
# fragments rather than code (docs/training.md, "Decoding a young model").
SAMPLE_TEMPERATURE = 0.0


class SamplesStage(Stage):
    name = "samples"
    description = "a completion per language"
    record = "samples.json"  # for the report
    page = "samples.md"  # for people
    reads = (TrainStage.model,)
    writes = (record, page)

    def run(self, context: RunContext) -> dict:
        from geex.eval.code_checks import check_completion
        from geex.model.loader import load_for_inference
        from geex.model.sampling import SamplingConfig
        from geex.serve.completion import complete

        # fp32 on the CPU whatever the checkpoint's dtype: the report's samples reproduce.
        model_dir = context.path(TrainStage.model)
        loaded = load_for_inference(model_dir, device="cpu", dtype="fp32")
        model, tokenizer = loaded.model, loaded.tokenizer
        sampling = loaded.sampling(  # with the model's own repetition penalty, if it has one
            SamplingConfig(
                max_new_tokens=min(128, model.config.max_seq_len // 2),
                temperature=SAMPLE_TEMPERATURE,
            )
        )
        samples = []
        for language, prompt in SAMPLE_PROMPTS.items():
            (completion,) = complete(model, tokenizer, prompt, language=language, sampling=sampling)
            text = completion[0].text
            samples.append({"language": language, "prompt": prompt, "completion": text,
                            **check_completion(prompt, text, language)})  # fmt: skip
        how = {"temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
               "repetition_penalty": sampling.penalty}  # fmt: skip
        record = {"sampling": how, "samples": samples}
        atomic_write_text(context.path(self.record), json.dumps(record, indent=2) + "\n")
        lines = [
            f"# Samples from {model_dir}\n",
            f"Completions after the language tag, {decoding_words(how)}.\n",
        ]
        for s in samples:
            lines += [f"## {s['language']} ({sample_marks(s)})\n", "```",
                      s["prompt"] + s["completion"], "```\n"]  # fmt: skip
        atomic_write_text(context.path(self.page), "\n".join(lines))
        return {"samples": str(context.path(self.page))}


def decoding_words(how: dict) -> str:
    """How samples were decoded, for people: "greedy, repetition penalty 1.2", or "sampled at
    temperature 0.8, top-p 0.95, seed 0" (as the records of older runs say)."""
    temperature = how.get("temperature") or 0
    words = "greedy"
    if temperature:
        words = (
            f"sampled at temperature {temperature:g}, top-p {how.get('top_p')}, "
            f"seed {how.get('seed')}"
        )
    penalty = how.get("repetition_penalty", 1)
    return words + (f", repetition penalty {penalty:g}" if penalty != 1 else "")


def sample_marks(sample: dict) -> str:
    """ "parses, stays in its language", or what it fails; "" for records of older runs."""
    if "parses" not in sample:
        return ""
    stays = sample.get("stays_in_language")
    undecided = "language undecided" if sample.get("completion", "").strip() else "blank"
    return ", ".join([
        "parses" if sample["parses"] else "does not parse",
        {True: "stays in its language", False: "leaves its language",
         None: undecided}[stays],
    ])  # fmt: skip
