"""Eigenspectra of representations, power-law fits, effective dimension and cvPCA.

References
----------
Stringer, Pachitariu, Steinmetz, Carandini, Harris (2019), "High-dimensional geometry of
population responses in visual cortex", Nature 571, 361-365: cross-validated PCA and
the power-law fit of the eigenspectrum (weighted least squares of log lambda_n on
log n, weights 1/n, ranks 11..500, spectrum normalized to sum 1).

Nassar, Sokol, Chung, Harris, Park (2020), "On 1/n neural representation and adversarial
robustness", NeurIPS: eigenspectra of hidden layers (eq. 2 uses the covariance
eigenvalues lambda_n) and the effective dimension of section 4.1.

Conventions: ranks are 1-based (``n = 1`` is the largest eigenvalue); logarithms are
natural logarithms; analysis results are numpy float64 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from .validation import as_tensor as _as_tensor

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "CovarianceAccumulator",
    "PowerLawFit",
    "covariance",
    "cvpca",
    "effective_dimension",
    "eigenspectrum",
    "covariance_spectrum",
    "eigh_descending",
    "fit_power_law",
    "power_law_spectrum",
    "symmetric_eigh_float64",
]

#: Rows per chunk in :func:`covariance` when ``chunk_size`` is None.
DEFAULT_CHUNK_SIZE = 8192
#: Approximate column-block width of the block-triangular Gram products.
GRAM_BLOCK = 512

# Rounding slack of effective_dimension's cumulative fraction.
_CUMULATIVE_TOLERANCE = 1e-12


def _as_vector(a, name: str) -> np.ndarray:
    """1-D finite float64 numpy copy of a tensor or array."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    v = np.array(a, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite")
    return v


def covariance(h, chunk_size: int | None = None) -> torch.Tensor:
    """Covariance of the columns of ``h``: centred, divided by ``n - 1``.

    Two passes over the rows, in chunks: the first computes the float64 column mean,
    the second feeds the chunks, shifted by that mean, to a
    :class:`CovarianceAccumulator` (Gram matrices in the working precision -- float32
    for float32 / float16 / bfloat16 / integer input, float64 for float64 input --
    summed into float64). The remaining offset between the rounded shift and the
    exact mean is removed with the float64 column sums (``S - n d d^T``), so centring
    is exact up to float64 rounding. A [60000, 2000] float32 activation matrix never
    needs a float64 copy. Any enclosing autocast is disabled.

    The result is differentiable with respect to ``h`` (the shift is a constant).

    Parameters
    ----------
    h
        ``[n, w]`` activations (rows = samples), tensor or array, any float dtype; n >= 2.
    chunk_size
        Rows per chunk (>= 1); None uses :data:`DEFAULT_CHUNK_SIZE`.

    Returns
    -------
    torch.Tensor
        float64 ``[w, w]`` on the device of ``h``.
    """
    h = _as_tensor(h, "h")
    if h.ndim != 2 or h.shape[0] < 2:
        raise ValueError(f"h must have shape [n, w] with n >= 2, got {tuple(h.shape)}")
    if not (h.is_floating_point() or h.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"h must be a real float (or integer) array, got dtype {h.dtype}")
    if chunk_size is None:
        chunk_size = DEFAULT_CHUNK_SIZE
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1 or None, got {chunk_size!r}")
    n, w = h.shape
    with torch.no_grad():  # the shift is a constant: pass 1 of two
        total = torch.zeros(w, dtype=torch.float64, device=h.device)
        for start in range(0, n, chunk_size):
            total += h[start:start + chunk_size].sum(dim=0, dtype=torch.float64)
    accumulator = CovarianceAccumulator(w, shift=total / n)
    for start in range(0, n, chunk_size):
        accumulator.update(h[start:start + chunk_size])
    return accumulator.covariance()


class CovarianceAccumulator:
    """Covariance of the columns of a matrix that arrives in row chunks (streaming).

    Each chunk ``[m, w]`` is shifted by a constant ``shift`` (the column mean of the
    first chunk unless one is given), its Gram matrix ``c^T c`` is formed in the working
    precision (float32, or float64 for float64 chunks) and added to a float64
    accumulator, together with the float64 column sums of the shifted chunk. The
    covariance is then ``(S - n d d^T) / (n - 1)`` with ``d`` the mean of the shifted
    rows: exact for any shift, and free of cancellation when the shift is close to the
    mean. This is how the full-training-set covariance of a layer (Nassar et al. 2020,
    section 3) is formed without ever holding the ``[n, w]`` activations.

    Chunks that need no gradient form only the upper block triangle of their Gram matrix
    (blocks of about :data:`GRAM_BLOCK` columns), the matrix being symmetric. A chunk that
    requires grad (with grad mode on) takes a full differentiable product, so
    :func:`covariance` stays differentiable. Any enclosing autocast is disabled.

    Parameters
    ----------
    width
        Number of columns ``w`` (>= 1).
    shift
        Optional ``[w]`` constant subtracted from every row (no gradient flows through it).

    Examples
    --------
    >>> acc = CovarianceAccumulator(2000)
    >>> for chunk in chunks:            # e.g. [5000, 2000] activations each
    ...     acc.update(chunk)
    >>> cov = acc.covariance()          # float64 [2000, 2000]
    """

    def __init__(self, width: int, shift=None) -> None:
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width!r}")
        self.width = int(width)
        self._shift: torch.Tensor | None = None  # [w] float64
        if shift is not None:
            shift = _as_tensor(shift, "shift").detach().to(torch.float64)
            if shift.shape != (self.width,):
                raise ValueError(f"shift must have shape [{self.width}], got {tuple(shift.shape)}")
            self._shift = shift
        self.count = 0  # rows seen
        self._gram: torch.Tensor | None = None  # [w, w] float64, full (differentiable path)
        self._gram_upper: torch.Tensor | None = None  # [w, w] float64, upper block triangle
        self._offset: torch.Tensor | None = None  # [w] float64, sum of shifted rows

    def update(self, chunk) -> None:
        """Add the rows of ``chunk`` ``[m, w]`` (tensor or array, float or integer)."""
        chunk = _as_tensor(chunk, "chunk")
        if chunk.ndim != 2 or chunk.shape[1] != self.width:
            raise ValueError(f"chunk must have shape [m, {self.width}], got {tuple(chunk.shape)}")
        if chunk.shape[0] == 0:
            return
        work = torch.float64 if chunk.dtype == torch.float64 else torch.float32
        differentiable = torch.is_grad_enabled() and chunk.requires_grad
        with torch.autocast(device_type=chunk.device.type, enabled=False):
            if self._shift is None:
                self._shift = chunk.detach().sum(dim=0, dtype=torch.float64) / chunk.shape[0]
            shift = self._shift.to(device=chunk.device, dtype=work)
            if self._offset is None:
                self._offset = torch.zeros(self.width, dtype=torch.float64, device=chunk.device)
            if differentiable:
                shifted = chunk.to(work) - shift  # [m, w]
                gram = (shifted.mT @ shifted).to(torch.float64)  # [w, w]
                self._gram = gram if self._gram is None else self._gram + gram
                self._offset = self._offset + shifted.sum(dim=0, dtype=torch.float64)
            else:
                with torch.no_grad():
                    shifted = (chunk.detach().to(work) - shift).contiguous()  # [m, w]
                    self._add_gram_upper(shifted)
                    self._offset += shifted.sum(dim=0, dtype=torch.float64)
        self.count += int(chunk.shape[0])

    def _add_gram_upper(self, shifted: torch.Tensor) -> None:
        """Add the upper block triangle of ``shifted^T shifted`` to the float64 accumulator.

        The columns are split into blocks of about :data:`GRAM_BLOCK` and only the block
        rows' products with the blocks at and right of the diagonal are formed, e.g.
        62.5 % of the multiply-adds of the full product for 4 blocks (a symmetric rank-k
        update inside the same GEMM library and thread pool as the rest of torch).
        """
        if self._gram_upper is None:
            self._gram_upper = torch.zeros(self.width, self.width, dtype=torch.float64,
                                           device=shifted.device)
        n_blocks = max(1, round(self.width / GRAM_BLOCK))
        edges = [round(i * self.width / n_blocks) for i in range(n_blocks + 1)]
        for lo, hi in zip(edges[:-1], edges[1:]):
            block = shifted[:, lo:hi].mT @ shifted[:, lo:]  # [hi - lo, w - lo], working precision
            self._gram_upper[lo:hi, lo:] += block

    def covariance(self) -> torch.Tensor:
        """float64 ``[w, w]`` covariance of all rows added so far (centred, / (n - 1))."""
        if self.count < 2:
            raise ValueError(f"the covariance needs at least 2 rows, got {self.count}")
        gram = self._gram
        if self._gram_upper is not None:
            upper = torch.triu(self._gram_upper)  # diagonal blocks hold both triangles
            full = upper + torch.triu(upper, diagonal=1).mT  # [w, w], symmetric
            gram = full if gram is None else gram + full
        mean_offset = self._offset / self.count  # [w], ~0 when the shift is the mean
        cov = (gram - self.count * torch.outer(mean_offset, mean_offset)) / (self.count - 1)
        return 0.5 * (cov + cov.mT)  # exactly symmetric


def symmetric_eigh_float64(cov) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix, in float64, on the CPU.

    LAPACK's divide-and-conquer driver (``dsyevd``) through SciPy. On the 2-core shared
    machine this project was measured on, torch's ``linalg.eigh`` of a 2000 x 2000 float64
    covariance took between 1.3 s and 30 s depending on the background load (its many
    small parallel level-2 BLAS steps each wait for a descheduled thread), while this
    took 1.6 s consistently. Same decomposition up to rounding (eigenvectors up to sign).

    Parameters
    ----------
    cov
        Symmetric ``[w, w]`` tensor or array; only the lower triangle is read.

    Returns
    -------
    eigvals, eigvecs : torch.Tensor
        float64 ``[w]`` ascending and ``[w, w]`` (column k belongs to ``eigvals[k]``), on
        the CPU.
    """
    matrix = _as_tensor(cov, "cov").detach().to("cpu", torch.float64).numpy()
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"cov must be a square [w, w] matrix with w >= 1, got shape {matrix.shape}")
    eigvals, eigvecs = scipy.linalg.eigh(matrix, driver="evd", check_finite=False)
    return torch.from_numpy(eigvals), torch.from_numpy(np.ascontiguousarray(eigvecs))


def eigh_descending(cov) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a symmetric matrix, eigenvalues in descending order.

    The same float64 LAPACK decomposition as :func:`symmetric_eigh_float64` (which the
    regularizer's refresh uses), reordered; results are on the CPU.

    Parameters
    ----------
    cov
        Symmetric ``[w, w]`` tensor or array (computed in float64; the lower triangle is read).

    Returns
    -------
    eigvals : torch.Tensor
        float64 ``[w]``, descending.
    eigvecs : torch.Tensor
        float64 ``[w, w]``; column ``k`` belongs to ``eigvals[k]``.
    """
    eigvals, eigvecs = symmetric_eigh_float64(cov)  # ascending, CPU
    return eigvals.flip(0), eigvecs.flip(1)


def covariance_spectrum(h, vectors: int = 0) -> tuple[np.ndarray, torch.Tensor | None]:
    """Eigenvalues of the covariance of ``h`` (descending) and, if asked, its top eigenvectors.

    Equal, up to float64 rounding, to ``eigh_descending(covariance(h))``, computed the cheap
    way. With fewer samples than columns (``n - 1 < w``) the covariance has rank at most
    ``n - 1``: its nonzero eigenvalues are those of the ``[n, n]`` Gram matrix of the
    centred rows divided by ``n - 1``, and its eigenvectors ``H_c^T u / sqrt((n - 1) λ)``
    for the Gram eigenvectors ``u`` (an ``n x n`` decomposition instead of ``w x w``); the
    other ``w - n + 1`` eigenvalues are 0. Otherwise the ``[w, w]`` covariance is
    decomposed, eigenvectors computed only when ``vectors > 0``.

    Parameters
    ----------
    h
        ``[n, w]`` activations, n >= 2.
    vectors
        How many leading eigenvectors to return (0: none); at most the rank, ``min(n - 1, w)``
        when ``n - 1 < w``.

    Returns
    -------
    eigvals : np.ndarray
        float64 ``[w]``, descending.
    eigvecs : torch.Tensor or None
        float64 ``[w, vectors]`` on the CPU (column k belongs to ``eigvals[k]``), or None.
    """
    h = _as_tensor(h, "h")
    if h.ndim != 2 or h.shape[0] < 2:
        raise ValueError(f"h must have shape [n, w] with n >= 2, got {tuple(h.shape)}")
    n, w = h.shape
    if isinstance(vectors, bool) or not isinstance(vectors, (int, np.integer)) or vectors < 0:
        raise ValueError(f"vectors must be an integer >= 0, got {vectors!r}")
    if n - 1 >= w:
        matrix = covariance(h).detach().to("cpu", torch.float64).numpy()
        if vectors == 0:
            return scipy.linalg.eigh(matrix, eigvals_only=True, driver="evd",
                                     check_finite=False)[::-1].copy(), None
        vals, vecs = eigh_descending(matrix)
        return vals.numpy(), vecs[:, :vectors].contiguous()
    if vectors > n - 1:
        raise ValueError(f"vectors must be at most the covariance's rank n - 1 = {n - 1} "
                         f"(n = {n} samples < w = {w} columns), got {vectors}")
    centred = h.detach().to("cpu", torch.float64)
    centred = centred - centred.mean(dim=0)                    # [n, w]
    gram = (centred @ centred.mT / (n - 1)).numpy()            # [n, n]
    gram_vals, gram_vecs = scipy.linalg.eigh(0.5 * (gram + gram.T), driver="evd",
                                             check_finite=False)  # ascending
    vals = np.zeros(w)
    vals[:n] = gram_vals[::-1]
    if vectors == 0:
        return vals, None
    top = torch.from_numpy(np.ascontiguousarray(gram_vecs[:, ::-1][:, :vectors]))  # [n, k]
    scale = torch.from_numpy(np.sqrt((n - 1) * vals[:vectors]))                     # [k]
    return vals, (centred.mT @ top) / scale                                          # [w, k]


def eigenspectrum(h, chunk_size: int | None = None) -> np.ndarray:
    """Eigenvalues of the covariance of ``h`` (:func:`covariance`), descending.

    These are the lambda_n of Nassar et al. 2020 (eq. 2) and Stringer et al. 2019.
    Rounding can leave tiny negative values at the tail of a rank-deficient spectrum;
    they are kept as computed (not clamped). :func:`fit_power_law` ignores
    non-positive values.

    Parameters
    ----------
    h
        ``[n, w]`` activations, n >= 2.
    chunk_size
        Passed to :func:`covariance`.

    Returns
    -------
    np.ndarray
        float64 ``[w]``, descending; sums to the trace of the covariance.
    """
    cov = covariance(h, chunk_size=chunk_size).detach()
    eigvals = torch.linalg.eigvalsh(cov)  # ascending, float64
    return eigvals.flip(0).cpu().numpy()


@dataclass(frozen=True)
class PowerLawFit:
    """Result of :func:`fit_power_law`: ``log lambda_n = intercept - alpha * log n``.

    Attributes
    ----------
    alpha
        Power-law exponent (minus the fitted slope).
    intercept
        Natural log of the fitted *normalized* eigenvalue at rank 1.
    ranks
        ``(lo, hi)``: 1-based inclusive ranks used (``hi`` clipped to the spectrum length).
    weighted
        Whether the 1/n weights of Stringer et al. 2019 were used.
    n_points
        Number of (positive) eigenvalues in the fit.
    """

    alpha: float
    intercept: float
    ranks: tuple[int, int]
    weighted: bool
    n_points: int

    def predict(self, n) -> np.ndarray:
        """Fitted normalized eigenvalue ``exp(intercept) * n ** -alpha`` at rank(s) ``n``.

        Parameters
        ----------
        n
            1-based rank(s), scalar or array; must be > 0.

        Returns
        -------
        np.ndarray
            float64, same shape as ``n``.
        """
        ranks = np.asarray(n, dtype=np.float64)
        if np.any(ranks <= 0):
            raise ValueError("n must be positive 1-based ranks")
        return np.exp(self.intercept - self.alpha * np.log(ranks))


def fit_power_law(eigenvalues, ranks: tuple[int, int] = (11, 500), weighted: bool = True) -> PowerLawFit:
    """Fit ``lambda_n ~ n ** -alpha`` as in Stringer et al. 2019.

    The spectrum is normalized to sum 1 over ALL given eigenvalues, then
    ``log lambda_n`` is regressed on ``log n`` by least squares over the 1-based
    inclusive ranks ``lo .. hi``, with weights ``1/n`` when ``weighted`` (Stringer et
    al. 2019, Methods; their code's ``get_powerlaw``). ``alpha = -slope``.

    ``hi`` is clipped to the spectrum length. Non-positive eigenvalues in the range
    (e.g. cvPCA values below zero, or rounding noise) have no logarithm and are
    excluded from the fit. Stringer et al.'s published fit of their V1 spectrum
    (``data.load_stringer_spectrum``) gives alpha = 0.9717 for ranks (11, 500) and
    0.9734 for ranks (12, 500).

    Parameters
    ----------
    eigenvalues
        1-D spectrum in rank order (descending for a covariance spectrum), finite,
        with a positive sum.
    ranks
        ``(lo, hi)`` 1-based inclusive, ``1 <= lo <= hi``.
    weighted
        Use weights ``1/n`` (True) or ordinary least squares (False).

    Returns
    -------
    PowerLawFit
    """
    values = _as_vector(eigenvalues, "eigenvalues")
    try:
        lo, hi = (int(r) for r in ranks)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ranks must be a pair (lo, hi) of integers, got {ranks!r}") from exc
    if lo < 1 or hi < lo:
        raise ValueError(f"ranks must satisfy 1 <= lo <= hi (1-based, inclusive), got {ranks!r}")
    total = values.sum()
    if not total > 0:
        raise ValueError(f"eigenvalues must have a positive sum, got {total}")
    hi = min(hi, values.size)
    n = np.arange(lo, hi + 1, dtype=np.float64)  # [m] 1-based ranks (empty if lo > size)
    lam = values[lo - 1:hi] / total  # [m] normalized
    keep = lam > 0
    if keep.sum() < 3:
        raise ValueError(f"ranks {ranks!r} leave {int(keep.sum())} positive eigenvalues in a spectrum "
                         f"of length {values.size}; at least 3 are needed")
    x, y = np.log(n[keep]), np.log(lam[keep])
    w = 1.0 / n[keep] if weighted else np.ones_like(x)
    x_mean, y_mean = np.average(x, weights=w), np.average(y, weights=w)
    slope = np.sum(w * (x - x_mean) * (y - y_mean)) / np.sum(w * (x - x_mean) ** 2)
    intercept = y_mean - slope * x_mean
    return PowerLawFit(alpha=float(-slope), intercept=float(intercept), ranks=(lo, hi),
                       weighted=bool(weighted), n_points=int(keep.sum()))


def effective_dimension(eigenvalues, fraction: float = 0.9) -> int:
    """Smallest 1-based rank ``n`` whose cumulative variance reaches ``fraction`` of the total.

    Nassar et al. 2020, section 4.1 (the rank where the cumulative explained variance
    reaches 90%).

    Parameters
    ----------
    eigenvalues
        1-D spectrum in descending order, positive sum.
    fraction
        In ``(0, 1]``.

    Returns
    -------
    int
        ``n`` in ``1 .. len(eigenvalues)``.

    Notes
    -----
    A cumulative fraction within ``1e-12`` below ``fraction`` counts as reached, so
    that rounding in the cumulative sum does not move an exact tie to the next rank.
    """
    values = _as_vector(eigenvalues, "eigenvalues")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    cumulative = np.cumsum(values)  # [w]
    if not cumulative[-1] > 0:
        raise ValueError(f"eigenvalues must have a positive sum, got {cumulative[-1]}")
    explained = cumulative / cumulative[-1]  # last entry exactly 1
    return int(np.argmax(explained >= fraction - _CUMULATIVE_TOLERANCE)) + 1


def cvpca(responses_a, responses_b) -> np.ndarray:
    """Cross-validated PCA spectrum (Stringer et al. 2019, Methods "cvPCA").

    The principal components (neuron-space directions) come from repeat A alone,
    centred over stimuli. Both centred repeats are projected on them, and the k-th
    eigenvalue is the covariance of the two projections,
    ``sum_i proj_a[i, k] * proj_b[i, k] / (n_stimuli - 1)``. Noise independent between
    repeats averages out, so the estimate of the stimulus-related variance is unbiased.

    Parameters
    ----------
    responses_a, responses_b
        ``[n_stimuli, n_neurons]`` responses to two repeats of the same stimuli
        (same order), n_stimuli >= 2.

    Returns
    -------
    np.ndarray
        float64 ``[min(n_stimuli, n_neurons)]`` in the order of A's PCs (descending
        variance of A); not re-sorted, and values can be negative.
    """
    a = _as_tensor(responses_a, "responses_a").detach().to("cpu", torch.float64)
    b = _as_tensor(responses_b, "responses_b").detach().to("cpu", torch.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"responses_a must have shape [n_stimuli, n_neurons] with n_stimuli >= 2, "
                         f"got {tuple(a.shape)}")
    if b.shape != a.shape:
        raise ValueError(f"responses_b must have the shape of responses_a {tuple(a.shape)}, got {tuple(b.shape)}")
    a = a - a.mean(dim=0)  # [S, N]
    b = b - b.mean(dim=0)  # [S, N]
    _, _, vh = torch.linalg.svd(a, full_matrices=False)  # vh [K, N], K = min(S, N)
    proj_a = a @ vh.T  # [S, K]
    proj_b = b @ vh.T  # [S, K]
    return ((proj_a * proj_b).sum(dim=0) / (a.shape[0] - 1)).numpy()


def power_law_spectrum(n: int, alpha: float, scale: float = 1.0) -> np.ndarray:
    """Exact power-law spectrum ``scale * k ** -alpha`` for ranks ``k = 1 .. n``.

    Parameters
    ----------
    n
        Number of eigenvalues, >= 1.
    alpha
        Exponent (finite).
    scale
        Value at rank 1, > 0.

    Returns
    -------
    np.ndarray
        float64 ``[n]``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not np.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    return float(scale) * np.arange(1, int(n) + 1, dtype=np.float64) ** (-float(alpha))
