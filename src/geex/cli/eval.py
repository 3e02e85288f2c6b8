"""`geex eval`: judge code completions on HumanEval-X or Geex's embedded set, sandboxed."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from geex.cli.flags import add_config_flags, config_from_args, flag_values
from geex.errors import GeexError
from geex.eval.backends import Sampling
from geex.eval.evaluator import EvalConfig
from geex.eval.results import check_results_folder
from geex.model.load_options import LoadOptions


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate completions on HumanEval-X or the embedded set",
        description="Compile and run completions against benchmark tests in a sandbox and "
        "report pass@k per language.",
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")

    humanevalx = benchmarks.add_parser(
        "humanevalx",
        help="HumanEval-X (Python, C++, Java, JavaScript, Go, Rust)",
        description="Judge completions on HumanEval-X. The data is not shipped: give a folder "
        "of humaneval_<lang>.jsonl(.gz) files with --data, or set GEEX_HUMANEVALX_DIR; "
        "without either it is loaded from the Hugging Face Hub (THUDM/humaneval-x).",
    )
    humanevalx.add_argument("--data", metavar="DIR", help="folder of humaneval_<lang>.jsonl(.gz)")
    _add_run_arguments(humanevalx)
    humanevalx.set_defaults(handler=_humanevalx)

    embedded = benchmarks.add_parser(
        "embedded",
        help="Geex's own small set, shipped in the package (10 problems per language)",
        description="Judge completions on Geex's embedded evaluation set: nothing to download.",
    )
    _add_run_arguments(embedded)
    embedded.set_defaults(handler=_embedded)

    _register_infill(benchmarks)
    _register_prepare(benchmarks)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def _register_infill(benchmarks) -> None:
    from geex.eval.infill import DEFAULT_MAX_SPAN, DEFAULT_MULTI_PER_PROBLEM, INFILL_KINDS
    from geex.tokenizer.fim import FIM_STYLES

    infill = benchmarks.add_parser(
        "infill",
        help="fill-in-the-middle: lines of HumanEval-X's canonical solutions masked",
        description="Mask each line (single-line) and spans of lines (multi-line) of the "
        "canonical solutions, let a model fill them from prefix and suffix, and judge each "
        "filled program by its tests: pass@1 and exact match per language and kind.",
    )
    infill.add_argument("--data", metavar="DIR", help="folder of humaneval_<lang>.jsonl(.gz)")
    infill.add_argument("--embedded", action="store_true", help="mask Geex's embedded set instead")
    _add_run_arguments(infill, task_choice=False)
    infill.add_argument(
        "--kinds", nargs="+", choices=INFILL_KINDS, default=list(INFILL_KINDS),
        help="which holes (default: both)",
    )  # fmt: skip
    infill.add_argument(
        "--max-span", type=int, default=DEFAULT_MAX_SPAN,
        help=f"most lines a multi-line hole masks (default {DEFAULT_MAX_SPAN})",
    )  # fmt: skip
    infill.add_argument(
        "--multi-per-problem", type=int, default=DEFAULT_MULTI_PER_PROBLEM,
        help=f"multi-line holes kept per problem (default {DEFAULT_MULTI_PER_PROBLEM})",
    )  # fmt: skip
    infill.add_argument(
        "--fim-style", default="auto", choices=["auto", *FIM_STYLES],
        help="the model's FIM format (default: detected from its vocabulary)",
    )  # fmt: skip
    infill.set_defaults(handler=_infill)


def _register_prepare(benchmarks) -> None:
    prepare = benchmarks.add_parser(
        "prepare",
        help="check toolchains and the sandbox, warm the compiler caches, install packages",
        description="Report which languages can be judged here and which sandbox is used; "
        "build the caches (C++ precompiled header, Rust crates, Java compile server, Go "
        "build cache) so that the first evaluation does not pay for them. --npm and --pip "
        "install packages a benchmark needs into Geex's cache, where the sandboxed programs "
        'find them (samples that lacked one are judged "unavailable", naming it).',
    )
    prepare.add_argument("--languages", nargs="+", metavar="LANG", help="default: all six")
    prepare.add_argument(
        "--npm",
        nargs="*",
        metavar="PKG",
        help="install npm packages (name, name@version, tarball or folder); "
        "with no PKG, what HumanEval-X needs (js-md5, for JavaScript/162)",
    )
    prepare.add_argument(
        "--pip",
        nargs="+",
        metavar="PKG",
        help="install pip packages with the pip of the Python that runs the programs",
    )
    prepare.set_defaults(handler=_prepare)


def _add_run_arguments(parser: argparse.ArgumentParser, *, task_choice: bool = True) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--canonical", action="store_true", help="judge the canonical solutions (checks the judge)"
    )
    source.add_argument(
        "--samples",
        metavar="FILE",
        help="judge completions made elsewhere: .jsonl(.gz) lines with task_id and generation",
    )
    source.add_argument("--model", metavar="DIR", help="generate with a Geex checkpoint")
    source.add_argument(
        "--hf-model",
        metavar="NAME_OR_DIR",
        help="generate with a Hugging Face causal LM (transformers)",
    )
    source.add_argument(
        "--openai-url",
        metavar="URL",
        help="generate with an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1",
    )
    _add_model_arguments(parser)
    parser.add_argument(
        "--languages", nargs="+", metavar="LANG", help="e.g. python cpp js (default: all)"
    )
    if task_choice:
        parser.add_argument("--task", choices=["generation", "translation"], default="generation")
    parser.add_argument(
        "--out", metavar="DIR", help="write results.jsonl and reports here; resumes"
    )
    add_config_flags(parser, EvalConfig)  # --workers, --timeout, --example-test
    parser.add_argument("--limit", type=int, help="only the first N problems of each language")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    sampling = parser.add_argument_group("sampling (with --model, --hf-model or --openai-url)")
    add_config_flags(sampling, Sampling)
    sampling.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="prompts generated together (each with its n samples); with --openai-url, "
        "requests in flight at once",
    )
    local = parser.add_argument_group("local models (--model, --hf-model)")
    add_config_flags(local, LoadOptions)
    local.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let --hf-model run the model code in its folder (needed for Geex's HF export)",
    )
    remote = parser.add_argument_group("endpoints (--openai-url)")
    remote.add_argument(
        "--openai-model",
        metavar="NAME",
        help="model to ask for (default: the one the server lists)",
    )
    remote.add_argument(
        "--api-key-env",
        metavar="VAR",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (default OPENAI_API_KEY)",
    )
    remote.add_argument(
        "--request-timeout", type=float, default=600.0, help="seconds for one request"
    )
    remote.add_argument("--retries", type=int, default=5, help="tries after a transient failure")


def _humanevalx(args: argparse.Namespace) -> int:
    from geex.eval.problems import load_hub, load_problems

    data = args.data or os.environ.get("GEEX_HUMANEVALX_DIR")
    # A samples file may cover languages left out: load them all to tell such lines apart
    # from unknown task ids.
    languages = None if args.samples else args.languages
    problems = load_problems(data, languages) if data else load_hub(languages)
    return _run(args, problems, "HumanEval-X", known=True)


def _embedded(args: argparse.Namespace) -> int:
    from geex.eval.problems import load_embedded

    languages = None if args.samples else args.languages
    return _run(args, load_embedded(languages), "Geex embedded set", known=False)


def _infill(args: argparse.Namespace) -> int:
    from geex.eval.problems import load_embedded, load_hub, load_problems

    args.task = "infill"
    languages = None if args.samples else args.languages
    if args.embedded:
        if args.data:
            raise GeexError("--embedded and --data name two benchmarks; give one")
        return _run(args, load_embedded(languages), "Geex embedded set", known=False)
    data = args.data or os.environ.get("GEEX_HUMANEVALX_DIR")
    problems = load_problems(data, languages) if data else load_hub(languages)
    return _run(args, problems, "HumanEval-X", known=True)


def _build_tasks(args: argparse.Namespace, problems):
    if args.task != "infill":
        from geex.eval.tasks import build_tasks

        return build_tasks(problems, args.task)
    from geex.eval.infill import infill_tasks

    return infill_tasks(problems, args.kinds, max_span=args.max_span,
                        multi_per_problem=args.multi_per_problem)  # fmt: skip


def _run(args: argparse.Namespace, problems, benchmark: str, *, known: bool) -> int:
    from geex.eval.backends import canonical_samples, generate_samples, read_samples
    from geex.eval.evaluator import Evaluator
    from geex.eval.fingerprint import CANONICAL, SAMPLES
    from geex.eval.infill import INFILL_RULES, canonical_infills, whole_middle
    from geex.eval.problems import LANGUAGE_ORDER, humanevalx_language
    from geex.eval.run import evaluate

    infill = args.task == "infill"
    generating = bool(args.model or args.hf_model or args.openai_url)
    if not args.canonical and not args.samples and not generating:
        raise GeexError(
            "say what to judge: --canonical (the reference solutions), --samples FILE "
            "(completions made elsewhere), or a model: --model DIR, --hf-model NAME_OR_DIR "
            "or --openai-url URL"
        )
    _refuse_sampling_flags(args, generating)
    if infill and not generating and args.fim_style != "auto":
        raise GeexError("--fim-style goes with a model (--model or --hf-model)")
    sampling = _sampling(args) if generating else None
    config = config_from_args(EvalConfig, args)
    if args.out:  # before a model is loaded and its digests are kept there
        check_results_folder(Path(args.out))
    if args.limit is not None:
        if args.limit < 1:
            raise GeexError(f"--limit must be at least 1 (problems per language), got {args.limit}")
        problems = [p for p in problems if int(p.number) < args.limit]
    all_tasks = _build_tasks(args, problems)
    chosen = {humanevalx_language(name).key for name in args.languages or LANGUAGE_ORDER}
    tasks = [t for t in all_tasks if _in_languages(t, chosen)]
    if not tasks:
        raise GeexError("no tasks in the chosen languages")
    logging.basicConfig(level=logging.WARNING, format="geex eval: %(message)s")
    backend, model_label, generator, sampling = (
        _model_backend(args, sampling) if generating else (None, "", None, None)
    )
    if infill and generating:
        generator["fim_style"] = _use_fim_style(args, backend, model_label)
        model_label += f", FIM style {generator['fim_style']}"
    with Evaluator(config) as evaluator:
        languages = sorted({t.language.key for t in tasks})
        missing = evaluator.missing_toolchains(languages)
        if missing:
            lines = "; ".join(f"{key}: {why}" for key, why in missing.items())
            raise GeexError(f"{lines} (or leave them out with --languages)")
        expected = None
        if args.canonical:
            samples = canonical_infills(tasks) if infill else canonical_samples(tasks)
            generator = CANONICAL
        elif args.samples:
            others = {t.task_id for t in all_tasks} - {t.task_id for t in tasks}
            samples = read_samples(args.samples, tasks, other_task_ids=others)
            if infill:  # a middle is made whole as a model's is
                samples = [dataclasses.replace(s, generation=whole_middle(s.task, s.generation))
                           for s in samples]  # fmt: skip
            generator = SAMPLES
        else:
            batch = args.batch_size

            def samples(done):  # only what an interrupted run still lacks
                return generate_samples(
                    backend, tasks, sampling, done=done, batch_size=batch,
                    holes=INFILL_RULES if infill else None,
                )  # fmt: skip

            expected = len(tasks) * sampling.n
        per_task = sampling.n if generating else None
        bits_per_byte = _reference_bits_per_byte(backend, tasks) if generating else None
        title = f"{benchmark}, {args.task}" + (", canonical solutions" if args.canonical else "")
        if infill:
            title = f"{benchmark}, infilling" + (", canonical middles" if args.canonical else "")
        if generating:
            title += f", {model_label}, {sampling.describe()}"
        run = evaluate(
            evaluator, tasks, samples, generator=generator, out_dir=args.out, title=title,
            progress=not args.no_progress and sys.stderr.isatty(), expected_samples=expected,
            per_task=per_task, bits_per_byte=bits_per_byte,
        )  # fmt: skip
        js_md5 = evaluator.runner("javascript").find_module("js-md5") is not None
    _print_summary(run)
    if args.openai_url:
        print("bits per byte: not available from an OpenAI-compatible endpoint, which returns "
              "no log-probabilities of the prompt's own tokens")  # fmt: skip
    if args.out:
        print(f"\nresults, report.md and report.html in {args.out}")
    if args.canonical and known and args.task != "translation" and not config.example_test:
        return _check_canonical(run, js_md5)
    return 0


def _reference_bits_per_byte(backend, tasks) -> dict | None:
    """The model's bits per byte of the tasks' reference programs; None for a backend that
    gives no log-probabilities (an OpenAI-compatible endpoint)."""
    from geex.eval.bits_per_byte import reference_bits_per_byte

    if not hasattr(backend, "text_nll"):
        return None
    problems = {task.problem.task_id: task.problem for task in tasks}
    return reference_bits_per_byte(backend, problems.values())


def _use_fim_style(args: argparse.Namespace, backend, model_label: str) -> str:
    """Set the backend's FIM style; an endpoint applies its own, so it takes none."""
    if args.openai_url:
        if args.fim_style != "auto":
            raise GeexError(
                "--fim-style goes with --model or --hf-model; an endpoint puts the suffix "
                "in its model's format itself"
            )
        return "the server's"
    return backend.use_fim_style(args.fim_style, model_label)


def _refuse_sampling_flags(args: argparse.Namespace, generating: bool) -> None:
    """Sampling flags shape only what a model generates: given with --canonical or --samples
    they would be ignored in silence, so they are refused."""
    if generating:
        return
    given = flag_values(Sampling, args)
    if given:
        flag = "--" + next(iter(given)).replace("_", "-")
        what = (
            "--canonical judges the reference solutions"
            if args.canonical
            else "--samples judges completions made elsewhere"
        )
        raise GeexError(f"{what}; {flag} does not apply (it goes with a model)")


def _sampling(args: argparse.Namespace):
    sampling = config_from_args(Sampling, args)
    sampling.check(args.batch_size, name=lambda key: "--" + key.replace("_", "-"))
    return sampling


def _model_backend(args: argparse.Namespace, sampling):
    """The backend the arguments name, a label for the report's title, its identity for the
    results' fingerprints (``geex.eval.fingerprint``), and ``sampling`` with the model's own
    repetition penalty where none is given (:mod:`geex.model.generation_defaults`)."""
    from geex.eval.fingerprint import loaded_dtype, model_generator

    options = config_from_args(LoadOptions, args)
    if options.quantize and not args.model:
        raise GeexError("--quantize int8 goes with --model (a Geex checkpoint)")
    if args.model:
        from geex.eval.backends_geex import GeexBackend

        backend = GeexBackend.load(args.model, **dataclasses.asdict(options))
        sampling = sampling.with_default_penalty(backend.repetition_penalty)
        tokenizer = Path(options.tokenizer) if options.tokenizer else None
        generator = model_generator("geex", args.model, sampling, tokenizer=tokenizer,
                                    dtype=loaded_dtype(backend), cache=_digests(args))  # fmt: skip
        return backend, f"Geex model {args.model}", generator, sampling
    if args.hf_model:
        from geex.eval.backends_hf import HFBackend

        if options.tokenizer:
            raise GeexError("--tokenizer goes with --model; --hf-model uses its own tokenizer")
        backend = HFBackend.load(
            args.hf_model,
            device=options.device,
            dtype=options.dtype,
            trust_remote_code=args.trust_remote_code,
        )
        sampling = sampling.with_default_penalty(backend.repetition_penalty)
        generator = model_generator("hf", args.hf_model, sampling, dtype=loaded_dtype(backend),
                                    cache=_digests(args))  # fmt: skip
        return backend, f"Hugging Face model {args.hf_model}", generator, sampling
    from geex.eval.backends_openai import OpenAIBackend, api_key_from_env

    backend = OpenAIBackend(
        args.openai_url,
        args.openai_model,
        api_key=api_key_from_env(args.api_key_env),
        timeout=args.request_timeout,
        retries=args.retries,
        concurrency=args.batch_size,
    )
    # Unset, the penalty is the server's to choose (geex serve: the model's own).
    generator = model_generator("openai", args.openai_url, sampling, model=backend.model)
    return backend, f"{backend.model} at {args.openai_url}", generator, sampling


def _digests(args: argparse.Namespace) -> Path | None:
    """Where the model files' digests are kept between runs into the same --out."""
    from geex.eval.fingerprint import DIGESTS

    return Path(args.out) / DIGESTS if args.out else None


def _in_languages(task, chosen: set[str]) -> bool:
    source = task.source.language.key if task.source is not None else task.language.key
    return task.language.key in chosen and source in chosen


def _print_summary(run) -> None:
    from rich.console import Console
    from rich.table import Table

    from geex.eval.report import code_sentence
    from geex.eval.verdicts import VERDICTS

    ks = sorted({k for g in run.scores.groups.values() for k in g.pass_at})
    verdicts = [v for v in VERDICTS if run.scores.overall.verdicts.get(v)]
    exact = run.scores.overall.exact_match is not None  # an infilling run
    table = Table(title=run.title)
    exact_column = ["exact match"] if exact else []
    for column in ["", "tasks" if exact else "problems", "samples", *[f"pass@{k}" for k in ks], *exact_column,
                   "parses", "stays", *verdicts]:  # fmt: skip
        table.add_column(column, justify="left" if not column else "right")
    rows = [*run.scores.groups.items(), ("all", run.scores.overall)]
    for name, g in rows:
        cells = [name, str(g.problems), str(g.samples)]
        cells += [
            f"{100 * g.pass_at[k]:.2f}%{g.coverage(k)}" if k in g.pass_at else "-" for k in ks
        ]
        if exact:
            cells.append(f"{100 * g.exact_match:.2f}%" if g.exact_match is not None else "-")
        cells += [c if c == "-" else c + "%" for c in g.code_cells()]
        cells += [str(g.verdicts.get(v, 0) or "") for v in verdicts]
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(
        f"sandbox: {run.sandbox}; {run.seconds:.1f} s"
        + (f"; {run.resumed} resumed" if run.resumed else "")
    )
    for note in run.notes:
        console.print(f"[yellow]warning:[/yellow] {note}")
    console.print(code_sentence(run), markup=False)
    _print_bits_per_byte(run, console)
    _print_unjudged(run, console)


def _print_bits_per_byte(run, console) -> None:
    from rich.table import Table

    from geex.eval.report import BITS_PER_BYTE_HEADER

    if run.bits_per_byte is None:
        return
    table = Table(title="bits per byte of the reference programs (prompt + canonical solution)")
    for column in BITS_PER_BYTE_HEADER:
        table.add_column(column, justify="left" if not column else "right")
    for group, row in run.bits_per_byte.items():
        table.add_row(group, str(row["problems"]), f"{row['bytes']:,}", f"{row['tokens']:,}",
                      f"{row['bits_per_byte']:.4f}")  # fmt: skip
    console.print(table)


def _print_unjudged(run, console) -> None:
    overall = run.scores.overall
    if not overall.unavailable:
        return
    console.print(
        f"{overall.unavailable} sample(s) could not be judged here and are left out of "
        f"pass@k, which counts the {overall.judged} judged ones",
        markup=False,
    )
    if any(overall.partial(k) for k in overall.covered):
        console.print(
            "a pass@k marked (a/b) averages the a of b problems with at least k judged samples",
            markup=False,
        )
    for item in overall.missing_package_list():
        console.print(
            f"  {item['package']}: {item['samples']} sample(s); {item['install']}",
            markup=False,
        )


def _check_canonical(run, js_md5: bool) -> int:
    from geex.eval.known import KNOWN_CANONICAL, expected_canonical

    unexpected = []
    print("\nCanonical solutions that do not pass:")
    for result in run.results:
        # An infilling task (Python/0/L3) fills its problem's canonical program again.
        problem_id = "/".join(result.task_id.split("/")[:2])
        expected = expected_canonical(problem_id, js_md5=js_md5)
        if result.verdict not in expected:
            unexpected.append(result)
        elif problem_id in KNOWN_CANONICAL and result.verdict != "passed":
            print(f"  {result.task_id}: {result.verdict} (known: {KNOWN_CANONICAL[problem_id][1]})")
    for result in unexpected:
        print(f"  {result.task_id}: {result.verdict} UNEXPECTED ({result.detail})", file=sys.stderr)
    if unexpected:
        print(
            f"{len(unexpected)} canonical verdict(s) differ from the expected ones", file=sys.stderr
        )
        return 1
    print("all canonical verdicts are as expected")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from geex.eval.evaluator import EvalConfig, Evaluator
    from geex.eval.harness import check_harness
    from geex.eval.problems import LANGUAGE_ORDER, humanevalx_language

    keys = [humanevalx_language(name).key for name in (args.languages or LANGUAGE_ORDER)]
    broken: list[str] = []
    with Evaluator(EvalConfig()) as evaluator:
        print(f"sandbox: {evaluator.sandbox.mode}")
        if evaluator.sandbox.warning:
            print(f"warning: {evaluator.sandbox.warning}")
        print(f"caches: {evaluator.cache_dir}")
        if args.npm is not None:
            folder = evaluator.runner("javascript").install_npm_packages(args.npm)
            print(f"npm packages installed in {folder}")
        if args.pip:
            folder = evaluator.runner("python").install_pip_packages(args.pip)
            print(f"pip packages installed in {folder}")
        missing = evaluator.missing_toolchains(keys)
        for key in keys:
            if key in missing:
                print(f"  {key:<11} unavailable: {missing[key]}")
                continue
            runner = evaluator.runner(key)
            try:
                runner.prepare()
                check_harness(evaluator, [key])  # a known-good program must pass
            except GeexError as err:
                broken.append(key)
                print(f"  {key:<11} broken: {err}")
                continue
            print(f"  {key:<11} ready" + (f" ({runner.note()})" if runner.note() else ""))
    return 1 if missing or broken else 0
