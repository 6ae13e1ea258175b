"""Stringer et al. 2019's smoothness theory, made concrete with synthetic codes.

Stringer, Pachitariu, Steinmetz, Carandini & Harris (2019, Nature 571, 361-365) prove
that a population code of a ``d``-dimensional stimulus manifold whose eigenspectrum
decays more slowly than ``n^-(1 + 2/d)`` cannot be differentiable: small changes of
the stimulus then move the population response by disproportionately large amounts.

This module builds codes for which everything is known in closed form:

* :class:`FourierCode` -- a population whose ``n``-th response dimension is a Fourier
  mode of the stimulus torus ``[0, period)^d`` (modes ordered by ``|frequency|``),
  with variance ``scale * n^-alpha``, random phases, and (optionally) a random
  orthogonal mixing into "neurons". Over uniformly distributed stimuli its
  covariance has exactly the eigenvalues ``scale * n^-alpha``.
* :func:`response_distance_curve` -- the measured mean distance ``||r(s + delta u) - r(s)||``
  in response space against the stimulus distance ``delta``; and
  :func:`expected_rms_distance`, its closed form. A differentiable code has distance
  ``∝ delta`` as ``delta -> 0``; for ``1 < alpha < 1 + 2/d`` the distance scales as
  ``delta^(d (alpha - 1) / 2)`` (:func:`predicted_distance_exponent`), so the ratio
  ``distance / delta`` grows without bound as ``delta -> 0`` (and as the number of
  modes grows).
* Finite-sample helpers for the estimation chapter: Gaussian samples with a known
  power-law covariance (:func:`sample_power_law_responses`) and two noisy repeats of
  the same responses (:func:`noisy_repeats`), the setting of cross-validated PCA
  (Stringer et al. 2019, Methods "Cross-validated PCA").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import scipy.linalg
import torch

from .validation import check_int as _check_positive_int, check_positive as _check_positive_float

__all__ = [
    "DistanceCurve",
    "FourierCode",
    "critical_alpha",
    "expected_rms_distance",
    "fourier_wavevectors",
    "noisy_repeats",
    "predicted_distance_exponent",
    "project_responses",
    "random_fourier_code",
    "random_orthogonal",
    "response_distance_curve",
    "sample_power_law_responses",
    "scaling_exponent",
    "stimulus_grid",
]

ArrayLike = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------- validation


def _as_float64(name: str, x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    out = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return out


# --------------------------------------------------------------------------- the theory


def critical_alpha(d: int) -> float:
    """Critical power-law exponent ``1 + 2/d`` for a ``d``-dimensional stimulus manifold.

    Stringer et al. 2019 (main text and Supplementary Note "the eigenspectrum of smooth
    codes"): if the stimulus set is a ``d``-dimensional manifold and the code is
    differentiable, the eigenspectrum must decay at least as fast as ``n^-(1 + 2/d)``.

    Parameters
    ----------
    d
        Manifold dimension, an integer >= 1.

    Returns
    -------
    float
        ``1 + 2 / d`` (3 for d = 1, 2 for d = 2, approaching 1 for high-dimensional
        stimulus sets such as natural images).
    """
    d = _check_positive_int("d", d)
    return 1.0 + 2.0 / d


def predicted_distance_exponent(alpha: float, d: int) -> float:
    """Exponent ``p`` of the small-distance law ``||r(s + delta) - r(s)|| ∝ delta^p``.

    For a code with infinitely many Fourier modes whose variances fall as ``n^-alpha``
    on a ``d``-dimensional torus, the ``n``-th mode has frequency ``|k_n| ∝ n^(1/d)``,
    and the mean squared increment is

    ``E||Δr||² = Σ_n 2 λ_n (1 - cos(2π k_n·Δ)) ~ δ² Σ_{n < δ^-d} n^(2/d - α) + Σ_{n > δ^-d} n^-α``,

    which scales as ``δ^(d (α - 1))`` for ``1 < α < 1 + 2/d`` and as ``δ²`` above the
    critical exponent (with a logarithmic correction exactly at it). Hence
    ``p = min(1, d (α - 1) / 2)``; ``p = 1`` is a differentiable (Lipschitz) code.
    For ``α <= 1`` the total variance diverges and ``p = 0``.
    This is the mechanism behind Stringer et al. 2019's bound ``α > 1 + 2/d``.

    Parameters
    ----------
    alpha
        Power-law exponent of the eigenspectrum, > 0.
    d
        Manifold dimension, >= 1.

    Returns
    -------
    float
        ``p`` in [0, 1].
    """
    alpha = _check_positive_float("alpha", alpha)
    d = _check_positive_int("d", d)
    return float(np.clip(d * (alpha - 1.0) / 2.0, 0.0, 1.0))


# --------------------------------------------------------------------------- Fourier codes


def fourier_wavevectors(n_modes: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavevectors of the first ``n_modes`` real Fourier modes on ``[0, 1)^d``.

    Each nonzero wavevector ``k`` of the half lattice (first nonzero coordinate > 0)
    gives two real modes, ``cos(2π k·s)`` then ``sin(2π k·s)``. Wavevectors are ordered
    by ``|k|`` (ties broken lexicographically), so mode ``n`` has frequency
    ``|k_n| ≈ (n / ω_d)^(1/d)`` (ω_d: the volume of the unit ball) for large ``n``.

    Parameters
    ----------
    n_modes
        Number of real modes, >= 1.
    d
        Stimulus dimension, >= 1.

    Returns
    -------
    wavevectors : np.ndarray
        int64 ``[n_modes, d]``; consecutive cos/sin modes share a row value.
    is_sine : np.ndarray
        bool ``[n_modes]``; True for the sine member of each pair.
    """
    n_modes = _check_positive_int("n_modes", n_modes)
    d = _check_positive_int("d", d)
    n_vectors = (n_modes + 1) // 2
    radius = 1
    while True:
        axis = np.arange(-radius, radius + 1)
        lattice = np.stack(np.meshgrid(*([axis] * d), indexing="ij"), axis=-1).reshape(-1, d)  # [(2R+1)^d, d]
        nonzero = lattice != 0
        first = np.argmax(nonzero, axis=1)  # index of the first nonzero coordinate
        half = nonzero.any(axis=1) & (lattice[np.arange(len(lattice)), first] > 0)
        norm2 = (lattice**2).sum(axis=1)
        keep = half & (norm2 <= radius**2)  # the whole ball of this radius lies in the cube
        if keep.sum() >= n_vectors:
            break
        radius *= 2
    vectors = lattice[keep]
    order = np.lexsort(tuple(vectors[:, j] for j in range(d - 1, -1, -1)) + ((vectors**2).sum(axis=1),))
    vectors = vectors[order][:n_vectors]  # [n_vectors, d]
    wavevectors = np.repeat(vectors, 2, axis=0)[:n_modes].astype(np.int64)  # [n_modes, d]
    is_sine = np.tile([False, True], n_vectors)[:n_modes]
    return wavevectors, is_sine


def random_orthogonal(n: int, seed: int = 0) -> np.ndarray:
    """A Haar-distributed random orthogonal matrix (QR of a Gaussian matrix, signs fixed).

    Parameters
    ----------
    n
        Size, >= 1.
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    np.ndarray
        float64 ``[n, n]`` with orthonormal columns.
    """
    n = _check_positive_int("n", n)
    rng = np.random.default_rng(seed)
    q, r = torch.linalg.qr(torch.from_numpy(rng.standard_normal((n, n))))  # float64; faster than numpy's QR
    return (q * torch.sign(torch.diagonal(r))).numpy()  # [n, n]


@dataclass(frozen=True, eq=False)
class FourierCode:
    """A population code of the torus ``[0, period)^d`` with a power-law eigenspectrum.

    Mode ``n`` (1-based) is ``u_n(s) = sqrt(2 λ_n) cos(2π k_n·s / period + φ_n)`` with
    ``k_n`` from :func:`fourier_wavevectors` (sine members of a pair get ``φ - π/2``),
    a random phase ``φ`` per wavevector, and variance ``λ_n = scale * n^-alpha``. The
    response is ``r(s) = u(s) Q`` with ``Q`` the identity (``mix=False``, the default:
    neuron n is mode n) or a random orthogonal mixing (``mix=True``: each "neuron"
    mixes all modes, as random Fourier features do).
    Over uniformly distributed stimuli (or a grid with more than ``2 max|k_i|`` points
    per axis) the modes are uncorrelated with variances ``λ_n``, so the covariance
    eigenvalues are exactly ``scale * n^-alpha``: the synthetic codes of Stringer et
    al. 2019 (Fig. 4), for which the smoothness theory can be checked in closed form.

    Parameters
    ----------
    n_features
        Number of modes (= number of neurons), >= 1.
    alpha
        Power-law exponent of the variances, > 0.
    d
        Stimulus dimension, >= 1.
    seed
        Seed of the phases and the mixing.
    period
        Period of the stimulus torus along each axis (1 for stimuli in [0, 1),
        ``2π`` for angles).
    mix
        Mix the modes with a random orthogonal matrix (does not change spectra or
        distances, only what a single neuron looks like). Off by default: the mixing
        costs an ``N x N`` QR decomposition.
    scale
        Variance of the first mode.
    """

    n_features: int
    alpha: float
    d: int = 1
    seed: int = 0
    period: float = 1.0
    mix: bool = False
    scale: float = 1.0
    wavevectors: np.ndarray = field(init=False, repr=False)  # [N, d] int64
    variances: np.ndarray = field(init=False, repr=False)  # [N] float64
    phases: np.ndarray = field(init=False, repr=False)  # [N] float64
    mixing: np.ndarray | None = field(init=False, repr=False)  # [N, N] or None

    def __post_init__(self) -> None:
        n = _check_positive_int("n_features", self.n_features)
        _check_positive_float("alpha", self.alpha)
        d = _check_positive_int("d", self.d)
        _check_positive_float("period", self.period)
        _check_positive_float("scale", self.scale)
        wavevectors, is_sine = fourier_wavevectors(n, d)
        rng = np.random.default_rng(self.seed)
        pair_phase = rng.uniform(0.0, 2 * np.pi, size=(n + 1) // 2)  # one phase per wavevector
        phases = np.repeat(pair_phase, 2)[:n] - np.where(is_sine, np.pi / 2, 0.0)  # [N]
        variances = self.scale * np.arange(1, n + 1, dtype=np.float64) ** (-float(self.alpha))  # [N]
        mixing = random_orthogonal(n, seed=int(rng.integers(2**31))) if self.mix else None
        object.__setattr__(self, "wavevectors", wavevectors)
        object.__setattr__(self, "variances", variances)
        object.__setattr__(self, "phases", phases)
        object.__setattr__(self, "mixing", mixing)

    def _stimuli(self, stimuli: ArrayLike) -> np.ndarray:
        s = _as_float64("stimuli", stimuli)
        if s.ndim == 1 and self.d == 1:
            s = s[:, None]
        if s.ndim != 2 or s.shape[1] != self.d:
            raise ValueError(f"stimuli must have shape [S, {self.d}] (or [S] when d = 1), got {s.shape}")
        return s  # [S, d]

    def modes(self, stimuli: ArrayLike) -> np.ndarray:
        """Unmixed Fourier modes ``u(s)``: float64 ``[S, n_features]``, column n has variance λ_n."""
        s = self._stimuli(stimuli)  # [S, d]
        angle = s @ (2 * np.pi / self.period * self.wavevectors.T)  # [S, N]
        angle += self.phases
        np.cos(angle, out=angle)
        angle *= np.sqrt(2 * self.variances)
        return angle  # [S, N]

    def __call__(self, stimuli: ArrayLike) -> np.ndarray:
        """Responses ``r(s)``: float64 ``[S, n_features]`` for stimuli ``[S, d]``."""
        u = self.modes(stimuli)  # [S, N]
        return u if self.mixing is None else u @ self.mixing  # [S, N]

    def expected_squared_increment(self, displacement: ArrayLike) -> np.ndarray:
        """Closed-form ``E_s ||r(s + Δ) - r(s)||²`` over uniform stimuli ``s`` on the torus.

        ``Σ_n 2 λ_n (1 - cos(2π k_n·Δ / period))`` (the mixing is orthogonal and the
        phases drop out of the average).

        Parameters
        ----------
        displacement
            ``[..., d]`` displacement vectors Δ (or ``[...]`` scalars when d = 1).

        Returns
        -------
        np.ndarray
            float64 ``[...]``.
        """
        delta = _as_float64("displacement", displacement)
        if self.d == 1 and (delta.ndim == 0 or delta.shape[-1] != 1):
            delta = delta[..., None]
        if delta.shape[-1] != self.d:
            raise ValueError(f"displacement must have last dimension d = {self.d}, got shape {delta.shape}")
        half_angle = np.pi * (delta @ self.wavevectors.T) / self.period  # [..., N]
        return (4 * self.variances * np.sin(half_angle) ** 2).sum(axis=-1)  # 2λ(1 - cos θ), stable as θ -> 0


def random_fourier_code(stimuli: ArrayLike, n_features: int, alpha: float, seed: int = 0, *,
                        period: float = 1.0, mix: bool = False) -> np.ndarray:
    """Responses of a random Fourier code with variances ``n^-alpha`` (see :class:`FourierCode`).

    Parameters
    ----------
    stimuli
        ``[S, d]`` points of the torus ``[0, period)^d`` (``[S]`` for d = 1; pass
        ``period=2*np.pi`` for angles).
    n_features
        Number of modes / neurons.
    alpha
        Power-law exponent (Stringer et al. 2019).
    seed
        Seed of phases and mixing.

    Returns
    -------
    np.ndarray
        float64 ``[S, n_features]``.
    """
    s = _as_float64("stimuli", stimuli)
    d = 1 if s.ndim == 1 else s.shape[1]
    return FourierCode(n_features, alpha, d=d, seed=seed, period=period, mix=mix)(s)


def stimulus_grid(n_per_dim: int, d: int = 1, period: float = 1.0) -> np.ndarray:
    """A uniform grid on the torus ``[0, period)^d``.

    Returns
    -------
    np.ndarray
        float64 ``[n_per_dim**d, d]``, points ``period * i / n_per_dim``.
    """
    n_per_dim = _check_positive_int("n_per_dim", n_per_dim)
    d = _check_positive_int("d", d)
    period = _check_positive_float("period", period)
    axis = period * np.arange(n_per_dim) / n_per_dim
    return np.stack(np.meshgrid(*([axis] * d), indexing="ij"), axis=-1).reshape(-1, d)


# --------------------------------------------------------------------------- smoothness


@dataclass(frozen=True, eq=False)
class DistanceCurve:
    """Distances in response space against stimulus distance (Stringer et al. 2019, Fig. 4).

    Attributes
    ----------
    deltas
        float64 ``[K]`` stimulus distances δ (stimulus units).
    mean_distance
        float64 ``[K]`` mean over stimuli of ``||r(s + δ u) - r(s)||``.
    rms_distance
        float64 ``[K]`` root mean square of the same distances.
    n_stimuli
        Number of base stimuli averaged over.
    """

    deltas: np.ndarray
    mean_distance: np.ndarray
    rms_distance: np.ndarray
    n_stimuli: int

    @property
    def ratio(self) -> np.ndarray:
        """``mean_distance / delta``: bounded as δ → 0 exactly when the code is Lipschitz."""
        return self.mean_distance / self.deltas


def _unit_directions(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    if d == 1:
        return np.ones((n, 1))
    u = rng.standard_normal((n, d))
    return u / np.linalg.norm(u, axis=1, keepdims=True)  # [n, d]


def _check_deltas(deltas: ArrayLike) -> np.ndarray:
    out = _as_float64("deltas", deltas)
    if out.ndim != 1 or out.size == 0 or np.any(out <= 0):
        raise ValueError(f"deltas must be a non-empty 1-D array of values > 0, got shape {out.shape}")
    return out


def response_distance_curve(code: Callable[[np.ndarray], ArrayLike], deltas: ArrayLike, *,
                            d: int | None = None, n_stimuli: int = 256, seed: int = 0,
                            period: float | None = None) -> DistanceCurve:
    """Measure how far a code moves nearby stimuli apart.

    For ``n_stimuli`` random base stimuli ``s`` (uniform on ``[0, period)^d``) and random
    unit directions ``u`` (the same for every δ), computes ``||r(s + δ u) - r(s)||``.
    A differentiable code gives distances ∝ δ for small δ; a code whose spectrum
    decays more slowly than ``n^-(1+2/d)`` gives distances ∝ δ^p with p < 1
    (Stringer et al. 2019; :func:`predicted_distance_exponent`).

    Parameters
    ----------
    code
        Callable mapping stimuli ``[S, d]`` to responses ``[S, N]`` (numpy or torch).
    deltas
        ``[K]`` stimulus distances, > 0.
    d
        Stimulus dimension; default ``code.d``.
    n_stimuli
        Number of base stimuli.
    seed
        Seed of the base stimuli and directions.
    period
        Side of the box the base stimuli are drawn from; default ``code.period`` or 1.

    Returns
    -------
    DistanceCurve
    """
    deltas = _check_deltas(deltas)
    d = _check_positive_int("d", d if d is not None else getattr(code, "d", None))
    n_stimuli = _check_positive_int("n_stimuli", n_stimuli)
    period = _check_positive_float("period", period if period is not None else getattr(code, "period", 1.0))
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.0, period, size=(n_stimuli, d))  # [S, d]
    direction = _unit_directions(n_stimuli, d, rng)  # [S, d]
    r0 = _as_float64("code(stimuli)", code(base))  # [S, N]
    mean, rms = np.empty(len(deltas)), np.empty(len(deltas))
    for i, delta in enumerate(deltas):
        dist = np.linalg.norm(_as_float64("code(stimuli)", code(base + delta * direction)) - r0, axis=1)  # [S]
        mean[i], rms[i] = dist.mean(), np.sqrt((dist**2).mean())
    return DistanceCurve(deltas, mean, rms, n_stimuli)


def expected_rms_distance(code: FourierCode, deltas: ArrayLike, n_directions: int = 64) -> np.ndarray:
    """Closed-form root-mean-square distance ``sqrt(E ||r(s + δ u) - r(s)||²)`` of a Fourier code.

    The average over stimuli is exact (:meth:`FourierCode.expected_squared_increment`);
    the average over directions ``u`` is exact for d = 1, uses ``n_directions`` evenly
    spaced angles in [0, π) for d = 2 and a fixed random set for d >= 3.

    Returns
    -------
    np.ndarray
        float64 ``[K]``.
    """
    deltas = _check_deltas(deltas)
    n_directions = _check_positive_int("n_directions", n_directions)
    if code.d == 1:
        directions = np.ones((1, 1))
    elif code.d == 2:
        theta = np.pi * np.arange(n_directions) / n_directions
        directions = np.stack([np.cos(theta), np.sin(theta)], axis=1)  # [D, 2]
    else:
        directions = _unit_directions(n_directions, code.d, np.random.default_rng(0))
    half_frequency = np.pi * (directions @ code.wavevectors.T) / code.period  # [D, N]
    weight = 4 * code.variances  # [N]; 2λ(1 - cos θ) = 4λ sin²(θ/2)
    squared = [(np.sin(delta * half_frequency) ** 2 @ weight).mean() for delta in deltas]  # K x [D] -> K
    return np.sqrt(np.asarray(squared, dtype=np.float64))  # [K]


def scaling_exponent(deltas: ArrayLike, distances: ArrayLike,
                     delta_range: tuple[float, float] | None = None) -> float:
    """Log-log slope of distance against δ (ordinary least squares).

    Parameters
    ----------
    deltas, distances
        ``[K]`` positive values.
    delta_range
        ``(lo, hi)``: use only ``lo <= δ <= hi`` (at least two points); default all.

    Returns
    -------
    float
        The slope ``p`` of ``log distance = p log δ + c``; 1 for a differentiable code.
    """
    x = _check_deltas(deltas)
    y = _as_float64("distances", distances)
    if y.shape != x.shape or np.any(y <= 0):
        raise ValueError(f"distances must be positive with the shape of deltas {x.shape}, got {y.shape}")
    keep = np.ones_like(x, dtype=bool)
    if delta_range is not None:
        lo, hi = delta_range
        keep = (x >= lo) & (x <= hi)
    if keep.sum() < 2:
        raise ValueError(f"delta_range must contain at least two of the deltas, got {delta_range}")
    slope, _ = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return float(slope)


def project_responses(responses: ArrayLike, n_components: int = 3, *,
                      method: Literal["pca", "random"] = "pca", seed: int = 0) -> np.ndarray:
    """Project centred responses onto their top principal components or random directions.

    The projection onto the first PCs of a Fourier code shows single Fourier modes
    (smooth for any α); a random projection mixes all modes and reveals the
    roughness of a code below the critical exponent (Stringer et al. 2019, Fig. 4).

    Parameters
    ----------
    responses
        ``[S, N]``.
    n_components
        Number of directions, 1 .. N.
    method
        ``"pca"`` (eigenvectors of the covariance, decreasing variance; signs are
        arbitrary) or ``"random"`` (orthonormal Haar-random directions).
    seed
        Seed of the random directions.

    Returns
    -------
    np.ndarray
        float64 ``[S, n_components]``.
    """
    r = _as_float64("responses", responses)
    if r.ndim != 2:
        raise ValueError(f"responses must have shape [S, N], got {r.shape}")
    n_components = _check_positive_int("n_components", n_components)
    if n_components > r.shape[1]:
        raise ValueError(f"n_components must be in 1 .. {r.shape[1]}, got {n_components}")
    centred = r - r.mean(axis=0)  # [S, N]
    if method == "pca":
        if r.shape[0] < r.shape[1]:  # fewer stimuli than units: eigenvectors of the [S, S] Gram matrix
            gram = centred @ centred.T  # [S, S]
            values, left = scipy.linalg.eigh(gram, subset_by_index=[len(gram) - n_components, len(gram) - 1])
            return left[:, ::-1] * np.sqrt(np.clip(values[::-1], 0.0, None))  # U_k s_k, [S, n_components]
        scatter = centred.T @ centred  # [N, N]
        _, vectors = scipy.linalg.eigh(scatter, subset_by_index=[len(scatter) - n_components, len(scatter) - 1])
        basis = vectors[:, ::-1]  # [N, n_components], decreasing variance
    elif method == "random":
        rng = np.random.default_rng(seed)
        basis, _ = np.linalg.qr(rng.standard_normal((r.shape[1], n_components)))  # [N, n_components] orthonormal
    else:
        raise ValueError(f"method must be 'pca' or 'random', got {method!r}")
    return centred @ basis  # [S, n_components]


# --------------------------------------------------------------------------- finite samples


def sample_power_law_responses(n_samples: int, width: int, alpha: float = 1.0, *, seed: int = 0,
                               scale: float = 1.0, rotate: bool = False) -> np.ndarray:
    """Gaussian responses whose population covariance has eigenvalues ``scale * n^-alpha``.

    Used to show what a covariance estimated from ``n_samples`` draws does to the
    spectrum (rank at most ``n_samples - 1``; why Nassar et al. 2020 need batches at
    least as large as the layer width).

    Parameters
    ----------
    n_samples
        Number of samples B, >= 1.
    width
        Number of units W, >= 1.
    alpha
        Power-law exponent of the true spectrum, > 0.
    seed
        Seed of the samples and of the rotation.
    rotate
        Rotate by a random orthogonal matrix (eigenvectors not axis-aligned). Spectra
        do not change; off by default because it costs a ``width x width`` QR.

    Returns
    -------
    np.ndarray
        float64 ``[n_samples, width]``.
    """
    n_samples = _check_positive_int("n_samples", n_samples)
    width = _check_positive_int("width", width)
    alpha = _check_positive_float("alpha", alpha)
    scale = _check_positive_float("scale", scale)
    rng = np.random.default_rng(seed)
    std = np.sqrt(scale * np.arange(1, width + 1, dtype=np.float64) ** -alpha)  # [W]
    x = rng.standard_normal((n_samples, width)) * std  # [B, W]
    return x @ random_orthogonal(width, seed=int(rng.integers(2**31))).T if rotate else x


def noisy_repeats(signal: ArrayLike, noise_std: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two repeats of the same responses with independent isotropic Gaussian noise.

    The setting of cross-validated PCA (Stringer et al. 2019, Methods): the stimulus-
    related signal is shared by the two repeats, the noise is not, so the covariance
    *between* repeats estimates the signal spectrum without the noise floor.

    Parameters
    ----------
    signal
        ``[S, N]`` noise-free responses.
    noise_std
        Standard deviation of the noise added to every entry, >= 0.
    seed
        Seed of the noise.

    Returns
    -------
    (repeat_1, repeat_2)
        float64 ``[S, N]`` each.
    """
    s = _as_float64("signal", signal)
    if s.ndim != 2:
        raise ValueError(f"signal must have shape [S, N], got {s.shape}")
    if isinstance(noise_std, bool) or not np.isfinite(noise_std) or noise_std < 0:
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    rng = np.random.default_rng(seed)
    return (s + noise_std * rng.standard_normal(s.shape),
            s + noise_std * rng.standard_normal(s.shape))
