"""`geex train --sft`: a tiny model learns the answers of an instruction set and nothing of its
questions, is served with its template, resumes after SIGKILL and trains alike on 2 processes.
`pytest tests/train/test_sft.py`."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from geex.model.generation import generate
from geex.model.loss import IGNORE_INDEX, lm_loss
from geex.model.sampling import SamplingConfig
from geex.serve.models import load_served_model
from geex.serve.tasks import AskTask
from geex.tokenizer.chat_template import GEEX_CHAT_TEMPLATE, render_chat_template
from geex.train.config import TrainConfig
from geex.train.conversations import conversation_of
from geex.train.sft_samples import encode_conversation
from geex.train.trainer import train
from tests.train.instructions import instruction_rows, sft_config, write_jsonl
from tests.train.runs import geex_command, losses, run_geex
from tests.train.test_resume import wait_for

ROWS = instruction_rows()


def answer_and_context_losses(folder, tokenizer) -> tuple[float, float]:
    """Mean loss of a model over the answers' tokens and over the other tokens."""
    from geex.model.checkpoint import load_model

    model = load_model(folder).eval()
    answers, context = [], []
    for i, row in enumerate(ROWS):
        ids, trained = encode_conversation(conversation_of(row, str(i)), tokenizer,
                                           GEEX_CHAT_TEMPLATE)  # fmt: skip
        inputs, targets = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
        answer = torch.tensor([trained[1:]])
        with torch.no_grad():
            logits = model(inputs)
        answers.append(lm_loss(logits, targets.masked_fill(~answer, IGNORE_INDEX)))
        context.append(lm_loss(logits, targets.masked_fill(answer, IGNORE_INDEX)))
    return float(torch.stack(answers).mean()), float(torch.stack(context).mean())


def test_sft_learns_the_answers_only_and_serves_with_its_template(chat_base_model, tmp_path):
    data = write_jsonl(tmp_path / "instructions.jsonl", ROWS)
    run = tmp_path / "run"
    train(TrainConfig.from_dict(sft_config(chat_base_model, data, run)), show_progress=False)

    served = load_served_model(run / "model", device="cpu", dtype="fp32")
    assert served.chat_template == GEEX_CHAT_TEMPLATE
    tokenizer = served.codec.tokenizer
    for i, row in enumerate(ROWS):  # each answer, greedily, for its question
        messages = conversation_of(row, str(i))
        prompt = served.chat_prompt_ids(messages[:-1])
        out = generate(served.runner.model, [prompt], SamplingConfig(max_new_tokens=16),
                       eos_id=tokenizer.eod_id, vocab_size=tokenizer.vocab_size)  # fmt: skip
        assert tokenizer.decode(out[0][0]) == messages[-1]["content"]

    base_answers, base_context = answer_and_context_losses(chat_base_model, tokenizer)
    tuned_answers, tuned_context = answer_and_context_losses(run / "model", tokenizer)
    assert tuned_answers < base_answers / 20  # learned
    assert tuned_context > 0.8 * base_context  # not trained on: the questions stay unlearned

    # The server's tasks talk to the tuned model through its template.
    task_prompt = AskTask(question="Number for abc?").prompt(chat=served.chat_template is not None)
    rendered = render_chat_template(GEEX_CHAT_TEMPLATE, task_prompt.messages,
                                    {"eos_token": tokenizer.eod_token})  # fmt: skip
    assert rendered == "User: Number for abc?\nAssistant: "
    assert served.chat_prompt_ids(list(task_prompt.messages)) == tokenizer.encode(rendered)


def cli_args(base, data, run, *extra: str) -> list[str]:
    """Flags of a short fine-tuning run, in fp32 on every host: runs are compared across
    layouts and resumptions."""
    return [
        "train", "--sft", str(data), "--init-from", str(base), "--out", str(run),
        "--seq-len", "64", "--global-batch-tokens", "512", "--micro-batch-size", "4",
        "--max-steps", "24", "--checkpoint-every", "3", "--eval-every", "0",
        "--warmup-steps", "2", "--lr", "3e-3", "--precision", "fp32", "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reference_runs(chat_base_model, tmp_path_factory):
    """Single-process runs, by their extra flags: full fine-tuning, and LoRA merged."""
    folder = tmp_path_factory.mktemp("sft-reference")
    data = write_jsonl(folder / "instructions.jsonl", ROWS)
    runs = {}

    def run(extra: tuple[str, ...]):
        if extra not in runs:
            runs[extra] = folder / f"run-{len(runs)}"
            run_geex(*cli_args(chat_base_model, data, runs[extra], *extra))
        return runs[extra], data

    return run


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--lora", "4", "--lora-merge")], ids=["full", "lora"])
def test_sft_resumes_after_sigkill_with_the_same_losses(
    chat_base_model, reference_runs, extra, tmp_path
):
    reference, data = reference_runs(extra)
    run = tmp_path / "run"
    args = cli_args(chat_base_model, data, run, *extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(geex_command(*args), env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (run / "checkpoints" / "step-00000003").is_dir(), timeout=240)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert not (run / "model").exists()  # killed before the end
    run_geex(*args)
    assert losses(run) == losses(reference)
    mine, theirs = (
        load_file(run / "model" / "model.safetensors"),
        load_file(reference / "model" / "model.safetensors"),
    )
    assert all(torch.equal(mine[name], theirs[name]) for name in theirs)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--lora", "4", "--lora-merge")], ids=["full", "lora"])
def test_sft_on_two_processes_equals_one(chat_base_model, reference_runs, extra, tmp_path):
    reference, data = reference_runs(extra)
    run_geex(*cli_args(chat_base_model, data, tmp_path / "run", *extra), nproc=2)
    torch.testing.assert_close(losses(tmp_path / "run"), losses(reference), rtol=1e-5, atol=0)
    mine = load_file(tmp_path / "run" / "model" / "model.safetensors")
    theirs = load_file(reference / "model" / "model.safetensors")
    for name in theirs:
        torch.testing.assert_close(mine[name], theirs[name], rtol=0, atol=2e-5, msg=name)


def test_the_flags_reach_the_run_and_misuse_is_one_clear_error(chat_base_model, tmp_path, capsys):
    from geex.cli import main

    data = write_jsonl(tmp_path / "instructions.jsonl", ROWS)
    run = tmp_path / "run"
    args = cli_args(chat_base_model, data, run, "--max-steps", "2", "--checkpoint-every", "0")
    assert main(args) == 0
    assert "done: 2 steps" in capsys.readouterr().out
    assert load_served_model(run / "model", device="cpu").chat_template == GEEX_CHAT_TEMPLATE

    assert main(["train", "--sft", str(data), "--out", str(tmp_path / "x")]) != 0
    assert "sft fine-tunes a model: name it with init_from" in capsys.readouterr().err
    both = ["train", "--sft", str(data), "--data", "d", "--init-from", str(chat_base_model)]
    assert main([*both, "--out", str(tmp_path / "y")]) != 0
    assert "either data" in capsys.readouterr().err
