"""Training's fast paths (fused head + loss, the MLP's fused FastGELU) give the plain paths' loss and gradients. `pytest tests/model/test_training_path.py`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geex.model import ModelConfig, build_model, codegeex, loss
from geex.model.codegeex import fast_gelu
from geex.model.loss import IGNORE_INDEX, linear_cross_entropy, lm_loss
from geex.model.training_mlp import fast_gelu_mlp

CONFIG = ModelConfig(n_layer=2, n_head=4, d_model=64, max_seq_len=32, vocab_size=300)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float(((actual - expected).abs().max() / expected.abs().max()).detach())


def head_problem(seed=0, rows=96, width=48, vocab=500):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, width, generator=g, requires_grad=True)
    weight = (torch.randn(vocab, width, generator=g) * 0.3).requires_grad_()
    targets = torch.randint(0, vocab, (rows,), generator=g)
    targets[::5] = IGNORE_INDEX
    return hidden, weight, targets


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("chunk_rows", [7, 1000])  # many chunks, one uneven; one chunk
def test_fused_head_loss_equals_cross_entropy_of_the_logits(reduction, chunk_rows):
    hidden, weight, targets = head_problem()
    expected = lm_loss(hidden @ weight.t(), targets, reduction=reduction)
    expected_grads = torch.autograd.grad(expected * 0.7, (hidden, weight))
    loss = linear_cross_entropy(hidden, weight, targets, reduction=reduction, chunk_rows=chunk_rows)
    grads = torch.autograd.grad(loss * 0.7, (hidden, weight))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert relative_error(grad, expected_grad) < 1e-5
    # Ignored targets take no part: their rows get no gradient at all.
    assert not grads[0][targets == IGNORE_INDEX].any()


def test_fused_head_loss_under_bf16_autocast_stays_near_fp32():
    hidden, weight, targets = head_problem(seed=1)
    expected = lm_loss(hidden @ weight.t(), targets)
    expected_grads = torch.autograd.grad(expected, (hidden, weight))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(hidden, weight, targets, chunk_rows=16)
    grads = torch.autograd.grad(loss, (hidden, weight))
    assert loss.dtype == torch.float32 and grads[1].dtype == torch.float32
    expected_loss = float(expected.detach())
    assert abs(float(loss.detach()) - expected_loss) < 0.02 * expected_loss
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert relative_error(grad, expected_grad) < 0.05


def norm_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float(((actual - expected).norm() / expected.norm()).detach())


def scaled_fp16_grads(loss_of, inputs, loss_scale=2.0**16):
    """Gradients as the fp16 trainer gets them: of the loss times the scale, then unscaled."""
    with torch.autocast("cpu", dtype=torch.float16):
        result = loss_of(*inputs)
    return [g / loss_scale for g in torch.autograd.grad(result * loss_scale, inputs[:2])]


def test_fused_head_loss_under_fp16_autocast_keeps_the_small_probabilities():
    """softmax / tokens is ~6e-8 here, fp16's smallest subnormal: scaling first would flush it.

    The rare tokens' rows of the head learn from those terms alone.
    """
    hidden, weight, targets = head_problem(seed=2, rows=2048, width=32, vocab=8192)
    expected = torch.autograd.grad(lm_loss(hidden @ weight.t(), targets), (hidden, weight))
    inputs = (hidden, weight, targets)
    plain = scaled_fp16_grads(lambda h, w, t: lm_loss(F.linear(h, w), t), inputs)
    fused = scaled_fp16_grads(lambda h, w, t: linear_cross_entropy(h, w, t, chunk_rows=256), inputs)
    for fused_grad, plain_grad, fp32_grad in zip(fused, plain, expected, strict=True):
        assert fused_grad.dtype == torch.float32
        assert norm_error(plain_grad, fp32_grad) < 1e-3  # the reference is sound
        assert norm_error(fused_grad, fp32_grad) < 1e-3


def test_fused_head_loss_without_autograd_computes_the_loss_alone(monkeypatch):
    hidden, weight, targets = head_problem()
    expected = lm_loss(hidden @ weight.t(), targets)

    def no_gradient_work(*args):
        raise AssertionError("the head's gradient was computed without autograd")

    monkeypatch.setattr(loss, "_add_head_grad", no_gradient_work)
    with torch.no_grad():
        actual = linear_cross_entropy(hidden, weight, targets, chunk_rows=7)
    assert not actual.requires_grad
    torch.testing.assert_close(actual, expected.detach(), rtol=1e-5, atol=1e-5)
    frozen = linear_cross_entropy(hidden.detach(), weight.detach(), targets, reduction="sum")
    assert not frozen.requires_grad


def test_fused_head_loss_leaves_a_frozen_head_without_gradient():
    hidden, weight, targets = head_problem()
    weight.requires_grad_(False)
    linear_cross_entropy(hidden, weight, targets).backward()
    assert weight.grad is None and hidden.grad is not None


def test_fused_head_loss_refuses_what_it_cannot_compute():
    hidden, weight, targets = head_problem()
    with pytest.raises(ValueError, match="'mean' or 'sum'"):
        linear_cross_entropy(hidden, weight, targets, reduction="none")
    with pytest.raises(ValueError, match="leading dimensions"):
        linear_cross_entropy(hidden, weight, targets[:-1])
    loss = linear_cross_entropy(hidden, weight, targets)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once"):
        loss.backward()


def mlp_weights(seed=0, width=32):
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, width), (4 * width, width), (4 * width,), (width, 4 * width), (width,)]
    return [(torch.randn(s, generator=g) * 0.3).requires_grad_() for s in shapes]


def test_fused_gelu_mlp_equals_fast_gelu_between_two_linears():
    rows, up_w, up_b, down_w, down_b = tensors = mlp_weights()
    expected = F.linear(fast_gelu(F.linear(rows, up_w, up_b)), down_w, down_b)
    out_grad = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, tensors, out_grad)
    actual = fast_gelu_mlp(*tensors)
    grads = torch.autograd.grad(actual, tensors, out_grad)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert relative_error(grad, expected_grad) < 1e-5


def test_fused_gelu_mlp_under_bf16_autocast_computes_in_bf16_with_fp32_gradients():
    tensors = mlp_weights(seed=1)
    expected = F.linear(fast_gelu(F.linear(*tensors[:3])), *tensors[3:])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual = fast_gelu_mlp(*tensors)
    assert actual.dtype == torch.bfloat16
    assert relative_error(actual.float(), expected) < 0.03
    actual.float().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.float32 for t in tensors)


def test_fused_gelu_mlp_under_fp16_autocast_gives_the_plain_forms_gradients():
    tensors = mlp_weights(seed=2)
    out_grad = torch.randn(5, 32, generator=torch.Generator().manual_seed(3)) * 1e-6

    def fp16_grads(mlp):
        with torch.autocast("cpu", dtype=torch.float16):
            out = mlp(*tensors)
        assert out.dtype == torch.float16
        # A loss scale lifts the small upstream gradient into fp16's range, as the trainer's.
        grads = torch.autograd.grad(out.float(), tensors, out_grad * 2.0**16)
        return [g / 2.0**16 for g in grads]

    plain = fp16_grads(
        lambda rows, up_w, up_b, down_w, down_b: F.linear(
            fast_gelu(F.linear(rows, up_w, up_b)), down_w, down_b
        )
    )
    expected = torch.autograd.grad(
        F.linear(fast_gelu(F.linear(*tensors[:3])), *tensors[3:]), tensors, out_grad
    )
    for fused_grad, plain_grad, fp32_grad in zip(
        fp16_grads(fast_gelu_mlp), plain, expected, strict=True
    ):
        assert fused_grad.dtype == torch.float32
        assert norm_error(fused_grad, fp32_grad) < 2 * norm_error(plain_grad, fp32_grad) + 1e-3


def model_loss_and_grads(model, inputs, targets, *, fused: bool, reduction="mean"):
    model.zero_grad(set_to_none=True)
    if fused:
        loss = model(inputs, targets=targets, loss_reduction=reduction)
    else:
        loss = lm_loss(model(inputs), targets, reduction=reduction)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_training_path_gives_the_plain_paths_loss_and_gradients(monkeypatch, reduction):
    model = build_model(CONFIG, seed=3).train()
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, CONFIG.vocab_size, (3, 20), generator=g)
    targets = torch.randint(0, CONFIG.vocab_size, (3, 20), generator=g)
    targets[0, :4] = IGNORE_INDEX
    loss, grads = model_loss_and_grads(model, inputs, targets, fused=True, reduction=reduction)
    # The plain path: logits from the tied head, F.cross_entropy, and the MLP as written.
    monkeypatch.setattr(codegeex, "_plain_linear", lambda *linears: False)
    expected_loss, expected_grads = model_loss_and_grads(
        model, inputs, targets, fused=False, reduction=reduction
    )
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-5)
    assert grads.keys() == expected_grads.keys()
    # Against the largest gradient: some are zero but for rounding (the key biases, which add
    # the same to every score of a query).
    largest = max(float(g.abs().max()) for g in expected_grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-4, atol=1e-5 * largest)


def test_inference_keeps_the_plain_mlp(monkeypatch):
    """Decoding never enters the training MLP: its numbers stay bit for bit as they were."""
    model = build_model(CONFIG, seed=3).eval()
    calls = []
    monkeypatch.setattr(codegeex, "fast_gelu_mlp", lambda *args: calls.append(args))
    with torch.no_grad():
        model(torch.randint(0, CONFIG.vocab_size, (2, 9)))
    assert not calls
