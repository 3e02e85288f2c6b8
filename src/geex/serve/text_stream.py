"""A sequence's text, one token at a time, without decoding the whole sequence at every token.

Decoding all ids again at each step costs a sequence O(n^2) work, which a server with many
streams cannot afford. :class:`TextStream` decodes only a short window of recent ids, as vLLM
and TGI do: ``prefix_offset .. read_offset`` is text already handed out, kept as context
because some tokenizers (SentencePiece's leading "▁") decode a token differently at the start
of a string; the text of ``prefix_offset ..`` beyond that is new. A window whose text ends in
U+FFFD may be an incomplete UTF-8 character, so it stays pending until a later token completes
it (or the sequence ends).

Stop rules are checked the same way: a stop sequence only over the new text and the longest
stop's length before it, the closing-brace rule as a running depth. Together they give exactly
what :func:`geex.serve.completion.completion_end` gives on the whole text, at every token
(``tests/serve/test_text_stream.py`` checks it against that function).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from geex.languages import Language
from geex.serve.completion import closing_brace_end, held_back

_INCOMPLETE = "\ufffd"


class TextStream:
    """The text of a growing list of token ids, cut by stop rules.

    ``add(token)`` returns the text that may be handed out now (never text a stop rule cuts
    later) and whether a rule has fired; ``finish()`` returns the rest. ``text`` is the whole
    text so far with the stop cut applied. ``skip``: the text the tokens spell before the
    stream's own (a healed prompt's tail, :mod:`geex.tokenizer.healing`), left out of it.
    """

    def __init__(
        self,
        decode: Callable[[Sequence[int]], str],
        stop: Sequence[str] = (),
        language: Language | None = None,
        skip: str = "",
    ) -> None:
        self._decode = decode
        self._skip = skip  # a healed prompt's tail: text the tokens spell first, not handed out
        self.stop = [s for s in stop if s]
        self._longest_stop = max((len(s) for s in self.stop), default=0)
        self._braces = language is not None and language.brace_delimited
        self.ids: list[int] = []
        self._prefix_offset = 0  # ids[prefix_offset:read_offset] decode to the last piece read
        self._read_offset = 0
        self._committed: list[str] = []  # text of ids[:read_offset]; a prefix of all later text
        self._committed_len = 0
        self._pending = ""  # text of ids[read_offset:], possibly changed by later tokens
        self._depth = 0  # brace depth over the committed text
        self.end: int | None = None  # where a stop rule cut the text
        self._emitted = 0

    @property
    def text(self) -> str:
        whole = "".join(self._committed) + self._pending
        return whole if self.end is None else whole[: self.end]

    def add(self, token: int) -> tuple[str, bool]:
        """Append one token; return the new text that is safe to hand out, and whether a stop
        rule has fired (then no more tokens may be added)."""
        if self.end is not None:
            raise ValueError("a stop rule has fired; the text is final")
        self.ids.append(token)
        window = self._decode(self.ids[self._prefix_offset :])
        read = self._decode(self.ids[self._prefix_offset : self._read_offset])
        raw = window[len(read) :]
        complete = bool(raw) and not raw.endswith(_INCOMPLETE)
        new = raw
        if self._skip:  # the tokens spell the skipped text first (token healing's constraint)
            cut = min(len(self._skip), len(raw))
            new = raw[cut:]
            if complete:
                self._skip = self._skip[cut:]
        self.end = self._find_end(new)
        if complete:
            if new:
                self._commit(new)
            self._prefix_offset, self._read_offset = self._read_offset, len(self.ids)
            self._pending = ""
        else:
            self._pending = new
        return self._release(), self.end is not None

    def finish(self) -> str:
        """The text not handed out yet: the end of the sequence makes pending text final."""
        text = self.text
        piece = text[self._emitted :]
        self._emitted = len(text)
        return piece

    def _commit(self, piece: str) -> None:
        if self._braces:
            self._depth += piece.count("{") - piece.count("}")
        self._committed.append(piece)
        self._committed_len += len(piece)

    def _find_end(self, new: str) -> int | None:
        """The first stop in the committed text followed by ``new``, searching only where a new
        one can be: a stop wholly in the committed text was found when that text was new."""
        start = max(0, self._committed_len - self._longest_stop + 1)
        region = self._tail_from(start) + new
        ends = [start + i for i in (region.find(s) for s in self.stop) if i >= 0]
        if self._braces and (brace := closing_brace_end(new, self._depth)) is not None:
            ends.append(self._committed_len + brace)
        return min(ends) if ends else None

    def _tail_from(self, start: int) -> str:
        """The committed text from character ``start`` on, joining only the pieces needed."""
        pieces, length = [], self._committed_len
        for piece in reversed(self._committed):
            if length <= start:
                break
            pieces.append(piece)
            length -= len(piece)
        return "".join(reversed(pieces))[start - length :]

    def _release(self) -> str:
        if self.end is not None:
            upto = self.end
        else:
            # Hold back what may still become a stop sequence; pending text is not final.
            tail = self._tail_from(max(0, self._committed_len - self._longest_stop))
            upto = self._committed_len - held_back(tail, self.stop)
        if upto <= self._emitted:
            return ""
        piece = (self._tail_from(self._emitted) + self._pending)[: upto - self._emitted]
        self._emitted = upto
        return piece
