"""Analytic FLOP counts (1 multiply-add = 2 FLOPs) of the GEMM-like work of training.

What is counted
---------------
- Network, forward: every ``nn.Linear`` (2·B·in·out) and ``nn.Conv2d``
  (2·B·C_out·H_out·W_out·C_in·k_h·k_w / groups).
- Network, backward: the weight gradient of every such layer (same count as its
  forward) and the input gradient of every such layer except the first one (whose
  input, the image batch, needs no gradient).
- Spectral penalty of a layer of width N on a batch of B: the projection P = C V
  (2·B·N²) and, in the backward pass, its input gradient (P∘g) Vᵀ (2·B·N²).
- Per-epoch refresh: the forward pass over the training set (network forward count)
  and, per regularized layer, the symmetric Gram matrix of the activations,
  n·N·(N+1) FLOPs (a symmetric rank-k update forms only one triangle).
- Per-epoch test accuracy: the forward pass over the test set.
- The per-eigenvalue-loop baseline (:mod:`benchmarks.reference`) of a layer: the batch
  covariance Cᵀ C (2·B·N²) and Vᵀ Σ_B V (two N×N products, 4·N³) forward; backward,
  the gradient of Vᵀ Σ_B V with respect to Σ_B (two products, 4·N³) and of Cᵀ C with
  respect to C (two products, 4·B·N²). :func:`loop_step_flops` over
  :func:`spectral_step_flops` bounds the step speedup the library can show against
  the loop when both run their GEMMs equally fast (the loop's Python overhead aside).

What is not counted (it is overhead against the reported fractions): element-wise work
(activations, batch norm, centring, squares, casts), pooling, the loss, the optimizer,
the float64 eigendecomposition of the refresh (≈ (4/3 + 2)·N³ per layer, outside any
GEMM library's fast path), sorting, and data movement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["GemmLayer", "gemm_layers", "network_forward_flops", "network_step_flops",
           "projection_flops", "gram_flops", "spectral_step_flops", "spectral_epoch_flops",
           "loop_penalty_flops", "loop_step_flops"]


@dataclass(frozen=True)
class GemmLayer:
    """One Linear/Conv2d layer: its forward FLOPs per sample and whether it is the first."""

    name: str
    flops_per_sample: float
    first: bool


def gemm_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[GemmLayer]:
    """Linear and Conv2d layers of ``model`` in execution order, with FLOPs per sample.

    One sample of shape ``input_shape`` (C, H, W) is pushed through the model (eval
    mode, no gradient) with forward hooks that read each layer's output shape.
    """
    records: list[tuple[str, float]] = []
    hooks = []

    def make_hook(name: str, module: nn.Module):
        def hook(_module, _inputs, output):
            if isinstance(module, nn.Linear):
                flops = 2.0 * module.in_features * module.out_features
            else:  # Conv2d
                c_out, h_out, w_out = output.shape[1:]
                k_h, k_w = module.kernel_size
                flops = 2.0 * c_out * h_out * w_out * module.in_channels * k_h * k_w / module.groups
            records.append((name, flops))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            hooks.append(module.register_forward_hook(make_hook(name, module)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return [GemmLayer(name, flops, i == 0) for i, (name, flops) in enumerate(records)]


def network_forward_flops(model: nn.Module, input_shape: tuple[int, ...], n: int) -> float:
    """Forward GEMM FLOPs of ``n`` samples."""
    return n * sum(layer.flops_per_sample for layer in gemm_layers(model, input_shape))


def network_step_flops(model: nn.Module, input_shape: tuple[int, ...], batch: int) -> float:
    """Forward + backward GEMM FLOPs of one training step on ``batch`` samples."""
    total = 0.0
    for layer in gemm_layers(model, input_shape):
        total += layer.flops_per_sample * (2 if layer.first else 3)  # fwd, dW, (dX)
    return batch * total


def projection_flops(batch: int, widths: list[int] | tuple[int, ...]) -> float:
    """Spectral penalty projections, forward and backward: 4·B·N² per regularized layer."""
    return sum(4.0 * batch * w * w for w in widths)


def gram_flops(n: int, widths: list[int] | tuple[int, ...]) -> float:
    """Symmetric Gram matrices of the refresh: n·N·(N+1) per regularized layer."""
    return sum(float(n) * w * (w + 1) for w in widths)


def spectral_step_flops(model: nn.Module, input_shape: tuple[int, ...], batch: int,
                        reg_widths: list[int] | tuple[int, ...]) -> float:
    """One regularized training step: network forward + backward and the projections."""
    return network_step_flops(model, input_shape, batch) + projection_flops(batch, reg_widths)


def loop_penalty_flops(batch: int, widths: list[int] | tuple[int, ...]) -> float:
    """Loop baseline penalty, forward and backward: 6·B·N² + 8·N³ per regularized layer."""
    return sum(6.0 * batch * w * w + 8.0 * w ** 3 for w in widths)


def loop_step_flops(model: nn.Module, input_shape: tuple[int, ...], batch: int,
                    reg_widths: list[int] | tuple[int, ...]) -> float:
    """One training step with the loop baseline's penalty in place of the projections."""
    return network_step_flops(model, input_shape, batch) + loop_penalty_flops(batch, reg_widths)


def spectral_epoch_flops(model: nn.Module, input_shape: tuple[int, ...], batch: int,
                         reg_widths: list[int] | tuple[int, ...], n_train: int,
                         n_test: int) -> float:
    """One regularized epoch: refresh (forward + Gram), n_train // batch steps, test accuracy."""
    steps = n_train // batch
    return (steps * spectral_step_flops(model, input_shape, batch, reg_widths)
            + network_forward_flops(model, input_shape, n_train) + gram_flops(n_train, reg_widths)
            + network_forward_flops(model, input_shape, n_test))
