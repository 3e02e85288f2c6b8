"""Streaming clients against ``geex serve``: the batching engine against one request at a time.

One run starts two servers over real HTTP on loopback (free ports, uvicorn in threads of this
process) with the same random-weight model (a preset, a small trained tokenizer):

* **baseline**: the server as it was before the engine. ``geex serve`` then ran
  ``geex.serve.completion.complete()`` under a lock, one request at a time, streaming each
  piece of text as it was decoded; :func:`baseline_app` is that route, reproduced here with
  nothing else (no limits, no other protocols).
* **Geex**: today's ``geex.serve.server.create_app`` over ``load_served_model`` and the
  continuous-batching ``Engine``, as ``geex serve`` builds it.

Then, for each number of concurrent clients (1, 4, 16), each client (a thread) sends its
requests one after another: streamed ``/v1/completions`` on HumanEval-X prompts, greedy,
``--max-tokens`` each, no stop rule. Reported per server: aggregate tokens/s (completion tokens
from the usage chunk, over the round's wall time), Geex / baseline, and over the requests the
p50/p95 time to first token and per-token latency (time after the first text, over the tokens
after the first). A warm-up round at the largest concurrency comes first, untimed.

A second table times what an editor waits for: a fill-in-the-middle request (prefix and suffix
from a HumanEval-X solution), at most 16 tokens, stopping at a newline, not streamed, one at a
time, on Geex for each of ``--line-presets``; the median and p95 over ``--line-requests``.

The machine's load moves absolute figures: only ratios from one run compare. The clients share
this process with the servers, as little work next to a decode step as a separate process's.

    PYTHONPATH=src python benchmarks/serve.py                       # tiny, 1/4/16 clients
    PYTHONPATH=src python benchmarks/serve.py --preset small --requests 1 --max-tokens 32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from geex.eval.problems import load_embedded
from geex.model import build_model
from geex.model.checkpoint import save_checkpoint
from geex.model.loader import load_for_inference
from geex.model.sampling import SamplingConfig
from geex.presets import MODEL_PRESETS, model_preset
from geex.serve.completion import complete
from geex.serve.engine import Engine
from geex.serve.models import load_served_model
from geex.serve.openai_api import (
    FINISH_REASONS,
    STREAM_END,
    CompletionRequest,
    stream_event,
    text_choice,
    usage,
)
from geex.serve.server import BackgroundServer, create_app
from geex.serve.state import ServeLimits, ServerState
from geex.tokenizer import train_tokenizer
from side_by_side import machine, print_table

LANGUAGES = ["python", "cpp"]
REQUEST_TIMEOUT_S = 600


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=2, help="requests per client per round")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per request")
    parser.add_argument("--repeats", type=int, default=1, help="rounds per server and clients")
    parser.add_argument("--slots", type=int, default=16, help="Geex's sequences decoded at once")
    parser.add_argument("--line-presets", nargs="*", default=["tiny", "small"],
                        choices=sorted(MODEL_PRESETS), help="presets of the single-line table")  # fmt: skip
    parser.add_argument("--line-requests", type=int, default=8, help="single-line requests")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    return parser.parse_args(argv)


# -- the model ------------------------------------------------------------------------------


def save_random_checkpoint(preset: str, folder: Path) -> Path:
    """A preset with random weights and a tokenizer (FIM tokens included) trained on
    HumanEval-X's programs, saved as a Geex checkpoint."""
    texts = [p.prompt + p.canonical_solution for p in load_embedded(LANGUAGES)]
    tokenizer = train_tokenizer(texts * 3, vocab_size=600, languages=LANGUAGES)
    model = build_model(model_preset(preset), seed=0).eval()
    save_checkpoint(model, folder, tokenizer=tokenizer)
    return folder


def last_lines(text: str, encode, budget: int) -> str:
    """``text`` less its first lines, as few as leave at most ``budget`` tokens (one line stays)."""
    lines = text.splitlines(keepends=True)
    while len(lines) > 1 and len(encode("".join(lines))) > budget:
        lines = lines[1:]
    return "".join(lines)


def fitting_prompts(encode, budget: int) -> list[str]:
    """HumanEval-X prompts, each cut to its last lines that fit ``budget`` tokens."""
    prompts = [last_lines(p.prompt, encode, budget) for p in load_embedded(LANGUAGES)]
    return [p for p in prompts if len(encode(p)) <= budget]


def line_requests(count: int, encode, budget: int) -> list[tuple[str, str]]:
    """(prefix, suffix) pairs: a solution cut after half its lines, the cursor on the next,
    which the suffix leaves out; the prefix takes at most half of ``budget``."""
    pairs = []
    for problem in load_embedded(LANGUAGES):
        lines = problem.canonical_solution.splitlines(keepends=True)
        if len(lines) < 3:
            continue
        cut = len(lines) // 2
        prefix = last_lines(problem.prompt + "".join(lines[:cut]), encode, budget // 2)
        pairs.append((prefix, "".join(lines[cut + 1 :])))
        if len(pairs) == count:
            break
    return pairs


# -- the two servers -------------------------------------------------------------------------


def baseline_app(model, tokenizer, name: str) -> FastAPI:
    """``geex serve`` before the engine: ``complete()`` under a lock, its text streamed.

    Only the streamed ``/v1/completions`` the benchmark sends: prompt, max_tokens,
    temperature, top_p, stop, and a usage chunk at the end.
    """
    app = FastAPI()
    lock = threading.Lock()

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        finished = object()
        sampling = SamplingConfig(
            max_new_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p
        )

        def on_text(_row: int, text: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, text)

        def decode():
            try:
                with lock:
                    return complete(model, tokenizer, body.prompts[0], sampling=sampling,
                                    stop=body.stop_sequences, add_tag=False, on_text=on_text)  # fmt: skip
            finally:
                loop.call_soon_threadsafe(pieces.put_nowait, finished)

        async def events():
            work = loop.run_in_executor(None, decode)
            while (text := await pieces.get()) is not finished:
                yield stream_event("cmpl-0", name, [text_choice(0, text)], chat=False)
            result = (await work)[0][0]
            finish = text_choice(0, "", FINISH_REASONS[result.finish_reason])
            yield stream_event("cmpl-0", name, [finish], chat=False)
            yield stream_event(
                "cmpl-0", name, [], chat=False, usage_fields=usage(0, result.num_tokens)
            )
            yield STREAM_END

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@contextlib.contextmanager
def baseline_server(folder: Path) -> Iterator[BackgroundServer]:
    loaded = load_for_inference(folder, device="cpu")
    with BackgroundServer(baseline_app(loaded.model, loaded.tokenizer, "baseline")) as server:
        yield server


@contextlib.contextmanager
def geex_server(folder: Path, slots: int) -> Iterator[tuple[BackgroundServer, ServerState]]:
    model = load_served_model(folder, device="cpu", name="geex", max_slots=slots)
    with Engine(model.runner, model.codec, max_batch=slots) as engine:
        state = ServerState(model, engine, ServeLimits())
        with BackgroundServer(create_app(state)) as server:
            yield server, state


# -- the clients -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    first_token_s: float  # request sent to the first text received
    total_s: float  # request sent to the end of the stream
    tokens: int  # completion tokens, from the usage chunk

    @property
    def per_token_s(self) -> float | None:
        """Time per token after the first, as a streaming client sees them arrive."""
        if self.tokens < 2:
            return None
        return (self.total_s - self.first_token_s) / (self.tokens - 1)


def post(url: str, body: dict):
    request = urllib.request.Request(
        url + "/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    return urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S)


def streamed_completion(url: str, prompt: str, max_tokens: int) -> Timing:
    """One streamed, greedy completion, timed from the request to each server-sent event."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    start = time.perf_counter()
    first, tokens = None, 0
    with post(url, body) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == STREAM_END.strip():
                continue
            event = json.loads(line[len("data: ") :])
            if "error" in event:
                raise RuntimeError(f"the server answered an error: {event['error']['message']}")
            if first is None and any(c.get("text") for c in event["choices"]):
                first = time.perf_counter() - start
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    total = time.perf_counter() - start
    return Timing(first if first is not None else total, total, tokens)


@dataclass(frozen=True)
class Round:
    clients: int
    seconds: float
    timings: list[Timing]

    @property
    def tokens_per_s(self) -> float:
        return sum(t.tokens for t in self.timings) / self.seconds


def drive(
    url: str, prompts: list[str], clients: int, requests: int, max_tokens: int, offset: int = 0
) -> Round:
    """``clients`` threads, each sending ``requests`` streamed completions one after another,
    on the prompts from ``offset`` on (each round its own, so no round reuses another's prefix
    in Geex's slots)."""
    timings: list[list[Timing]] = [[] for _ in range(clients)]
    failures: list[BaseException] = []

    def client(index: int) -> None:
        try:
            for r in range(requests):
                prompt = prompts[(offset + index * requests + r) % len(prompts)]
                timings[index].append(streamed_completion(url, prompt, max_tokens))
        except Exception as err:  # reported by the main thread, after the others finish
            failures.append(err)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if failures:
        raise SystemExit(f"a client failed: {failures[0]}")
    return Round(clients, seconds, [t for per_client in timings for t in per_client])


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (inclusive method: p50 is the median, p95 is inside the data)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms(seconds: float | None) -> str:
    return (
        "-"
        if seconds is None
        else f"{seconds * 1000:,.0f}"
        if seconds >= 1
        else f"{seconds * 1000:.1f}"
    )


def p50_p95(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{ms(percentile(values, 50))} / {ms(percentile(values, 95))}"


def latency_cells(rounds: list[Round]) -> list[str]:
    """TTFT and per-token latency over the rounds' requests, each as "p50 / p95" in ms."""
    timings = [t for r in rounds for t in r.timings]
    first = [t.first_token_s for t in timings]
    per_token = [t.per_token_s for t in timings if t.per_token_s is not None]
    return [p50_p95(first), p50_p95(per_token)]


def mean_tokens(rounds: list[Round]) -> float:
    return statistics.mean(t.tokens for r in rounds for t in r.timings)


# -- the two tables --------------------------------------------------------------------------


def concurrency_table(args: argparse.Namespace, folder: Path) -> None:
    with geex_server(folder, args.slots) as (geex, state), baseline_server(folder) as baseline:
        budget = state.model.context_length - args.max_tokens - 1
        prompts = fitting_prompts(state.model.codec.encode, budget)
        servers = {"baseline": baseline.url, "Geex": geex.url}
        warm = max(args.clients)
        for url in servers.values():
            drive(url, prompts, warm, 1, min(8, args.max_tokens), offset=len(prompts) - warm)
        rows, token_notes, offset = [], [], 0
        for clients in args.clients:
            rounds: dict[str, list[Round]] = {name: [] for name in servers}
            for _ in range(args.repeats):
                # Baseline then Geex, back to back: the same load and the same prompts.
                for name, url in servers.items():
                    rounds[name].append(
                        drive(url, prompts, clients, args.requests, args.max_tokens, offset)
                    )
                offset += clients * args.requests
            base, ours = rounds["baseline"], rounds["Geex"]
            ratio = statistics.median(
                o.tokens_per_s / b.tokens_per_s for b, o in zip(base, ours, strict=True)
            )
            rows.append([
                str(clients),
                f"{statistics.median(r.tokens_per_s for r in base):,.1f}",
                f"{statistics.median(r.tokens_per_s for r in ours):,.1f}",
                f"{ratio:.2f}x",
                *latency_cells(base),
                *latency_cells(ours),
            ])  # fmt: skip
            token_notes.append(
                f"{clients}: baseline {mean_tokens(base):.1f}, Geex {mean_tokens(ours):.1f}"
            )
        stats = state.engine.stats()
    columns = ["clients", "baseline tok/s", "Geex tok/s", "Geex / base",
               "base TTFT", "base per token", "Geex TTFT", "Geex per token"]  # fmt: skip
    print_table(
        f"Streaming clients, {args.preset}: {args.requests} request(s) per client, "
        f"{args.max_tokens} tokens each, greedy",
        columns,
        rows,
        [machine(),
         f"tok/s: median of {args.repeats} round(s) per server, baseline and Geex in turn; "
         "Geex / base: median of the rounds' ratios",
         "TTFT: time to first token; per token: after the first; p50 / p95 in ms over all rounds",
         "mean completion tokens per request, by clients: " + "; ".join(token_notes),
         f"Geex engine at the end: {stats}"],
    )  # fmt: skip


def single_line_table(args: argparse.Namespace, folders: dict[str, Path]) -> None:
    rows = []
    for preset, folder in folders.items():
        with geex_server(folder, args.slots) as (geex, state):
            pairs = line_requests(args.line_requests + 1, state.model.codec.encode,
                                  state.model.context_length - 16)  # fmt: skip
            seconds, tokens, reasons = [], [], []
            for i, (prefix, suffix) in enumerate(pairs):
                body = {"prompt": prefix, "suffix": suffix, "max_tokens": 16,
                        "temperature": 0, "stop": ["\n"]}  # fmt: skip
                start = time.perf_counter()
                with post(geex.url, body) as response:
                    answer = json.loads(response.read())
                if i == 0:
                    continue  # warm-up
                seconds.append(time.perf_counter() - start)
                tokens.append(answer["usage"]["completion_tokens"])
                reasons.append(answer["choices"][0]["finish_reason"])
        rows.append([
            preset,
            str(len(seconds)),
            ms(statistics.median(seconds)),
            ms(percentile(seconds, 95)),
            f"{statistics.mean(tokens):.1f}",
            ", ".join(f"{r} {reasons.count(r)}" for r in sorted(set(reasons))),
        ])  # fmt: skip
    print_table(
        "Single-line completion: FIM request, max_tokens 16, stop at newline, one at a time",
        ["preset", "requests", "median ms", "p95 ms", "mean tokens", "finish"],
        rows,
        [machine()],
    )


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="geex-serve-bench-") as tmp:
        folders = {}
        for preset in dict.fromkeys([args.preset, *args.line_presets]):
            folders[preset] = save_random_checkpoint(preset, Path(tmp) / preset)
        if args.clients:
            concurrency_table(args, folders[args.preset])
        if args.line_presets:
            single_line_table(args, {p: folders[p] for p in args.line_presets})


if __name__ == "__main__":
    main()
