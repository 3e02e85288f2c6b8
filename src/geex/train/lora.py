"""LoRA fine-tuning (Hu et al., 2021) with ``peft``: low-rank adapters on every block's matmuls.

``geex train --lora R`` adds to each of the six Linear layers of every block, the top query
layer included (attention ``query``, ``key``, ``value``, ``dense``; MLP ``dense_h_to_4h``,
``dense_4h_to_h``), a trainable update ``(alpha / R) * B @ A`` of rank ``R``: ``A`` random
(peft's Kaiming-uniform), ``B`` zero, so training starts from the model as it was. Everything
else (the Linear weights and biases, the word, position and top query embeddings, the
LayerNorms) is frozen, and kept in the compute dtype under ``--precision bf16``/``fp16``; the
adapters train in fp32. peft targets the layers by name on Geex's own module (it needs no
``transformers`` model), replacing each by a wrapper that holds the original as
``base_layer``.

At the end of the run the adapter is saved apart, in peft's format (``adapter_config.json``,
``adapter_model.safetensors``, loadable with ``peft.PeftModel.from_pretrained``), or merged
into the weights (``W + (alpha / R) B A``) and saved as an ordinary Geex checkpoint.

peft is an optional dependency (``pip install 'geex[lora]'``): full fine-tuning needs none.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from geex.errors import GeexError

LORA_TARGETS = ("query", "key", "value", "dense", "dense_h_to_4h", "dense_4h_to_h")
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
# peft's saved names, as PeftModel(model).save_pretrained writes them.
PEFT_PREFIX = "base_model.model."


def lora_config(rank: int, alpha: float, dropout: float, base: str | None = None):
    try:
        from peft import LoraConfig
    except ImportError:
        raise GeexError(
            "--lora needs peft, which is not installed: pip install 'geex[lora]'"
        ) from None
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(LORA_TARGETS),
        bias="none",
        base_model_name_or_path=base,
    )


def add_lora(model: nn.Module, config) -> None:
    """Wrap the target layers with adapters (named "default", as peft names one) and freeze
    every other parameter, in place."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        is_adapter = ".lora_" in name
        param.requires_grad_(is_adapter)
        if is_adapter and param.dtype != torch.float32:
            param.data = param.data.float()  # peft gives adapters the layer's dtype


def lora_layers(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, layer) for every layer that carries an adapter."""
    from peft.tuners.lora import LoraLayer

    return [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, LoraLayer)
    ]


@torch.no_grad()
def merge_lora(model: nn.Module) -> None:
    """Fold each adapter into its layer's weight and put the plain layer back, in place: the
    model has its original parameter names again."""
    for parent, name, layer in lora_layers(model):
        layer.merge(safe_merge=True)  # safe: refuses to write a non-finite merged weight
        setattr(parent, name, layer.get_base_layer())


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights under peft's saved names."""
    from peft import get_peft_model_state_dict

    # The embeddings are never adapted; "auto" would look for the base config on the Hub.
    state = get_peft_model_state_dict(model, save_embedding_layers=False)
    return {PEFT_PREFIX + name: t.detach().cpu().contiguous() for name, t in state.items()}


def save_adapter(model: nn.Module, config, folder: Path) -> Path:
    """The adapter in peft's format in ``folder`` (``adapter_config.json`` last: where it is,
    the weights are complete)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state_dict(model), folder / ADAPTER_WEIGHTS_FILE, metadata={"format": "pt"})
    config.save_pretrained(str(folder))
    return folder
