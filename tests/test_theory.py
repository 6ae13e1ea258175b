"""Tests of powerlaw_lib.theory: synthetic codes of Stringer et al. 2019 and their smoothness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from powerlaw_lib import spectrum, theory


# --------------------------------------------------------------------------- critical exponent


@pytest.mark.parametrize("d, expected", [(1, 3.0), (2, 2.0), (3, 5.0 / 3.0), (10, 1.2)])
def test_critical_alpha_is_one_plus_two_over_d(d, expected):
    assert theory.critical_alpha(d) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_critical_alpha_rejects_bad_dimension(bad):
    with pytest.raises(ValueError, match="d must be"):
        theory.critical_alpha(bad)


@pytest.mark.parametrize("alpha, d, expected", [
    (2.0, 1, 0.5), (2.5, 1, 0.75), (3.0, 1, 1.0), (5.0, 1, 1.0),
    (1.5, 2, 0.5), (2.0, 2, 1.0), (0.9, 1, 0.0), (1.0, 3, 0.0),
])
def test_predicted_distance_exponent(alpha, d, expected):
    assert theory.predicted_distance_exponent(alpha, d) == pytest.approx(expected)


def test_predicted_exponent_reaches_one_exactly_at_the_critical_alpha():
    for d in (1, 2, 3, 5):
        a = theory.critical_alpha(d)
        assert theory.predicted_distance_exponent(a - 1e-3, d) < 1.0
        assert theory.predicted_distance_exponent(a, d) == pytest.approx(1.0)


# --------------------------------------------------------------------------- Fourier modes


def test_wavevectors_one_dimension_are_cos_sin_pairs_of_increasing_frequency():
    k, is_sine = theory.fourier_wavevectors(7, 1)
    assert k[:, 0].tolist() == [1, 1, 2, 2, 3, 3, 4]
    assert is_sine.tolist() == [False, True, False, True, False, True, False]


def test_wavevectors_two_dimensions_are_ordered_by_norm_and_distinct_up_to_sign():
    k, is_sine = theory.fourier_wavevectors(400, 2)
    pairs = k[::2]  # one row per wavevector
    norms = np.linalg.norm(pairs, axis=1)
    assert np.all(np.diff(norms) >= 0)
    as_set = {tuple(v) for v in pairs}
    assert len(as_set) == len(pairs)
    assert not any((-a, -b) in as_set for a, b in as_set)  # k and -k give the same modes
    # brute force: the 200 shortest half-lattice vectors have the same norms
    axis = np.arange(-20, 21)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    half = (grid[:, 0] > 0) | ((grid[:, 0] == 0) & (grid[:, 1] > 0))
    expected = np.sort(np.linalg.norm(grid[half], axis=1))[:200]
    np.testing.assert_allclose(norms, expected)


def _grid_covariance_eigenvalues(responses: np.ndarray) -> np.ndarray:
    """Independent oracle: population covariance (divided by S) via numpy."""
    centred = responses - responses.mean(axis=0)
    return np.sort(np.linalg.eigvalsh(centred.T @ centred / len(responses)))[::-1]


@pytest.mark.parametrize("d, n_features, n_per_dim", [(1, 120, 256), (2, 120, 32)])
@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.5])
def test_code_spectrum_on_a_dense_grid_is_exactly_the_power_law(d, n_features, n_per_dim, alpha):
    stimuli = theory.stimulus_grid(n_per_dim, d)
    code = theory.FourierCode(n_features, alpha, d=d, seed=3, mix=True)
    eigs = _grid_covariance_eigenvalues(code(stimuli))
    np.testing.assert_allclose(eigs, np.arange(1, n_features + 1) ** -alpha, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.8, 1.0, 2.0, 3.0])
def test_fit_power_law_recovers_alpha_from_the_code(alpha):
    stimuli = theory.stimulus_grid(1200, 1)  # [1200, 1], alias-free for 500 modes
    responses = theory.random_fourier_code(stimuli, 500, alpha, seed=1)  # [1200, 500]
    fit = spectrum.fit_power_law(spectrum.eigenspectrum(responses), ranks=(11, 500))
    assert fit.alpha == pytest.approx(alpha, rel=0.02)


def test_random_fourier_code_accepts_angles_and_one_dimensional_stimuli():
    angles = np.linspace(0, 2 * np.pi, 50, endpoint=False)
    r_angles = theory.random_fourier_code(angles, 10, 2.0, seed=0, period=2 * np.pi)
    r_unit = theory.random_fourier_code(angles[:, None] / (2 * np.pi), 10, 2.0, seed=0)
    np.testing.assert_allclose(r_angles, r_unit, atol=1e-12)
    r_torch = theory.random_fourier_code(torch.from_numpy(angles / (2 * np.pi)), 10, 2.0, seed=0)
    np.testing.assert_allclose(r_torch, r_unit, atol=1e-12)


def test_code_is_periodic_and_seeded():
    code = theory.FourierCode(30, 2.0, d=2, seed=5, mix=True)
    s = np.random.default_rng(0).uniform(size=(20, 2))
    np.testing.assert_allclose(code(s), code(s + np.array([1.0, -2.0])), atol=1e-9)
    np.testing.assert_array_equal(code(s), theory.FourierCode(30, 2.0, d=2, seed=5, mix=True)(s))
    assert not np.allclose(code(s), theory.FourierCode(30, 2.0, d=2, seed=6, mix=True)(s))


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_features=0, alpha=1.0), "n_features"),
    (dict(n_features=5, alpha=0.0), "alpha"),
    (dict(n_features=5, alpha=1.0, d=0), "d must"),
    (dict(n_features=5, alpha=1.0, period=-1.0), "period"),
])
def test_fourier_code_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        theory.FourierCode(**kwargs)


def test_fourier_code_rejects_stimuli_of_the_wrong_dimension():
    with pytest.raises(ValueError, match="stimuli must have shape"):
        theory.FourierCode(5, 1.0, d=2)(np.zeros((4, 3)))


# --------------------------------------------------------------------------- distances


@pytest.mark.parametrize("d", [1, 2])
def test_closed_form_increment_matches_a_grid_average(d):
    code = theory.FourierCode(40, 1.5, d=d, seed=2, mix=True)
    n_per_dim = 64 if d == 2 else 512
    stimuli = theory.stimulus_grid(n_per_dim, d)
    shift = np.array([0.013, -0.041][:d])
    empirical = np.mean(np.sum((code(stimuli + shift) - code(stimuli)) ** 2, axis=1))
    assert code.expected_squared_increment(shift) == pytest.approx(empirical, rel=1e-9)


@pytest.mark.parametrize("d, n_features", [(1, 1000), (2, 4000)])
def test_measured_distance_curve_agrees_with_closed_form(d, n_features):
    code = theory.FourierCode(n_features, 2.0, d=d, seed=0)
    deltas = np.geomspace(3e-3, 0.1, 5)
    curve = theory.response_distance_curve(code, deltas, n_stimuli=256, seed=1)
    np.testing.assert_allclose(curve.rms_distance, theory.expected_rms_distance(code, deltas), rtol=0.05)
    assert np.all(curve.mean_distance <= curve.rms_distance + 1e-12)  # Jensen
    np.testing.assert_allclose(curve.ratio, curve.mean_distance / deltas)


def test_mixing_changes_neither_distances_nor_spectrum_only_neurons():
    s = theory.stimulus_grid(300, 1)
    plain = theory.FourierCode(60, 2.0, seed=4, mix=False)
    mixed = theory.FourierCode(60, 2.0, seed=4, mix=True)
    np.testing.assert_allclose(np.linalg.norm(plain(s) - plain(s + 0.01), axis=1),
                               np.linalg.norm(mixed(s) - mixed(s + 0.01), axis=1), rtol=1e-9)
    assert not np.allclose(plain(s), mixed(s))


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5, 4.0, 5.0])
def test_one_dimensional_distance_slope_is_min_one_half_alpha_minus_one(alpha):
    # closed form, d = 1: E||dr||^2 ~ delta^(alpha - 1) for 1 < alpha < 3, delta^2 above
    code = theory.FourierCode(4000, alpha, d=1)
    deltas = np.geomspace(2e-3, 3e-2, 8)  # between 1 / f_max = 5e-4 and the period
    slope = theory.scaling_exponent(deltas, theory.expected_rms_distance(code, deltas))
    assert slope == pytest.approx(theory.predicted_distance_exponent(alpha, 1), abs=0.06)


def test_measured_slope_separates_codes_below_and_above_the_critical_alpha():
    deltas = np.geomspace(2e-3, 3e-2, 6)
    slopes = {}
    for alpha in (2.0, 4.5):
        code = theory.FourierCode(2000, alpha, d=1, seed=0)
        curve = theory.response_distance_curve(code, deltas, n_stimuli=128, seed=0)
        slopes[alpha] = theory.scaling_exponent(curve.deltas, curve.mean_distance)
    assert slopes[4.5] == pytest.approx(1.0, abs=0.03)
    assert slopes[2.0] == pytest.approx(0.5, abs=0.08)


def test_two_dimensional_slopes_follow_d_alpha_minus_one_over_two():
    deltas = np.geomspace(1e-2, 0.1, 6)
    below = theory.FourierCode(20000, 1.5, d=2)
    above = theory.FourierCode(20000, 3.0, d=2)
    s_below = theory.scaling_exponent(deltas, theory.expected_rms_distance(below, deltas, n_directions=16))
    s_above = theory.scaling_exponent(deltas, theory.expected_rms_distance(above, deltas, n_directions=16))
    assert s_below == pytest.approx(0.5, abs=0.08)
    assert s_above == pytest.approx(1.0, abs=0.03)


def test_ratio_blows_up_with_more_modes_only_below_the_critical_alpha():
    # below 1 / f_max every finite code is linear, with slope^2 ~ sum_n lambda_n f_n^2:
    # that sum diverges with the number of modes for alpha < 3 (d = 1) and converges above
    delta = np.array([1e-5])
    for alpha, grows in ((2.0, True), (4.0, False)):
        small = theory.expected_rms_distance(theory.FourierCode(200, alpha), delta)[0]
        large = theory.expected_rms_distance(theory.FourierCode(20000, alpha), delta)[0]
        assert bool(large / small > 3.0) is grows
        assert large / small > 1.0


def test_scaling_exponent_recovers_a_known_power_and_checks_input():
    x = np.geomspace(1e-3, 1, 10)
    assert theory.scaling_exponent(x, 3 * x**0.7) == pytest.approx(0.7)
    assert theory.scaling_exponent(x, np.where(x < 0.01, x, 0.01 * (x / 0.01) ** 0.2),
                                   delta_range=(0.02, 1)) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="delta_range"):
        theory.scaling_exponent(x, x, delta_range=(2, 3))
    with pytest.raises(ValueError, match="distances"):
        theory.scaling_exponent(x, -x)
    with pytest.raises(ValueError, match="deltas"):
        theory.scaling_exponent(np.zeros(3), np.ones(3))


# --------------------------------------------------------------------------- projections, samples


def test_pca_projection_of_a_fourier_code_is_its_leading_modes():
    s = theory.stimulus_grid(256, 1)
    code = theory.FourierCode(20, 2.0, seed=0, mix=True)
    proj = theory.project_responses(code(s), 3, method="pca")  # [256, 3]
    modes = code.modes(s)[:, :3]
    for j in range(3):
        assert abs(np.corrcoef(proj[:, j], modes[:, j])[0, 1]) == pytest.approx(1.0, abs=1e-9)
    few = s[::16]  # 16 stimuli < 20 units: the Gram-matrix route gives the same projection
    centred = code(few) - code(few).mean(axis=0)
    _, _, vh = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.abs(theory.project_responses(code(few), 3)), np.abs(centred @ vh[:3].T),
                               atol=1e-10)
    rand = theory.project_responses(code(s), 2, method="random", seed=1)
    assert rand.shape == (256, 2)
    centred = code(s) - code(s).mean(axis=0)
    # orthonormal directions: the projection cannot exceed the norm of the responses
    assert np.all(np.linalg.norm(rand, axis=1) <= np.linalg.norm(centred, axis=1) + 1e-12)
    with pytest.raises(ValueError, match="method"):
        theory.project_responses(code(s), 2, method="ica")
    with pytest.raises(ValueError, match="n_components"):
        theory.project_responses(code(s), 21)


def test_sampled_responses_have_the_requested_population_spectrum():
    for rotate in (False, True):
        x = theory.sample_power_law_responses(20000, 30, alpha=1.0, seed=0, rotate=rotate)  # [20000, 30]
        eigs = _grid_covariance_eigenvalues(x)
        np.testing.assert_allclose(eigs, 1.0 / np.arange(1, 31), rtol=0.08)
    q = theory.random_orthogonal(30, seed=2)
    np.testing.assert_allclose(q.T @ q, np.eye(30), atol=1e-12)


def test_small_batches_give_rank_deficient_spectra():
    x = theory.sample_power_law_responses(20, 50, alpha=1.0, seed=0)
    eigs = spectrum.eigenspectrum(x)
    assert np.all(np.abs(eigs[19:]) < 1e-10)  # rank <= B - 1 = 19
    assert eigs[18] > 1e-3


def test_noisy_repeats_share_the_signal_and_cvpca_removes_the_noise_floor():
    signal = theory.sample_power_law_responses(4000, 40, alpha=2.0, seed=0)
    a, b = theory.noisy_repeats(signal, noise_std=0.1, seed=1)
    np.testing.assert_allclose(np.std(a - signal), 0.1, rtol=0.02)
    assert np.corrcoef((a - signal).ravel(), (b - signal).ravel())[0, 1] == pytest.approx(0.0, abs=0.01)
    plain = spectrum.eigenspectrum(a)
    cross = spectrum.cvpca(a, b)
    truth = np.arange(1, 41) ** -2.0
    # the tail of plain PCA sits on the noise floor (0.01); cvPCA follows the signal
    assert plain[-1] > 0.5 * 0.01
    assert abs(np.log(cross[20:30].mean() / truth[20:30].mean())) < 0.3
    with pytest.raises(ValueError, match="noise_std"):
        theory.noisy_repeats(signal, -1.0)
