"""Tests of powerlaw_lib.audit and powerlaw_lib.audit_checks: the AutoAttack-grade audit.

Oracles: the L∞ threat model (every example inside the ε-ball and [0, 1]); torchattacks'
own FGSM and PGD against the library's; the definition of the worst case (an AND over
attacks); and two deliberately masked models (a quantized input, a saturated softmax)
against a plain one for the masking checklist (Athalye et al. 2018; Carlini et al. 2019).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

import powerlaw_lib.audit as audit_module
from powerlaw_lib import data
from powerlaw_lib.attacks import fgsm, pgd, robust_accuracy, robust_accuracy_naive
from powerlaw_lib.audit import (
    ATTACKS,
    ITERATIVE,
    WHITE_BOX,
    apgd_ce,
    apgd_t,
    audit_accuracy,
    check_examples,
    fab_t,
    square,
)
from powerlaw_lib.audit_checks import CHECKS, masking_checklist, uniform_noise
from powerlaw_lib.models import MLP

N_TRAIN, N_AUDIT, N_AGREE = 2000, 100, 500
EPS_GRID = [0.0, 0.05, 0.1, 0.2]
EPS_MASKED = [0.05, 0.2]
TOL = 1e-6  # float32 rounding of x ± eps
#: Small budgets so the whole ensemble runs in about two seconds on 100 images.
FAST = {"steps": 10, "n_queries": 100, "n_targets": 3}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mnist() -> data.Dataset:
    return data.load("mnist")


@pytest.fixture(scope="module")
def model(mnist) -> MLP:
    """A 784-64-10 tanh MLP trained for 300 Adam steps on 2,000 MNIST images, in eval mode."""
    x, y = mnist.x_train[:N_TRAIN], mnist.y_train[:N_TRAIN]
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = MLP((784, 64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(300):
        idx = torch.randint(0, N_TRAIN, (100,), generator=gen)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    for p in net.parameters():
        p.grad = None
    return net


@pytest.fixture(scope="module")
def images(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 100 MNIST test images [100, 1, 28, 28] and labels [100]."""
    return mnist.x_test[:N_AUDIT], mnist.y_test[:N_AUDIT]


@pytest.fixture(scope="module")
def audit(model, images):
    x, y = images
    return audit_accuracy(model, x, y, EPS_GRID, batch_size=50, seed=0, **FAST)


class Quantized(nn.Module):
    """Masked by a quantizer: round(x·4)/4 before the network, so ∇_x is exactly zero."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 4) / 4)


class Saturated(nn.Module):
    """Masked by saturation: logits ×10⁴, so the softmax of a correct image is one-hot in
    float32 and the cross-entropy gradient underflows to exactly zero."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * 1e4


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1) == y


def _count(accuracy: float | np.ndarray, n: int) -> np.ndarray:
    """Images correct, from an accuracy over n images (exact: accuracies are k / n)."""
    return np.rint(np.asarray(accuracy) * n).astype(np.int64)


def test_trained_model_is_accurate(model, images):
    x, y = images
    assert _correct(model, x, y).double().mean() > 0.85


# ----------------------------------------------------------------------------- 1. threat model


WRAPPERS = {
    "apgd-ce": lambda m, x, y, eps: apgd_ce(m, x, y, eps, steps=5),
    "apgd-t": lambda m, x, y, eps: apgd_t(m, x, y, eps, steps=5, n_targets=2),
    "fab-t": lambda m, x, y, eps: fab_t(m, x, y, eps, steps=5, n_targets=2),
    "square": lambda m, x, y, eps: square(m, x, y, eps, n_queries=50),
}


@pytest.mark.parametrize("eps", [0.03, 0.3])
@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_wrappers_stay_in_eps_ball_and_unit_range(model, images, name, eps):
    x, y = images[0][:30].clone(), images[1][:30]
    # put some pixels on and next to the borders of [0, 1]
    x[:, :, :3] = 0.0
    x[:, :, 3:6] = 1.0
    x[:, :, 6:8] = 0.002
    x[:, :, 8:10] = 0.998
    x_adv = WRAPPERS[name](model, x, y, eps)
    assert x_adv.shape == x.shape
    assert torch.isfinite(x_adv).all()
    assert (x_adv - x).abs().max() <= eps + TOL
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if eps == 0.3:  # the attack did something: at ε = 0.3 every wrapper breaks some image
        assert not _correct(model, x_adv, y).all()


def test_wrappers_leave_model_gradients_mode_and_global_rng_alone(model, images):
    x, y = images[0][:10], images[1][:10]
    state = torch.get_rng_state()
    for name, attack in WRAPPERS.items():
        attack(model, x, y, 0.1)
        assert not model.training, name
        assert all(p.grad is None for p in model.parameters()), name
    assert torch.equal(torch.get_rng_state(), state)


def test_check_examples_projects_examples_outside_the_threat_model():
    x = torch.full((4, 1, 2, 2), 0.5)
    x_adv = x.clone()
    x_adv[1, 0, 0, 0] = 0.5 + 0.1 + 1e-3  # outside the ball
    x_adv[2, 0, 0, 0] = float("nan")      # non-finite
    x_adv[3] = 0.5 + 0.1                  # on the border: inside
    checked, outside = check_examples(x_adv, x, 0.1)
    assert outside.tolist() == [False, True, True, False]
    assert torch.isfinite(checked).all() and (checked - x).abs().max() <= 0.1 + TOL
    assert torch.equal(checked[3], x_adv[3])


def test_audit_counts_and_judges_projected_examples(model, images, monkeypatch):
    """A member returning examples outside the ball is judged at their projection."""
    x, y = images
    clean = _correct(model, x, y)

    def outside(name, model, x, y, eps, **options):
        return (x + 3 * eps * torch.sign(torch.randn(x.shape))).clamp(-1, 2)

    monkeypatch.setattr(audit_module, "_torchattack", outside)
    result = audit_accuracy(model, x, y, [0.1], attacks=["square"], batch_size=50, **FAST)
    assert result.projected["square"].tolist() == [int(clean.sum())]
    assert result.accuracy["square"][0] <= clean.double().mean().item()


# ----------------------------------------------------------------------------- 2. agreement


@pytest.mark.parametrize("eps", [0.02, 0.05, 0.1, 0.2])
def test_library_fgsm_and_pgd_agree_with_torchattacks(model, mnist, eps):
    """Same definitions: sign step of ∇ CE, projection on the ball ∩ [0, 1], 40 steps of
    0.01 from x. torchattacks differentiates the mean CE, the library the sum (same sign),
    and projects as x + clip(δ, ±ε) where the library clips to x ± ε, so PGD iterates may
    differ by float rounding in a few pixels; the per-image outcomes must be identical.
    Like is compared with like: both judge the final iterate (robust_accuracy_naive)."""
    x, y = mnist.x_test[:N_AGREE], mnist.y_test[:N_AGREE]
    ours = fgsm(model, x, y, eps)
    theirs = torchattacks.FGSM(model, eps=eps)(x, y)
    assert torch.equal(ours, theirs)

    ours = pgd(model, x, y, eps, steps=40, step_size=0.01)
    theirs = torchattacks.PGD(model, eps=eps, alpha=0.01, steps=40, random_start=False)(x, y)
    assert torch.equal(_correct(model, ours, y), _correct(model, theirs, y))
    assert ((ours - theirs).abs() > TOL).double().mean() < 1e-4  # a few rounding-led steps
    n_theirs = int(_correct(model, theirs, y).sum())
    assert _count(robust_accuracy_naive(model, x, y, "pgd", [eps])[0], N_AGREE) == n_theirs
    # the book's fast path also counts earlier iterates: never above the final-iterate count
    assert _count(robust_accuracy(model, x, y, "pgd", [eps])[0], N_AGREE) <= n_theirs


# ----------------------------------------------------------------------------- 3. worst case


def test_worst_case_is_the_and_and_never_above_any_attack(audit, model, images):
    x, y = images
    assert audit.attacks == ATTACKS
    stacked = np.stack([audit.correct[a] for a in ATTACKS])  # [A, E, N]
    np.testing.assert_array_equal(audit.robust, stacked.all(axis=0))
    for name in ATTACKS:
        assert np.all(audit.robust_accuracy <= audit.accuracy[name]), name
        assert np.all(audit.accuracy[name] <= audit.clean.mean()), name
        np.testing.assert_array_equal(audit.accuracy[name], audit.correct[name].mean(axis=1))
        assert audit.projected[name].sum() == 0, name
    assert np.all(audit.correct["fgsm"][0] == audit.clean)  # ε = 0: the clean outcomes
    # the PGD member is the book's PGD-40 curve, image for image
    np.testing.assert_array_equal(
        _count(audit.accuracy["pgd"], N_AUDIT),
        _count(robust_accuracy(model, x, y, "pgd", EPS_GRID), N_AUDIT))
    assert audit.robust_accuracy[-1] <= audit.robust_accuracy[1]


# ----------------------------------------------------------------------------- 4. checklist


def test_checklist_passes_a_plain_trained_model(audit, model, images):
    x, y = images
    report = masking_checklist(model, x, y, audit)
    assert report.iterative_passed and report.noise_passed and report.zero_gradient_passed
    assert report.zero_gradient_fraction == 0.0
    assert report.large_eps_accuracy <= 0.01  # unbounded attacks succeed
    assert np.all(report.iterative_excess <= 0)
    assert np.all(report.noise_accuracy[1:] > audit.robust_accuracy[1:])
    assert report.passed and report.failed == ()


def test_checklist_flags_a_quantized_input(model, images):
    x, y = images
    masked = Quantized(model).eval()
    result = audit_accuracy(masked, x, y, EPS_MASKED, batch_size=50, **FAST)
    report = masking_checklist(masked, x, y, result)
    assert report.zero_gradient_fraction == 1.0
    assert {"zero_gradient", "black_box", "large_eps"} <= set(report.failed)
    assert not report.passed
    # FGSM and PGD see a zero gradient and never move: accuracy = clean accuracy
    assert np.all(result.accuracy["pgd"] == result.clean.mean())


def test_checklist_flags_a_saturated_softmax(model, images):
    x, y = images
    masked = Saturated(model).eval()
    result = audit_accuracy(masked, x, y, EPS_MASKED, batch_size=50, **FAST)
    report = masking_checklist(masked, x, y, result)
    assert report.zero_gradient_fraction >= 0.5
    assert "zero_gradient" in report.failed and not report.passed
    # the scale-invariant targeted DLR loss of APGD-T still breaks what PGD-40 cannot
    assert result.accuracy["apgd-t"][-1] < result.accuracy["pgd"][-1]


def test_uniform_noise_stays_in_the_ball():
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    noisy = uniform_noise(x, 0.2, torch.Generator().manual_seed(1))
    assert (noisy - x).abs().max() <= 0.2 + TOL and noisy.min() >= 0 and noisy.max() <= 1


# ----------------------------------------------------------------------------- 5. bad arguments


def test_bad_arguments_raise_value_error_naming_the_field(model, images, audit):
    x, y = images[0][:4], images[1][:4]
    train_mode = MLP((784, 8, 10))  # a fresh module is in training mode
    whitened = MLP((784, 8, 6, 10), whiten_after=2).eval()  # whitening never frozen
    three_classes = MLP((784, 8, 3)).eval()
    cases = [
        (lambda: apgd_ce(model, x, y, -0.1), "eps"),
        (lambda: apgd_ce(model, x, y, 0.1, steps=0), "steps"),
        (lambda: square(model, x, y, 0.1, n_queries=0), "n_queries"),
        (lambda: apgd_t(model, x, y, 0.1, n_targets=10), "n_targets"),
        (lambda: fab_t(model, x, y, 0.1, seed=-1), "seed"),
        (lambda: apgd_ce(model, x.reshape(4, -1), y, 0.1), "x must have shape"),
        (lambda: apgd_ce(model, x + 1.0, y, 0.1), "x must lie"),
        (lambda: apgd_ce(model, x, y.float(), 0.1), "y must"),
        (lambda: apgd_ce(train_mode, x, y, 0.1), "model must be in evaluation mode"),
        (lambda: apgd_ce(whitened, x, y, 0.1), "model couples"),
        (lambda: apgd_t(three_classes, x, y % 3, 0.1), "model must return at least 4 logits"),
        (lambda: audit_accuracy(three_classes, x, y % 3, [0.1]), "model must return at least 4"),
        (lambda: audit_accuracy(model, x, y, []), "eps_grid"),
        (lambda: audit_accuracy(model, x, y, [0.1], attacks=["pgd", "cw"]), "attacks"),
        (lambda: audit_accuracy(model, x, y, [0.1], attacks="pgd"), "attacks"),
        (lambda: audit_accuracy(model, x, y, [0.1], attacks=[]), "attacks"),
        (lambda: audit_accuracy(model, x, y, [0.1], batch_size=0), "batch_size"),
        (lambda: masking_checklist(model, *images, object()), "result"),
        (lambda: masking_checklist(model, x, y, audit), "result"),  # other images
        (lambda: masking_checklist(model, *images, audit, tolerance=-1), "tolerance"),
        (lambda: masking_checklist(model, *images, audit, large_eps=0), "large_eps"),
        (lambda: masking_checklist(model, *images, audit, max_large_eps_accuracy=2),
         "max_large_eps_accuracy"),
        (lambda: masking_checklist(model, *images, audit, max_zero_gradient_fraction=-1),
         "max_zero_gradient_fraction"),
        (lambda: uniform_noise(x, -1.0), "eps"),
    ]
    for call, field in cases:
        with pytest.raises(ValueError, match=field):
            call()


def test_checklist_needs_fgsm_square_and_an_iterative_attack(model, images):
    x, y = images
    partial = audit_accuracy(model, x, y, [0.1], attacks=["fgsm", "pgd"], **FAST)
    with pytest.raises(ValueError, match="result must include"):
        masking_checklist(model, x, y, partial)
    assert set(ITERATIVE) <= set(WHITE_BOX) and len(CHECKS) == 5
