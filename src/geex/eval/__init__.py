"""Evaluation: HumanEval-X (and Geex's embedded set), judged by running code in a sandbox.

The pieces, in the order a sample flows through them:

- ``problems``: benchmark problems from a folder of ``humaneval_<lang>.jsonl(.gz)``, the
  Hugging Face Hub, or the set shipped in the package (``embedded/``);
- ``tasks``: the prompts (generation with the language tag; translation between languages);
  ``infill``: holes in canonical solutions, filled from prefix and suffix;
- ``backends``: where completions come from (canonical solutions, a samples file, a model;
  ``fim_prompts``: how a local model is asked to fill a hole);
- ``programs``: stop rules and the per-language program layout of the reference harness;
- ``sandbox`` and ``runners``: compile and run each program in bubblewrap with limits;
- ``verdicts``, ``evaluator``: the seven verdicts, and the parallel judge;
- ``scores``, ``results``, ``report``, ``run``: pass@k, results.jsonl with resume, reports.

The names below load on first use, so that a light submodule (``backends``' ``Sampling``, a
config of ``geex eval``'s flags) imports without numpy.
"""

from __future__ import annotations

from geex.lazy_exports import lazy_exports

_EXPORTS = {
    "FunctionBackend": "geex.eval.backends",
    "GenerationBackend": "geex.eval.backends",
    "Sample": "geex.eval.backends",
    "Sampling": "geex.eval.backends",
    "StopRule": "geex.eval.backends",
    "canonical_samples": "geex.eval.backends",
    "generate_samples": "geex.eval.backends",
    "read_samples": "geex.eval.backends",
    "EvalConfig": "geex.eval.evaluator",
    "Evaluator": "geex.eval.evaluator",
    "InfillTask": "geex.eval.infill",
    "infill_tasks": "geex.eval.infill",
    "Problem": "geex.eval.problems",
    "load_embedded": "geex.eval.problems",
    "load_hub": "geex.eval.problems",
    "load_problems": "geex.eval.problems",
    "EvalRun": "geex.eval.run",
    "evaluate": "geex.eval.run",
    "RunSettings": "geex.eval.runners",
    "pass_at_k": "geex.eval.scores",
    "Task": "geex.eval.tasks",
    "build_tasks": "geex.eval.tasks",
    "generation_tasks": "geex.eval.tasks",
    "translation_tasks": "geex.eval.tasks",
    "VERDICTS": "geex.eval.verdicts",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
