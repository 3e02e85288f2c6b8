"""Geex, Hugging Face and OpenAI-endpoint backends evaluate end to end and agree on greedy text; the endpoint client retries and loops n. `pytest tests/eval/test_model_backends.py`."""

from __future__ import annotations

import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # these tests only read local folders

import pytest

from geex.cli import main
from geex.errors import GeexError
from geex.eval.backends import Sampling, StopRule
from geex.eval.backends_geex import GeexBackend
from geex.eval.backends_openai import OpenAIBackend
from geex.eval.problems import load_embedded
from geex.eval.tasks import generation_tasks
from geex.languages import get_language
from geex.model.checkpoint import load_model
from geex.tokenizer import load_tokenizer
from tests.conftest import required_module
from tests.eval.conftest import LANGUAGES

NO_STOP = StopRule((), column_zero=False, closing_brace=False)


@pytest.fixture(scope="module")
def geex_backend(checkpoint):
    return GeexBackend(load_model(checkpoint), load_tokenizer(checkpoint))


def evaluate_with(capsys, out, *source, n=1, temperature=0.0, batch_size=3):
    """`geex eval embedded` on the first 2 problems of each language: results by sample."""
    code = main(["eval", "embedded", *source, "--languages", *LANGUAGES, "--limit", "2",
                 "--n", str(n), "--temperature", str(temperature), "--max-new-tokens", "24",
                 "--batch-size", str(batch_size), "--device", "cpu", "--out", str(out),
                 "--no-progress"])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 0, err
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    return {(r["task_id"], r["completion_id"]): r for r in lines}, summary


TASK_IDS = ["Geex-Python/0", "Geex-Python/1", "Geex-Go/0", "Geex-Go/1"]
RAW_PROMPTS = ["def add(a, b):\n", "func Add(a int, b int) int {\n", "x = "]


def test_geex_checkpoint_end_to_end_with_n_samples(checkpoint, capsys, tmp_path):
    results, summary = evaluate_with(capsys, tmp_path, "--model", str(checkpoint),
                                     n=3, temperature=0.8)  # fmt: skip
    assert sorted(results) == sorted((t, i) for t in TASK_IDS for i in range(3))
    assert {r["verdict"] for r in results.values()} <= {"failed", "compile error", "runtime error"}
    assert summary["overall"]["samples"] == 12 and "pass@1" in summary["overall"]["pass@k"]
    assert len({r["generation"] for r in results.values()}) > 4  # sampled, not greedy copies
    # The reference programs scored by the model, beside pass@k.
    bits = summary["bits_per_byte"]
    assert list(bits) == ["Python", "Go", "all"] and bits["all"]["problems"] == 4
    assert all(0 < row["bits_per_byte"] < 32 for row in bits.values())
    assert f"| all | 4 | {bits['all']['bytes']:,} |" in (tmp_path / "report.md").read_text()


def test_each_row_of_a_batch_stops_at_its_own_rule(geex_backend):
    prompts = RAW_PROMPTS
    alone = [geex_backend.generate([p], [NO_STOP], Sampling(max_new_tokens=24))[0][0]
             for p in prompts]  # fmt: skip
    assert all(len(text) > 10 for text in alone)
    # Left-padded together, with no stop rule, every prompt continues as it does alone.
    together = geex_backend.generate(prompts, [NO_STOP] * 3, Sampling(max_new_tokens=24))
    assert [texts[0] for texts in together] == alone
    # A rule that fires mid-way cuts that row only.
    cut = StopRule((alone[1][6:9],), column_zero=False, closing_brace=False)
    stopped = geex_backend.generate(prompts, [NO_STOP, cut, NO_STOP], Sampling(max_new_tokens=24))
    assert [texts[0] for texts in stopped] == [alone[0], alone[1][: alone[1].index(alone[1][6:9])],
                                               alone[2]]  # fmt: skip


def hf_export(checkpoint, folder):
    from geex.model.hf_export import export_hf

    if not folder.exists():
        export_hf(checkpoint, folder)
    return folder


def test_hugging_face_export_end_to_end_equals_the_geex_checkpoint(
    checkpoint, geex_backend, capsys, tmp_path
):
    required_module("transformers")
    from geex.eval.backends_hf import HFBackend

    hf_folder = hf_export(checkpoint, tmp_path / "hf")
    # Raw greedy text, before any stop rule, of a left-padded batch.
    hf_backend = HFBackend.load(str(hf_folder), device="cpu", trust_remote_code=True)
    greedy = Sampling(max_new_tokens=24)
    raw = hf_backend.generate(RAW_PROMPTS, [NO_STOP] * 3, greedy)
    assert raw == geex_backend.generate(RAW_PROMPTS, [NO_STOP] * 3, greedy)
    hf, _ = evaluate_with(capsys, tmp_path / "hf-run", "--hf-model", str(hf_folder),
                          "--trust-remote-code")  # fmt: skip
    geex, summary = evaluate_with(capsys, tmp_path / "geex-run", "--model", str(checkpoint))
    assert sorted(hf) == sorted((t, 0) for t in TASK_IDS)
    assert {k: r["generation"] for k, r in hf.items()} == {
        k: r["generation"] for k, r in geex.items()
    }
    assert summary["overall"]["pass@k"] == {"pass@1": 0.0}


def test_a_short_context_cuts_prompts_alike_in_both_backends(checkpoint, tmp_path):
    """A model of 64 positions asked for 512 new tokens: each backend cuts a long prompt from
    the left to leave the completion half the context, and decodes within the positions the
    model has (the Hugging Face one ran past them, an IndexError in its embedding)."""
    required_module("transformers")
    from geex.eval.backends_hf import HFBackend
    from geex.model import build_model
    from geex.model.checkpoint import read_config, save_checkpoint

    config = read_config(checkpoint).replace(max_seq_len=64)
    short = tmp_path / "short"
    save_checkpoint(build_model(config, seed=0).eval(), short, tokenizer=load_tokenizer(checkpoint))
    prompts = [*RAW_PROMPTS, "def long(x):\n" + "    x = x + 1\n" * 40]
    geex = GeexBackend.load(short, device="cpu").generate(prompts, [NO_STOP] * 4, Sampling())
    hf_folder = hf_export(short, tmp_path / "hf")
    hf = HFBackend.load(str(hf_folder), device="cpu", trust_remote_code=True)
    assert hf.generate(prompts, [NO_STOP] * 4, Sampling()) == geex
    assert all(row[0] for row in geex)


def test_hugging_face_standard_architecture(checkpoint, tmp_path):
    """A GPT-2 folder (no remote code), sampled: n completions per prompt, each cut by its rule."""
    transformers = required_module("transformers")
    from geex.eval.backends_hf import HFBackend

    tokenizer = load_tokenizer(checkpoint)
    config = transformers.GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=128, n_embd=32,
                                     n_layer=1, n_head=2)  # fmt: skip
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(checkpoint / name, tmp_path / name)
    backend = HFBackend.load(str(tmp_path), device="cpu")
    python = StopRule.for_language(get_language("python"))
    prompts = ["# language: Python\ndef add(a, b):\n", "# language: Python\nx = "]
    out = backend.generate(prompts, [python, NO_STOP], Sampling(n=2, temperature=1.0,
                                                               max_new_tokens=16))  # fmt: skip
    assert [len(texts) for texts in out] == [2, 2]
    assert all(python.end(text) in (None, len(text)) for text in out[0])


@pytest.fixture(scope="module")
def geex_server(checkpoint):
    required_module("fastapi")
    required_module("uvicorn")
    from tests.serve.tiny_server import serving

    with serving(checkpoint) as (server, _state):
        yield server


def test_openai_endpoint_through_geex_server_equals_the_geex_checkpoint(
    checkpoint, geex_backend, geex_server, capsys, tmp_path
):
    greedy = Sampling(max_new_tokens=24)
    raw = OpenAIBackend(geex_server.url + "/v1").generate(RAW_PROMPTS, [NO_STOP] * 3, greedy)
    assert raw == geex_backend.generate(RAW_PROMPTS, [NO_STOP] * 3, greedy)
    remote, summary = evaluate_with(capsys, tmp_path / "remote", "--openai-url",
                                    geex_server.url + "/v1")  # fmt: skip
    local, _ = evaluate_with(capsys, tmp_path / "local", "--model", str(checkpoint))
    assert sorted(remote) == sorted((t, 0) for t in TASK_IDS)
    assert {k: r["generation"] for k, r in remote.items()} == {
        k: r["generation"] for k, r in local.items()
    }
    assert "tiny-geex at http://127.0.0.1:" in summary["title"]
    assert "bits_per_byte" not in summary  # an endpoint gives no log-probabilities of a prompt


def test_openai_endpoint_draws_n_samples(geex_server):
    backend = OpenAIBackend(geex_server.url + "/v1")
    python = StopRule.for_language(get_language("python"))
    prompts = [t.prompt for t in generation_tasks(load_embedded(["python"]))[:2]]
    out = backend.generate(prompts, [python] * 2, Sampling(n=3, temperature=1.0, max_new_tokens=8))
    assert [len(texts) for texts in out] == [3, 3] and backend.accepts_n


class ScriptedEndpoint:
    """A stand-in endpoint on loopback that answers from a script: (status, body) per request,
    the last one repeated. Records every request's body and headers."""

    def __init__(self, script):
        self.script, self.requests = list(script), []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append((body, dict(self.headers)))
                status, answer = endpoint.answer(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, body):
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return step(body) if callable(step) else step

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def choices(body):
    texts = [f"    return {i}\n" for i in range(body["n"])]
    return 200, {"choices": [{"index": i, "text": t} for i, t in enumerate(texts)]}


def test_retries_after_503_then_succeeds_and_sends_the_key():
    busy = (503, {"error": {"message": "overloaded"}})
    with ScriptedEndpoint([busy, choices]) as endpoint:
        backend = OpenAIBackend(endpoint.url, "m", api_key="sk-test", backoff=0.01)
        out = backend.generate(["def f():\n"], [NO_STOP], Sampling(n=2, temperature=1.0))
    assert out == [["    return 0\n", "    return 1\n"]]
    assert len(endpoint.requests) == 2
    body, headers = endpoint.requests[-1]
    assert headers["Authorization"] == "Bearer sk-test"
    assert (body["model"], body["n"], body["max_tokens"]) == ("m", 2, 512)


def test_a_repetition_penalty_is_sent_only_when_asked_for():
    """Unset, the server chooses (geex serve: the model's own); 1 included when given."""
    with ScriptedEndpoint([choices]) as endpoint:
        backend = OpenAIBackend(endpoint.url, "m")
        for penalty in (None, 1.0, 1.2):
            backend.generate(["x"], [NO_STOP], Sampling(repetition_penalty=penalty))
    sent = [body.get("repetition_penalty", "unset") for body, _ in endpoint.requests]
    assert sent == ["unset", 1.0, 1.2]


def test_the_hugging_face_backend_reads_the_models_penalty_and_always_passes_one(
    checkpoint, tmp_path
):
    """A folder's generation_config.json penalty is the model's own; an asked 1 must reach
    transformers as 1, or its generate() would apply the folder's instead."""
    required_module("transformers")
    from geex.eval.backends_hf import HFBackend
    from geex.model.generation_defaults import save_repetition_penalty

    hf_folder = hf_export(checkpoint, tmp_path / "hf")
    save_repetition_penalty(hf_folder, 3.0)
    backend = HFBackend.load(str(hf_folder), device="cpu", trust_remote_code=True)
    assert backend.repetition_penalty == 3.0
    plain = Sampling(max_new_tokens=24, repetition_penalty=1.0)
    own = Sampling(max_new_tokens=24, repetition_penalty=3.0)
    off_text = backend.generate(RAW_PROMPTS, [NO_STOP] * 3, plain)
    assert off_text != backend.generate(RAW_PROMPTS, [NO_STOP] * 3, own)
    save_repetition_penalty(hf_folder, None)
    bare = HFBackend.load(str(hf_folder), device="cpu", trust_remote_code=True)
    assert bare.generate(RAW_PROMPTS, [NO_STOP] * 3, plain) == off_text


def test_a_server_refusing_n_is_asked_one_completion_at_a_time():
    def one_at_a_time(body):
        if body["n"] > 1:
            return 400, {"error": {"message": "n must be 1"}}
        return choices(body)

    python = StopRule.for_language(get_language("python"))
    with ScriptedEndpoint([one_at_a_time]) as endpoint:
        backend = OpenAIBackend(endpoint.url, "m")
        out = backend.generate(["def f():\n"], [python], Sampling(n=3, temperature=1.0))
    assert out == [["    return 0\n"] * 3] and not backend.accepts_n
    assert [body["n"] for body, _ in endpoint.requests] == [3, 1, 1, 1]
    assert len(endpoint.requests[0][0]["stop"]) == 4  # OpenAI's limit; the harness cuts the rest


def test_errors_that_retrying_cannot_fix_stop_the_run():
    with ScriptedEndpoint([(401, {"error": {"message": "bad key"}})]) as endpoint:
        backend = OpenAIBackend(endpoint.url, "m", backoff=0.01)
        with pytest.raises(GeexError, match="HTTP 401: bad key"):
            backend.generate(["x"], [NO_STOP], Sampling())
    assert len(endpoint.requests) == 1
    with ScriptedEndpoint([(503, {})]) as endpoint:
        url = endpoint.url
        backend = OpenAIBackend(url, "m", retries=2, backoff=0.01)
        with pytest.raises(GeexError, match=r"HTTP 503.*after 3 tries"):
            backend.generate(["x"], [NO_STOP], Sampling())
    backend = OpenAIBackend(url, "m", retries=1, backoff=0.01)  # nobody listens there now
    with pytest.raises(GeexError, match="after 2 tries"):
        backend.generate(["x"], [NO_STOP], Sampling())


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--n", "2"], "identical greedy completions"),
        (["--temperature", "-1"], "--temperature must be from 0"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
    ],
)
def test_bad_sampling_options_are_one_line_errors(checkpoint, capsys, flags, says):
    code = main(["eval", "embedded", "--model", str(checkpoint), "--languages", "python", *flags])
    _, err = capsys.readouterr()
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1


def test_model_sources_are_mutually_exclusive(checkpoint, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "embedded", "--canonical", "--model", str(checkpoint)])
    assert "not allowed with argument" in capsys.readouterr().err
