"""Aggregate decode throughput of the serving engine: 1 client against 16 concurrent clients.

Each client is a thread that calls ``Engine.generate`` on code prompts (HumanEval-X's, in turn)
for ``--requests`` requests, greedily, ``--max-tokens`` tokens each, with no stop rules, so a
request decodes its full budget unless the random model picks the end-of-document id.
Reported: tokens decoded by all clients divided by the wall time, per number of clients, and
the engine's counters. The model is a preset with random weights and a small trained tokenizer.

``--compare-src`` runs the same measurement again with another checkout's ``src`` first on the
path (e.g. the one-sequence-at-a-time engine), in a subprocess, so both figures come from one
run on the same machine:

    PYTHONPATH=src python benchmarks/engine.py --compare-src /path/to/other/checkout/src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import torch

from geex.eval.problems import load_embedded
from geex.model import build_model
from geex.presets import MODEL_PRESETS, model_preset
from geex.serve.engine import Engine, GenerationParams
from geex.serve.geex_runner import GeexCodec, GeexRunner
from geex.tokenizer import train_tokenizer


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compare-src", help="also measure with this src folder first on the path")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    problems = load_embedded(["python", "cpp"])
    texts = [p.prompt + p.canonical_solution for p in problems]
    tokenizer = train_tokenizer(texts, vocab_size=600, languages=["python", "cpp"])
    config = model_preset(args.preset)
    model = build_model(config, device=args.device, seed=0).eval()
    runner = GeexRunner(model, num_slots=args.slots, vocab_size=tokenizer.vocab_size)
    prompts = [tokenizer.encode(p.prompt)[-(config.max_seq_len - args.max_tokens) :]
               for p in problems]  # fmt: skip
    params = GenerationParams(max_tokens=args.max_tokens, temperature=0)
    results = {}
    with Engine(runner, GeexCodec(tokenizer), max_batch=args.slots) as engine:
        engine.generate(prompts[0], params)  # warm-up
        for clients in args.clients:
            tokens = [0] * clients

            def client(index: int, tokens: list[int] = tokens) -> None:
                for r in range(args.requests):
                    prompt = prompts[(index * args.requests + r) % len(prompts)]
                    tokens[index] += engine.generate(prompt, params)[0].num_tokens

            threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - start
            results[clients] = {
                "tokens": sum(tokens),
                "seconds": round(seconds, 3),
                "tokens_per_s": round(sum(tokens) / seconds, 1),
            }
        results["stats"] = engine.stats()
    return results


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    report = {"engine": os.path.dirname(sys.modules[Engine.__module__].__file__)}
    report.update(measure(args))
    print(json.dumps(report))
    if args.compare_src:
        argv = [a for a in sys.argv[1:] if a != args.compare_src and a != "--compare-src"]
        env = {**os.environ, "PYTHONPATH": args.compare_src}
        subprocess.run([sys.executable, __file__, *argv], env=env, check=True)


if __name__ == "__main__":
    main()
