"""A tiny Hugging Face model folder saved by the tests themselves: a random LlamaForCausalLM (or
MistralForCausalLM, for a sliding attention window) and
a real byte-level BPE tokenizer (``tokenizers``) trained on a few lines of code, with the
special tokens a test asks for, written with ``save_pretrained``."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.conftest import required_module

CODE = [
    "def add(a, b):\n    return a + b\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "for i in range(10):\n    print(i)\n",
    "int main(void) {\n    return 0;\n}\n",
]
STARCODER_FIM = ["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def save_tiny_hf_model(
    folder: Path,
    *,
    special_tokens: list[str] = (),
    chat_template: str | None = None,
    bos: bool = False,
    seed: int = 0,
    sliding_window: int | None = None,
) -> Path:
    """Save the model and tokenizer in ``folder``; ``bos`` makes the tokenizer start every
    text with ``<s>`` as Llama's does; ``sliding_window`` makes it a Mistral whose layers
    attend to that many positions."""
    transformers = required_module("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<|endoftext|>", *(["<s>"] if bos else []), *special_tokens]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CODE * 10, trainer)
    if bos:
        bos_id = backend.token_to_id("<s>")
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", bos_id)]
        )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        bos_token="<s>" if bos else "<|endoftext|>",
        additional_special_tokens=list(special_tokens),
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config_class, window = transformers.LlamaConfig, {}
    if sliding_window is not None:
        config_class, window = transformers.MistralConfig, {"sliding_window": sliding_window}
    config = config_class(
        **window,
        vocab_size=len(tokenizer) + 3,  # padded rows, as real checkpoints have
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


CODELLAMA_FIM = ["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"]


def save_sentencepiece_style_model(folder: Path) -> Path:
    """A Llama-style folder: a Metaspace BPE (a "▁" before the text, as SentencePiece), BOS
    first, and Code Llama's infilling tokens."""
    transformers = required_module("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    alphabet = sorted({*"".join(CODE), "▁", "☺"})
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>", *CODELLAMA_FIM],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    backend.train_from_iterator(CODE * 10, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>"
    )
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
