"""Spectral, slope and Jacobian regularizers on hidden representations.

- :class:`SpectralRegularizer` -- Nassar et al. 2020, eq. 2: pulls the batch eigenspectrum
  of a layer towards a power law γ_n = κ n^−α beyond rank τ. Batch eigenvalues are the
  Rayleigh quotients λ̂_n = (Vᵀ Σ_B V)_nn of the batch covariance Σ_B in the eigenbasis V
  of the full-training-set covariance (:class:`ReferenceEigenbasis`, refreshed once per epoch).
- :class:`SlopeRegularizer` -- Gerum et al. 2022: penalizes the log-log slope of the
  normalized batch spectrum over ranks lo..hi, either β·|α̂ − α| ("abs") or the mean squared
  distance to a line of fixed slope −α ("mse"). Its fast batch spectrum
  (:class:`BatchEigenspace`) tracks the top eigenvectors across steps by warm-started
  subspace iteration instead of a full eigendecomposition per step.
- :func:`jacobian_penalty`, :class:`JacobianRegularizer` -- Hoffman et al. 2019: ½·mean of
  ‖∂logits/∂x‖²_F estimated with random projections (used in Nassar et al. 2020, §4.3).

Conventions
-----------
- A layer's representation ``h`` is ``[B, N]`` (batch, width); batch covariances are centred
  and divided by B − 1.
- Penalties are differentiable scalars. Under ``torch.autocast`` the projection matmul may
  run in bfloat16, but centring, squares, sums and the penalty arithmetic run in float32
  (float64 when ``h`` is float64).
- Ranks are 1-based, as in the papers. No Python loop runs over eigenvalues.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from .spectrum import covariance, symmetric_eigh_float64
from .validation import as_tensor, check_int, check_nonnegative as _check_nonnegative
from .validation import check_positive as _check_positive, is_int as _is_int

__all__ = [
    "BatchEigenspace",
    "JacobianRegularizer",
    "ReferenceEigenbasis",
    "SlopeRegularizer",
    "SpectralRegularizer",
    "batch_covariance",
    "covariance_float64",
    "jacobian_penalty",
    "spectral_penalty",
    "spectral_penalty_terms",
]

# ----------------------------------------------------------------------------- helpers


def _as_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise ValueError(f"expected a torch.Tensor or numpy.ndarray, got {type(value).__name__}")
    return as_tensor(value)


def _check_tau(tau: object) -> int:
    if not _is_int(tau) or tau < 1:  # type: ignore[operator]
        raise ValueError(f"tau must be an integer >= 1 (1-based rank), got {tau!r}")
    return int(tau)  # type: ignore[arg-type]


def _compute_dtype(h: torch.Tensor) -> torch.dtype:
    """float64 for float64 input, float32 otherwise (including bf16/fp16 under autocast)."""
    return torch.float64 if h.dtype == torch.float64 else torch.float32


def _check_batch(h: torch.Tensor, width: int | None = None) -> None:
    if h.ndim != 2:
        raise ValueError(f"h must be a [B, N] matrix of representations, got shape {tuple(h.shape)}")
    if width is not None and h.shape[1] != width:
        raise ValueError(f"h has width {h.shape[1]}, but the regularizer was refreshed on width {width}")
    if h.shape[0] < 2:
        raise ValueError(f"batch size must be >= 2 to form a covariance, got {h.shape[0]}")


# ----------------------------------------------------------------------------- covariances


def covariance_float64(h: torch.Tensor | np.ndarray, chunk_size: int = 4096) -> torch.Tensor:
    """Covariance of representations ``h [n, N]``, centred and divided by n − 1, in float64.

    The full-training-set covariance that defines the reference eigenbasis (Nassar et al.
    2020, §3), without gradient and with any enclosing autocast disabled. A thin wrapper
    of :func:`powerlaw_lib.spectrum.covariance` (chunks of ``chunk_size`` rows, float32
    Gram matrices -- float64 for float64 ``h`` -- summed in float64).
    """
    h = _as_tensor(h)
    if h.ndim != 2 or h.shape[0] < 2:
        raise ValueError(f"h must be an [n, N] matrix with n >= 2, got shape {tuple(h.shape)}")
    if not _is_int(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    with torch.no_grad():
        return covariance(h.detach(), chunk_size=int(chunk_size))


def batch_covariance(h: torch.Tensor) -> torch.Tensor:
    """Differentiable float64 covariance ``[N, N]`` of a batch ``h [B, N]`` (centred, / (B − 1))."""
    _check_batch(h)
    return covariance(h.to(torch.float64), chunk_size=max(1, h.shape[0]))


# ----------------------------------------------------------------------------- reference basis


class ReferenceEigenbasis:
    """Eigenbasis V of a reference (full-training-set) covariance and batch Rayleigh quotients.

    Nassar et al. 2020, §3: the eigenvectors are recomputed once per epoch from the
    representations of the whole training set; during the epoch a batch's eigenvalues are
    estimated as λ̂ = diag(Vᵀ Σ_B V), with gradients through Σ_B only.
    """

    def __init__(self) -> None:
        self._eigenvectors: torch.Tensor | None = None  # [N, N] float32, columns by decreasing eigenvalue
        self._eigenvalues: torch.Tensor | None = None  # [N] float64, decreasing
        self._cast_cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}  # V in other dtypes

    @property
    def is_ready(self) -> bool:
        """True once :meth:`refresh` or :meth:`refresh_from_covariance` has been called."""
        return self._eigenvectors is not None

    @property
    def width(self) -> int | None:
        """Layer width N of the stored basis (None before the first refresh)."""
        return None if self._eigenvectors is None else int(self._eigenvectors.shape[0])

    @property
    def eigenvectors(self) -> torch.Tensor:
        """V ``[N, N]`` float32, column n = eigenvector of the n-th largest eigenvalue."""
        self._require_ready()
        return self._eigenvectors  # type: ignore[return-value]

    @property
    def eigenvalues(self) -> torch.Tensor:
        """Reference eigenvalues ``[N]`` float64 in decreasing order."""
        self._require_ready()
        return self._eigenvalues  # type: ignore[return-value]

    def _require_ready(self) -> None:
        if self._eigenvectors is None:
            raise RuntimeError(
                "the eigenbasis is not set: call refresh(h_full) or refresh_from_covariance(cov) "
                "with the full-training-set representations before computing the penalty"
            )

    def refresh(self, h_full: torch.Tensor | np.ndarray, chunk_size: int = 4096) -> None:
        """Set the basis from representations ``h_full [n, N]`` of the reference set."""
        self.refresh_from_covariance(covariance_float64(h_full, chunk_size=chunk_size))

    def refresh_from_covariance(self, cov: torch.Tensor | np.ndarray) -> None:
        """Set the basis from a precomputed covariance ``[N, N]`` (eigh in float64)."""
        cov = _as_tensor(cov)
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] < 1:
            raise ValueError(f"cov must be a square [N, N] matrix, got shape {tuple(cov.shape)}")
        with torch.no_grad():
            cov64 = cov.detach().to(torch.float64)
            if not torch.isfinite(cov64).all():
                raise ValueError("cov must contain only finite values")
            eigenvalues, eigenvectors = symmetric_eigh_float64(0.5 * (cov64 + cov64.mT))  # ascending
            eigenvalues, eigenvectors = eigenvalues.to(cov.device), eigenvectors.to(cov.device)
        self._eigenvalues = eigenvalues.flip(0)
        self._eigenvectors = eigenvectors.flip(1).to(torch.float32).contiguous()
        self._cast_cache = {}

    def _basis_as(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """V on ``device`` in ``dtype`` (the float32 basis, cast once per refresh and cached)."""
        basis = self._eigenvectors
        assert basis is not None
        if basis.device == device and basis.dtype == dtype:
            return basis
        key = (device, dtype)
        if key not in self._cast_cache:
            self._cast_cache[key] = basis.to(device=device, dtype=dtype).contiguous()
        return self._cast_cache[key]

    def rayleigh_quotients(self, h: torch.Tensor) -> torch.Tensor:
        """Batch eigenvalue estimates λ̂_n = (Vᵀ Σ_B V)_nn sorted decreasingly, ``[N]``.

        Computed as column variances of the centred batch projected on V:
        P = (h − mean) @ V ``[B, N]``, λ̂ = Σ_b P²_bn / (B − 1). Centring, squares and sums
        run in float32 (float64 for float64 ``h``); under CPU/GPU autocast the projection
        P and its backward product run in the autocast dtype (bfloat16), with P cast to
        float32 before squaring. Differentiable with respect to ``h`` (V is a constant);
        the backward pass is the single product ∂λ̂/∂h = 2/(B − 1) · (P ∘ g) Vᵀ for an
        upstream gradient g.
        """
        self._require_ready()
        _check_batch(h, self.width)
        dtype = _compute_dtype(h)
        gemm_dtype = dtype
        if dtype == torch.float32 and torch.is_autocast_enabled(h.device.type):
            gemm_dtype = torch.get_autocast_dtype(h.device.type)
        basis = self._basis_as(h.device, gemm_dtype)  # [N, N]
        quotients = _ProjectedVariance.apply(h, basis, dtype)  # [N]
        return torch.sort(quotients, descending=True).values


class _ProjectedVariance(torch.autograd.Function):
    """Column variances of the centred batch projected on a constant basis, ``[N]``.

    Forward: C = h − mean(h) in ``dtype``; P = C V in the basis' dtype (one GEMM);
    q_n = Σ_b P²_bn / (B − 1) in ``dtype``. Backward: ∂q/∂h applied to g is
    2/(B − 1) · (P ∘ g) Vᵀ (one GEMM). The Jacobian of the centring is the identity on
    this gradient because the columns of P, and hence of (P ∘ g) Vᵀ, sum to zero, so it
    is not applied (a difference of rounding size, below the bfloat16 rounding of P).
    Fused by hand because autograd would keep and traverse several ``[B, N]``
    intermediates (centring, cast, square) in both passes.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, basis: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:  # type: ignore[override]
        with torch.autocast(device_type=h.device.type, enabled=False):
            hc = h.detach().to(dtype)
            centred = (hc - hc.mean(dim=0, keepdim=True)).to(basis.dtype)  # [B, N]
            projected = centred @ basis  # [B, N], in the GEMM dtype
            del centred
            squares = projected.to(dtype) if projected.dtype != dtype else projected.clone()
            quotients = squares.square_().sum(dim=0) / (h.shape[0] - 1)  # [N]
        ctx.save_for_backward(projected, basis)
        ctx.input_dtype = h.dtype
        ctx.compute_dtype = dtype
        return quotients

    @staticmethod
    def backward(ctx, grad_quotients: torch.Tensor):  # type: ignore[override]
        projected, basis = ctx.saved_tensors
        scale = grad_quotients.to(ctx.compute_dtype) * (2.0 / (projected.shape[0] - 1))  # [N]
        with torch.autocast(device_type=projected.device.type, enabled=False):
            weighted = (projected * scale.to(projected.dtype))  # [B, N], GEMM dtype
            grad_h = weighted @ basis.mT  # [B, N]
        return grad_h.to(ctx.input_dtype), None, None


# ----------------------------------------------------------------------------- spectral (eq. 2)


def spectral_penalty(eigenvalues: torch.Tensor, alpha: float = 1.0, tau: int = 10, beta: float = 1.0) -> torch.Tensor:
    """Nassar et al. 2020, eq. 2, on a spectrum sorted in decreasing order.

    R = β/N · Σ_{n≥τ} [(λ_n/γ_n − 1)² + max(0, λ_n/γ_n − 1)], γ_n = κ n^−α with κ chosen so
    that γ_τ = λ_τ (1-based ranks) and treated as a constant (no gradient through κ).
    Written as λ_n/γ_n = (λ_n / sg(λ_τ))·(n/τ)^α so that the n = τ term is exactly zero.

    Parameters
    ----------
    eigenvalues : Tensor ``[N]``
        Decreasing spectrum (e.g. Rayleigh quotients of a batch); N is the layer width.
    alpha, tau, beta : float, int, float
        Target exponent (> 0), first regularized rank (1 <= tau <= N), strength (>= 0).

    Notes
    -----
    The authors' code anchors κ at rank τ+1 and sums from τ+2 (0-based indexing); this
    follows the paper's text. If λ_τ = 0, κ is clamped to the smallest positive normal
    number so the penalty stays finite.
    """
    alpha = _check_positive("alpha", alpha)
    tau = _check_tau(tau)
    beta = _check_nonnegative("beta", beta)
    if eigenvalues.ndim != 1:
        raise ValueError(f"eigenvalues must be a 1-D spectrum, got shape {tuple(eigenvalues.shape)}")
    width = eigenvalues.shape[0]
    if tau > width:
        raise ValueError(f"tau must be in [1, N] = [1, {width}] for a layer of width {width}, got {tau}")
    return beta / width * spectral_penalty_terms(eigenvalues, alpha, tau).sum()


def spectral_penalty_terms(eigenvalues: torch.Tensor, alpha: float = 1.0, tau: int = 10
                           ) -> torch.Tensor:
    """The summands of eq. 2 for n = τ..N: (λ_n/γ_n − 1)² + max(0, λ_n/γ_n − 1), ``[N − τ + 1]``.

    γ_n = κ n^−α with κ = λ_τ τ^α (no gradient through κ), written as
    λ_n/γ_n = (λ_n / sg(λ_τ))·(n/τ)^α so that the n = τ term is exactly zero.
    """
    width = eigenvalues.shape[0]
    dtype = _compute_dtype(eigenvalues)
    lam = eigenvalues.to(dtype)
    anchor = lam[tau - 1].detach().clamp_min(torch.finfo(dtype).tiny)  # γ_τ = λ_τ, no gradient
    ranks = torch.arange(tau, width + 1, dtype=dtype, device=lam.device)  # n = τ .. N
    ratio = lam[tau - 1 :] / anchor * (ranks / tau).pow(alpha) - 1.0  # λ_n/γ_n − 1, [N − τ + 1]
    return ratio.pow(2) + torch.relu(ratio)


class SpectralRegularizer:
    """Spectral regularizer of Nassar et al. 2020, eq. 2, for one layer.

    Call :meth:`refresh` (or :meth:`refresh_from_covariance`) with the full-training-set
    representations of the layer at the start of every epoch (model in eval mode, no
    gradient), then ``reg(h)`` on each batch ``h [B, N]`` returns the differentiable penalty
    computed from the Rayleigh quotients in the stored eigenbasis.

    Parameters
    ----------
    alpha : float
        Target power-law exponent (> 0); paper: 1.
    tau : int
        First regularized rank, 1-based (1 <= tau <= N); paper: 10.
    beta : float
        Strength (>= 0); paper: 1, 2, 5.
    """

    needs_refresh = True

    def __init__(self, alpha: float = 1.0, tau: int = 10, beta: float = 1.0) -> None:
        self.alpha = _check_positive("alpha", alpha)
        self.tau = _check_tau(tau)
        self.beta = _check_nonnegative("beta", beta)
        self.basis = ReferenceEigenbasis()

    def __repr__(self) -> str:
        return f"SpectralRegularizer(alpha={self.alpha}, tau={self.tau}, beta={self.beta})"

    def start_epoch(self) -> None:
        """Nothing carried across steps: the basis is refreshed by :meth:`refresh`."""

    @property
    def is_ready(self) -> bool:
        return self.basis.is_ready

    def _check_width(self, width: int) -> None:
        if self.tau > width:
            raise ValueError(f"tau must be in [1, N] = [1, {width}] for a layer of width {width}, got {self.tau}")

    def refresh(self, h_full: torch.Tensor | np.ndarray, chunk_size: int = 4096) -> None:
        """Recompute the eigenbasis from the reference representations ``h_full [n, N]``."""
        h_full = _as_tensor(h_full)
        if h_full.ndim == 2:
            self._check_width(h_full.shape[1])
        self.basis.refresh(h_full, chunk_size=chunk_size)

    def refresh_from_covariance(self, cov: torch.Tensor | np.ndarray) -> None:
        """Recompute the eigenbasis from a reference covariance ``[N, N]``."""
        cov = _as_tensor(cov)
        if cov.ndim == 2:
            self._check_width(cov.shape[1])
        self.basis.refresh_from_covariance(cov)

    def rayleigh_quotients(self, h: torch.Tensor) -> torch.Tensor:
        """λ̂ = diag(Vᵀ Σ_B V) of the batch ``h [B, N]``, decreasing, differentiable."""
        return self.basis.rayleigh_quotients(h)

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """Penalty (scalar tensor) of eq. 2 for the batch ``h [B, N]``."""
        return spectral_penalty(self.rayleigh_quotients(h), alpha=self.alpha, tau=self.tau, beta=self.beta)


# ----------------------------------------------------------------------------- slope (Gerum et al. 2022)


def _orthogonal_iteration(centred: torch.Tensor, vectors: torch.Tensor, iters: int) -> torch.Tensor:
    """``iters`` steps of block power iteration Q ← qr(H_cᵀ (H_c Q)), ``[N, k]``.

    ``centred`` is H_c ``[B, N]``; H_cᵀ H_c = (B − 1) Σ_B is never formed (two GEMMs of
    B·N·k per step instead of B·N² and an N×N buffer).
    """
    for _ in range(iters):
        vectors = torch.linalg.qr(centred.mT @ (centred @ vectors)).Q  # [N, k], orthonormal
    return vectors


def _rayleigh_ritz(centred: torch.Tensor, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ritz vectors ``[N, k]`` of Σ_B in span(Q) by decreasing Ritz value, and H_c times them ``[B, k]``.

    The k×k eigenproblem of (H_c Q)ᵀ(H_c Q) runs in float64 (a float32 Gram matrix would
    lose the small eigenvalues of steep spectra); the projection is rotated in float64 too.
    """
    projected = (centred @ vectors).to(torch.float64)  # [B, k]
    _, rotation = torch.linalg.eigh(projected.mT @ projected)  # [k, k], ascending Ritz values
    rotation = rotation.flip(1)  # decreasing
    return vectors @ rotation.to(vectors.dtype), projected @ rotation


class _RitzQuotients(torch.autograd.Function):
    """Rayleigh quotients λ_n = ‖H_c q_n‖² / (B − 1) of constant vectors q_n ``[k]``, and trace(Σ_B).

    Forward reuses the centred batch H_c ``[B, N]`` and the product P = H_c Q ``[B, k]``
    (float64) of the Rayleigh–Ritz step, so only the backward pass costs a GEMM. For
    upstream gradients g ``[k]`` (quotients) and t (trace):
    ∂/∂h = 2/(B − 1) · ((P ∘ g) Qᵀ + t H_c) ``[B, N]``, restricted to the columns with g_n ≠ 0
    (the slope fit uses ranks lo..hi only). As in :class:`_ProjectedVariance`, the centring
    Jacobian is omitted because the columns of P and H_c sum to zero.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, centred: torch.Tensor, vectors: torch.Tensor,  # type: ignore[override]
                projected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = 1.0 / (h.shape[0] - 1)
        quotients = projected.square().sum(dim=0) * scale  # [k], float64
        flat = centred.reshape(-1)
        total = torch.dot(flat, flat) * scale  # trace(Σ_B) = Σ_i var(h_:,i), in the dtype of H_c
        ctx.save_for_backward(centred, vectors, projected.to(centred.dtype))
        ctx.input_dtype = h.dtype
        return quotients.to(centred.dtype), total

    @staticmethod
    def backward(ctx, grad_quotients: torch.Tensor, grad_total: torch.Tensor):  # type: ignore[override]
        centred, vectors, projected = ctx.saved_tensors  # [B, N], [N, k], [B, k]
        scale = 2.0 / (centred.shape[0] - 1)
        used = grad_quotients.nonzero().squeeze(1)  # [m]: the fitted ranks (the others get no gradient)
        with torch.autocast(device_type=centred.device.type, enabled=False):
            weights = grad_quotients[used].to(centred.dtype) * scale  # [m]
            grad_h = (projected[:, used] * weights) @ vectors[:, used].mT  # [B, N]
            grad_h.addcmul_(centred, (grad_total * scale).to(centred.dtype))
        return grad_h.to(ctx.input_dtype), None, None, None


class BatchEigenspace:
    """Top-k eigenvectors of successive batch covariances, tracked by subspace iteration.

    The fast route to the batch spectrum of the Gerum et al. 2022 slope penalty
    (``SlopeRegularizer(method="subspace")``). Each call runs, without gradient and with
    autocast disabled, ``iters`` steps of block power iteration on the centred batch
    H_c = h − mean ``[B, N]``, warm-started from the previous call's vectors, then a
    Rayleigh–Ritz step (k×k eigh). A cold start from a Gaussian block (``cold_iters``
    steps) happens on the first call, when the width changes, after a non-finite batch and
    every ``restart_every`` calls; a change of dtype or device only casts the stored
    vectors. The eigenvalues are
    the Rayleigh quotients λ_n = ‖H_c q_n‖² / (B − 1) of the Ritz vectors q_n,
    differentiable in ``h`` with Q constant: for an exactly invariant subspace they are the
    top k eigenvalues of Σ_B and their gradients those of ``eigvalsh``.

    Parameters
    ----------
    size : int
        Block size k (>= 1; at most the layer width).
    iters, cold_iters : int
        Power-iteration steps per warm call (>= 0) and per cold start (>= 1).
    restart_every : int
        Calls between cold starts (>= 1).
    seed : int
        Seed of the generator of the cold-start blocks (same seed, same inputs → same output).
    """

    def __init__(self, size: int, iters: int = 3, cold_iters: int = 15, restart_every: int = 100,
                 seed: int = 0) -> None:
        self.size = check_int("subspace_size", size, 1)
        self.iters = check_int("subspace_iters", iters, 0)
        self.cold_iters = check_int("cold_iters", cold_iters, 1)
        self.restart_every = check_int("restart_every", restart_every, 1)
        self.seed = check_int("seed", seed, 0)
        self.reset()

    def reset(self) -> None:
        """Forget the tracked vectors and reseed the generator: the next call is a cold start
        exactly as on a new instance (e.g. at epoch starts, so a resumed run is identical)."""
        self.generator = torch.Generator().manual_seed(self.seed)
        self.vectors: torch.Tensor | None = None  # [N, k] Ritz vectors, decreasing Ritz value
        self.calls = 0  # calls since the last cold start

    def _start_block(self, centred: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Starting block ``[N, k]`` and iteration count: warm, or Gaussian when a cold start is due."""
        width = centred.shape[1]
        if self.vectors is not None and self.vectors.shape[0] == width and self.calls < self.restart_every:
            return self.vectors.to(device=centred.device, dtype=centred.dtype), self.iters
        self.calls = 0
        block = torch.randn(width, self.size, generator=self.generator, dtype=torch.float64)
        return block.to(device=centred.device, dtype=centred.dtype), self.cold_iters

    def _track(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Update the Ritz vectors on ``h [B, N]``; return H_c ``[B, N]``, Q ``[N, k]``, H_c Q ``[B, k]``."""
        with torch.no_grad(), torch.autocast(device_type=h.device.type, enabled=False):
            x = h.detach().to(_compute_dtype(h))
            centred = x - x.mean(dim=0, keepdim=True)  # [B, N]
            start, iters = self._start_block(centred)
            vectors, projected = _rayleigh_ritz(centred, _orthogonal_iteration(centred, start, iters))
            finite = bool(torch.isfinite(vectors).all())
            self.vectors = vectors if finite else None  # a non-finite batch forces a cold start next call
            self.calls += 1
        return centred, vectors, projected

    def spectrum(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k eigenvalue estimates ``[k]`` (decreasing) and trace(Σ_B) of ``h [B, N]``, differentiable.

        float32 (float64 for float64 ``h``); the power iteration runs in that dtype.
        """
        _check_batch(h)
        if self.size > h.shape[1]:
            raise ValueError(f"subspace_size must be <= the layer width N = {h.shape[1]}, got {self.size}")
        quotients, total = _RitzQuotients.apply(h, *self._track(h))  # [k], scalar
        return torch.sort(quotients, descending=True).values, total


class SlopeRegularizer:
    """Power-law slope penalties of Gerum et al. 2022 on the batch spectrum of a layer.

    The batch eigenvalues are normalized to sum 1 and restricted to the 1-based ranks
    lo..hi. With x_n = log n and y_n = log λ_n:

    - ``mode="abs"``: α̂ = −slope of the unweighted least-squares line of y on x (closed
      form), penalty β·|α̂ − α|;
    - ``mode="mse"``: penalty β·mean_n (y_n − c + α x_n)², the mean squared distance to the
      best line of fixed slope −α, intercept c = mean(y + α x).

    The batch eigenvalues come from one of three methods:

    - ``"subspace"`` (recommended): the top ``subspace_size`` eigenvalues, as Rayleigh
      quotients of Ritz vectors tracked across calls by warm-started subspace iteration
      (:class:`BatchEigenspace`), normalized by trace(Σ_B); no N×N matrix is formed. On
      tanh MLPs trained on MNIST (widths 256 and 2000) it agreed with ``"exact"`` to float32
      rounding in the penalty (≤ 1e-5 relative) and to ≤ 2e-3 relative (Frobenius norm) in
      the gradient; a penalized step of the 784-2000-10 net at batch 1500 took ~1.7× a
      plain step (``"exact"``: ~20×). Holds state: use one instance per layer.
    - ``"exact"``: ``eigvalsh`` of the float64 batch covariance, differentiable (the
      reference; an N×N eigendecomposition with gradient at every call).
    - ``"rayleigh"``: quotients in a reference basis refreshed every epoch, as in
      :class:`SpectralRegularizer` (needs :meth:`refresh`).

    Parameters
    ----------
    alpha : float
        Target exponent α* (> 0).
    beta : float
        Strength (>= 0); Gerum et al.: 0.1 or 1.
    ranks : (int, int)
        1-based inclusive rank range (lo, hi), 1 <= lo < hi; Gerum et al.: (6, 50).
    mode : str
        "abs" or "mse".
    method : str
        "subspace", "exact" or "rayleigh".
    subspace_size : int, keyword-only
        ``"subspace"``: number k of tracked eigenvectors, hi < k <= N (default 128).
    subspace_iters : int, keyword-only
        ``"subspace"``: power-iteration steps per call, warm-started (default 3).
    restart_every : int, keyword-only
        ``"subspace"``: calls between cold starts from a random block (default 100).
    cold_iters : int, keyword-only
        ``"subspace"``: power-iteration steps of a cold start (default 15).
    seed : int, keyword-only
        ``"subspace"``: seed of the random cold-start blocks (default 0).
    """

    def __init__(
        self,
        alpha: float,
        beta: float = 1.0,
        ranks: tuple[int, int] = (6, 50),
        mode: str = "abs",
        method: str = "exact",
        *,
        subspace_size: int = 128,
        subspace_iters: int = 3,
        restart_every: int = 100,
        cold_iters: int = 15,
        seed: int = 0,
    ) -> None:
        self.alpha = _check_positive("alpha", alpha)
        self.beta = _check_nonnegative("beta", beta)
        if (
            not isinstance(ranks, (tuple, list))
            or len(ranks) != 2
            or not all(_is_int(r) for r in ranks)
            or not 1 <= ranks[0] < ranks[1]
        ):
            raise ValueError(f"ranks must be two integers (lo, hi) with 1 <= lo < hi, got {ranks!r}")
        self.ranks = (int(ranks[0]), int(ranks[1]))
        if mode not in ("abs", "mse"):
            raise ValueError(f"mode must be 'abs' or 'mse', got {mode!r}")
        if method not in ("subspace", "exact", "rayleigh"):
            raise ValueError(f"method must be 'subspace', 'exact' or 'rayleigh', got {method!r}")
        self.mode = mode
        self.method = method
        self.basis = ReferenceEigenbasis() if method == "rayleigh" else None
        self.eigenspace = None
        if method == "subspace":
            self.eigenspace = self._make_eigenspace(subspace_size, subspace_iters, restart_every,
                                                    cold_iters, seed)

    def _make_eigenspace(self, size: object, iters: object, restart_every: object, cold_iters: object,
                         seed: object) -> BatchEigenspace:
        if not _is_int(size) or size <= self.ranks[1]:  # type: ignore[operator]
            raise ValueError(f"subspace_size must be an integer > ranks[1] = {self.ranks[1]}, got {size!r}")
        return BatchEigenspace(size, iters, cold_iters, restart_every, seed)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        extra = "" if self.eigenspace is None else (
            f", subspace_size={self.eigenspace.size}, subspace_iters={self.eigenspace.iters}, "
            f"restart_every={self.eigenspace.restart_every}")
        return (
            f"SlopeRegularizer(alpha={self.alpha}, beta={self.beta}, ranks={self.ranks}, "
            f"mode={self.mode!r}, method={self.method!r}{extra})"
        )

    @property
    def needs_refresh(self) -> bool:
        """True for ``method="rayleigh"``, which needs a reference basis every epoch."""
        return self.basis is not None

    def start_epoch(self) -> None:
        """Called by the training loop at every epoch start: ``"subspace"`` cold-starts its
        tracked eigenvectors, so a run resumed from an epoch checkpoint is identical."""
        if self.eigenspace is not None:
            self.eigenspace.reset()

    @property
    def is_ready(self) -> bool:
        return self.basis is None or self.basis.is_ready

    def _check_width(self, width: int) -> None:
        if self.ranks[1] > width:
            raise ValueError(f"ranks[1] must be <= the layer width N = {width}, got ranks={self.ranks}")

    def refresh(self, h_full: torch.Tensor | np.ndarray, chunk_size: int = 4096) -> None:
        """Recompute the reference basis (``method="rayleigh"``; a no-op otherwise)."""
        if self.basis is not None:
            h_full = _as_tensor(h_full)
            if h_full.ndim == 2:
                self._check_width(h_full.shape[1])
            self.basis.refresh(h_full, chunk_size=chunk_size)

    def refresh_from_covariance(self, cov: torch.Tensor | np.ndarray) -> None:
        """Recompute the reference basis from a covariance (a no-op unless ``"rayleigh"``)."""
        if self.basis is not None:
            cov = _as_tensor(cov)
            if cov.ndim == 2:
                self._check_width(cov.shape[1])
            self.basis.refresh_from_covariance(cov)

    def batch_spectrum(self, h: torch.Tensor) -> torch.Tensor:
        """Decreasing batch eigenvalues of ``h [B, N]`` (float32, float64 for float64 ``h``).

        ``[N]``, or the top ``[subspace_size]`` for ``method="subspace"`` (which also
        advances its tracked eigenvectors).
        """
        return self._spectrum_and_total(h)[0]

    def _check_batch_size(self, batch: int) -> None:
        if batch <= self.ranks[1]:
            raise ValueError(
                f"batch size must exceed ranks[1] = {self.ranks[1]} so the batch spectrum has no exact zeros "
                f"in the fitted range, got batch size {batch}"
            )

    def _spectrum_and_total(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decreasing batch spectrum and the sum of all N batch eigenvalues (checks ``h`` first)."""
        _check_batch(h)
        self._check_width(h.shape[1])
        if self.basis is not None:
            spectrum = self.basis.rayleigh_quotients(h)  # [N]
            return spectrum, spectrum.sum()
        self._check_batch_size(h.shape[0])
        if self.eigenspace is not None:
            return self.eigenspace.spectrum(h)  # [k], trace(Σ_B)
        eigenvalues = torch.linalg.eigvalsh(batch_covariance(h)).flip(0)  # [N] float64, decreasing
        eigenvalues = eigenvalues.to(_compute_dtype(h))
        return eigenvalues, eigenvalues.sum()

    def _log_spectrum(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = log n, y = log λ_n of the normalized spectrum over the rank range."""
        spectrum, total = self._spectrum_and_total(h)
        normalized = spectrum / total  # sums to 1 over all N eigenvalues
        dtype = normalized.dtype
        lo, hi = self.ranks
        y = normalized[lo - 1 : hi].clamp_min(torch.finfo(dtype).tiny).log()  # [hi − lo + 1]
        x = torch.arange(lo, hi + 1, dtype=dtype, device=h.device).log()
        return x, y

    @staticmethod
    def _fit_alpha(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xc = x - x.mean()
        slope = (xc * (y - y.mean())).sum() / xc.pow(2).sum()
        return -slope

    def fitted_alpha(self, h: torch.Tensor) -> float:
        """Exponent α̂ of the least-squares fit over the rank range (no gradient)."""
        with torch.no_grad():
            x, y = self._log_spectrum(h.detach())
            return float(self._fit_alpha(x, y))

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """Penalty (scalar tensor) for the batch ``h [B, N]``."""
        x, y = self._log_spectrum(h)
        if self.mode == "abs":
            return self.beta * (self._fit_alpha(x, y) - self.alpha).abs()
        shifted = y + self.alpha * x  # residual of the fixed-slope line, up to the intercept
        return self.beta * (shifted - shifted.mean()).pow(2).mean()


# ----------------------------------------------------------------------------- Jacobian (Hoffman et al. 2019)


def jacobian_penalty(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n_proj: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """½ · mean_b ‖∂logits_b/∂x_b‖²_F by random projections (Hoffman et al. 2019).

    For each projection and sample, v is uniform on the unit sphere in C = n_classes
    dimensions and ‖J‖²_F ≈ C·‖vᵀJ‖²; each projection costs one vector-Jacobian product,
    taken with ``create_graph=True`` so the penalty can be trained through. Estimates are
    averaged over ``n_proj`` projections.

    Parameters
    ----------
    model : callable
        Maps ``x [B, ...]`` to logits ``[B, C]``. It is evaluated once more here, so a model in
        train mode with batch norm updates its running statistics again.
    x : Tensor ``[B, ...]``
        Inputs; detached and cloned internally (the caller's tensor is untouched).
    n_proj : int
        Number of random projections (>= 1).
    generator : torch.Generator, optional
        Source of the random directions (drawn on the generator's device).

    Notes
    -----
    One vector-Jacobian product for the whole batch gives every sample's vᵀJ only when
    samples are processed independently; layers that mix samples (batch norm in train mode,
    :class:`~powerlaw_lib.models.Whitening`) add cross-sample derivatives, as in the
    reference implementation of Hoffman et al.
    """
    if not _is_int(n_proj) or n_proj < 1:
        raise ValueError(f"n_proj must be an integer >= 1, got {n_proj!r}")
    inputs = x.detach().clone().requires_grad_(True)
    logits = model(inputs)  # [B, C]
    if logits.ndim != 2:
        raise ValueError(f"model must return logits of shape [B, C], got {tuple(logits.shape)}")
    batch, n_classes = logits.shape
    device = generator.device if generator is not None else logits.device
    total = logits.new_zeros((), dtype=torch.float32 if logits.dtype != torch.float64 else torch.float64)
    for _ in range(n_proj):
        v = torch.randn(batch, n_classes, generator=generator, device=device, dtype=total.dtype)
        v = (v / v.norm(dim=1, keepdim=True)).to(device=logits.device, dtype=logits.dtype)  # [B, C], unit rows
        # [B, ...] = vᵀJ per sample; the forward graph is kept for the next projections and for backward
        (vjp,) = torch.autograd.grad(logits, inputs, grad_outputs=v, create_graph=True, retain_graph=True)
        total = total + n_classes * vjp.to(total.dtype).pow(2).sum() / batch
    return 0.5 * total / n_proj


class JacobianRegularizer:
    """β · :func:`jacobian_penalty` (Hoffman et al. 2019; Nassar et al. 2020, §4.3: β = 0.01).

    ``reg(model, x)`` returns the differentiable scalar penalty.
    """

    def __init__(self, beta: float = 0.01, n_proj: int = 1) -> None:
        self.beta = _check_nonnegative("beta", beta)
        if not _is_int(n_proj) or n_proj < 1:
            raise ValueError(f"n_proj must be an integer >= 1, got {n_proj!r}")
        self.n_proj = int(n_proj)

    def __repr__(self) -> str:
        return f"JacobianRegularizer(beta={self.beta}, n_proj={self.n_proj})"

    def __call__(
        self,
        model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return self.beta * jacobian_penalty(model, x, n_proj=self.n_proj, generator=generator)
