"""Tests of powerlaw_lib.attacks: FGSM, PGD, white noise and robust-accuracy curves.

Oracles: the closed-form input gradient of a linear softmax model, an independent slow
re-implementation of the early-stopping PGD curve, the naive per-ε PGD curve, and
properties of the L∞ threat model (Nassar et al. 2020, eqs. 6-8).
"""

from __future__ import annotations

import copy
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from powerlaw_lib.attacks import (
    _pgd_accuracy_fast,
    RobustCurve,
    fgsm,
    gaussian_noise,
    pgd,
    pgd_restarts,
    robust_accuracy,
    robust_accuracy_curve,
    robust_accuracy_naive,
)

MNIST_RAW = Path("/work/shared/data/MNIST/raw")
N_TRAIN, N_EVAL = 1500, 500
EPS_GRID = [0.0, 0.02, 0.05, 0.1, 0.2]
TOL = 1e-6  # float32 rounding of x ± eps


# ----------------------------------------------------------------------------- fixtures


def _read_idx(path: Path, magic: int, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    assert int.from_bytes(data[0:4], "big") == magic
    return np.frombuffer(data, np.uint8, offset=offset)


@pytest.fixture(scope="module")
def mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 2,000 MNIST test-set images, flattened to [2000, 784] in [0, 1]."""
    n = N_TRAIN + N_EVAL
    images = _read_idx(MNIST_RAW / "t10k-images-idx3-ubyte.gz", 2051, 16).reshape(-1, 784)[:n]
    labels = _read_idx(MNIST_RAW / "t10k-labels-idx1-ubyte.gz", 2049, 8)[:n]
    x = torch.from_numpy(images.astype(np.float32) / 255.0)  # [2000, 784]
    y = torch.from_numpy(labels.astype(np.int64))  # [2000]
    return x, y


class TanhMLP(nn.Module):
    """784-64-10 tanh MLP; forward returns logits [B, 10]."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(784, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x)))


@pytest.fixture(scope="module")
def trained(mnist) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small MLP trained for 300 Adam steps; returns (model in eval mode, x_eval, y_eval)."""
    x, y = mnist
    x_train, y_train = x[:N_TRAIN], y[:N_TRAIN]
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = TanhMLP()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(300):
        idx = torch.randint(0, N_TRAIN, (100,), generator=gen)
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model, x[N_TRAIN:], y[N_TRAIN:]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def test_trained_model_is_accurate(trained):
    model, x, y = trained
    assert _accuracy(model, x, y) > 0.8


# ----------------------------------------------------------------------------- threat model


@pytest.mark.parametrize("eps", [0.005, 0.03, 0.1, 0.3, 0.7])
def test_attacks_stay_in_eps_ball_and_unit_range(trained, eps):
    model, x, y = trained
    x = x[:100].clone()
    # push some pixels onto and next to the borders of [0, 1]
    x[:, :50] = 0.0
    x[:, 50:100] = 1.0
    x[:, 100:150] = 0.002
    x[:, 150:200] = 0.998
    gen = torch.Generator().manual_seed(1)
    outputs = {
        "fgsm": fgsm(model, x, y[:100], eps),
        "pgd": pgd(model, x, y[:100], eps, steps=10, step_size=eps / 4),
        "pgd_random_start": pgd(
            model, x, y[:100], eps, steps=3, step_size=0.01, random_start=True, generator=gen
        ),
    }
    for name, x_adv in outputs.items():
        assert x_adv.shape == x.shape, name
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0, name
        assert (x_adv - x).abs().max() <= eps + TOL, name
        assert not x_adv.requires_grad and x_adv.grad_fn is None, name
    # FGSM moves every interior pixel with a non-zero gradient by exactly eps
    interior = (x >= eps) & (x <= 1 - eps)
    moved = (outputs["fgsm"] - x).abs()
    assert interior.any() == (eps < 0.5)
    assert torch.allclose(moved[interior], torch.full_like(moved[interior], eps), atol=TOL)
    # PGD with large steps reaches the border of the ball somewhere
    assert (outputs["pgd"] - x).abs().max() >= eps - TOL


def test_fgsm_matches_closed_form_gradient_of_linear_softmax():
    """For logits z = W x + b, ∇_x CE = Wᵀ (softmax(z) − onehot(y)) (Nassar et al. eq. 6)."""
    rng = np.random.default_rng(0)
    n, d, c = 64, 30, 5
    w = rng.normal(size=(c, d))
    b = rng.normal(size=c)
    x = rng.uniform(0.0, 1.0, size=(n, d))
    y = rng.integers(0, c, size=n)
    x[:, :3] = [0.0, 1.0, 0.01]  # border pixels, clipped by the attack

    model = nn.Linear(d, c).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w))
        model.bias.copy_(torch.from_numpy(b))

    z = x @ w.T + b  # [n, c]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    grad = (p - np.eye(c)[y]) @ w  # [n, d]
    assert np.abs(grad).min() > 1e-9  # signs are unambiguous
    for eps in (0.02, 0.1, 0.5):
        expected = np.clip(x + eps * np.sign(grad), 0.0, 1.0)
        got = fgsm(model, x, y, eps)  # numpy inputs accepted
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
        # one PGD step of size eps from x is FGSM
        one_step = pgd(model, torch.from_numpy(x), torch.from_numpy(y), eps, steps=1, step_size=eps)
        np.testing.assert_allclose(one_step.numpy(), expected, rtol=0, atol=1e-12)


def test_zero_eps_returns_x_exactly_and_clean_accuracy(trained):
    model, x, y = trained
    assert torch.equal(fgsm(model, x, y, 0.0), x)
    assert torch.equal(pgd(model, x, y, 0.0), x)
    assert torch.equal(pgd(model, x, y, 0.0, random_start=True), x)
    assert torch.equal(gaussian_noise(x, 0.0), x)
    clean = _accuracy(model, x, y)
    for attack in ("fgsm", "pgd", "noise"):
        assert robust_accuracy(model, x, y, attack, [0.0])[0] == pytest.approx(clean, abs=1e-12)
        naive = robust_accuracy_naive(model, x, y, attack, [0.0])
        assert naive[0] == pytest.approx(clean, abs=1e-12)
    assert pgd_restarts(model, x, y, 0.0, restarts=2).mean() == pytest.approx(clean, abs=1e-12)


# ----------------------------------------------------------------------------- robust accuracy


def test_attacks_reduce_accuracy_and_pgd_is_not_weaker_than_fgsm(trained):
    model, x, y = trained
    eps_grid = [0.02, 0.05, 0.1, 0.15]
    acc_fgsm = robust_accuracy(model, x, y, "fgsm", eps_grid)
    acc_pgd = robust_accuracy(model, x, y, "pgd", eps_grid)
    clean = _accuracy(model, x, y)
    assert np.all(acc_pgd <= acc_fgsm)
    assert acc_fgsm[2] < clean - 0.2  # the gradient sign points uphill: the attack works
    assert acc_pgd[-1] < 0.1


def _slow_early_stopping_pgd_accuracy(model, x, y, eps_grid, steps=40, step_size=0.01):
    """Independent oracle: one full PGD trajectory per ε on all images; an image is broken at
    ε if any iterate at any ε' <= ε, or the clean input, is misclassified."""
    broken = model(x).argmax(1) != y
    accuracy = {}
    for eps in sorted(set(eps_grid)):
        x_adv = x.clone()
        for t in range(steps + 1):
            x_adv.requires_grad_(True)
            logits = model(x_adv)
            broken |= logits.argmax(1) != y
            if t == steps:
                break
            (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x_adv)
            x_adv = x_adv.detach() + step_size * g.sign()
            x_adv = torch.max(torch.min(x_adv, x + eps), x - eps).clamp(0, 1)
        accuracy[eps] = 1.0 - broken.double().mean().item()
    return np.array([accuracy[e] for e in eps_grid])


def test_fast_pgd_curve_matches_slow_oracle_and_is_below_naive(trained):
    model, x, y = trained
    x, y = x[:200], y[:200]
    grid = [0.1, 0.0, 0.03, 0.06, 0.03]  # unsorted, with a duplicate
    fast = robust_accuracy(model, x, y, "pgd", grid, batch_size=64)
    assert fast.dtype == np.float64 and fast.shape == (5,)
    assert fast[1] == fast.max() and fast[2] == fast[4]
    slow = _slow_early_stopping_pgd_accuracy(model, x, y, grid)
    np.testing.assert_allclose(fast, slow, atol=1e-12)

    sorted_grid = [0.0, 0.01, 0.03, 0.06, 0.1]
    fast = robust_accuracy(model, x, y, "pgd", sorted_grid, batch_size=64)
    naive = robust_accuracy_naive(model, x, y, "pgd", sorted_grid, batch_size=64)
    assert np.all(fast <= naive + 1e-12)
    assert np.all(np.diff(fast) <= 0)
    assert np.all((fast >= 0) & (fast <= 1))


class CountingModel(nn.Module):
    """Wraps a model and counts the images it evaluates (rows of every forward pass)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return self.model(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shared_prefix_pgd_curve_equals_pgd_from_x_at_every_eps(trained, dtype):
    model, x, y = trained
    model = CountingModel(copy.deepcopy(model).to(dtype))
    x, y = x[:300].to(dtype), y[:300]
    grid = np.round(np.arange(0.0, 0.2, 0.01), 2)  # the α sweep's grid: ε a multiple of η
    curves, images = {}, {}
    for share in (False, True):
        model.images = 0
        curves[share] = _pgd_accuracy_fast(model, x, y, grid, 128, None, share_prefix=share)
        images[share] = model.images
    np.testing.assert_array_equal(curves[True], curves[False])
    assert curves[True][-1] < curves[True][1] < curves[True][0]  # the attack bites
    assert images[True] < images[False]  # fewer gradients, same iterates


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fgsm_curve_takes_one_gradient_per_image_and_equals_fgsm_per_eps(trained, dtype):
    model, x, y = trained
    model = CountingModel(copy.deepcopy(model).to(dtype))
    x, y = x[:300].to(dtype), y[:300]
    grid = [0.1, 0.0, 0.02, 0.05, 0.1, 0.2]  # unsorted, with a repeat and ε = 0
    model.images = 0
    fast = robust_accuracy(model, x, y, "fgsm", grid, batch_size=128)
    assert model.images == 300 * (1 + len(grid))  # one gradient, then a check per ε
    per_eps = [float((model(fgsm(model, x[i:i + 128], y[i:i + 128], e)).argmax(1)
                      == y[i:i + 128]).sum()) for e in grid for i in (0, 128, 256)]
    expected = np.asarray(per_eps).reshape(len(grid), 3).sum(1) / 300
    np.testing.assert_array_equal(fast, expected)
    np.testing.assert_array_equal(fast, robust_accuracy_naive(model, x, y, "fgsm", grid, batch_size=128))
    assert fast[5] < fast[2] < fast[1]  # the attack bites


class DriftModel(nn.Module):
    """Two classes; class 0 wins by a margin of 30 that PGD's steps barely dent, and the
    loss gradient w.r.t. every coordinate of x has the sign of w (never zero)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = torch.linspace(-1.0, 1.0, dim, dtype=torch.float64) + 1e-3  # [D], no zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        margin = 30.0 - 1e-3 * (x.double() @ self.w)  # [B]
        return torch.stack([margin, torch.zeros_like(margin)], dim=1)  # [B, 2]


def test_shared_prefix_resumes_where_the_smaller_ball_clipped():
    # dyadic ε and η: x_j = x + j·η exactly, so iterate j leaves the ball ε = k·η at j = k + 1
    model = CountingModel(DriftModel(6))
    x, y = torch.full((4, 6), 0.5, dtype=torch.float64), torch.zeros(4, dtype=torch.long)
    grid, steps, eta = np.array([1, 2, 3]) / 64, 5, 1 / 64
    for share, per_image in ((False, 3 * (steps + 1)), (True, 6 + 4 + 3)):
        model.images = 0
        curve = _pgd_accuracy_fast(model, x, y, grid, 4, None, steps=steps, step_size=eta,
                                   share_prefix=share)
        np.testing.assert_array_equal(curve, [1.0, 1.0, 1.0])
        assert model.images == 4 * (1 + per_image)  # + the clean prediction
    # ε = 1/64: 5 steps from x_0 (+ final check); 2/64: resumes at x_2, the step that left
    # the first ball; 3/64: resumes at x_3


class BumpModel(nn.Module):
    """Two classes on a scalar input; class 1 wins only for x in (0.51, 0.54).

    From x = 0.5 with label 0 the loss gradient points up, so PGD with step 0.05 lands in the
    band (x = 0.53) when ε = 0.03 but oscillates between 0.50 and 0.55 when ε = 0.1, never
    visiting the band.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bump = 1000.0 * (0.015**2 - (x[:, 0] - 0.525) ** 2)  # [B]
        return torch.stack([torch.zeros_like(bump), bump], dim=1)  # [B, 2]


def test_fast_pgd_keeps_images_broken_at_smaller_eps():
    model = BumpModel()
    x, y = torch.full((3, 1), 0.5), torch.zeros(3, dtype=torch.long)
    grid = [0.0, 0.03, 0.1]
    # ε = 0.03: 0.50 -> 0.53 (broken) -> 0.48 -> 0.53 -> ...; after 40 steps the last iterate
    # is 0.48 again, so the naive curve judged at the last iterate misses it
    for steps, naive_expected in ((1, [1.0, 0.0, 1.0]), (40, [1.0, 1.0, 1.0])):
        naive = robust_accuracy_naive(model, x, y, "pgd", grid, steps=steps, step_size=0.05)
        fast = robust_accuracy(model, x, y, "pgd", grid, steps=steps, step_size=0.05)
        np.testing.assert_array_equal(naive, naive_expected)
        np.testing.assert_array_equal(fast, [1.0, 0.0, 0.0])
    assert pgd_restarts(model, x, y, 0.03, restarts=1, steps=1, step_size=0.05).sum() == 0
    assert pgd_restarts(model, x, y, 0.1, restarts=1, steps=40, step_size=0.05).all()


def test_robust_accuracy_curve_and_callable_attack(trained):
    model, x, y = trained
    x, y = x[:200], y[:200]
    curve = robust_accuracy_curve(model, x, y, "fgsm", [0.05, 0.1], batch_size=70)
    assert isinstance(curve, RobustCurve) and curve.n == 200
    np.testing.assert_array_equal(curve.eps, [0.05, 0.1])
    def my_fgsm(m, a, b, e):
        return fgsm(m, a, b, e)

    by_callable = robust_accuracy(model, x.numpy(), y.numpy(), my_fgsm, [0.05, 0.1])
    np.testing.assert_array_equal(by_callable, curve.accuracy)
    naive = robust_accuracy_naive(model, x, y, "fgsm", [0.05, 0.1])
    np.testing.assert_array_equal(naive, curve.accuracy)


def test_models_returning_a_tuple_use_the_first_element(trained):
    model, x, y = trained
    x, y = x[:100], y[:100]

    class WithHidden(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x), [x]

    wrapped = WithHidden(model)
    assert torch.equal(fgsm(wrapped, x, y, 0.1), fgsm(model, x, y, 0.1))
    np.testing.assert_array_equal(
        robust_accuracy(wrapped, x, y, "pgd", [0.05]), robust_accuracy(model, x, y, "pgd", [0.05])
    )


def test_pgd_restarts_agree_with_curve_and_only_remove_survivors(trained):
    model, x, y = trained
    x, y = x[:200], y[:200]
    eps = 0.05
    one = pgd_restarts(model, x, y, eps, restarts=1, steps=20, step_size=0.01)
    assert one.dtype == bool and one.shape == (200,)
    acc = robust_accuracy(model, x, y, "pgd", [eps], steps=20, step_size=0.01)[0]
    assert one.mean() == pytest.approx(acc, abs=1e-12)
    gen = torch.Generator().manual_seed(3)
    three = pgd_restarts(model, x, y, eps, restarts=3, steps=20, step_size=0.01, generator=gen)
    assert np.all(three <= one)  # survivors of three restarts survived the first
    with torch.no_grad():
        assert np.all(~three[(model(x).argmax(1) != y).numpy()])  # clean errors are never robust


# ----------------------------------------------------------------------------- side effects


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_attacks_leave_mode_grad_and_requires_grad_untouched(trained, mode):
    model, x, y = trained
    x, y = x[:50], y[:50]
    model.train(mode == "train")
    model.hidden.bias.requires_grad_(False)
    try:
        flags = [p.requires_grad for p in model.parameters()]
        gen = torch.Generator().manual_seed(0)
        fgsm(model, x, y, 0.1)
        pgd(model, x, y, 0.1, steps=3, random_start=True, generator=gen)
        pgd_restarts(model, x, y, 0.1, restarts=2, steps=3, generator=gen)
        robust_accuracy(model, x, y, "pgd", [0.05, 0.1], steps=3)
        robust_accuracy(model, x, y, "fgsm", [0.05])
        robust_accuracy_naive(model, x, y, "pgd", [0.05], steps=3)
        assert model.training == (mode == "train")
        assert all(m.training == (mode == "train") for m in model.modules())
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.hidden.bias.requires_grad_(True)
        model.eval()


# ----------------------------------------------------------------------------- white noise


def test_gaussian_noise_range_reproducibility_and_scale(mnist):
    x = mnist[0][:200]
    noisy = gaussian_noise(x, 0.3, generator=torch.Generator().manual_seed(5))
    assert noisy.shape == x.shape and noisy.min() >= 0 and noisy.max() <= 1
    again = gaussian_noise(x, 0.3, generator=torch.Generator().manual_seed(5))
    other = gaussian_noise(x, 0.3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(noisy, again) and not torch.equal(noisy, other)
    assert torch.equal(gaussian_noise(x, 0.0), x)
    # away from the borders no clipping happens: the noise has standard deviation sigma
    mid = torch.full((100, 784), 0.5)
    diff = gaussian_noise(mid.numpy(), 0.04, generator=torch.Generator().manual_seed(0)) - mid
    assert abs(diff.std().item() - 0.04) < 0.001 and abs(diff.mean().item()) < 0.001


def test_noise_accuracy_curve_is_reproducible(trained):
    model, x, y = trained
    grid = [0.0, 0.3, 1.0]
    a = robust_accuracy(model, x, y, "noise", grid, generator=torch.Generator().manual_seed(0))
    b = robust_accuracy(model, x, y, "noise", grid, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(a, b)
    assert a[2] < a[0]


# ----------------------------------------------------------------------------- validation


def test_invalid_arguments_raise_value_error_naming_them(trained):
    model, x, y = trained
    x, y = x[:10], y[:10]
    cases = [
        ("eps", lambda: fgsm(model, x, y, -0.1)),
        ("eps", lambda: pgd(model, x, y, -0.1)),
        ("eps", lambda: fgsm(model, x, y, float("nan"))),
        ("eps", lambda: pgd_restarts(model, x, y, -0.1, restarts=1)),
        ("steps", lambda: pgd(model, x, y, 0.1, steps=-1)),
        ("steps", lambda: pgd_restarts(model, x, y, 0.1, restarts=1, steps=-1)),
        ("steps", lambda: robust_accuracy(model, x, y, "pgd", [0.1], steps=-1)),
        ("step_size", lambda: pgd(model, x, y, 0.1, step_size=0.0)),
        ("step_size", lambda: pgd(model, x, y, 0.1, step_size=-0.01)),
        ("step_size", lambda: robust_accuracy(model, x, y, "pgd", [0.1], step_size=0.0)),
        ("x", lambda: fgsm(model, x + 1.5, y, 0.1)),
        ("x", lambda: pgd(model, x - 0.5, y, 0.1)),
        ("x", lambda: gaussian_noise(x * 255, 0.1)),
        ("x", lambda: robust_accuracy(model, x - 0.5, y, "fgsm", [0.1])),
        ("y", lambda: fgsm(model, x, y[:5], 0.1)),
        ("sigma", lambda: gaussian_noise(x, -0.1)),
        ("restarts", lambda: pgd_restarts(model, x, y, 0.1, restarts=0)),
        ("batch_size", lambda: robust_accuracy(model, x, y, "fgsm", [0.1], batch_size=0)),
        ("eps_grid", lambda: robust_accuracy(model, x, y, "pgd", [0.1, -0.1])),
        ("eps_grid", lambda: robust_accuracy(model, x, y, "noise", [-1.0])),
        ("eps_grid", lambda: robust_accuracy_naive(model, x, y, "fgsm", [])),
        ("attack", lambda: robust_accuracy(model, x, y, "cw", [0.1])),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=rf"^{name}\b"):
            call()


def test_pgd_curve_when_every_image_is_already_misclassified(trained):
    """All images wrong at ε = 0: PGD has nothing left to attack at larger ε (empty batches)."""
    model, x, y = trained
    wrong_labels = (model(x[:50]).argmax(1) + 1) % 10        # every label is wrong
    acc = robust_accuracy(model, x[:50], wrong_labels, "pgd", [0.0, 0.05, 0.1], batch_size=16)
    assert acc.tolist() == [0.0, 0.0, 0.0]
    assert not pgd_restarts(model, x[:50], wrong_labels, 0.05, restarts=2, steps=3).any()
