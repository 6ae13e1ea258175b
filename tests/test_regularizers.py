"""Tests of powerlaw_lib.regularizers: Nassar et al. 2020 eq. 2, Gerum et al. 2022 slopes, Jacobian penalty."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from powerlaw_lib.data import load
from powerlaw_lib.models import MLP
from powerlaw_lib.spectrum import covariance
from powerlaw_lib.regularizers import (
    JacobianRegularizer,
    ReferenceEigenbasis,
    SlopeRegularizer,
    SpectralRegularizer,
    covariance_float64,
    jacobian_penalty,
    spectral_penalty,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- synthetic data


def _random_batch(batch: int, width: int, dtype=torch.float64) -> torch.Tensor:
    """Correlated, non-Gaussian representations with a decaying but not power-law spectrum."""
    mixing = torch.randn(width, width, dtype=torch.float64) * torch.logspace(0, -1.5, width, dtype=torch.float64)
    return torch.tanh(torch.randn(batch, width, dtype=torch.float64) @ mixing.T + 0.3).to(dtype)


def _exact_spectrum_batch(eigenvalues: torch.Tensor, batch: int) -> torch.Tensor:
    """h = z diag(√λ) Qᵀ with whitened z, so the batch covariance is exactly Q diag(λ) Qᵀ."""
    width = eigenvalues.shape[0]
    z = torch.randn(batch, width, dtype=torch.float64)
    z, _ = torch.linalg.qr(z - z.mean(0))  # orthonormal, centred columns
    z = z * math.sqrt(batch - 1)  # zᵀz / (B − 1) = I
    q, _ = torch.linalg.qr(torch.randn(width, width, dtype=torch.float64))
    return z @ torch.diag(eigenvalues.sqrt()) @ q.T + 0.7


def _power_law(width: int, alpha: float) -> torch.Tensor:
    return torch.arange(1, width + 1, dtype=torch.float64).pow(-alpha)


# ----------------------------------------------------------------------------- slow reference of eq. 2


def slow_spectral_penalty(h: torch.Tensor, basis: torch.Tensor, alpha: float, tau: int, beta: float) -> torch.Tensor:
    """Nassar et al. 2020, eq. 2, written out term by term (independent of the library)."""
    batch, width = h.shape
    mean = h.sum(dim=0) / batch
    cov = (h - mean).T @ (h - mean) / (batch - 1)  # as torch.cov
    lam = torch.diagonal(basis.T @ cov @ basis)
    lam = torch.sort(lam, descending=True).values
    lam_tau = lam[tau - 1].detach().item()  # κ is a constant: κ τ^-α = λ_τ
    total = torch.zeros((), dtype=h.dtype)
    for n in range(tau, width + 1):
        gamma = lam_tau * (tau / n) ** alpha
        r = lam[n - 1] / gamma - 1.0
        hinge = r if r.detach().item() > 0 else 0.0 * r
        total = total + r**2 + hinge
    return beta / width * total


@pytest.mark.parametrize(("alpha", "tau", "beta"), [(1.0, 10, 1.0), (1.0, 1, 2.0), (2.5, 4, 5.0), (0.7, 20, 0.3)])
def test_spectral_penalty_matches_slow_reference(alpha: float, tau: int, beta: float) -> None:
    reference = _random_batch(500, 24)
    reg = SpectralRegularizer(alpha=alpha, tau=tau, beta=beta)
    reg.refresh(reference)
    basis = reg.basis.eigenvectors.to(torch.float64)

    h = _random_batch(60, 24).requires_grad_(True)
    fast = reg(h)
    slow = slow_spectral_penalty(h, basis, alpha, tau, beta)
    assert fast.dtype == torch.float64
    assert float(slow.detach()) > 1e-3  # a non-trivial case
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=0)
    (grad_fast,) = torch.autograd.grad(fast, h)
    (grad_slow,) = torch.autograd.grad(slow, h)
    torch.testing.assert_close(grad_fast, grad_slow, rtol=1e-6, atol=1e-12)


def test_rayleigh_quotients_equal_batch_eigenvalues_after_refresh_on_that_batch() -> None:
    h = _random_batch(80, 20)
    reg = SpectralRegularizer(tau=5)
    reg.refresh(h)
    expected = torch.linalg.eigvalsh(torch.cov(h.T)).flip(0)
    quotients = reg.rayleigh_quotients(h)
    torch.testing.assert_close(quotients, expected, rtol=0, atol=1e-6 * float(expected[0]))
    torch.testing.assert_close(reg.basis.eigenvalues, expected, rtol=1e-10, atol=1e-14)
    assert torch.all(quotients[:-1] >= quotients[1:])

    via_cov = SpectralRegularizer(tau=5)
    via_cov.refresh_from_covariance(torch.cov(h.T).numpy())
    torch.testing.assert_close(via_cov.rayleigh_quotients(h), quotients, rtol=0, atol=1e-6 * float(expected[0]))


def test_reference_covariance_is_chunked_and_exact() -> None:
    h = _random_batch(1000, 12, dtype=torch.float32)
    expected = torch.cov(h.double().T)
    # float32 Gram matrices summed over up to 1000 rows: float32 rounding of the sums
    tolerance = dict(rtol=0, atol=2e-6 * float(expected.abs().max()))
    torch.testing.assert_close(covariance_float64(h, chunk_size=64), expected, **tolerance)
    torch.testing.assert_close(covariance_float64(h.numpy(), chunk_size=1000), expected, **tolerance)
    # one implementation: the wrapper is spectrum.covariance without gradient
    torch.testing.assert_close(covariance_float64(h, chunk_size=64), covariance(h, chunk_size=64), rtol=0, atol=0)
    torch.testing.assert_close(covariance_float64(h.double(), chunk_size=100), expected, rtol=1e-12, atol=1e-15)


def test_penalty_is_zero_on_an_exact_power_law() -> None:
    spectrum = _power_law(32, 1.3)
    assert float(spectral_penalty(spectrum, alpha=1.3, tau=3)) < 1e-12
    assert float(spectral_penalty(torch.rand(32).sort(descending=True).values, tau=32)) == 0.0  # only n = τ = N
    # a batch whose covariance has exactly that spectrum, through the whole pipeline
    h = _exact_spectrum_batch(spectrum, 200)
    reg = SpectralRegularizer(alpha=1.3, tau=3)
    reg.refresh(h)
    torch.testing.assert_close(reg.rayleigh_quotients(h), spectrum, rtol=0, atol=1e-6)
    assert float(reg(h)) < 1e-5
    wrong_alpha = SpectralRegularizer(alpha=0.5, tau=3)
    wrong_alpha.refresh(h)
    assert float(wrong_alpha(h)) > 1e-1


def test_penalty_penalizes_excess_variance_more_than_deficit() -> None:
    spectrum = _power_law(40, 1.0)
    above, below = spectrum.clone(), spectrum.clone()
    above[20], below[20] = spectrum[20] * 1.5, spectrum[20] * 0.5
    pen_above = float(spectral_penalty(above, alpha=1.0, tau=10))
    pen_below = float(spectral_penalty(below, alpha=1.0, tau=10))
    # (0.5² + 0.5) / 40 versus 0.5² / 40: the hinge term of eq. 2
    assert pen_above == pytest.approx(0.75 / 40, rel=1e-12)
    assert pen_below == pytest.approx(0.25 / 40, rel=1e-12)


def test_penalty_under_bf16_autocast_is_close_to_float32() -> None:
    h = _random_batch(300, 48, dtype=torch.float32)
    reg = SpectralRegularizer(alpha=1.0, tau=5, beta=1.0)
    reg.refresh(h)
    full = reg(h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = reg(h)
    assert full.dtype == torch.float32 and mixed.dtype == torch.float32
    assert torch.isfinite(mixed)
    assert float(mixed) == pytest.approx(float(full), rel=0.02)
    bf16_input = reg(h.to(torch.bfloat16))
    assert bf16_input.dtype == torch.float32
    assert float(bf16_input) == pytest.approx(float(full), rel=0.02)


def test_penalty_gradient_flows_to_a_model_but_not_to_the_basis() -> None:
    model = MLP((10, 16, 3))
    x = torch.rand(64, 10)
    reg = SpectralRegularizer(tau=2)
    with torch.no_grad():
        reg.refresh(model.forward_with_hidden(x)[1][0])
    _, (h,) = model.forward_with_hidden(x)
    penalty = reg(h)
    penalty.backward()
    assert model.blocks[0][0].weight.grad is not None
    assert torch.isfinite(model.blocks[0][0].weight.grad).all()
    assert not reg.basis.eigenvectors.requires_grad


def test_spectral_regularizer_errors() -> None:
    for kwargs, field in [({"alpha": 0.0}, "alpha"), ({"tau": 0}, "tau"), ({"tau": 2.5}, "tau"), ({"beta": -1.0}, "beta")]:
        with pytest.raises(ValueError, match=field):
            SpectralRegularizer(**kwargs)
    reg = SpectralRegularizer(tau=10)
    assert not reg.is_ready
    with pytest.raises(RuntimeError, match="refresh"):
        reg(torch.randn(20, 12))
    with pytest.raises(ValueError, match=r"tau must be in \[1, N\] = \[1, 8\]"):
        reg.refresh(torch.randn(20, 8))
    with pytest.raises(ValueError, match="tau"):
        reg.refresh_from_covariance(torch.eye(8))
    reg.refresh(torch.randn(20, 12))
    assert reg.is_ready
    with pytest.raises(ValueError, match="width"):
        reg(torch.randn(20, 13))
    with pytest.raises(ValueError, match="batch size"):
        reg(torch.randn(1, 12))
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        reg(torch.randn(12))
    with pytest.raises(ValueError, match="square"):
        ReferenceEigenbasis().refresh_from_covariance(torch.ones(3, 4))
    with pytest.raises(ValueError, match="tau"):
        spectral_penalty(torch.ones(5), tau=6)


# ----------------------------------------------------------------------------- slope regularizers


@pytest.mark.parametrize("alpha_true", [0.5, 1.0, 2.0, 3.0])
def test_slope_fit_recovers_exact_power_law(alpha_true: float) -> None:
    h = _exact_spectrum_batch(_power_law(64, alpha_true), 150)
    for method in ("exact", "rayleigh"):
        reg = SlopeRegularizer(alpha=1.0, ranks=(6, 50), method=method)
        reg.refresh(h)
        assert reg.fitted_alpha(h) == pytest.approx(alpha_true, abs=1e-4)
        assert reg.fitted_alpha(h.float()) == pytest.approx(alpha_true, abs=1e-3)


@pytest.mark.parametrize("mode", ["abs", "mse"])
def test_slope_penalty_is_zero_at_the_true_alpha(mode: str) -> None:
    alpha_true = 1.5
    h = _exact_spectrum_batch(_power_law(64, alpha_true), 150)
    at_truth = SlopeRegularizer(alpha=alpha_true, beta=1.0, mode=mode)(h)
    assert float(at_truth) < 1e-8
    log_ranks = torch.arange(6, 51, dtype=torch.float64).log()
    for alpha in (0.5, 1.0, 2.5):
        penalty = float(SlopeRegularizer(alpha=alpha, beta=2.0, mode=mode)(h))
        if mode == "abs":
            expected = 2.0 * abs(alpha - alpha_true)
        else:  # residual (α − α*)(x − x̄): mean square = (α − α*)² var(x)
            expected = 2.0 * (alpha - alpha_true) ** 2 * float(log_ranks.var(unbiased=False))
        assert penalty == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mode", ["abs", "mse"])
@pytest.mark.parametrize("method", ["exact", "rayleigh", "subspace"])
def test_slope_penalty_gradients_are_finite(mode: str, method: str) -> None:
    h = _random_batch(120, 64, dtype=torch.float32).requires_grad_(True)
    extra = {"subspace_size": 60} if method == "subspace" else {}
    reg = SlopeRegularizer(alpha=2.0, mode=mode, method=method, **extra)
    assert reg.needs_refresh == (method == "rayleigh")
    reg.refresh(h.detach())
    penalty = reg(h)
    assert penalty.dtype == torch.float32 and penalty.item() > 0
    (grad,) = torch.autograd.grad(penalty, h)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_slope_penalty_abs_gradient_matches_finite_differences() -> None:
    h = _random_batch(80, 60).requires_grad_(True)
    reg = SlopeRegularizer(alpha=2.0, ranks=(3, 30), mode="abs")
    (grad,) = torch.autograd.grad(reg(h), h)
    direction = torch.randn_like(h)
    step = 1e-6
    numeric = (reg(h.detach() + step * direction) - reg(h.detach() - step * direction)) / (2 * step)
    assert float((grad * direction).sum()) == pytest.approx(float(numeric), rel=1e-5)


def test_slope_regularizer_errors() -> None:
    for kwargs, field in [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0, "beta": -0.1}, "beta"),
        ({"alpha": 1.0, "ranks": (0, 5)}, "ranks"),
        ({"alpha": 1.0, "ranks": (5, 5)}, "ranks"),
        ({"alpha": 1.0, "ranks": (6,)}, "ranks"),
        ({"alpha": 1.0, "mode": "l2"}, "mode"),
        ({"alpha": 1.0, "method": "svd"}, "method"),
    ]:
        with pytest.raises(ValueError, match=field):
            SlopeRegularizer(**kwargs)
    reg = SlopeRegularizer(alpha=1.0, ranks=(6, 50))
    with pytest.raises(ValueError, match=r"ranks\[1\]"):
        reg(torch.randn(100, 40))
    with pytest.raises(ValueError, match="batch size"):
        reg(torch.randn(50, 64))
    rayleigh = SlopeRegularizer(alpha=1.0, method="rayleigh")
    assert not rayleigh.is_ready
    with pytest.raises(RuntimeError, match="refresh"):
        rayleigh(torch.randn(100, 64))


# ----------------------------------------------------------------------------- slope by subspace iteration


def _penalty_and_gradient(reg: SlopeRegularizer, h: torch.Tensor) -> tuple[float, torch.Tensor]:
    h = h.detach().requires_grad_(True)
    penalty = reg(h)
    (grad,) = torch.autograd.grad(penalty, h)
    return float(penalty.detach()), grad


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


@pytest.mark.parametrize("mode", ["abs", "mse"])
@pytest.mark.parametrize("alpha_true", [0.5, 1.0, 2.0, 3.0])
def test_subspace_slope_matches_exact_on_a_known_power_law(alpha_true: float, mode: str) -> None:
    spectrum = _power_law(200, alpha_true)
    h = _exact_spectrum_batch(spectrum, 300)
    subspace = SlopeRegularizer(alpha=alpha_true + 0.5, mode=mode, method="subspace")  # k = 128 of N = 200
    exact = SlopeRegularizer(alpha=alpha_true + 0.5, mode=mode, method="exact")
    assert subspace.fitted_alpha(h) == pytest.approx(alpha_true, abs=1e-6)
    top = subspace.batch_spectrum(h)
    assert top.shape == (128,)
    torch.testing.assert_close(top[:50], spectrum[:50], rtol=1e-6, atol=0)
    penalty, grad = _penalty_and_gradient(subspace, h)
    penalty_exact, grad_exact = _penalty_and_gradient(exact, h)
    assert penalty == pytest.approx(penalty_exact, rel=1e-6)
    assert _relative_error(grad, grad_exact) < 1e-3
    assert subspace.fitted_alpha(h.float()) == pytest.approx(alpha_true, abs=1e-3)


@pytest.mark.slow
def test_subspace_slope_tracks_exact_while_training_on_mnist() -> None:
    """Warm-started subspace vs eigvalsh on real training states of a tanh MLP (Adam, MNIST)."""
    x, y, _, _ = load("mnist")
    x, y = x[:6000].reshape(6000, -1), y[:6000]
    model = MLP((784, 256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    subspace = SlopeRegularizer(alpha=2.0, beta=0.1, method="subspace")
    exact = SlopeRegularizer(alpha=2.0, beta=0.1, method="exact")
    order = torch.Generator().manual_seed(0)
    compared = []
    for step in range(150):
        idx = torch.randint(len(x), (300,), generator=order)
        logits, (h,) = model.forward_with_hidden(x[idx])  # h [300, 256]
        penalty = subspace(h)
        if step in (1, 2, 3, 146, 147, 148, 149):  # just after the cold start and late, warm
            (grad,) = torch.autograd.grad(penalty, h, retain_graph=True)
            penalty_exact, grad_exact = _penalty_and_gradient(exact, h)
            penalty_error = abs(float(penalty.detach()) - penalty_exact) / penalty_exact
            compared.append((penalty_error, _relative_error(grad, grad_exact)))
        loss = nn.functional.cross_entropy(logits, y[idx]) + penalty
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    penalty_errors, grad_errors = zip(*compared)
    assert max(penalty_errors) < 1e-4
    assert max(grad_errors) < 1e-2


def test_subspace_slope_is_deterministic_given_the_seed() -> None:
    h = _exact_spectrum_batch(_power_law(100, 2.0), 150)
    batches = [(h + 1e-3 * torch.randn_like(h)).float() for _ in range(4)]  # slowly changing batches

    def run(seed: int, reg: SlopeRegularizer | None = None) -> list[tuple[float, torch.Tensor]]:
        reg = reg or SlopeRegularizer(alpha=1.0, method="subspace", subspace_size=80, restart_every=2, seed=seed)
        return [_penalty_and_gradient(reg, batch) for batch in batches]

    used = SlopeRegularizer(alpha=1.0, method="subspace", subspace_size=80, restart_every=2, seed=0)
    run(0, used)
    used.eigenspace.reset()
    first, again, other, after_reset = run(0), run(0), run(1), run(0, used)
    for (p1, g1), (p2, g2), (p4, g4) in zip(first, again, after_reset):
        assert p1 == p2 == p4 and torch.equal(g1, g2) and torch.equal(g1, g4)
    assert not all(torch.equal(g1, g3) for (_, g1), (_, g3) in zip(first, other))
    for (p1, _), (p3, _) in zip(first, other):
        assert p3 == pytest.approx(p1, rel=1e-4)


def test_subspace_cold_starts_on_schedule_and_on_a_new_width() -> None:
    reg = SlopeRegularizer(alpha=1.0, method="subspace", subspace_size=64, restart_every=3)
    h = _exact_spectrum_batch(_power_law(100, 1.0), 150)
    calls = []
    for _ in range(5):
        reg(h)
        calls.append(reg.eigenspace.calls)  # calls since the last cold start
    assert calls == [1, 2, 3, 1, 2]
    narrower = _exact_spectrum_batch(_power_law(80, 1.5), 150)
    assert reg.fitted_alpha(narrower) == pytest.approx(1.5, abs=1e-6)
    assert reg.eigenspace.calls == 1 and reg.eigenspace.vectors.shape == (80, 64)


def test_subspace_slope_recovers_after_a_non_finite_batch() -> None:
    reg = SlopeRegularizer(alpha=1.0, method="subspace", subspace_size=64)
    h = _exact_spectrum_batch(_power_law(100, 2.0), 150)
    broken = h.clone()
    broken[3, 5] = float("nan")
    assert math.isnan(float(reg(broken)))
    assert reg.fitted_alpha(h) == pytest.approx(2.0, abs=1e-6)


def test_subspace_slope_under_bf16_autocast_runs_in_float32() -> None:
    h = _exact_spectrum_batch(_power_law(200, 1.0), 300).bfloat16()
    reg = SlopeRegularizer(alpha=2.0, method="subspace")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = reg(h)
    assert penalty.dtype == torch.float32
    exact = SlopeRegularizer(alpha=2.0, method="exact")(h.float())
    assert float(penalty) == pytest.approx(float(exact), rel=1e-4)


def test_subspace_slope_errors() -> None:
    for kwargs, field in [
        ({"subspace_size": 50}, "subspace_size"),  # must exceed ranks[1] = 50
        ({"subspace_size": 64.0}, "subspace_size"),
        ({"subspace_iters": -1}, "subspace_iters"),
        ({"restart_every": 0}, "restart_every"),
        ({"cold_iters": 0}, "cold_iters"),
        ({"seed": -1}, "seed"),
    ]:
        with pytest.raises(ValueError, match=field):
            SlopeRegularizer(alpha=1.0, method="subspace", **kwargs)
    SlopeRegularizer(alpha=1.0, ranks=(6, 200), method="exact")  # subspace_size only checked for "subspace"
    with pytest.raises(TypeError):
        SlopeRegularizer(1.0, 1.0, (6, 50), "abs", "subspace", 128)  # the new arguments are keyword-only
    reg = SlopeRegularizer(alpha=1.0, method="subspace")  # k = 128
    assert not reg.needs_refresh and reg.is_ready
    with pytest.raises(ValueError, match="subspace_size"):
        reg(torch.randn(300, 100))
    with pytest.raises(ValueError, match="batch size"):
        reg(torch.randn(50, 200))


# ----------------------------------------------------------------------------- Jacobian penalty


def _exact_half_mean_frobenius(model: nn.Module, x: torch.Tensor) -> float:
    full = torch.autograd.functional.jacobian(model, x)  # [B, C, B, D]
    per_sample = torch.stack([full[b, :, b, :] for b in range(x.shape[0])])  # [B, C, D]
    return 0.5 * float(per_sample.pow(2).sum(dim=(1, 2)).mean())


def test_jacobian_penalty_is_unbiased_for_the_frobenius_norm() -> None:
    model = MLP((6, 8, 4)).double().eval()
    x = torch.rand(5, 6, dtype=torch.float64)
    exact = _exact_half_mean_frobenius(model, x)
    generator = torch.Generator().manual_seed(1)
    estimate = jacobian_penalty(model, x, n_proj=2000, generator=generator).item()
    assert estimate == pytest.approx(exact, rel=0.04)


def test_jacobian_penalty_is_exact_for_a_single_output() -> None:
    model = nn.Sequential(nn.Linear(7, 1))  # J = w, ‖J‖² = ‖w‖² whatever the direction
    x = torch.rand(4, 7)
    expected = 0.5 * model[0].weight.pow(2).sum().item()
    assert jacobian_penalty(model, x, n_proj=3).item() == pytest.approx(expected, rel=1e-6)


def test_jacobian_penalty_trains_through_and_leaves_the_input_alone() -> None:
    model = MLP((6, 8, 4))
    x = torch.rand(5, 6)
    penalty = jacobian_penalty(model, x, generator=torch.Generator().manual_seed(0))
    assert not x.requires_grad and x.grad is None
    weights = [model.blocks[0][0].weight, model.blocks[0][0].bias, model.readout.weight]
    grads = torch.autograd.grad(penalty, weights)  # the readout bias does not enter the Jacobian
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)

    reg = JacobianRegularizer(beta=0.01, n_proj=2)
    wrapped = reg(model, x, generator=torch.Generator().manual_seed(3))
    direct = jacobian_penalty(model, x, n_proj=2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(wrapped, 0.01 * direct)


def test_jacobian_errors() -> None:
    model = MLP((6, 8, 4))
    with pytest.raises(ValueError, match="n_proj"):
        jacobian_penalty(model, torch.rand(2, 6), n_proj=0)
    with pytest.raises(ValueError, match="n_proj"):
        JacobianRegularizer(n_proj=0)
    with pytest.raises(ValueError, match="beta"):
        JacobianRegularizer(beta=-1.0)
    with pytest.raises(ValueError, match="logits"):
        jacobian_penalty(lambda t: t.sum(dim=1), torch.rand(2, 6))


def test_inputs_may_be_numpy_arrays() -> None:
    h = _random_batch(40, 8)
    reg = SpectralRegularizer(tau=2)
    reg.refresh(np.asarray(h))
    assert reg.is_ready and reg.basis.width == 8


# ----------------------------------------------------------------------------- fused Rayleigh quotients


def _autograd_rayleigh_quotients(h: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Reference: λ̂ = diag(Vᵀ Σ_B V) through plain autograd ops, decreasing."""
    centred = h - h.mean(dim=0, keepdim=True)
    quotients = (centred @ basis.to(h.dtype)).pow(2).sum(dim=0) / (h.shape[0] - 1)
    return torch.sort(quotients, descending=True).values


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_fused_quotients_and_gradients_match_autograd(dtype: torch.dtype, rtol: float) -> None:
    reg = SpectralRegularizer(alpha=1.0, tau=3, beta=2.0)
    reg.refresh(_random_batch(400, 30))
    basis = reg.basis.eigenvectors
    h = _random_batch(90, 30, dtype=dtype).requires_grad_(True)
    fast = reg.rayleigh_quotients(h)
    slow = _autograd_rayleigh_quotients(h, basis)
    assert fast.dtype == dtype
    torch.testing.assert_close(fast, slow, rtol=rtol, atol=0)
    weights = torch.randn(30, dtype=dtype)  # an arbitrary upstream gradient
    (g_fast,) = torch.autograd.grad((fast * weights).sum(), h)
    (g_slow,) = torch.autograd.grad((slow * weights).sum(), h)
    torch.testing.assert_close(g_fast, g_slow, rtol=rtol, atol=rtol * float(g_slow.abs().max()))
    # the centring Jacobian is the identity on this gradient: its columns sum to zero
    assert float(g_fast.sum(dim=0).abs().max()) <= 1e-4 * float(g_fast.abs().max())


def test_penalty_gradient_through_a_model_matches_autograd_reference() -> None:
    model = MLP((20, 40, 5), batch_norm=True)
    x = torch.rand(120, 20)
    reg = SpectralRegularizer(alpha=1.0, tau=4, beta=2.0)
    with torch.no_grad():
        reg.refresh(model.forward_with_hidden(x)[1][0])
    weight = model.blocks[0][0].weight
    (g_fast,) = torch.autograd.grad(reg(model.forward_with_hidden(x)[1][0]), weight)
    lam = _autograd_rayleigh_quotients(model.forward_with_hidden(x)[1][0], reg.basis.eigenvectors)
    (g_slow,) = torch.autograd.grad(spectral_penalty(lam, alpha=1.0, tau=4, beta=2.0), weight)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-4, atol=1e-4 * float(g_slow.abs().max()))


class _MatmulRecorder(TorchDispatchMode):
    """Records (op name, input dtypes) of every matrix product dispatched."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[torch.dtype, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        if name.split(".")[0] in ("mm", "addmm", "bmm", "matmul", "linear"):
            self.calls.append((name, tuple(a.dtype for a in args if isinstance(a, torch.Tensor))))
        return func(*args, **(kwargs or {}))


def test_projection_and_its_backward_run_in_bf16_under_autocast() -> None:
    reg = SpectralRegularizer(alpha=1.0, tau=3)
    reg.refresh(_random_batch(300, 24))
    h = _random_batch(100, 24, dtype=torch.float32).requires_grad_(True)
    with _MatmulRecorder() as recorder:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            penalty = reg(h)
        penalty.backward()
    assert penalty.dtype == torch.float32 and h.grad.dtype == torch.float32
    assert len(recorder.calls) == 2  # the projection and its input gradient, nothing in fp32
    assert all(dtypes == (torch.bfloat16, torch.bfloat16) for _, dtypes in recorder.calls)
    with _MatmulRecorder() as recorder:
        reg(h).backward()  # no autocast: float32 products
    assert [d for _, d in recorder.calls] == [(torch.float32, torch.float32)] * 2


def test_cast_basis_is_cached_and_follows_refresh() -> None:
    reg = SpectralRegularizer(tau=2)
    reg.refresh(_random_batch(200, 10))
    h = _random_batch(50, 10, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = reg(h)
        again = reg(h)
    assert float(first) == float(again)
    reg.refresh(_random_batch(200, 10) * torch.linspace(1, 3, 10, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        after = reg.rayleigh_quotients(h)
    expected = _autograd_rayleigh_quotients(h.double(), reg.basis.eigenvectors.double())
    torch.testing.assert_close(after.double(), expected, rtol=2e-2, atol=0)


def test_batch_covariance_matches_torch_cov_with_gradient() -> None:
    from powerlaw_lib.regularizers import batch_covariance

    h = _random_batch(70, 9).requires_grad_(True)
    weights = torch.randn(9, 9, dtype=torch.float64)
    got = batch_covariance(h)
    expected = torch.cov(h.T)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    (g_got,) = torch.autograd.grad((got * weights).sum(), h)
    (g_expected,) = torch.autograd.grad((expected * weights).sum(), h)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-10, atol=1e-12)
