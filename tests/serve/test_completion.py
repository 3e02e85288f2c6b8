"""Completion text rules: language tag, stop sequences, brace rule, streaming. `pytest tests/serve`."""

from __future__ import annotations

import pytest
import torch

from geex.errors import GeexError
from geex.languages import get_language
from geex.model import ModelConfig, build_model
from geex.model.sampling import SamplingConfig
from geex.serve.completion import closing_brace_end, complete, completion_end, with_language_tag


class ByteTokenizer:
    """One id per byte, an end of document and one special token: enough to drive decoding
    in tests."""

    vocab_size, eod_id, pad_id, special_id = 258, 256, 256, 257

    def encode(self, text):
        return list(text.encode())

    def decode(self, ids):
        """Special token written out; the bytes decoded together, so that a character of
        several bytes stays whole."""
        pieces = (b"<|fim_pad|>" if i == self.special_id else bytes([i]) for i in ids if i != 256)
        return b"".join(pieces).decode(errors="replace")

    def decode_text(self, ids):
        return bytes(i for i in ids if i < 256).decode(errors="replace")


class ScriptedModel(torch.nn.Module):
    """Emits a fixed script of bytes, whatever the input: lets a test choose the completion."""

    def __init__(self, script: str, config: ModelConfig):
        super().__init__()
        self.config = config
        self.script = list(script.encode())
        self.word_embeddings = torch.nn.Embedding(config.padded_vocab_size, 8)

    def pack_for_cpu_decoding(self) -> bool:
        return False  # no weights to pack

    def forward(self, input_ids, position_ids=None, *, kv_cache=None, attn_mask=None):
        if kv_cache is not None:
            kv_cache.advance(input_ids.shape[1])
        # The token after position p is script[p + 1 - prompt_len]; decoding passes positions.
        logits = torch.full((*input_ids.shape, self.config.padded_vocab_size), -1e4)
        for b in range(input_ids.shape[0]):
            index = int(position_ids[b, -1]) + 1 - self.prompt_len
            token = self.script[index] if 0 <= index < len(self.script) else 256
            logits[b, -1, token] = 0
        return logits


def scripted(script, prompt):
    config = ModelConfig(n_layer=1, n_head=1, d_model=8, max_seq_len=512, vocab_size=258)
    model = ScriptedModel(script, config)
    model.prompt_len = len(prompt.encode())
    return model


def test_language_tag_is_added_once():
    python = get_language("python")
    assert with_language_tag("def f():", python) == "# language: Python\ndef f():"
    assert (
        with_language_tag("# language: Python\ndef f():", python) == "# language: Python\ndef f():"
    )
    assert with_language_tag("x", None) == "x"


def test_brace_rule_ends_at_the_brace_closing_the_body():
    body = "    if (x) {\n        return 1;\n    }\n    return 0;\n}\n\nint main() {}"
    assert body[: closing_brace_end(body)].endswith("return 0;\n}")
    assert closing_brace_end("    return {1, 2};\n") is None


def test_earliest_rule_wins():
    cpp = get_language("cpp")
    text = "  return 0;\n}\nint main() {"
    assert completion_end(text, cpp.stop_sequences, cpp) == text.index("}") + 1
    python = get_language("python")
    text = "    return 1\n\ndef g():\n    pass\n"
    assert text[: completion_end(text, python.stop_sequences, python)] == "    return 1\n"


@pytest.mark.parametrize("language", ["python", "cpp"])
def test_complete_cuts_at_the_stop_rule_and_streams_only_kept_text(language):
    prompt = (
        "# language: Python\ndef f():\n"
        if language == "python"
        else "// language: C++\nint f() {\n"
    )
    body = (
        "    return 1\n\nprint(f())\n"
        if language == "python"
        else "    return 1;\n}\nint main() {}\n"
    )
    kept = "    return 1\n" if language == "python" else "    return 1;\n}"
    model = scripted(body, prompt)
    streamed = []
    (samples,) = complete(
        model,
        ByteTokenizer(),
        prompt,
        language=language,
        sampling=SamplingConfig(max_new_tokens=100),
        on_text=lambda row, text: streamed.append(text),
    )
    assert samples[0].text == kept and samples[0].finish_reason == "stop"
    assert "".join(streamed) == kept


def test_end_of_document_and_length_are_reported():
    prompt = "x = "
    (eos,) = complete(scripted("1", prompt), ByteTokenizer(), prompt, add_tag=False)
    assert eos[0].text == "1" and eos[0].finish_reason == "eos"
    sampling = SamplingConfig(max_new_tokens=3)
    (length,) = complete(scripted("12345", prompt), ByteTokenizer(), prompt, sampling=sampling)
    assert length[0].text == "123" and length[0].finish_reason == "length"


def test_special_tokens_the_model_emits_are_not_in_the_text():
    """As the server's text (`geex generate` and the run's samples showed `<|fim_pad|>`)."""
    prompt = "x = "
    model = scripted("", prompt)
    model.script = [*b"1", ByteTokenizer.special_id, *b"2"]
    sampling = SamplingConfig(max_new_tokens=3)
    (samples,) = complete(model, ByteTokenizer(), prompt, add_tag=False, sampling=sampling)
    assert samples[0].text == "12" and samples[0].num_tokens == 3


def test_tokenizer_larger_than_the_model_is_refused():
    model = build_model(ModelConfig(n_layer=1, n_head=1, d_model=8, max_seq_len=16, vocab_size=100))
    with pytest.raises(GeexError, match="not trained together"):
        complete(model, ByteTokenizer(), "x")
