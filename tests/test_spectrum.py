"""Tests of powerlaw_lib.spectrum against numpy oracles, closed forms and published values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from powerlaw_lib import data, spectrum
from powerlaw_lib.spectrum import (
    CovarianceAccumulator,
    PowerLawFit,
    covariance,
    cvpca,
    effective_dimension,
    eigenspectrum,
    eigh_descending,
    fit_power_law,
    power_law_spectrum,
)


def _activations(n: int = 300, w: int = 12, offset: float = 50.0, seed: int = 0) -> np.ndarray:
    """Correlated float32 activations with a large common offset (tests centring)."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((w, w))
    return (rng.standard_normal((n, w)) @ mixing + offset).astype(np.float32)  # [n, w]


# --------------------------------------------------------------------------- covariance


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 64, 299, 300, 10_000])
def test_covariance_matches_numpy_cov_float32(chunk_size):
    h = _activations()
    oracle = np.cov(h.astype(np.float64), rowvar=False)  # same float32 values, float64 maths
    got = covariance(torch.from_numpy(h), chunk_size=chunk_size)
    assert got.dtype == torch.float64 and got.shape == (12, 12)
    np.testing.assert_allclose(got.numpy(), oracle, rtol=0, atol=2e-6 * np.abs(oracle).max())
    assert torch.equal(got, got.T)


def test_covariance_float64_and_numpy_input_are_exact():
    h = _activations().astype(np.float64) * 1.37
    oracle = np.cov(h, rowvar=False)
    np.testing.assert_allclose(covariance(h, chunk_size=13).numpy(), oracle, rtol=1e-12, atol=1e-10)


def test_covariance_is_differentiable():
    h64 = torch.from_numpy(_activations(n=40, w=5).astype(np.float64)).requires_grad_(True)
    weights = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (covariance(h64, chunk_size=9) * weights).sum().backward()
    ref = h64.detach().clone().requires_grad_(True)
    centred = ref - ref.mean(dim=0)
    ((centred.T @ centred / 39) * weights).sum().backward()
    torch.testing.assert_close(h64.grad, ref.grad)


@pytest.mark.parametrize("bad", [np.zeros((1, 4)), np.zeros(5), np.zeros((2, 3, 4))])
def test_covariance_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="h must have shape"):
        covariance(bad)


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True])
def test_covariance_rejects_bad_chunk_size(chunk_size):
    with pytest.raises(ValueError, match="chunk_size"):
        covariance(np.zeros((4, 3), dtype=np.float32), chunk_size=chunk_size)


# --------------------------------------------------------------------------- eigenspectrum


def test_eigenspectrum_descending_sums_to_trace_and_matches_numpy():
    h = _activations(n=200, w=30)
    lam = eigenspectrum(torch.from_numpy(h), chunk_size=50)
    cov = np.cov(h.astype(np.float64), rowvar=False)
    assert lam.dtype == np.float64 and lam.shape == (30,)
    assert np.all(np.diff(lam) <= 0)
    np.testing.assert_allclose(lam.sum(), np.trace(cov), rtol=1e-6)
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(cov)[::-1], rtol=1e-5, atol=1e-6 * lam[0])


def test_eigh_descending_reconstructs_and_pairs_columns():
    cov = covariance(_activations(n=100, w=8))
    eigvals, eigvecs = eigh_descending(cov)
    assert eigvals.dtype == eigvecs.dtype == torch.float64
    assert torch.all(eigvals[:-1] >= eigvals[1:])
    torch.testing.assert_close(cov @ eigvecs, eigvecs * eigvals)  # column k: C v_k = lambda_k v_k
    torch.testing.assert_close(eigvecs @ torch.diag(eigvals) @ eigvecs.T, cov)


@pytest.mark.parametrize("bad", [np.zeros((3, 4)), np.zeros(3), np.zeros((0, 0))])
def test_eigh_descending_rejects_non_square(bad):
    with pytest.raises(ValueError, match="cov must be a square"):
        eigh_descending(bad)


# --------------------------------------------------------------------------- power-law fit


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("weighted", [True, False])
def test_fit_recovers_exact_power_law(alpha, weighted):
    lam = power_law_spectrum(1000, alpha, scale=3.5)
    fit = fit_power_law(lam, ranks=(11, 500), weighted=weighted)
    assert abs(fit.alpha - alpha) < 0.02 * alpha
    assert fit.alpha == pytest.approx(alpha, abs=1e-9)
    assert fit.ranks == (11, 500) and fit.n_points == 490 and fit.weighted is weighted
    # predict() gives the normalized spectrum (sum over all 1000 values = 1)
    n = np.array([11, 100, 500])
    np.testing.assert_allclose(fit.predict(n), lam[n - 1] / lam.sum(), rtol=1e-9)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0])
def test_fit_recovers_power_law_with_multiplicative_noise(alpha):
    rng = np.random.default_rng(0)
    lam = power_law_spectrum(1000, alpha) * np.exp(0.05 * rng.standard_normal(1000))
    fit = fit_power_law(lam, ranks=(11, 500), weighted=True)
    assert abs(fit.alpha - alpha) < 0.02 * alpha


def test_fit_matches_stringer_2019_published_values():
    ranks, lam = data.load_stringer_spectrum()
    assert fit_power_law(lam, ranks=(11, 500)).alpha == pytest.approx(0.9717, abs=1e-3)
    assert fit_power_law(lam, ranks=(12, 500)).alpha == pytest.approx(0.9734, abs=1e-3)
    assert fit_power_law(lam, ranks=(11, 500), weighted=False).alpha == pytest.approx(0.988, abs=1e-3)


def test_fit_clips_upper_rank_and_skips_non_positive_values():
    lam = power_law_spectrum(100, 1.5)
    fit = fit_power_law(lam, ranks=(11, 500))
    assert fit.ranks == (11, 100) and fit.n_points == 90
    holes = lam.copy()
    holes[[19, 49]] = [0.0, -1e-3]  # ranks 20 and 50
    fit_holes = fit_power_law(holes, ranks=(11, 500))
    assert fit_holes.n_points == 88
    # normalization changes only the intercept, not the exponent
    assert fit_holes.alpha == pytest.approx(1.5, abs=1e-9)


def test_fit_accepts_torch_input():
    lam = torch.from_numpy(power_law_spectrum(600, 1.2))
    assert fit_power_law(lam).alpha == pytest.approx(1.2, abs=1e-9)


@pytest.mark.parametrize("ranks", [(0, 500), (-1, 10), (20, 10), (11, 12), (999, 2000), (11,), "ab"])
def test_fit_rejects_bad_ranks(ranks):
    with pytest.raises(ValueError, match="ranks"):
        fit_power_law(power_law_spectrum(1000, 1.0), ranks=ranks)


def test_fit_rejects_too_few_positive_values():
    lam = power_law_spectrum(50, 1.0)
    lam[12:] = -1e-6  # only ranks 11, 12 positive in 11..50
    with pytest.raises(ValueError, match="ranks"):
        fit_power_law(lam, ranks=(11, 50))


@pytest.mark.parametrize("bad", [np.zeros((3, 3)), np.array([]), np.array([1.0, np.nan, 0.5]),
                                 -power_law_spectrum(100, 1.0)])
def test_fit_rejects_bad_eigenvalues(bad):
    with pytest.raises(ValueError, match="eigenvalues"):
        fit_power_law(bad, ranks=(1, 50))


def test_power_law_fit_is_frozen_and_predict_validates():
    fit = fit_power_law(power_law_spectrum(100, 1.0), ranks=(1, 100))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.alpha = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="n must be positive"):
        fit.predict([0, 1])
    assert isinstance(fit, PowerLawFit)


# --------------------------------------------------------------------------- effective dimension


@pytest.mark.parametrize(("eigenvalues", "fraction", "expected"), [
    (np.ones(10), 0.9, 9),
    (np.ones(10), 1.0, 10),
    (np.ones(10), 0.05, 1),
    (np.ones(10), 0.91, 10),
    (np.array([6.0, 3.0, 1.0]), 0.9, 2),
    (np.array([6.0, 3.0, 1.0]), 0.6, 1),
    (np.array([6.0, 3.0, 1.0]), 0.61, 2),
    (np.array([5.0, 0.0, 0.0]), 1.0, 1),
])
def test_effective_dimension_closed_forms(eigenvalues, fraction, expected):
    assert effective_dimension(eigenvalues, fraction) == expected


def test_effective_dimension_of_flat_spectrum_is_ceil_of_fraction():
    for fraction in (0.1, 0.33, 0.5, 0.9, 0.999):
        assert effective_dimension(np.full(1000, 0.7), fraction) == int(np.ceil(fraction * 1000 - 1e-9))


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.01, float("nan")])
def test_effective_dimension_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        effective_dimension(np.ones(5), fraction)


def test_effective_dimension_rejects_zero_total():
    with pytest.raises(ValueError, match="eigenvalues"):
        effective_dimension(np.zeros(5))


# --------------------------------------------------------------------------- cvPCA


def test_cvpca_of_identical_repeats_is_plain_pca():
    h = _activations(n=60, w=20).astype(np.float64)
    np.testing.assert_allclose(cvpca(h, h), eigenspectrum(h), rtol=1e-9, atol=1e-12 * np.abs(h).max() ** 2)
    wide = _activations(n=15, w=40, seed=3)  # more neurons than stimuli: 15 components
    cv = cvpca(torch.from_numpy(wide), torch.from_numpy(wide))
    assert cv.shape == (15,) and cv.dtype == np.float64
    np.testing.assert_allclose(cv, eigenspectrum(wide)[:15], rtol=1e-5, atol=1e-6 * cv[0])


def test_cvpca_is_unbiased_where_plain_pca_is_inflated_by_noise():
    """Signal with a 1/n spectrum plus noise independent between the two repeats."""
    rng = np.random.default_rng(0)
    n_stimuli, n_neurons, noise_var = 500, 200, 0.02
    basis = np.linalg.qr(rng.standard_normal((n_neurons, n_neurons)))[0]
    signal = (rng.standard_normal((n_stimuli, n_neurons)) * np.sqrt(power_law_spectrum(n_neurons, 1.0))) @ basis.T
    repeat_a = signal + np.sqrt(noise_var) * rng.standard_normal(signal.shape)
    repeat_b = signal + np.sqrt(noise_var) * rng.standard_normal(signal.shape)

    true = eigenspectrum(signal)[:50]  # the signal's own spectrum, the target
    cross_validated = cvpca(repeat_a, repeat_b)[:50]
    plain = eigenspectrum(repeat_a)[:50]
    assert np.mean(np.abs(cross_validated / true - 1)) < 0.15
    assert np.mean(plain / true - 1) > 0.5  # plain PCA is inflated by the noise variance
    alpha_true = fit_power_law(true, ranks=(2, 50)).alpha
    assert abs(fit_power_law(cross_validated, ranks=(2, 50)).alpha - alpha_true) < 0.05
    assert fit_power_law(plain, ranks=(2, 50)).alpha < alpha_true - 0.2


def test_cvpca_rejects_bad_shapes():
    with pytest.raises(ValueError, match="responses_b"):
        cvpca(np.zeros((10, 5)), np.zeros((10, 6)))
    with pytest.raises(ValueError, match="responses_a"):
        cvpca(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="responses_a"):
        cvpca(np.zeros((1, 5)), np.zeros((1, 5)))


# --------------------------------------------------------------------------- synthetic spectra


def test_power_law_spectrum_values():
    np.testing.assert_allclose(power_law_spectrum(4, 2.0, scale=3.0), [3.0, 0.75, 1 / 3, 0.1875])
    assert power_law_spectrum(1, 1.0).shape == (1,)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"n": 0, "alpha": 1.0}, "n"), ({"n": 2.0, "alpha": 1.0}, "n"),
    ({"n": 5, "alpha": float("inf")}, "alpha"),
    ({"n": 5, "alpha": 1.0, "scale": 0.0}, "scale"), ({"n": 5, "alpha": 1.0, "scale": -1.0}, "scale"),
])
def test_power_law_spectrum_rejects_bad_input(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field} must"):
        power_law_spectrum(**kwargs)


# --------------------------------------------------------------------------- streaming covariance


def _chunks(a, sizes):
    """Split the rows of `a` into consecutive chunks of the given sizes."""
    edges = np.cumsum([0, *sizes])
    assert edges[-1] == len(a)
    return [a[lo:hi] for lo, hi in zip(edges[:-1], edges[1:])]


@pytest.mark.parametrize("gram_block", [512, 5, 3])  # 1 block, 2 uneven blocks, 4 blocks
def test_accumulator_streams_uneven_chunks_exactly(monkeypatch, gram_block):
    monkeypatch.setattr(spectrum, "GRAM_BLOCK", gram_block)
    h = _activations(n=300, w=12)  # mean 50: the first-chunk shift must handle the offset
    oracle = np.cov(h.astype(np.float64), rowvar=False)
    acc = CovarianceAccumulator(12)
    for chunk in _chunks(h, [7, 100, 1, 192]):
        acc.update(torch.from_numpy(chunk))
    got = acc.covariance()
    assert acc.count == 300 and got.dtype == torch.float64 and torch.equal(got, got.T)
    np.testing.assert_allclose(got.numpy(), oracle, rtol=0, atol=2e-6 * np.abs(oracle).max())
    h64 = h.astype(np.float64) * 1.37
    acc64 = CovarianceAccumulator(12)
    for chunk in _chunks(h64, [150, 150]):
        acc64.update(chunk)  # numpy chunks are accepted too
    np.testing.assert_allclose(acc64.covariance().numpy(), np.cov(h64, rowvar=False), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(covariance(h64, chunk_size=64).numpy(), np.cov(h64, rowvar=False),
                               rtol=1e-12, atol=1e-10)


def test_accumulator_takes_bf16_inference_chunks_and_ignores_autocast():
    h = torch.from_numpy(_activations(n=400, w=9, offset=0.5)).bfloat16()  # values exact in bf16
    oracle = np.cov(h.double().numpy(), rowvar=False)
    acc = CovarianceAccumulator(9, shift=torch.zeros(9))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for chunk in h.split(128):
            acc.update(chunk)
    got = acc.covariance()  # outside inference mode
    np.testing.assert_allclose(got.numpy(), oracle, rtol=0, atol=2e-6 * np.abs(oracle).max())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16 Gram would miss this by ~1e-3
        under_autocast = covariance(h.float())
    np.testing.assert_allclose(under_autocast.numpy(), oracle, rtol=0, atol=2e-6 * np.abs(oracle).max())


def test_accumulator_errors():
    with pytest.raises(ValueError, match="width"):
        CovarianceAccumulator(0)
    with pytest.raises(ValueError, match="shift"):
        CovarianceAccumulator(3, shift=np.zeros(4))
    acc = CovarianceAccumulator(3)
    with pytest.raises(ValueError, match=r"chunk must have shape \[m, 3\]"):
        acc.update(np.zeros((5, 4)))
    acc.update(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        acc.covariance()


@pytest.mark.parametrize("n, w", [(40, 120), (300, 100), (101, 100)])
def test_covariance_spectrum_matches_the_full_decomposition_with_fewer_or_more_samples(n, w):
    """Oracle: eigh of the [w, w] covariance. With n - 1 < w the Gram route must give the
    same nonzero eigenvalues, zeros beyond the rank, and the same leading eigenvectors."""
    from powerlaw_lib.spectrum import covariance_spectrum, eigh_descending

    g = torch.Generator().manual_seed(3)
    h = (torch.randn(n, w, generator=g, dtype=torch.float64)
         * torch.linspace(3.0, 0.1, w, dtype=torch.float64) + 0.7)     # [n, w], not centred
    vals_ref, vecs_ref = eigh_descending(covariance(h))
    vals, vecs = covariance_spectrum(h, vectors=6)
    assert vals.shape == (w,) and vecs.shape == (w, 6)
    np.testing.assert_allclose(vals, vals_ref.numpy(), rtol=1e-9, atol=1e-11)
    cosines = (vecs * vecs_ref[:, :6]).sum(0).abs()                    # same up to sign
    np.testing.assert_allclose(cosines.numpy(), 1.0, atol=1e-9)
    only, none = covariance_spectrum(h)
    assert none is None and np.allclose(only, vals, rtol=1e-12, atol=1e-12)
    if n - 1 < w:
        assert np.all(vals[n:] == 0.0)
        with pytest.raises(ValueError, match="at most the covariance's rank"):
            covariance_spectrum(h, vectors=n)
