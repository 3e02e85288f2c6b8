"""How an evaluation backend asks a local model to fill a hole: its FIM style and prompt ids.

The style is the one ``geex serve`` uses for the same model (``geex.serve.models``): detected
from the vocabulary, or named with ``--fim-style``. A model whose vocabulary has no FIM tokens
Geex knows is refused: judging it as if it had read the suffix would measure nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from geex.errors import GeexError
from geex.tokenizer.fim import (
    FIM_STYLES,
    FimStyle,
    FimTokenIds,
    build_fim_ids,
    detect_fim_style,
    encode_without_leading_space,
)


def resolve_infill_style(
    choice: str, vocab: Mapping[str, int], kind_hint: str | None, model: str
) -> tuple[FimStyle, FimTokenIds]:
    """The style ``choice`` names ("auto": detected) and its ids in ``vocab``."""
    from geex.serve.models import resolve_fim_style

    if choice == "none":
        raise GeexError("infilling needs a FIM style; --fim-style none turns infilling off")
    if choice == "auto" and detect_fim_style(vocab, kind_hint) is None:
        formats = [name for name, style in FIM_STYLES.items() if not style.drops_suffix]
        raise GeexError(
            f"{model} has no fill-in-the-middle tokens Geex knows, so it cannot read a suffix: "
            f"name its format with --fim-style ({', '.join(formats)}), or --fim-style "
            "prefix-only to judge it on the prefix alone"
        )
    style, ids = resolve_fim_style(choice, vocab, kind_hint)
    return style, ids


def fim_prompt_ids(
    encode_text: Callable[[str], list[int]],
    style: FimStyle,
    ids: FimTokenIds,
    prefix: str,
    suffix: str,
    *,
    max_tokens: int,
    leading_ids: Sequence[int] = (),
) -> list[int]:
    """The prompt of one hole in ``style``, at most ``max_tokens`` long (the prefix cut from
    the left, the suffix from the right: ``geex.tokenizer.fim.build_fim_ids``)."""
    suffix_ids: list[int] = []
    if suffix and not style.drops_suffix:
        suffix_ids = (
            encode_text(suffix)
            if style.suffix_leading_space
            else encode_without_leading_space(encode_text, suffix)
        )
    return build_fim_ids(
        encode_text(prefix),
        suffix_ids,
        ids,
        order=style.order,
        max_tokens=max_tokens,
        leading_ids=leading_ids,
    )
