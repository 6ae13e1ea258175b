"""Per-seed summaries of stored results that the chapters' claims rest on."""

from __future__ import annotations

import numpy as np
import pytest

from powerlaw_lib import analysis
from powerlaw_lib.config import RunConfig
from powerlaw_lib.store import Result


def _runs(curves: list[list[float]]) -> list[Result]:
    return [Result(RunConfig(seed=s), {}, curves={"pgd": c}) for s, c in enumerate(curves)]


def test_seed_curve_means_average_each_seed_over_the_grid() -> None:
    runs = _runs([[1.0, 0.5, 0.0], [0.9, 0.3, 0.0]])
    np.testing.assert_allclose(analysis.seed_curve_means(runs, "pgd"), [0.5, 0.4])
    assert analysis.mean_curve_accuracy(runs, "pgd") == pytest.approx(0.45)


def test_strength_drop_is_the_largest_mean_drop_over_eps() -> None:
    def run(seed, pgd, restarts):                                   # at ε = 0.05, 0.1
        return Result(RunConfig(seed=seed), {
            "strength_pgd_accuracy@0.05": pgd[0], "strength_restarts_accuracy@0.05": restarts[0],
            "strength_pgd_accuracy@0.1": pgd[1], "strength_restarts_accuracy@0.1": restarts[1]})
    runs = [run(0, (0.50, 0.10), (0.48, 0.04)), run(1, (0.52, 0.12), (0.52, 0.08))]
    assert analysis.strength_drop(runs, (0.05, 0.1)) == pytest.approx(0.05)   # (0.06 + 0.04) / 2
    assert analysis.strength_drop(runs, (0.05,)) == pytest.approx(0.01)
    with pytest.raises(KeyError):
        analysis.strength_drop(runs, (0.2,))


def test_border_fraction_is_the_frames_share_of_the_absolute_sensitivity() -> None:
    uniform = np.ones((2, 1, 28, 28))                               # [top, C, H, W]
    assert analysis.border_fraction(uniform) == pytest.approx(300 / 784)
    centre = np.zeros((28, 28))
    centre[10:18, 10:18] = -1.0
    assert analysis.border_fraction(centre) == 0.0
    frame = -uniform + 0.0
    frame[..., 3:25, 3:25] = 0.0
    assert analysis.border_fraction(frame) == 1.0                   # signs do not cancel
    assert analysis.border_fraction(uniform, width=1) == pytest.approx(108 / 784)
    assert np.isnan(analysis.border_fraction(np.zeros((5, 5)), width=1))
    with pytest.raises(ValueError, match="width"):
        analysis.border_fraction(uniform, width=14)


def test_compare_is_a_two_standard_error_welch_test() -> None:
    a, b = [0.50, 0.52, 0.54], [0.40, 0.41, 0.42]
    c = analysis.compare(a, b)
    se = np.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 3)
    assert c.difference == pytest.approx(0.11) and c.standard_error == pytest.approx(se)
    assert c.held
    assert not analysis.compare([0.50, 0.60, 0.40], [0.45, 0.55, 0.35]).held   # 0.05 < 2 SE
    assert not analysis.compare(b, a).held                                     # wrong sign


def _trained(seed: int, accuracy: list[float]) -> Result:
    """A backprop run whose history holds ``accuracy`` per epoch, plus a local-phase entry
    that history_trajectory must not mistake for a training epoch."""
    history = [{"epoch": e, "test_accuracy": a} for e, a in enumerate(accuracy, 1)]
    return Result(RunConfig(seed=seed), {}, history=[{"phase": "local", "epoch": 1,
                                                      "test_accuracy": -1.0}, *history])


def test_history_trajectory_reads_the_training_phase_per_seed() -> None:
    runs = [_trained(0, [0.5, 0.7, 0.8]), _trained(1, [0.6, 0.8, 0.9])]
    epochs, values = analysis.history_trajectory(runs, "test_accuracy")
    assert epochs.tolist() == [1, 2, 3]
    np.testing.assert_allclose(values, [[0.5, 0.7, 0.8], [0.6, 0.8, 0.9]])  # [seeds, epochs]
    epochs, values = analysis.history_trajectory(runs, "test_accuracy", phase="local")
    assert epochs.tolist() == [1] and values.tolist() == [[-1.0], [-1.0]]
    with pytest.raises(ValueError, match="at least one run"):
        analysis.history_trajectory([], "test_accuracy")


def test_late_gain_is_the_rise_over_the_last_epochs() -> None:
    runs = [_trained(0, [0.5, 0.7, 0.8, 0.81]), _trained(1, [0.6, 0.8, 0.9, 0.95])]
    gain = analysis.late_gain(runs, window=2)                # (0.11 + 0.15) / 2, sd of both
    assert gain.mean == pytest.approx(0.13) and gain.sd == pytest.approx(np.std([0.11, 0.15], ddof=1))
    assert analysis.late_gain(runs, window=3).mean == pytest.approx((0.31 + 0.35) / 2)
    with pytest.raises(ValueError, match=r"window must be in \[1, 3\]"):
        analysis.late_gain(runs, window=4)


def test_largest_late_gain_names_the_group_still_learning_most() -> None:
    groups = {"flat": [_trained(0, [0.9, 0.9, 0.9])],
              "rising": [_trained(0, [0.5, 0.6, 0.8]), _trained(1, [0.5, 0.7, 0.8])],
              "short": [_trained(0, [0.1, 0.9])]}                  # too few epochs: skipped
    name, gain = analysis.largest_late_gain(groups, window=2)
    assert name == "rising" and gain.mean == pytest.approx(0.3) and gain.n == 2
    assert analysis.largest_late_gain({"short": groups["short"]}, window=2) is None


def test_late_gain_text_words_the_largest_rise_or_its_absence() -> None:
    groups = {"rising": [_trained(0, [0.5, 0.6, 0.8])], "short": [_trained(0, [0.1, 0.9])]}
    assert analysis.late_gain_text(groups, window=2) == "30.00 points (rising)"
    assert analysis.late_gain_text({"short": groups["short"]}, window=2) == \
        "not measurable (too few epochs)"


def test_data_loss_trajectory_drops_epochs_where_float32_cannot_resolve_the_cross_entropy():
    # what training records: float32(cross-entropy + penalty) and float32(penalty)
    rows = [(0.5, 0.25), (0.4, 3.0e4), (0.3, 4.5e10)]            # (cross-entropy, penalty)
    history = [{"epoch": e, "loss": float(np.float32(ce) + np.float32(p)),
                "penalty": float(np.float32(p))} for e, (ce, p) in enumerate(rows, 1)]
    epochs, data = analysis.data_loss_trajectory([Result(RunConfig(), {}, history=history)])
    assert epochs.tolist() == [1, 2, 3] and data.shape == (1, 3)
    assert data[0, 0] == pytest.approx(0.5) and data[0, 1] == pytest.approx(0.4, abs=0.01)
    assert np.isnan(data[0, 2])                                     # rounding, not a number
