"""Summaries of stored results for the chapters: methods, seeds, curves and claims.

A *method* is everything in a config except the seed; the chapters compare methods by the
mean ± sd over seeds of a metric, and call a claim "held" when the difference of the means
exceeds twice its standard error (Welch: sqrt(sd_a²/n_a + sd_b²/n_b)) -- with 3 seeds a
deliberately simple, stated criterion rather than a significance test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from .config import RunConfig
from .store import Result


def method_key(config: RunConfig) -> str:
    """Short name of a config's method (seed excluded), e.g. 'vanilla', 'specreg β=2'."""
    if config.regularizer == "none":
        name = "vanilla"
    elif config.regularizer == "spectral":
        name = f"specreg β={config.beta:g}"
        if config.alpha != 1.0:
            name += f" α={config.alpha:g}"
    else:
        name = f"{config.regularizer} β={config.beta:g}"
    if config.whiten_after:
        name += " +whitening"
    return name


def group_by_method(results: Iterable[Result], where: Callable[[RunConfig], bool] = lambda c: True
                    ) -> dict[str, list[Result]]:
    """Results whose config passes `where`, grouped by `method_key`, seeds sorted."""
    groups: dict[str, list[Result]] = {}
    for r in results:
        if where(r.config):
            groups.setdefault(method_key(r.config), []).append(r)
    return {k: sorted(v, key=lambda r: r.config.seed) for k, v in groups.items()}


def metric_values(results: Sequence[Result], metric: str) -> np.ndarray:
    """[n_seeds] values of a scalar metric."""
    return np.array([r.metrics[metric] for r in results], dtype=float)


def curve_matrix(results: Sequence[Result], curve: str) -> np.ndarray:
    """[n_seeds, n_points] of an accuracy curve ("fgsm", "pgd", "noise")."""
    return np.array([r.curves[curve] for r in results], dtype=float)


@dataclass(frozen=True)
class Summary:
    mean: float
    sd: float
    n: int

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        return f"{self.mean:{spec}} ± {self.sd:{spec}}" if self.n > 1 else f"{self.mean:{spec}}"


def summarize(values: Sequence[float]) -> Summary:
    v = np.asarray(values, dtype=float)
    return Summary(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))


@dataclass(frozen=True)
class Comparison:
    """Mean of `a` minus mean of `b`, its standard error, and whether it exceeds 2 SE."""

    difference: float
    standard_error: float
    held: bool


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Is mean(a) > mean(b) by more than two standard errors (Welch)?

    With one seed per side there is no error estimate: `held` is then just a > b.
    """
    sa, sb = summarize(a), summarize(b)
    se = float(np.sqrt(sa.sd ** 2 / sa.n + sb.sd ** 2 / sb.n))
    diff = sa.mean - sb.mean
    return Comparison(diff, se, bool(diff > 2 * se) if se > 0 else bool(diff > 0))


def seed_curve_means(results: Sequence[Result], curve: str) -> np.ndarray:
    """[n_seeds] accuracy of each seed averaged over the curve's grid (area / width)."""
    return curve_matrix(results, curve).mean(axis=1)


def mean_curve_accuracy(results: Sequence[Result], curve: str) -> float:
    """Accuracy averaged over the curve's grid and the seeds (area under the curve / width)."""
    return float(seed_curve_means(results, curve).mean())


def select_beta(accuracy_by_beta: dict[float, float], reference_accuracy: float,
                tolerance: float = 0.01) -> float:
    """β-selection rule of the deep chapter, fixed before any robustness number is seen.

    The largest β whose clean accuracy (one selection seed) is within `tolerance` (a
    fraction: 0.01 = 1 point) of the unregularized network's on the same seed; the
    smallest β when none is. Robustness never enters the choice.
    """
    if not accuracy_by_beta:
        raise ValueError("accuracy_by_beta must hold at least one β")
    within = [b for b, acc in accuracy_by_beta.items() if acc >= reference_accuracy - tolerance]
    return float(max(within)) if within else float(min(accuracy_by_beta))


def best_by(groups: dict[str, list[Result]], score: Callable[[list[Result]], float],
            among: Callable[[str], bool] = lambda k: True) -> str:
    """The method key with the highest `score` among the keys passing `among`."""
    keys = [k for k in groups if among(k)]
    if not keys:
        raise ValueError("no method to choose from")
    return max(keys, key=lambda k: score(groups[k]))
