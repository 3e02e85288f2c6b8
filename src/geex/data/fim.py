"""Fill-in-the-middle training documents: Bavarian et al. (2022) as SantaCoder and StarCoder
train them.

A left-to-right model never sees the text after the cursor. The FIM transform teaches it to:
a training file, with probability ``rate``, is cut at two points drawn uniformly among its
characters into prefix, middle and suffix, and laid out so that the middle comes last:

- PSM (prefix, suffix, middle): ``<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>{middle}``
- SPM (suffix first, with probability ``spm_rate`` among the cut files), StarCoder's layout
  (the second variant of the paper's appendix D): ``<|fim_prefix|><|fim_suffix|>{suffix}
  <|fim_middle|>{prefix}{middle}``, where the middle continues the prefix as plain text does.

The end-of-document id follows the middle, as it follows every file. Everything before the
middle is exactly the prompt :func:`geex.tokenizer.fim.build_fim_ids` builds at inference
(``geex serve``, with the language tag line at the head of the prefix, where
:func:`geex.serve.completion.with_language_tag` puts it), because the ids are put together by
that same function: training and serving cannot drift apart.

Each piece is encoded on its own and the marker ids are inserted between them, so a file that
contains the text ``<|fim_prefix|>`` keeps it as text (the tokenizer never turns a document's
text into special tokens). The cut points are characters, not tokens: the model learns to
start a middle inside a token's text, as the cursor in an editor does.

Which files are cut, and where, is a pure function of a seed, the file's identity and its
text (:func:`choose_fim_cut`): never of a random stream shared across files. A resumed task, a
run with another number of tasks and a run that packs files in another order all write every
file the same way. Only the train split is transformed: the validation split stays
left-to-right, so its loss (and bits per byte) compares across FIM rates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from geex.errors import GeexError
from geex.tokenizer.fim import FimStyle, FimTokenIds, build_fim_ids, detect_fim_style
from geex.tokenizer.tokenizer import Tokenizer

DEFAULT_FIM_RATE = 0.5  # SantaCoder's and StarCoder's rate for code pretraining
DEFAULT_FIM_SPM_RATE = 0.5  # StarCoder's
LAYOUTS = ("plain", "psm", "spm")


@dataclass(frozen=True)
class FimCut:
    """How one file is rearranged: ``order`` ("psm" or "spm"), and its middle,
    ``text[start:end]`` in characters of the file's code (the tag line is not cut)."""

    order: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.order not in ("psm", "spm"):
            raise GeexError(f"unknown FIM order {self.order!r}; choose psm or spm")
        if not 0 <= self.start <= self.end:
            raise GeexError(f"a FIM cut needs 0 <= start <= end; got {self.start}, {self.end}")


def choose_fim_cut(
    key: str, text: str, *, rate: float, spm_rate: float, seed: int
) -> FimCut | None:
    """The cut of the file ``key`` with code ``text``, or None to keep it left-to-right.

    Four 64-bit draws come from one BLAKE2b digest of the seed, key and text (spelled out
    here rather than left to a random generator whose algorithm may change between Python or
    NumPy versions): is the file cut (``rate``), suffix first (``spm_rate``), and two
    uniform points in ``0..len(text)`` whose smaller one starts the middle, as StarCoder draws
    them. The text is part of the digest so that two files that share a key (a dataset with
    no paths) are still cut independently.
    """
    hasher = hashlib.blake2b(digest_size=32, person=b"geex-fim")
    hasher.update(f"{seed}\0{key}\0".encode("utf-8", "surrogatepass"))
    hasher.update(text.encode("utf-8", "surrogatepass"))
    digest = hasher.digest()
    draws = [int.from_bytes(digest[i : i + 8], "big") for i in range(0, 32, 8)]
    if draws[0] / 2**64 >= rate:
        return None
    order = "spm" if draws[1] / 2**64 < spm_rate else "psm"
    start, end = sorted(d % (len(text) + 1) for d in draws[2:])
    return FimCut(order, start, end)


def training_fim_style(tokenizer: Tokenizer) -> tuple[FimStyle, FimTokenIds] | None:
    """The FIM style ``geex serve`` would detect for this tokenizer, with its ids; None when
    the vocabulary has no FIM tokens (CodeGeeX-13B's has none)."""
    vocab = {**tokenizer.backend.get_vocab(with_added_tokens=True), **tokenizer.marker_aliases}
    style = detect_fim_style(vocab, "geex")
    if style is None:
        return None
    if not style.suffix_leading_space:
        raise GeexError(
            f"the tokenizer's FIM tokens are {style.name}'s, whose suffix is encoded without "
            "SentencePiece's leading space; training in that format is not supported: "
            "give --fim-rate 0"
        )
    return style, style.token_ids(vocab)


def resolve_fim_rate(rate: float | None, tokenizer: Tokenizer) -> float:
    """The rate to pack with: ``rate`` as given, or by default :data:`DEFAULT_FIM_RATE` where
    the tokenizer has FIM tokens and 0 where it has none. A rate above 0 for a tokenizer
    without FIM tokens is refused: there is no token to mark the pieces with."""
    has_tokens = training_fim_style(tokenizer) is not None
    if rate is None:
        return DEFAULT_FIM_RATE if has_tokens else 0.0
    if rate > 0 and not has_tokens:
        raise GeexError(
            f"--fim-rate {rate:g} needs fill-in-the-middle tokens, and this tokenizer "
            f"({tokenizer.kind}, {tokenizer.vocab_size:,} ids) has none (CodeGeeX-13B's "
            "vocabulary has no FIM tokens): give --fim-rate 0, or a tokenizer Geex trained"
        )
    return rate


@dataclass(frozen=True)
class TrainingText:
    """One file to pack: its identity (the split and the cut are drawn from it), the tag
    line that heads it (with its newline), and its code."""

    key: str
    head: str
    code: str


class FimEncoder:
    """Encodes files for the shards, rearranging the ones :func:`choose_fim_cut` picks.

    With ``rate`` 0 every file is encoded whole, head and code as one text: the ids the
    shards held before FIM training existed.
    """

    def __init__(self, tokenizer: Tokenizer, *, rate: float, spm_rate: float, seed: int) -> None:
        if not 0 <= rate <= 1 or not 0 <= spm_rate <= 1:
            raise GeexError(f"FIM rates must be in [0, 1]; got {rate:g} and {spm_rate:g}")
        self.tokenizer = tokenizer
        self.rate, self.spm_rate, self.seed = rate, spm_rate, seed
        found = training_fim_style(tokenizer) if rate > 0 else None
        if rate > 0 and found is None:
            resolve_fim_rate(rate, tokenizer)  # raises, naming the reason
        self.style_name = found[0].name if found else None
        self.token_ids = found[1] if found else None

    def cut_of(self, text: TrainingText) -> FimCut | None:
        if self.rate == 0:
            return None
        return choose_fim_cut(
            text.key, text.code, rate=self.rate, spm_rate=self.spm_rate, seed=self.seed
        )

    def encode_batch(
        self, texts: Sequence[TrainingText], *, transform: Sequence[bool] | None = None
    ) -> list[tuple[list[int], str]]:
        """Each file's ids (no end-of-document id) and its layout, "plain", "psm" or "spm".

        ``transform[i]`` False keeps file ``i`` left-to-right whatever its cut (the
        validation split). All pieces of the batch go to the tokenizer in one call.
        """
        cuts = [
            self.cut_of(text) if transform is None or transform[i] else None
            for i, text in enumerate(texts)
        ]
        pieces: list[str] = []
        for text, cut in zip(texts, cuts, strict=True):
            if cut is None:
                pieces.append(text.head + text.code)
            else:
                code = text.code
                pieces += [
                    text.head + code[: cut.start],
                    code[cut.start : cut.end],
                    code[cut.end :],
                ]
        encoded = iter(self.tokenizer.encode_batch(pieces))
        out = []
        for cut in cuts:
            if cut is None:
                out.append((next(encoded), "plain"))
                continue
            prefix, middle, suffix = next(encoded), next(encoded), next(encoded)
            out.append((self.layout(prefix, middle, suffix, cut.order), cut.order))
        return out

    def layout(self, prefix: list[int], middle: list[int], suffix: list[int], order: str):
        """The training ids of one cut file: the inference prompt, then the middle."""
        return [*build_fim_ids(prefix, suffix, self.token_ids, order=order), *middle]


def undo_fim(ids: Sequence[int], tokenizer: Tokenizer) -> str:
    """The text of a packed file, back in reading order whatever its layout: what a reader of
    the shards (or a test) needs to see the file that was packed."""
    ids = list(ids)
    found = training_fim_style(tokenizer)
    if found is None or not ids or ids[0] != found[1].prefix:
        return tokenizer.decode(ids)
    marks = found[1]
    if ids[1:2] == [marks.suffix]:  # SPM: <pre><suf> suffix <mid> prefix middle
        middle_at = ids.index(marks.middle)
        suffix, rest = ids[2:middle_at], ids[middle_at + 1 :]
        return tokenizer.decode(rest) + tokenizer.decode(suffix)
    suffix_at, middle_at = ids.index(marks.suffix), ids.index(marks.middle)
    prefix, suffix, middle = ids[1:suffix_at], ids[suffix_at + 1 : middle_at], ids[middle_at + 1 :]
    return tokenizer.decode(prefix) + tokenizer.decode(middle) + tokenizer.decode(suffix)


def fim_record(parts: list[dict]) -> dict:
    """The manifest's ``fim``: the settings every pack task used and, summed over the tasks,
    how many train files each layout holds (``plain`` ones were left left-to-right)."""
    settings = [{k: v for k, v in part["fim"].items() if k != "train_files"} for part in parts]
    if any(s != settings[0] for s in settings):
        raise GeexError("the pack tasks of one dataset used different FIM settings")
    files = {"plain": 0, "psm": 0, "spm": 0}
    for part in parts:
        for layout, n in part["fim"]["train_files"].items():
            files[layout] += n
    return {**settings[0], "split": "train", "train_files": files}
