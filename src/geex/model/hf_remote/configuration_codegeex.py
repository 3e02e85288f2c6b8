"""CodeGeeX's configuration for Hugging Face transformers (remote code, torch + transformers only).

Copied next to the weights by ``geex convert to-hf``; load with
``AutoConfig.from_pretrained(folder, trust_remote_code=True)``.
"""

from typing import ClassVar

from transformers import PretrainedConfig


class CodeGeeXConfig(PretrainedConfig):
    """Shape of a CodeGeeX decoder. Defaults: CodeGeeX-13B.

    ``num_hidden_layers`` counts every attending block, the top query layer included
    (CodeGeeX-13B: 39 ordinary blocks + the top query layer = 40): it is also the number of
    layers the KV cache holds. ``vocab_size`` is the padded vocabulary, the number of logits;
    ``unpadded_vocab_size`` the ids a tokenizer produces, the rest never being generated.
    """

    model_type = "codegeex"
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["cache", "past_key_values"]

    def __init__(
        self,
        vocab_size=52224,
        unpadded_vocab_size=50400,
        hidden_size=5120,
        num_hidden_layers=40,
        num_attention_heads=40,
        intermediate_size=20480,
        max_position_embeddings=2048,
        layer_norm_eps=1e-5,
        initializer_range=0.02,
        dropout=0.0,
        use_cache=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        tie_word_embeddings=True,
        **kwargs,
    ):
        if num_hidden_layers < 2:
            raise ValueError("num_hidden_layers counts the top query layer: it must be >= 2")
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_attention_heads "
                f"({num_attention_heads})"
            )
        self.vocab_size = vocab_size
        self.unpadded_vocab_size = unpadded_vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.dropout = dropout
        self.use_cache = use_cache
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
