"""Tests of powerlaw_lib.local_learning: the Krotov–Hopfield rule and its classifier.

Oracles: a slow per-sample, per-unit re-implementation of the minibatch update (currents,
ranks and the update sum written out with Python loops), hand-made currents with ties,
the fixed point ‖W_μ‖_p = 1 of the rule, and a small MNIST classification.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from powerlaw_lib.local_learning import (
    KrotovHopfieldNet,
    annealed_lr,
    convergence,
    current_matrix,
    currents,
    local_update,
    normalize_inputs,
    ranking_activation,
    train_local,
    train_readout,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _unit_rows(n: int, dim: int, seed: int) -> torch.Tensor:
    """``[n, dim]`` float64 Gaussian rows scaled to unit L2 norm."""
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


# ----------------------------------------------------------------------------- slow reference


def _reference_update(W: list[list[float]], V: list[list[float]], p: float, k: int,
                      delta: float) -> np.ndarray:
    """ΔW / max|ΔW| with explicit loops over samples, units and input coordinates."""
    n_units, dim = len(W), len(W[0])
    update = [[0.0] * dim for _ in range(n_units)]
    for v in V:  # one sample at a time
        current = []
        for w in W:  # I_μ = Σ_i sign(w_i) |w_i|^(p-1) v_i
            total = 0.0
            for w_i, v_i in zip(w, v):
                total += math.copysign(abs(w_i) ** (p - 1.0), w_i) * v_i
            current.append(total)
        ranked = sorted(range(n_units), key=lambda mu: (-current[mu], mu))
        for mu in range(n_units):
            g = 1.0 if mu == ranked[0] else (-delta if mu == ranked[k - 1] else 0.0)
            if g == 0.0:
                continue
            for i in range(dim):
                update[mu][i] += g * (v[i] - current[mu] * W[mu][i])
    largest = max(abs(u) for row in update for u in row)
    return np.array(update) / largest


@pytest.mark.parametrize("p", [2.0, 3.0])
@pytest.mark.parametrize("k", [2, 5, 20])
def test_local_update_equals_per_sample_reference(p, k) -> None:
    gen = torch.Generator().manual_seed(int(10 * p) + k)
    W = torch.randn(20, 30, generator=gen, dtype=torch.float64)  # [K, D]
    V = torch.rand(8, 30, generator=gen, dtype=torch.float64)  # [B, D]
    fast = local_update(W, V, p, k, 0.4).numpy()
    slow = _reference_update(W.tolist(), V.tolist(), p, k, 0.4)
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-9)
    assert np.abs(fast).max() == pytest.approx(1.0)


def test_local_update_equals_dense_formula_of_public_pieces() -> None:
    gen = torch.Generator().manual_seed(3)
    W = torch.randn(15, 12, generator=gen, dtype=torch.float64)
    V = _unit_rows(9, 12, seed=4)
    current = currents(W, V, 3.0)  # [B, K]
    assert torch.allclose(current, V @ current_matrix(W, 3.0).T)
    g = ranking_activation(current, 4, 0.4)  # [B, K]
    dense = g.T @ V - (g * current).sum(0)[:, None] * W  # ΔW = gᵀV - diag(Σ_b g I) W
    expected = dense / dense.abs().max()
    torch.testing.assert_close(local_update(W, V, 3.0, 4, 0.4), expected, rtol=1e-12, atol=1e-12)


def test_local_update_of_a_zero_batch_is_zero() -> None:
    W = torch.randn(6, 5, dtype=torch.float64)
    update = local_update(W, torch.zeros(3, 5, dtype=torch.float64), 3.0, 2, 0.4)
    assert torch.equal(update, torch.zeros_like(W))


# ----------------------------------------------------------------------------- ranking


@pytest.mark.parametrize("k", [2, 3, 7])
def test_ranking_activation_one_winner_and_one_kth_per_sample(k) -> None:
    current = torch.randn(50, 10, dtype=torch.float64)  # no ties (almost surely)
    g = ranking_activation(current, k, 0.4)
    assert torch.equal((g == 1.0).sum(1), torch.ones(50, dtype=torch.long))
    assert torch.equal((g == -0.4).sum(1), torch.ones(50, dtype=torch.long))
    assert torch.equal((g != 0).sum(1), torch.full((50,), 2))
    assert torch.equal(g.argmax(1), current.argmax(1))
    kth_value = current.sort(dim=1, descending=True).values[:, k - 1]
    assert torch.equal(current[g == -0.4], kth_value)


def test_ranking_activation_breaks_ties_by_lower_unit_index() -> None:
    current = torch.tensor([
        [1.0, 3.0, 3.0, 2.0, 2.0, 2.0, 0.0],
        [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0],
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    ])
    expected = {  # k -> (winner, k-th) per row
        2: [(1, 2), (0, 1), (2, 0)],
        4: [(1, 4), (0, 3), (2, 3)],
    }
    for k, rows in expected.items():
        g = ranking_activation(current, k, 0.25)
        for row, (winner, kth) in enumerate(rows):
            assert g[row, winner] == 1.0 and g[row, kth] == -0.25
            assert int((g[row] != 0).sum()) == 2
        assert torch.equal(ranking_activation(current, k, 0.25), g)  # deterministic


def test_ranking_activation_with_many_ties_equals_sorting_by_current_then_index() -> None:
    current = torch.randint(0, 4, (40, 12), generator=torch.Generator().manual_seed(1)).double()
    for k in range(2, 13):
        g = ranking_activation(current, k, 0.5)
        for row, values in enumerate(current.tolist()):
            ranked = sorted(range(12), key=lambda mu: (-values[mu], mu))
            expected = [1.0 if mu == ranked[0] else -0.5 if mu == ranked[k - 1] else 0.0
                        for mu in range(12)]
            assert g[row].tolist() == expected, (k, row)


def test_ranking_activation_ties_in_a_wide_layer() -> None:
    current = torch.zeros(3, 3000)
    current[1, 2999] = 1.0
    g = ranking_activation(current, 7, 0.4)
    assert g[0, 0] == 1.0 and g[0, 6] == -0.4
    assert g[1, 2999] == 1.0 and g[1, 5] == -0.4
    assert int((g != 0).sum()) == 6


# ----------------------------------------------------------------------------- convergence


def test_convergence_report_of_known_norms() -> None:
    rows = torch.randn(4, 9, dtype=torch.float64)
    rows = rows / torch.linalg.vector_norm(rows, ord=3, dim=1, keepdim=True)  # ‖·‖_3 = 1
    W = rows * torch.tensor([[1.0], [1.03], [0.9], [1.2]], dtype=torch.float64)
    report = convergence(W, 3.0, tol=0.05)
    assert report.fraction == pytest.approx(0.5)
    assert report.mean_deviation == pytest.approx((0.0 + 0.03 + 0.1 + 0.2) / 4)
    assert report.max_deviation == pytest.approx(0.2)


def test_training_drives_p_norms_to_one() -> None:
    x = _unit_rows(300, 20, seed=1)
    W0, _ = train_local(x, hidden=16, p=3.0, k=2, epochs=1, lr=1e-12, batch_size=20, seed=0)
    assert convergence(W0, 3.0).fraction < 0.5  # standard-normal start: ‖W_μ‖_3 ≈ 3
    W, history = train_local(x, hidden=16, p=3.0, k=2, epochs=50, batch_size=20, seed=0)
    report = convergence(W, 3.0, tol=0.05)
    assert report.fraction >= 0.9
    assert history[-1]["converged_fraction"] == report.fraction
    assert history[-1]["mean_deviation"] < history[0]["mean_deviation"]
    assert [row["epoch"] for row in history] == list(range(1, 51))
    assert [row["lr"] for row in history] == [annealed_lr(0.04, e, 50) for e in range(50)]
    assert history[0]["lr"] == 0.04 and history[-1]["lr"] == pytest.approx(0.04 / 50)


def test_training_is_deterministic_given_the_seed() -> None:
    x = _unit_rows(120, 10, seed=2).float()
    seen = []
    W1, _ = train_local(x, hidden=8, k=3, epochs=3, batch_size=16, seed=5,
                        callback=lambda epoch, W, row: seen.append(epoch))
    W2, _ = train_local(x, hidden=8, k=3, epochs=3, batch_size=16, seed=5)
    W3, _ = train_local(x, hidden=8, k=3, epochs=3, batch_size=16, seed=6)
    assert torch.equal(W1, W2)
    assert not torch.allclose(W1, W3)
    assert seen == [1, 2, 3]
    assert W1.dtype == torch.float32 and W1.shape == (8, 10)


def test_training_scales_each_input_to_unit_norm() -> None:
    x = _unit_rows(60, 10, seed=3)
    scales = torch.rand(60, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5 + 0.1
    W1, _ = train_local(x, hidden=6, k=2, epochs=2, batch_size=10, seed=1)
    W2, _ = train_local(x * scales, hidden=6, k=2, epochs=2, batch_size=10, seed=1)
    W3, _ = train_local(x * scales, hidden=6, k=2, epochs=2, batch_size=10, seed=1, input_norm=None)
    torch.testing.assert_close(W1, W2, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(W1, W3)
    v = normalize_inputs(torch.rand(4, 1, 3, 3), 3.0)
    torch.testing.assert_close(torch.linalg.vector_norm(v, ord=3, dim=1), torch.ones(4))


# ----------------------------------------------------------------------------- classifier


def test_net_shapes_buffers_and_hidden_representation() -> None:
    W = torch.randn(12, 784)
    net = KrotovHopfieldNet(W, n_classes=10, p=3.0, power=4.5)
    x = torch.rand(5, 1, 28, 28)
    logits, hidden = net.forward_with_hidden(x)
    assert logits.shape == (5, 10)
    assert len(hidden) == 1 and hidden[0].shape == (5, 12)
    assert net.hidden_widths == (12,)
    assert torch.equal(net(x), logits)
    expected = torch.relu(currents(W, normalize_inputs(x), 3.0)).pow(4.5)
    torch.testing.assert_close(hidden[0], expected)
    assert {name for name, _ in net.named_parameters()} == {"readout.weight", "readout.bias"}
    assert {"weights", "metric", "gain"} <= set(net.state_dict())


def test_net_input_gradient_is_finite_and_nonzero() -> None:
    net = KrotovHopfieldNet(torch.randn(30, 784))
    x = torch.rand(6, 1, 28, 28, requires_grad=True)
    loss = F.cross_entropy(net(x), torch.arange(6))
    (grad,) = torch.autograd.grad(loss, x)
    assert grad.shape == x.shape
    assert bool(torch.isfinite(grad).all())
    assert float(grad.abs().sum()) > 0
    assert net.weights.grad is None and not net.weights.requires_grad


@pytest.fixture(scope="module")
def mnist_small():
    from powerlaw_lib import data

    try:
        ds = data.load("mnist")
    except FileNotFoundError:
        pytest.skip("MNIST files not found")
    x_train, y_train = data.subset(ds.x_train, ds.y_train, 2000, seed=0)
    x_test, y_test = data.subset(ds.x_test, ds.y_test, 1000, seed=0)
    return x_train, y_train, x_test, y_test


@pytest.mark.slow
def test_readout_on_local_features_classifies_mnist(mnist_small) -> None:
    x_train, y_train, x_test, y_test = mnist_small
    W, history = train_local(x_train, hidden=100, k=7, epochs=30, batch_size=20, seed=0)
    assert history[-1]["converged_fraction"] > history[0]["converged_fraction"]
    net = KrotovHopfieldNet(W, n_classes=10)
    readout_history = train_readout(net, x_train, y_train, epochs=10, seed=0)
    assert readout_history[-1]["loss"] < readout_history[0]["loss"]
    assert float(net.gain) > 1.0  # h = relu(I)^4.5 with |I| <= 1 is small
    with torch.no_grad():
        accuracy = float((net(x_test).argmax(1) == y_test).double().mean())
    assert accuracy > 0.7, accuracy

    from powerlaw_lib.attacks import fgsm

    x_adv = fgsm(net.eval(), x_test[:200], y_test[:200], 0.1)
    with torch.no_grad():
        adversarial = float((net(x_adv).argmax(1) == y_test[:200]).double().mean())
    assert adversarial < accuracy


# ----------------------------------------------------------------------------- validation


W_OK = torch.randn(5, 4)
V_OK = torch.rand(3, 4)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: currents(W_OK, V_OK, 1.5), "p"),
        (lambda: currents(W_OK, torch.rand(3, 7), 3.0), "V"),
        (lambda: currents(torch.full((5, 4), float("nan")), V_OK, 3.0), "W"),
        (lambda: ranking_activation(torch.randn(3, 5), 1, 0.4), "k"),
        (lambda: ranking_activation(torch.randn(3, 5), 6, 0.4), "k"),
        (lambda: ranking_activation(torch.randn(3, 5), 2, -0.1), "delta"),
        (lambda: ranking_activation(torch.randn(5), 2, 0.4), "currents"),
        (lambda: local_update(W_OK, V_OK, 3.0, 2.5, 0.4), "k"),
        (lambda: local_update(W_OK, V_OK.double(), 3.0, 2, 0.4), "V"),
        (lambda: convergence(W_OK, 3.0, tol=0.0), "tol"),
        (lambda: train_local(V_OK, hidden=1, k=2), "hidden"),
        (lambda: train_local(V_OK, hidden=5, k=6), "k"),
        (lambda: train_local(V_OK, hidden=5, k=2, lr=0.0), "lr"),
        (lambda: train_local(V_OK, hidden=5, k=2, epochs=0), "epochs"),
        (lambda: train_local(V_OK, hidden=5, k=2, batch_size=0), "batch_size"),
        (lambda: train_local(V_OK, hidden=5, k=2, input_norm=0.5), "input_norm"),
        (lambda: train_local(V_OK.long(), hidden=5, k=2), "x_train"),
        (lambda: KrotovHopfieldNet(W_OK, power=0.5), "power"),
        (lambda: KrotovHopfieldNet(W_OK, n_classes=1), "n_classes"),
        (lambda: KrotovHopfieldNet(torch.randn(4)), "weights"),
        (lambda: KrotovHopfieldNet(W_OK)(torch.rand(2, 5)), "x has"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, name) -> None:
    with pytest.raises(ValueError, match=name):
        call()
