"""Penalties on the batch representations of chosen hidden layers (eq. 2, slope losses).

`LayerPenalty` sums one per-layer regularizer (a callable on ``h [B, N_l]``) over the
regularized layers, under the run's autocast. Regularizers that keep a reference eigenbasis
(`needs_refresh`, Nassar et al. 2020 §3) get it recomputed on the full training set at every
epoch start by `refresh_eigenvectors`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..inference import autocast, stream_hidden
from ..spectrum import CovarianceAccumulator
from .base import Penalty


def refresh_eigenvectors(model: nn.Module, regularizers: dict[int, Callable],
                         x_train: torch.Tensor, precision: str = "fp32") -> None:
    """Recompute each regularizer's reference eigenvectors on the full training set.

    Nassar et al. 2020, §3: model in eval mode, no gradient. The training set streams
    through the network once (`inference.stream_hidden`: chunks, inference mode, bf16
    autocast for `precision="bf16"`); each refreshed layer's chunk goes straight into a
    float32-Gram / float64-sum `CovarianceAccumulator`, so the [n, N_l] activations are
    never stored. The eigendecomposition is float64. Regularizers whose `needs_refresh` is
    false are skipped.
    """
    layers = [l for l, r in regularizers.items() if getattr(r, "needs_refresh", True)]
    if not layers:
        return
    accumulators: dict[int, CovarianceAccumulator] = {}
    for _, hs in stream_hidden(model, x_train, layers, precision):
        for l, h in hs.items():  # h [chunk, N_l], float32 or bf16
            if l not in accumulators:
                accumulators[l] = CovarianceAccumulator(h.shape[1])
            accumulators[l].update(h)
    for l in layers:
        regularizers[l].refresh_from_covariance(accumulators.pop(l).covariance())


class LayerPenalty(Penalty):
    """Σ_l regularizers[l](h_l) over the regularized layers, under `autocast(precision)`.

    regularizers: layer (1-based) -> callable on that layer's batch activations [B, N_l],
    with `needs_refresh` (a reference basis every epoch) and `start_epoch()` (per-epoch
    reset of any state carried across steps).
    """

    adds_term = True

    def __init__(self, regularizers: dict[int, Callable], precision: str = "fp32") -> None:
        self.regularizers = regularizers
        self.precision = precision

    def start_epoch(self, model: nn.Module, x_train: torch.Tensor,
                    generator: torch.Generator) -> None:
        refresh_eigenvectors(model, self.regularizers, x_train, self.precision)
        for reg in self.regularizers.values():
            reg.start_epoch()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 hidden: list[torch.Tensor]) -> torch.Tensor:
        with autocast(self.precision):
            return sum((reg(hidden[l - 1]) for l, reg in self.regularizers.items()),
                       torch.zeros(()))
