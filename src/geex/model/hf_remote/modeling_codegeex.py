"""CodeGeeX for Hugging Face transformers (remote code: torch and transformers only).

Copied next to the weights by ``geex convert to-hf``; load with
``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)``.

No standard architecture fits CodeGeeX: after the last block and a final LayerNorm comes the
*top query layer*, a block whose attention queries come from a second learned position table
(``top_query_embeddings``) while its keys and values come from the hidden states. The rest is
GPT-like: learned positions, pre-LayerNorm blocks with separate query/key/value projections,
FastGELU, logits from the (tied) word embeddings over a padded vocabulary.

LayerNorm runs in fp32 whatever the weights' dtype, as CodeGeeX did; the attention softmax is
fp32 inside PyTorch's scaled_dot_product_attention. Works with transformers 4.45+ and 5.x
(which renamed ``past_key_values`` to ``cache``: both are accepted).
"""

from typing import ClassVar

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_codegeex import CodeGeeXConfig

_CACHE_FIELD = (
    "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
)
_TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def fast_gelu(x):
    """CodeGeeX's FastGELU, ``x * sigmoid(1.702 x)`` (finite for every finite fp16 input)."""
    return x * torch.sigmoid(1.702 * x)


class CodeGeeXLayerNorm(nn.LayerNorm):
    """LayerNorm in fp32, returned in the input's dtype."""

    def forward(self, x):
        weight, bias = self.weight.float(), self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class CodeGeeXAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        d = config.hidden_size
        self.n_head = config.num_attention_heads
        self.dropout = config.dropout
        self.layer_idx = layer_idx  # the KV cache's index for this layer
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.dense = nn.Linear(d, d)

    def _split_heads(self, x):
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.n_head, -1).transpose(1, 2)

    def forward(self, hidden, query_input, attn_mask, is_causal, cache):
        q = self._split_heads(self.query(query_input))
        k = self._split_heads(self.key(hidden))
        v = self._split_heads(self.value(hidden))
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
        )
        batch, _, seq, _ = y.shape
        return self.dense(y.transpose(1, 2).reshape(batch, seq, -1))


class CodeGeeXMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, config.intermediate_size)
        self.dense_4h_to_h = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x):
        return self.dense_4h_to_h(fast_gelu(self.dense_h_to_4h(x)))


class CodeGeeXBlock(nn.Module):
    """A pre-LN block; as the top query layer, its queries come from ``query_input``."""

    def __init__(self, config, layer_idx):
        super().__init__()
        self.dropout = config.dropout
        self.input_layernorm = CodeGeeXLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = CodeGeeXAttention(config, layer_idx)
        self.post_attention_layernorm = CodeGeeXLayerNorm(
            config.hidden_size, eps=config.layer_norm_eps
        )
        self.mlp = CodeGeeXMLP(config)

    def forward(self, x, query_input, attn_mask, is_causal, cache):
        h = self.input_layernorm(x)
        query_input = h if query_input is None else query_input
        attn = self.attention(h, query_input, attn_mask, is_causal, cache)
        x = x + F.dropout(attn, self.dropout, self.training)
        mlp = self.mlp(self.post_attention_layernorm(x))
        return x + F.dropout(mlp, self.dropout, self.training)


class CodeGeeXPreTrainedModel(PreTrainedModel):
    config_class = CodeGeeXConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules: ClassVar[list[str]] = ["CodeGeeXBlock"]
    _supports_cache_class = True  # read by transformers 4.x
    _supports_sdpa = True

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)


class CodeGeeXModel(CodeGeeXPreTrainedModel):
    """The decoder without its output projection: hidden states after the top query layer."""

    def __init__(self, config):
        super().__init__(config)
        d = config.hidden_size
        n_blocks = config.num_hidden_layers - 1  # the last attending block is the top query layer
        self.word_embeddings = nn.Embedding(config.vocab_size, d)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, d)
        self.top_query_embeddings = nn.Embedding(config.max_position_embeddings, d)
        self.layers = nn.ModuleList(CodeGeeXBlock(config, i) for i in range(n_blocks))
        self.final_layernorm = CodeGeeXLayerNorm(d, eps=config.layer_norm_eps)
        self.top_query_layer = CodeGeeXBlock(config, n_blocks)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.word_embeddings

    def set_input_embeddings(self, value):
        self.word_embeddings = value

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache=None,
        cache=None,
        **kwargs,
    ):
        cache = cache if cache is not None else past_key_values
        use_cache = self.config.use_cache if use_cache is None else use_cache
        checkpointing = self.gradient_checkpointing and self.training
        if checkpointing:
            use_cache = False  # recomputing a block would append its keys to the cache again
        if use_cache and cache is None:
            cache = DynamicCache()
        if not use_cache:
            cache = None
        seq = input_ids.shape[1]
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = _positions(attention_mask, seq, past, input_ids.device)
        attn_mask, is_causal = _attention_mask(attention_mask, seq, past, input_ids.device)

        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        for layer in self.layers:
            if checkpointing:
                x = self._gradient_checkpointing_func(
                    layer.__call__, x, None, attn_mask, is_causal, None
                )
            else:
                x = layer(x, None, attn_mask, is_causal, cache)
        x = self.final_layernorm(x)
        # Queries from positions alone; expanded to the batch because SDPA's fused kernels
        # (flash, memory-efficient) need queries and keys of the same batch size: without it,
        # an unpadded batch (positions of shape (1, seq)) falls back to the math kernel, or
        # fails where only fused kernels are allowed. geex.model does the same.
        query_input = self.top_query_embeddings(position_ids).expand(x.shape[0], -1, -1)
        x = self.top_query_layer(x, query_input, attn_mask, is_causal, cache)
        return BaseModelOutputWithPast(last_hidden_state=x, **{_CACHE_FIELD: cache})


def _positions(attention_mask, seq, past, device):
    """Positions count real tokens only, so a left-padded prompt starts at position 0."""
    if attention_mask is None:
        return torch.arange(past, past + seq, device=device)[None]
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -seq:]


def _attention_mask(attention_mask, seq, past, device):
    """SDPA's boolean mask (True = may attend) and is_causal, for ``seq`` queries after ``past``.

    Query i sits at position past + i. A padding query attends to itself only: some attention
    kernels give NaN for a row with no key at all, which would leak into later layers' values.
    """
    if attention_mask is None or bool(attention_mask.all()):
        if past == 0:
            return None, seq > 1
        if seq == 1:
            return None, False
        return torch.ones(seq, past + seq, dtype=torch.bool, device=device).tril(past), False
    keys = attention_mask.bool()[:, None, None, :]
    causal = torch.ones(seq, past + seq, dtype=torch.bool, device=device).tril(past)
    itself = torch.zeros(seq, past + seq, dtype=torch.bool, device=device)
    itself.diagonal(past).fill_(True)
    return (causal & keys) | itself, False


class CodeGeeXForCausalLM(CodeGeeXPreTrainedModel, GenerationMixin):
    # transformers 5 maps each tied parameter to its source; 4.x listed the tied names.
    _tied_weights_keys = (
        {"lm_head.weight": "transformer.word_embeddings.weight"}
        if _TRANSFORMERS_MAJOR >= 5
        else ["lm_head.weight"]
    )

    def __init__(self, config):
        super().__init__(config)
        self.transformer = CodeGeeXModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.transformer.word_embeddings

    def set_input_embeddings(self, value):
        self.transformer.word_embeddings = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache=None,
        labels=None,
        cache=None,
        logits_to_keep=0,
        **kwargs,
    ):
        """Logits over the padded vocabulary; with ``labels``, the next-token loss (fp32)."""
        out = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else past_key_values,
            use_cache=use_cache,
        )
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100
            )
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, **{_CACHE_FIELD: getattr(out, _CACHE_FIELD)}
        )
