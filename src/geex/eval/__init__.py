"""Evaluation: HumanEval-X (and Geex's embedded set), judged by running code in a sandbox.

The pieces, in the order a sample flows through them:

- ``problems``: benchmark problems from a folder of ``humaneval_<lang>.jsonl(.gz)``, the
  Hugging Face Hub, or the set shipped in the package (``embedded/``);
- ``tasks``: the prompts (generation with the language tag; translation between languages);
- ``backends``: where completions come from (canonical solutions, a samples file, a model);
- ``programs``: stop rules and the per-language program layout of the reference harness;
- ``sandbox`` and ``runners``: compile and run each program in bubblewrap with limits;
- ``verdicts``, ``evaluator``: the seven verdicts, and the parallel judge;
- ``scores``, ``results``, ``report``, ``run``: pass@k, results.jsonl with resume, reports.
"""

from geex.eval.backends import (
    FunctionBackend,
    GenerationBackend,
    Sample,
    Sampling,
    StopRule,
    canonical_samples,
    generate_samples,
    read_samples,
)
from geex.eval.evaluator import EvalConfig, Evaluator
from geex.eval.problems import Problem, load_embedded, load_hub, load_problems
from geex.eval.run import EvalRun, evaluate
from geex.eval.runners import RunSettings
from geex.eval.scores import pass_at_k
from geex.eval.tasks import Task, build_tasks, generation_tasks, translation_tasks
from geex.eval.verdicts import VERDICTS

__all__ = [
    "VERDICTS",
    "EvalConfig",
    "EvalRun",
    "Evaluator",
    "FunctionBackend",
    "GenerationBackend",
    "Problem",
    "RunSettings",
    "Sample",
    "Sampling",
    "StopRule",
    "Task",
    "build_tasks",
    "canonical_samples",
    "evaluate",
    "generate_samples",
    "generation_tasks",
    "load_embedded",
    "load_hub",
    "load_problems",
    "pass_at_k",
    "read_samples",
    "translation_tasks",
]
