"""The library's CNN (pool before tanh, channels-last) computes the same function, hidden
representations and gradients as the straightforward implementation kept in benchmarks/."""

import pytest
import torch
import torch.nn.functional as F

from benchmarks.reference_cnn import BaselineCNN
from powerlaw_lib.models import CNN
from powerlaw_lib.regularizers import SpectralRegularizer


def _pair(whiten: bool, in_channels: int = 1, size: int = 28):
    torch.manual_seed(0)
    fast = CNN(in_channels=in_channels, image_size=size, hidden=64, whiten=whiten)
    slow = BaselineCNN(in_channels=in_channels, image_size=size, hidden=64, whiten=whiten)
    slow.load_state_dict(fast.state_dict())
    return fast, slow


def _loss_and_grads(model, x, y, regs):
    model.zero_grad(set_to_none=True)
    logits, hs = model.forward_with_hidden(x)
    loss = F.cross_entropy(logits, y) + sum(r(hs[l - 1]) for l, r in regs.items())
    loss.backward()
    return loss.detach(), logits.detach(), [h.detach() for h in hs], \
        {n: p.grad.clone() for n, p in model.named_parameters()}


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("whiten,in_channels,size", [(False, 1, 28), (True, 1, 28), (False, 3, 32)])
def test_fast_cnn_matches_the_baseline_in_values_and_gradients(whiten, in_channels, size):
    """float64: the same function to rounding (1e-10), SpecReg on every layer included.

    float32 and cross-entropy alone: loss and whole gradient within 1e-5 relative (5e-4
    through a whitening layer, which nearly cancels the conv biases' gradients: measured
    below 5e-5 on an AVX512 Intel Xeon, 1.4e-4 on an AVX2 AMD EPYC).
    Eq. 2 divides batch variances by their targets, and whitening solves with the Cholesky
    factor of an 800 x 800 batch covariance; both amplify float32 rounding of the two
    summation orders (to about 1e-4 for eq. 2); in float64 both agree to 1e-13, so that is
    rounding, not a different function.
    """
    fast, slow = _pair(whiten, in_channels, size)
    g = torch.Generator().manual_seed(1)
    batch = 1300 if whiten else 200  # whitening needs a batch wider than its 800/1152 inputs
    x = torch.rand(batch, in_channels, size, size, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    out_fast = _loss_and_grads(fast, x, y, {})
    out_slow = _loss_and_grads(slow, x, y, {})
    tol = 5e-4 if whiten else 1e-5
    assert _rel(out_fast[0], out_slow[0]) < tol
    flat = [torch.cat([g.flatten() for g in out[3].values()]) for out in (out_fast, out_slow)]
    assert _rel(*flat) < tol  # the whole gradient (some tensors' own are nearly cancelled)

    fast, slow, x = fast.double(), slow.double(), x.double()
    h_ref = slow.forward_with_hidden(x)[1]
    regs = {}
    for l in (1, 2, 3):  # SpecReg on every hidden layer narrower than the batch
        if h_ref[l - 1].shape[1] < batch:
            regs[l] = SpectralRegularizer(1.0, 10, 2.0)
            regs[l].refresh(h_ref[l - 1].detach())
    assert regs
    out_fast = _loss_and_grads(fast, x, y, regs)
    out_slow = _loss_and_grads(slow, x, y, regs)
    assert _rel(out_fast[0], out_slow[0]) < 1e-10
    assert _rel(out_fast[1], out_slow[1]) < 1e-10
    for a, b in zip(out_fast[2], out_slow[2]):
        assert a.shape == b.shape and _rel(a, b) < 1e-10
    for name, grad in out_slow[3].items():
        assert _rel(out_fast[3][name], grad) < 1e-10, name


def test_fast_cnn_input_gradient_and_double_backward_match_the_baseline():
    """float64: ∇_x of the loss (what PGD uses) and the gradient of its squared norm with
    respect to the weights (a double backward, as the Jacobian penalty takes) agree to
    rounding: the channels-last gradient hand-off is differentiable and exact."""
    fast, slow = _pair(False)
    fast, slow = fast.double(), slow.double()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(64, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=g)
    out = []
    for model in (fast, slow):
        model.zero_grad(set_to_none=True)
        xr = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr, create_graph=True)
        gx.pow(2).sum().backward()
        out.append((gx.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    assert _rel(out[0][0], out[1][0]) < 1e-10
    for name, grad in out[1][1].items():
        assert _rel(out[0][1][name], grad) < 1e-10, name


def test_pooled_conv_outputs_receive_channels_last_gradients():
    """The gradient reaching every conv block's (pooled, activated) output is channels-last
    like the output itself, so max-pool's backward copies neither the gradient nor the conv
    output to a common layout (`models._ChannelsLastGrad`)."""
    torch.manual_seed(0)
    model = CNN(in_channels=1, image_size=28, hidden=32)
    layouts = []

    def watch(module, inputs, output):
        output.register_hook(lambda g: layouts.append(
            g.is_contiguous(memory_format=torch.channels_last)))

    for block in model.conv_blocks:
        block[2].register_forward_hook(watch)  # the activation, after the pool
    logits, hs = model.forward_with_hidden(torch.rand(8, 1, 28, 28))
    (logits.sum() + sum(h.pow(2).sum() for h in hs)).backward()
    assert layouts == [True, True]
