"""`geex generate`: complete code with a Geex checkpoint, streamed to the terminal."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from geex.cli.flags import add_config_flags, config_from_args
from geex.errors import GeexError
from geex.model.load_options import LoadOptions
from geex.model.sampling import SamplingConfig


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="complete code with a trained model",
        description="Complete a prompt with a Geex checkpoint. The language tag line "
        "(e.g. '# language: Python') is added to the prompt unless --no-tag; the language's "
        "stop rules end each completion.",
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="Geex checkpoint folder")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument(
        "--prompt",
        "-p",
        help="the prompt text, as given (newlines: bash's $'...\\n'; default: read from stdin)",
    )
    prompt.add_argument("--prompt-file", metavar="FILE", help="read the prompt from FILE")
    parser.add_argument("--language", "-l", help="language of the code, e.g. python, cpp, go")
    parser.add_argument("--no-tag", action="store_true", help="do not add the language tag line")
    add_config_flags(parser, SamplingConfig)
    parser.add_argument("--stop", action="append", default=[], help="extra stop sequence")
    add_config_flags(parser, LoadOptions)
    parser.add_argument("--json", action="store_true", help="print one JSON line per sample")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="decode through torch.compile: faster per token after a compile of ~30 s",
    )
    parser.set_defaults(handler=_generate)


def _read_prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:  # as given: a C string's "\\n" stays two characters
        return _utf8_text(os.fsencode(args.prompt), "--prompt")
    if args.prompt_file:
        try:
            return _utf8_text(
                Path(args.prompt_file).read_bytes(), f"--prompt-file {args.prompt_file}"
            )
        except OSError as err:
            raise GeexError(f"cannot read --prompt-file: {err}") from None
    if sys.stdin.isatty():
        raise GeexError("give a prompt with --prompt, --prompt-file, or on stdin")
    stdin = getattr(sys.stdin, "buffer", None)  # a test's replacement may hold text only
    return _utf8_text(stdin.read(), "the prompt on stdin") if stdin else sys.stdin.read()


def _utf8_text(data: bytes, what: str) -> str:
    """A prompt is source code: UTF-8 text, whatever the terminal's locale. A NUL byte is
    valid UTF-8 but marks a binary file (an image, a compiled program), not code."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GeexError(
            f"{what} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}): "
            "give a text file of code"
        ) from None
    if "\0" in text:
        raise GeexError(
            f"{what} holds a NUL byte (offset {data.index(0)}): a binary file, not code; "
            "give a text file"
        )
    return text


def _generate(args: argparse.Namespace) -> int:
    from geex.model.loader import load_for_inference
    from geex.serve.completion import complete

    sampling = config_from_args(SamplingConfig, args)
    prompt = _read_prompt(args)
    options = config_from_args(LoadOptions, args)
    loaded = load_for_inference(args.model, **dataclasses.asdict(options))
    sampling = loaded.sampling(sampling)  # the model's repetition penalty unless one is given

    stream = sampling.num_samples == 1 and not args.json
    if stream:
        sys.stdout.write(prompt)
        sys.stdout.flush()

    def on_text(row: int, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    (samples,) = complete(
        loaded.model,
        loaded.tokenizer,
        prompt,
        language=args.language,
        sampling=sampling,
        stop=args.stop,
        add_tag=not args.no_tag,
        on_text=on_text if stream else None,
        compile_step=args.compile,
    )
    if stream:
        sys.stdout.write("\n")
        print(f"[{samples[0].num_tokens} tokens, {samples[0].finish_reason}]", file=sys.stderr)
        return 0
    for i, sample in enumerate(samples):
        if args.json:
            record = {"sample": i, "completion": sample.text, "tokens": sample.num_tokens}
            print(json.dumps({**record, "finish_reason": sample.finish_reason}))
        else:
            print(
                f"--- sample {i + 1}/{len(samples)} ({sample.num_tokens} tokens, "
                f"{sample.finish_reason}) ---"
            )
            print(prompt + sample.text)
    return 0
