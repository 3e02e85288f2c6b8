"""The fill-in-the-middle transform of training files: drawn per file at its rates, the same
every time, undone to the original text, safe from marker text in code, equal to the prompt
`geex serve` sends, and off without FIM tokens. `pytest tests/data/test_fim.py`"""

from __future__ import annotations

import pytest

from geex.data.config import DataConfig
from geex.data.fim import (
    DEFAULT_FIM_RATE,
    FimCut,
    FimEncoder,
    TrainingText,
    choose_fim_cut,
    resolve_fim_rate,
    undo_fim,
)
from geex.errors import ConfigError, GeexError
from geex.languages import get_language
from geex.serve.completion import with_language_tag
from geex.serve.models import GeexPromptTokens, ServedModel, resolve_fim_style
from geex.tokenizer import load_tokenizer, train_tokenizer
from geex.tokenizer.tokenizer import EOD_TOKEN, FIM_TOKENS
from tests.conftest import run_geex
from tests.data.trees import python_module, write_code_tree

PYTHON_TAG = "# language: Python\n"


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([python_module(seed) for seed in range(20)], 600, languages=["python"])


def files(n: int = 200) -> list[TrainingText]:
    """Python modules of varied length, and code with characters of 2, 3 and 4 UTF-8 bytes."""
    texts = [python_module(i, functions=1 + i % 4) for i in range(n)]
    texts[3] = "naïve = 'häßlich'  # 漢字 ✓\nemoji = '🐍🦀'\n"
    return [TrainingText(f"src::pkg/mod_{i}.py", PYTHON_TAG, t) for i, t in enumerate(texts)]


def test_the_share_of_cut_files_and_of_suffix_first_ones_follow_the_rates():
    for rate, spm_rate in ((0.5, 0.5), (0.2, 0.9)):
        cuts = [
            choose_fim_cut(f"file_{i}.py", "x = 1\n" * 10, rate=rate, spm_rate=spm_rate, seed=0)
            for i in range(20000)
        ]
        chosen = [c for c in cuts if c is not None]
        assert len(chosen) / len(cuts) == pytest.approx(rate, abs=0.015)
        spm = sum(c.order == "spm" for c in chosen)
        assert spm / len(chosen) == pytest.approx(spm_rate, abs=0.02)
    # The two cut points are uniform over the 61 positions: the middle starts a third of the
    # way in on average and ends two thirds of the way.
    assert sum(c.start for c in chosen) / len(chosen) == pytest.approx(60 / 3, abs=0.6)
    assert sum(c.end for c in chosen) / len(chosen) == pytest.approx(2 * 60 / 3, abs=0.6)


def test_a_cut_depends_on_the_seed_the_file_and_its_text_alone():
    def cut(key="a.py", text="print(1)\n" * 5, seed=0):
        return choose_fim_cut(key, text, rate=1.0, spm_rate=0.5, seed=seed)

    assert cut() == cut()
    assert len({cut(seed=s) for s in range(20)}) > 5
    assert len({cut(key=f"{k}.py") for k in range(20)}) > 5
    assert len({cut(text="print(2)\n" * 5 + "#" * k) for k in range(20)}) > 5
    assert choose_fim_cut("a.py", "x", rate=0.0, spm_rate=0.5, seed=0) is None


def test_the_same_files_in_any_batches_and_order_encode_to_the_same_ids(tokenizer):
    texts = files()
    encoder = FimEncoder(tokenizer, rate=0.5, spm_rate=0.5, seed=0)
    whole = encoder.encode_batch(texts)
    in_pieces = [e for i in range(0, len(texts), 7) for e in encoder.encode_batch(texts[i : i + 7])]
    backwards = encoder.encode_batch(texts[::-1])[::-1]
    assert whole == in_pieces == backwards
    assert whole == FimEncoder(tokenizer, rate=0.5, spm_rate=0.5, seed=0).encode_batch(texts)
    assert whole != FimEncoder(tokenizer, rate=0.5, spm_rate=0.5, seed=1).encode_batch(texts)
    assert {layout for _, layout in whole} == {"plain", "psm", "spm"}


def test_undoing_the_layout_gives_back_every_file(tokenizer):
    texts = files()
    for rate in (0.0, 0.5, 1.0):
        encoder = FimEncoder(tokenizer, rate=rate, spm_rate=0.5, seed=3)
        for text, (ids, _) in zip(texts, encoder.encode_batch(texts), strict=True):
            assert undo_fim(ids, tokenizer) == text.head + text.code


def test_the_layouts_put_markers_and_pieces_where_starcoder_does(tokenizer):
    code = "def add(a, b):\n    return a + b\n"
    encoder = FimEncoder(tokenizer, rate=1.0, spm_rate=0.5, seed=0)
    start, end = code.index("return"), code.index("\n", code.index("return"))
    prefix = tokenizer.encode(PYTHON_TAG + code[:start])
    middle, suffix = tokenizer.encode(code[start:end]), tokenizer.encode(code[end:])
    pre, mid, suf = tokenizer.fim_prefix_id, tokenizer.fim_middle_id, tokenizer.fim_suffix_id
    assert encoder.layout(prefix, middle, suffix, "psm") == [
        pre, *prefix, suf, *suffix, mid, *middle
    ]  # fmt: skip
    assert encoder.layout(prefix, middle, suffix, "spm") == [
        pre, suf, *suffix, mid, *prefix, *middle
    ]  # fmt: skip
    FimCut("psm", start, end)  # a valid cut; these are not:
    with pytest.raises(GeexError, match="start <= end"):
        FimCut("psm", end, start)
    with pytest.raises(GeexError, match="psm or spm"):
        FimCut("pms", start, end)


def test_a_psm_file_up_to_its_middle_is_the_prompt_geex_serve_sends(tokenizer):
    """The server's own path: language tag on the prefix, the style detected from the
    vocabulary, the prompt built by ServedModel.fim_prompt_ids."""
    served = ServedModel(
        name="m", runner=None, codec=None, fim=None, chat_template=None, kind="geex",
        tokens=GeexPromptTokens(tokenizer),
    )  # fmt: skip
    served.fim, served.fim_ids = resolve_fim_style("auto", served.tokens.vocab, "geex")
    assert served.fim.name == "geex"
    encoder = FimEncoder(tokenizer, rate=1.0, spm_rate=0.0, seed=0)
    python = get_language("python")
    compared = 0
    for text in files(60):
        cut = encoder.cut_of(text)
        [(ids, layout)] = encoder.encode_batch([text])
        assert layout == "psm"
        prefix, suffix = text.code[: cut.start], text.code[cut.end :]
        prompt = served.fim_prompt_ids(
            with_language_tag(prefix, python), suffix, max_prompt_tokens=10**6
        )
        assert ids[: len(prompt)] == prompt
        assert tokenizer.decode(ids[len(prompt) :]) == text.code[cut.start : cut.end]
        compared += 1
    assert compared == 60


def test_marker_text_in_a_file_stays_text(tokenizer):
    code = (
        f"MARKERS = {list(FIM_TOKENS)!r}\nEND = '{EOD_TOKEN}'\n"
        "s = '<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>'\n"
    )
    text = TrainingText("markers.py", PYTHON_TAG, code)
    specials = {tokenizer.eod_id, *(tokenizer.token_to_id(t) for t in FIM_TOKENS)}
    for seed in range(30):
        [(ids, layout)] = FimEncoder(tokenizer, rate=1.0, spm_rate=0.5, seed=seed).encode_batch(
            [text]
        )
        assert layout in ("psm", "spm")
        markers = [i for i in ids if i in specials]  # in this order in both layouts
        assert markers == [
            tokenizer.fim_prefix_id,
            tokenizer.fim_suffix_id,
            tokenizer.fim_middle_id,
        ]
        assert undo_fim(ids, tokenizer) == PYTHON_TAG + code


def test_rate_zero_encodes_each_file_whole_as_before(tokenizer):
    texts = files()
    encoded = FimEncoder(tokenizer, rate=0.0, spm_rate=0.5, seed=0).encode_batch(texts)
    assert [ids for ids, _ in encoded] == tokenizer.encode_batch([t.head + t.code for t in texts])
    assert {layout for _, layout in encoded} == {"plain"}


def test_the_validation_files_are_never_cut(tokenizer):
    texts = files()
    encoder = FimEncoder(tokenizer, rate=1.0, spm_rate=0.5, seed=0)
    keep = [i % 2 == 0 for i in range(len(texts))]
    encoded = encoder.encode_batch(texts, transform=keep)
    assert [layout == "plain" for _, layout in encoded] == [not k for k in keep]


def test_a_tokenizer_without_fim_tokens_packs_left_to_right_or_is_refused(
    codegeex_tokenizer_dir, tokenizer
):
    codegeex = load_tokenizer(codegeex_tokenizer_dir)
    assert resolve_fim_rate(None, codegeex) == 0.0
    assert resolve_fim_rate(0.0, codegeex) == 0.0
    with pytest.raises(GeexError, match="has none .CodeGeeX-13B's vocabulary has no FIM"):
        resolve_fim_rate(0.3, codegeex)
    with pytest.raises(GeexError, match="--fim-rate 0"):
        FimEncoder(codegeex, rate=0.3, spm_rate=0.5, seed=0)
    assert resolve_fim_rate(None, tokenizer) == DEFAULT_FIM_RATE
    assert resolve_fim_rate(0.25, tokenizer) == 0.25


def test_geex_data_refuses_a_fim_rate_for_the_codegeex_tokenizer_before_reading(
    codegeex_tokenizer_dir, tmp_path
):
    code = write_code_tree(tmp_path / "code", n_python=2, n_c=0)
    out = tmp_path / "out"
    result = run_geex(
        "data", code, "--out", out, "--tokenizer", codegeex_tokenizer_dir, "--fim-rate", "0.5"
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--fim-rate 0.5 needs fill-in-the-middle tokens" in result.stderr
    assert "give --fim-rate 0" in result.stderr
    assert not out.exists()


def test_rates_outside_zero_to_one_are_refused():
    with pytest.raises(ConfigError, match="fim rate must be in"):
        DataConfig(out="x", fim_rate=1.5)
    with pytest.raises(ConfigError, match="fim spm rate must be in"):
        DataConfig(out="x", fim_spm_rate=-0.1)
