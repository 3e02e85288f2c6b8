"""The exported Hugging Face model computes what geex.model does (logits, greedy tokens) on batches of 1, 2 and 5, padded or not, under every SDPA backend this machine has. `pytest tests/model/test_hf_remote_parity.py`."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # these tests only read local folders

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from tests.conftest import required_module

transformers = required_module("transformers")

from geex.model import ModelConfig, build_model  # noqa: E402
from geex.model.checkpoint import save_checkpoint  # noqa: E402
from geex.model.generation import generate  # noqa: E402
from geex.model.hf_export import export_hf  # noqa: E402
from geex.model.sampling import SamplingConfig  # noqa: E402

# Vocabulary padded 60 -> 64; head_dim 16, which every fused kernel accepts.
CONFIG = ModelConfig(
    n_layer=2, n_head=2, d_model=32, max_seq_len=32, vocab_size=60, padded_vocab_size=64
)
TIGHT = dict(atol=1e-6, rtol=1e-6)  # fp32; the two models run the same operations
STEPS = 6

BACKENDS = [
    SDPBackend.MATH,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.CUDNN_ATTENTION,
]
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]

# Prompts of one length (not padded) and of different lengths (left-padded), per batch size.
_LONG = [5, 17, 42, 8, 33, 1, 9, 21, 30, 2]
EVEN = {
    size: [[(t + 7 * row) % 60 for t in _LONG[:7]] for row in range(size)] for size in (1, 2, 5)
}
UNEVEN = {
    1: [_LONG[:4]],  # one prompt, with padding in front all the same
    2: [_LONG[:7], [12, 40, 3]],
    5: [_LONG, [12, 40, 3], [7], _LONG[:6], [44, 4, 18, 50]],
}
CASES = [
    pytest.param(prompts, padded, id=f"batch{size}-{'padded' if padded else 'even'}")
    for padded, table in ((False, EVEN), (True, UNEVEN))
    for size, prompts in table.items()
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The same random weights as a Geex model and as the exported transformers model."""
    model = build_model(CONFIG, seed=0).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # LayerNorms away from (1, 0), so that mixing them up shows
        for name, param in model.named_parameters():
            if "layernorm" in name:
                param.add_(0.2 * torch.randn(param.shape, generator=gen))
    root = tmp_path_factory.mktemp("parity")
    save_checkpoint(model, root / "geex")
    export_hf(root / "geex", root / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(root / "hf", trust_remote_code=True)
    return model, hf.eval()


@pytest.fixture(params=DEVICES)
def models(request, exported):
    geex_model, hf_model = exported
    return geex_model.to(request.param), hf_model.to(request.param)


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request, models):
    """The backend, or a skip with PyTorch's reason when this machine has no such kernel."""
    device = next(models[0].parameters()).device
    reason = _unavailable(request.param, device)
    if reason:
        pytest.skip(f"{request.param.name} on {device.type}: {reason}")
    return request.param


def _unavailable(backend: SDPBackend, device: torch.device) -> str | None:
    # Well-formed inputs shaped as the models' attention calls are (causal prefill, masked
    # prefill, one query over a masked cache): an error here is the kernel's absence on this
    # machine, not a fault of either model.
    head_dim = CONFIG.d_model // CONFIG.n_head
    q = torch.randn(2, CONFIG.n_head, 4, head_dim, device=device)
    k = torch.randn(2, CONFIG.n_head, 4, head_dim, device=device)
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool, device=device).tril()
    try:
        with sdpa_kernel(backend):
            F.scaled_dot_product_attention(q, k, k, is_causal=True)
            F.scaled_dot_product_attention(q, k, k, attn_mask=mask)
            F.scaled_dot_product_attention(q[:, :, :1], k, k, attn_mask=mask[:, :, -1:])
    except RuntimeError as err:
        return str(err).strip().splitlines()[0]
    return None


def left_pad(prompts, device):
    """Ids and a 0/1 attention mask, prompts aligned to the right; one prompt gets 2 pads."""
    longest = max(map(len, prompts)) + (2 if len(prompts) == 1 else 0)
    ids = torch.zeros((len(prompts), longest), dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt) :] = torch.tensor(prompt)
        mask[row, longest - len(prompt) :] = 1
    return ids, mask


def geex_logits(model, ids, mask):
    """geex.model on a left-padded batch as geex.model.generation prefills it: positions
    count real tokens, causal attention over real tokens, a padding query sees itself."""
    valid = mask.bool()
    positions = (valid.long().cumsum(1) - 1).clamp(min=0)
    seq = ids.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=ids.device).tril()
    attend = (causal & valid[:, None, None, :]) | torch.eye(
        seq, dtype=torch.bool, device=ids.device
    )
    return model(ids, positions, attn_mask=attend)


@pytest.mark.parametrize(("prompts", "padded"), CASES)
def test_logits_agree(models, backend, prompts, padded):
    geex_model, hf_model = models
    device = next(geex_model.parameters()).device
    ids, mask = left_pad(prompts, device)
    with torch.no_grad(), sdpa_kernel(backend):
        if padded:
            hf = hf_model(ids, attention_mask=mask).logits
            expected = geex_logits(geex_model, ids, mask)
            real = mask.bool()  # a padding position's output is nobody's prediction
            torch.testing.assert_close(hf[real], expected[real], **TIGHT)
        else:  # no attention_mask: the call that takes the causal fast path
            torch.testing.assert_close(hf_model(ids).logits, geex_model(ids), **TIGHT)


@pytest.mark.parametrize(("prompts", "padded"), CASES)
def test_greedy_tokens_agree(models, backend, prompts, padded):
    geex_model, hf_model = models
    device = next(geex_model.parameters()).device
    ids, mask = left_pad(prompts, device)
    with torch.no_grad(), sdpa_kernel(backend):
        out = hf_model.generate(
            ids, attention_mask=mask, max_new_tokens=STEPS, do_sample=False, pad_token_id=0
        )
        expected = generate(geex_model, prompts, SamplingConfig(max_new_tokens=STEPS))
    assert out[:, ids.shape[1] :].tolist() == [samples[0] for samples in expected]
