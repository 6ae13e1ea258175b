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


def test_compare_is_a_two_standard_error_welch_test() -> None:
    a, b = [0.50, 0.52, 0.54], [0.40, 0.41, 0.42]
    c = analysis.compare(a, b)
    se = np.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 3)
    assert c.difference == pytest.approx(0.11) and c.standard_error == pytest.approx(se)
    assert c.held
    assert not analysis.compare([0.50, 0.60, 0.40], [0.45, 0.55, 0.35]).held   # 0.05 < 2 SE
    assert not analysis.compare(b, a).held                                     # wrong sign
