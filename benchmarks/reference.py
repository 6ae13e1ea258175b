"""Baseline of the step speedup: eq. 2 of Nassar et al. 2020 with a Python loop over n.

This follows the structure of the authors' published regularizer: form the batch
covariance Σ_B (centred, / (B − 1), symmetrized), take the Rayleigh quotients
λ̂ = diag(Vᵀ Σ_B V) in the reference eigenbasis V, sort them in decreasing order, and add
the terms of eq. 2 one n at a time in a Python loop. κ follows the paper's text
(γ_τ = λ̂_τ, 1-based ranks, no gradient through κ), as the library does, so that both
compute the same number. The authors' loop also skips non-positive quotients; exact
arithmetic never produces them (they are variances), and rounding does only for nearly
null directions, where skipping would change eq. 2, so that test is left out (which makes
the baseline slightly faster, not slower). Written here independently of
:mod:`powerlaw_lib.regularizers`.
"""

from __future__ import annotations

import torch

__all__ = ["LoopSpectralPenalty", "loop_spectral_penalty"]


def loop_spectral_penalty(h: torch.Tensor, eigenvectors: torch.Tensor, alpha: float = 1.0,
                          tau: int = 10, beta: float = 1.0) -> torch.Tensor:
    """R = β/N · Σ_{n ≥ τ} [(λ̂_n/γ_n − 1)² + max(0, λ̂_n/γ_n − 1)], term by term.

    Parameters
    ----------
    h : Tensor ``[B, N]``
        Batch of representations (differentiable).
    eigenvectors : Tensor ``[N, N]``
        Reference eigenbasis, column n for the n-th largest eigenvalue (constant).
    alpha, tau, beta : float, int, float
        Target exponent, first regularized rank (1-based), strength.
    """
    batch, width = h.shape
    v = eigenvectors.to(h.dtype)
    centred = h - torch.mean(h, 0)  # [B, N]
    cov = centred.transpose(1, 0) @ centred / (batch - 1)  # [N, N]
    cov = (cov + cov.transpose(1, 0)) / 2
    quotients = torch.diag(v.transpose(1, 0) @ cov @ v)  # [N]
    eigs = torch.sort(quotients, descending=True)[0]
    with torch.no_grad():
        kappa = eigs[tau - 1] * tau ** alpha  # γ_n = κ n^-α, γ_τ = λ̂_τ
    total = torch.zeros((), dtype=h.dtype)
    for n in range(tau, width + 1):  # 1-based rank n
        gamma = kappa / n ** alpha
        total = total + (eigs[n - 1] / gamma - 1) ** 2 + torch.relu(eigs[n - 1] / gamma - 1)
    return beta * total / width


class LoopSpectralPenalty:
    """Callable ``reg(h)`` with a fixed eigenbasis: :func:`loop_spectral_penalty`.

    A drop-in for :class:`powerlaw_lib.regularizers.SpectralRegularizer` in
    :func:`powerlaw_lib.training.training_step` (no refresh: the basis is given).
    """

    needs_refresh = False

    def __init__(self, eigenvectors: torch.Tensor, alpha: float = 1.0, tau: int = 10,
                 beta: float = 1.0) -> None:
        self.eigenvectors = eigenvectors.detach()
        self.alpha, self.tau, self.beta = alpha, tau, beta

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=h.device.type, enabled=False):
            return loop_spectral_penalty(h.float() if h.dtype != torch.float64 else h,
                                         self.eigenvectors, self.alpha, self.tau, self.beta)
