"""Text <-> token ids for every stage: CodeGeeX-13B's tokenizer, exactly, or one trained for code.

    from geex.tokenizer import load_tokenizer
    tok = load_tokenizer("path/to/codegeex-tokenizer")   # vocab.json + merges.txt, or tokenizer.json
    ids = tok.encode(text); assert tok.decode(ids) == text

``train_tokenizer`` trains a byte-level BPE for code; ``Tokenizer.save`` writes a standard
``tokenizer.json`` that Hugging Face ``transformers`` loads too.
"""

from geex.tokenizer.codegeex import codegeex_tokenizer
from geex.tokenizer.load import load_tokenizer
from geex.tokenizer.tokenizer import Tokenizer
from geex.tokenizer.train import DEFAULT_VOCAB_SIZE, train_tokenizer

__all__ = [
    "DEFAULT_VOCAB_SIZE",
    "Tokenizer",
    "codegeex_tokenizer",
    "load_tokenizer",
    "train_tokenizer",
]
