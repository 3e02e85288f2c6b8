"""Incremental text and stop rules: at every token, exactly what decoding the whole sequence and
``completion_end`` give (hypothesis, over a byte-level BPE with partial UTF-8 tokens).
Run: pytest tests/serve/test_text_stream.py"""

from __future__ import annotations

import functools

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tokenizers import SentencePieceBPETokenizer

from geex.eval.problems import load_embedded
from geex.languages import get_language
from geex.serve.completion import completion_end
from geex.serve.text_stream import TextStream
from geex.tokenizer import train_tokenizer


@functools.cache
def tokenizer():
    texts = [p.prompt + p.canonical_solution for p in load_embedded(["python", "cpp"])]
    texts.append("naïve café — ünïcödé 中文 🙂 {}")
    return train_tokenizer(texts * 3, vocab_size=600, languages=["python", "cpp"])


@functools.cache
def code_ids() -> list[int]:
    problems = load_embedded(["python", "cpp"])
    return tokenizer().encode("".join(p.canonical_solution for p in problems[:6]) + "中文 🙂")


@st.composite
def sequences(draw):
    """Token ids (runs of real code mixed with random ids, which split UTF-8 characters) and
    stop sequences, some of them cut from the text so that they fire."""
    vocab = tokenizer().vocab_size
    ids: list[int] = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            start = draw(st.integers(0, len(code_ids()) - 1))
            ids += code_ids()[start : start + draw(st.integers(1, 30))]
        else:
            ids += draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=8))
    text = tokenizer().decode(ids)
    stop = draw(st.lists(st.text(alphabet="\n{}ab ", min_size=1, max_size=3), max_size=2))
    for _ in range(draw(st.integers(0, 2))):
        start = draw(st.integers(0, len(text)))
        stop.append(text[start : start + draw(st.integers(1, 6))])
    language = draw(st.sampled_from([None, "python", "cpp"]))
    return ids, [s for s in stop if s], get_language(language) if language else None


@functools.cache
def sentencepiece_decode():
    """A SentencePiece-style BPE, whose decoder drops the first token's leading space: a
    window of recent ids decodes differently from the same ids inside the whole text."""
    trained = SentencePieceBPETokenizer()
    texts = [p.prompt + p.canonical_solution for p in load_embedded(["python"])]
    trained.train_from_iterator(texts, vocab_size=300, show_progress=False)
    return trained.decode, trained.get_vocab_size()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequences())
def test_every_step_equals_completion_end_on_the_whole_text(case):
    ids, stop, language = case
    check_every_step(tokenizer().decode, ids, stop, language)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_decoder_that_strips_the_first_space_streams_the_same_text(data):
    decode, vocab = sentencepiece_decode()
    ids = data.draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=40))
    text = decode(ids)
    stop = [text[i : i + 3] for i in data.draw(st.lists(st.integers(0, len(text)), max_size=2))]
    check_every_step(decode, ids, [s for s in stop if s], None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequences(), st.integers(1, 3))
def test_a_healed_tail_is_never_handed_out_nor_stopped_on(case, spelled):
    """The first tokens spell a healed prompt's tail (geex.tokenizer.healing): the stream's
    text is what comes after it, stop rules included."""
    ids, stop, language = case
    skip = tokenizer().decode(ids[:spelled])
    assume("\ufffd" not in skip)
    check_every_step(tokenizer().decode, ids, stop, language, skip)


def check_every_step(decode, ids, stop, language, skip="") -> None:
    stream = TextStream(decode, stop, language, skip)
    handed_out = ""
    for k, token in enumerate(ids, start=1):
        piece, fired = stream.add(token)
        handed_out += piece
        text = decode(ids[:k])
        text = text[len(skip) :] if text.startswith(skip) else ""
        end = completion_end(text, stop, language)
        final = text if end is None else text[:end]
        assert fired == (end is not None)
        assert final.startswith(handed_out)  # nothing handed out is cut later
        assert stream.text == final
        if fired:
            break
    handed_out += stream.finish()
    assert handed_out == final
    assert stream.finish() == ""


def test_an_incomplete_character_waits_for_its_last_byte():
    ids = tokenizer().encode("🙂")
    assert len(ids) > 1  # one token per byte in this small vocabulary
    stream = TextStream(tokenizer().decode)
    pieces = [stream.add(i)[0] for i in ids]
    assert pieces[:-1] == [""] * (len(ids) - 1)
    assert pieces[-1] == "🙂"


def test_a_partial_stop_sequence_is_held_back_until_it_resolves():
    ids = tokenizer().encode("x = 1\n\ny = 2")
    stream = TextStream(tokenizer().decode, stop=["\n\n\n"])
    out = "".join(stream.add(i)[0] for i in ids) + stream.finish()
    assert out == "x = 1\n\ny = 2"
    stream = TextStream(tokenizer().decode, stop=["\n\n"])
    pieces = []
    for i in ids:
        piece, fired = stream.add(i)
        pieces.append(piece)
        if fired:
            break
    assert "".join(pieces) + stream.finish() == "x = 1"
