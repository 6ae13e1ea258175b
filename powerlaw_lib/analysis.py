"""Summaries of stored results for the chapters: methods, seeds, curves and claims.

A *method* is every training field of a config except the seed (`method_key`); the
chapters compare methods by the mean ± sd over seeds of a metric, and call a claim "held" when the difference of the means
exceeds twice its standard error (Welch: sqrt(sd_a²/n_a + sd_b²/n_b)) -- with 3 seeds a
deliberately simple, stated criterion rather than a significance test.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from .config import DEFAULTS, EVALUATION_FIELDS, RunConfig
from .evaluation import metric_name
from .methods import METHOD_FIELDS, format_value
from .spectrum import fit_power_law
from .store import Result


#: Training fields that are not a method's and not the seed, in field order.
_OTHER_TRAINING_FIELDS = tuple(
    f.name for f in dataclasses.fields(RunConfig)
    if f.name not in EVALUATION_FIELDS and f.name not in METHOD_FIELDS
    and f.name not in ("regularizer", "seed"))


def _field_text(name: str, value) -> str:
    """How a non-method training field reads in a label ('no BN', '+whitening after h2')."""
    if name == "batch_norm":
        return "BN" if value else "no BN"
    if name == "whiten_after":
        return "no whitening" if value is None else f"+whitening after h{value}"
    return f"{name}={format_value(value)}"


def method_key(config: RunConfig) -> str:
    """The identity of a config's method: every training field except the seed.

    The method's label with all the fields it reads, then each other training field that
    is not at its default, e.g. 'SpecReg β=2 α=1 layers=[1] τ=10 | lr=0.001 ...'. Two
    configs share a method key exactly when they differ only in the seed (or in how they
    are evaluated).
    """
    method = config.method
    own = method.describe(config, fields=method.fields)
    other = [_field_text(n, getattr(config, n)) for n in _OTHER_TRAINING_FIELDS
             if getattr(config, n) != DEFAULTS[n]]
    return " | ".join([own, *other]) if other else own


def method_labels(configs: Iterable[RunConfig]) -> dict[str, str]:
    """Short display label of each method among `configs`: method key -> label.

    A label is the method's display label, the fields it reads that vary among the configs of
    that method, and the other training fields (seed aside) that vary among all `configs`
    ('vanilla', 'SpecReg β=2', 'SpecReg β=2 no BN'). Distinct methods get distinct labels.
    """
    configs = list(configs)
    by_key: dict[str, RunConfig] = {}
    for c in configs:
        by_key.setdefault(method_key(c), c)
    reps = list(by_key.values())
    other = [n for n in _OTHER_TRAINING_FIELDS
             if len({getattr(c, n) for c in reps}) > 1]
    labels = {}
    for key, c in by_key.items():
        same = [r for r in reps if r.regularizer == c.regularizer]
        own = tuple(n for n in c.method.fields if len({getattr(r, n) for r in same}) > 1)
        parts = [c.method.describe(c, fields=own)]
        parts += [_field_text(n, getattr(c, n)) for n in other]
        labels[key] = " ".join(p for p in parts if p)
    return labels


def group_by_method(results: Iterable[Result], where: Callable[[RunConfig], bool] = lambda c: True
                    ) -> dict[str, list[Result]]:
    """Results whose config passes `where`, grouped by method, seeds sorted.

    Keys are the methods' short labels among the selected results (`method_labels`), in
    order of first appearance.
    """
    chosen = [r for r in results if where(r.config)]
    labels = method_labels(r.config for r in chosen)
    groups: dict[str, list[Result]] = {}
    for r in chosen:
        groups.setdefault(labels[method_key(r.config)], []).append(r)
    return {k: sorted(v, key=lambda r: r.config.seed) for k, v in groups.items()}


def metric_values(results: Sequence[Result], metric: str) -> np.ndarray:
    """[n_seeds] values of a scalar metric."""
    return np.array([r.metrics[metric] for r in results], dtype=float)


def curve_matrix(results: Sequence[Result], curve: str) -> np.ndarray:
    """[n_seeds, n_points] of an accuracy curve ("fgsm", "pgd", "noise")."""
    return np.array([r.curves[curve] for r in results], dtype=float)


def strength_drop(results: Sequence[Result], eps: Sequence[float]) -> float:
    """The attack-strength check's verdict for one group of runs (seeds): the largest, over
    `eps`, of the mean over seeds of the check's PGD accuracy minus that of PGD with
    restarts on the same images (`evaluation.attack_strength_check`), as a fraction. Near
    zero: the stronger attack finds nothing the first one missed."""
    return max(float((metric_values(results, metric_name("strength_pgd", e))
                      - metric_values(results, metric_name("strength_restarts", e))).mean())
               for e in eps)


def border_fraction(maps: np.ndarray, width: int = 3) -> float:
    """Share of the absolute sensitivity of `maps` ([..., H, W], e.g. the stored ∂λ_n/∂x of
    Nassar et al. eq. 9) that lies on the outer `width`-pixel frame of the image: on MNIST a
    frame the digits (scaled into a 20 × 20 box centred in the 28 × 28) rarely reach, so
    sensitivity there responds to pixels that carry almost no information. A uniform map
    gives the frame's share of the pixels (300 / 784 for 28 × 28 and width 3)."""
    a = np.abs(np.asarray(maps, dtype=float))
    h, w = a.shape[-2:]
    if not 0 < 2 * width < min(h, w):
        raise ValueError(f"width must leave an inner region: 0 < 2 * width < {min(h, w)}, "
                         f"got width={width}")
    total = a.sum()
    inner = a[..., width:h - width, width:w - width].sum()
    return float((total - inner) / total) if total > 0 else float("nan")


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

    @property
    def significant(self) -> bool:
        """Two-sided: |difference| > 2 standard errors (never, without an error estimate)."""
        return abs(self.difference) > 2 * self.standard_error if self.standard_error > 0 else False


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Is mean(a) > mean(b) by more than two standard errors (Welch)?

    With one seed per side there is no error estimate: `held` is then just a > b.
    """
    sa, sb = summarize(a), summarize(b)
    se = float(np.sqrt(sa.sd ** 2 / sa.n + sb.sd ** 2 / sb.n))
    diff = sa.mean - sb.mean
    return Comparison(diff, se, bool(diff > 2 * se) if se > 0 else bool(diff > 0))


def values_by_seed(runs: Sequence[Result], values: Sequence[float], what: str = "") -> dict[int, float]:
    """{seed: value} for ``values[i]`` of ``runs[i]``, for `compare_paired`; two runs of one
    seed are refused (``what`` names them in the error)."""
    seeds = [r.config.seed for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{what + ': ' if what else ''}two runs of one seed, cannot pair: {seeds}")
    return dict(zip(seeds, map(float, values)))


def compare_paired(a: Mapping[int, float], b: Mapping[int, float]) -> Comparison:
    """Is ``a`` above ``b`` by more than two standard errors, seed by seed?

    ``a`` and ``b`` map a training seed to a value; the seeds both have are paired: the
    difference is the mean of ``a[seed] − b[seed]``, its standard error the standard
    deviation of those differences over √n. In this library the runs of one seed share
    their initial weights, batch order and evaluation noise (`experiments`, `training`), so
    what the seed changes cancels. With one common seed, or differences all equal (standard
    error 0), `held` is just a > b and `significant` is False, as in `compare`.
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"no seed in common: {sorted(a)} and {sorted(b)}")
    d = np.array([a[s] - b[s] for s in seeds], dtype=float)       # [n common seeds]
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
    diff = float(d.mean())
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


def _refits(results: Sequence[Result], spectrum: str, ranks: tuple[int, int], weighted: bool):
    """(normalized eigenvalues, fit or None) of each run's stored spectrum ``spectrum``."""
    for r in results:
        vals = np.asarray(r.spectra[spectrum], dtype=float)
        hi = min(ranks[1], int((vals > 0).sum()))
        fit = (fit_power_law(vals, ranks=(ranks[0], hi), weighted=weighted)
               if hi >= ranks[0] + 2 else None)
        yield vals / vals[vals > 0].sum(), fit


def refit_alphas(results: Sequence[Result], spectrum: str, ranks: tuple[int, int],
                 weighted: bool) -> np.ndarray:
    """[n_seeds] exponents fitted anew to each run's stored spectrum ``spectrum``.

    Lets every network be fitted the same way, whatever its stored metrics hold (e.g.
    Holzhausen et al.'s ordinary least squares over ranks 2..500 for a backprop network).
    The fit range is clipped to the spectrum's positive eigenvalues; NaN where fewer than
    three ranks remain.
    """
    return np.array([fit.alpha if fit else np.nan
                     for _, fit in _refits(results, spectrum, ranks, weighted)], dtype=float)


def fit_residuals(results: Sequence[Result], spectrum: str, ranks: tuple[int, int] = (11, 500),
                  weighted: bool = True) -> np.ndarray:
    """[n_seeds] root-mean-square distance, in decades, of log10 λ_n from the fitted power
    law over the fitted ranks: how straight the spectrum is on a log-log plot (0.1 decade
    = a typical deviation of 26 %). NaN where no fit is possible."""
    out = []
    for vals, fit in _refits(results, spectrum, ranks, weighted):
        if fit is None:
            out.append(np.nan)
            continue
        n = np.arange(fit.ranks[0], fit.ranks[1] + 1)
        lam = vals[n - 1]
        keep = lam > 0
        out.append(float(np.sqrt(np.mean(
            (np.log10(lam[keep]) - np.log10(fit.predict(n[keep]))) ** 2))))
    return np.array(out, dtype=float)


def history_trajectory(results: Sequence[Result], key: str, phase: str | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(epochs [T], values [n_seeds, T]) of ``key`` in the per-epoch training histories.

    ``phase`` picks the history entries: None, the epochs of gradient training (entries
    without a phase: every backprop run); "local" or "readout", the two phases of a
    local-learning run. Only the epochs where every run recorded ``key`` are kept.
    """
    rows = [{h["epoch"]: h[key] for h in r.history if h.get("phase") == phase and key in h}
            for r in results]
    if not rows:
        raise ValueError("results must hold at least one run")
    epochs = sorted(set.intersection(*(set(d) for d in rows)))
    return np.array(epochs), np.array([[d[e] for e in epochs] for d in rows], dtype=float)


#: Relative rounding of a float32 sum (half a unit in the last place).
FLOAT32_ROUNDING = 2.0 ** -24


def data_loss_trajectory(results: Sequence[Result], resolution: float = 0.01
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(epochs [T], values [n_seeds, T]) of the training loss without its penalty term (the
    cross-entropy), "loss" − "penalty" of the per-epoch histories.

    Training adds the two terms of each batch in float32 (`training.training_step`), so
    beside a penalty far larger than the cross-entropy the difference is rounding: an epoch
    whose penalty's rounding (|penalty| · 2⁻²⁴) exceeds ``resolution`` times the difference
    is NaN, not a number.
    """
    epochs, loss = history_trajectory(results, "loss")
    _, penalty = history_trajectory(results, "penalty")
    data = loss - penalty                                          # [n_seeds, T]
    unresolved = np.abs(penalty) * FLOAT32_ROUNDING > resolution * np.abs(data)
    return epochs, np.where(unresolved, np.nan, data)


def local_trajectory(results: Sequence[Result], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs [T], values [n_seeds, T]) of ``key`` over a local-learning run's local phase.

    Only the epochs where every run recorded ``key`` (the tracked epochs of the spectra,
    every epoch for the convergence report); the runs must share their local epochs.
    """
    if not results:
        raise ValueError("results must hold at least one local-learning run")
    return history_trajectory(results, key, phase="local")


def late_gain(results: Sequence[Result], window: int = 10, key: str = "test_accuracy") -> Summary:
    """Mean ± sd over seeds of how much ``key`` rose over the last ``window`` epochs of
    training (value at the last epoch minus the value ``window`` epochs earlier).

    A reader's check of whether a run stopped short of convergence: when a grid trains
    fewer epochs than the paper, a gain near zero says the cut costs little.
    """
    epochs, values = history_trajectory(results, key)               # values [n_seeds, T]
    if window < 1 or window >= len(epochs):
        raise ValueError(f"window must be in [1, {len(epochs) - 1}] for {len(epochs)} "
                         f"recorded epochs, got {window}")
    return summarize(values[:, -1] - values[:, -1 - window])


def largest_late_gain(groups: dict[str, Sequence[Result]], window: int = 10,
                      key: str = "test_accuracy") -> tuple[str, Summary] | None:
    """The group (e.g. a variant's runs over seeds) whose ``key`` rose most, on average
    over seeds, in its last ``window`` training epochs, with that rise (`late_gain`).
    Groups that trained ``window`` epochs or fewer are skipped; None when every group is.
    """
    gains = {}
    for name, runs in groups.items():
        epochs, _ = history_trajectory(runs, key)
        if len(epochs) > window:
            gains[name] = late_gain(runs, window, key)
    if not gains:
        return None
    name = max(gains, key=lambda n: gains[n].mean)
    return name, gains[name]


def late_gain_text(groups: dict[str, Sequence[Result]], window: int = 10) -> str:
    """`largest_late_gain` for a chapter's prose: "0.30 points (name)", or "not measurable
    (too few epochs)" when no group trained more than ``window`` epochs."""
    late = largest_late_gain(groups, window)
    return ("not measurable (too few epochs)" if late is None
            else f"{100 * late[1].mean:.2f} points ({late[0]})")


def local_milestone(results: Sequence[Result], key: str, fraction: float = 0.5
                    ) -> tuple[int, float, float] | None:
    """(epoch, mean ``key`` then, mean ``key`` at the end) of local-learning runs, "then"
    being the first epoch where ``key`` was tracked and the mean share of converged units
    (``converged_fraction``) had reached ``fraction``; None if it never did."""
    epochs, converged = local_trajectory(results, "converged_fraction")
    reached = epochs[converged.mean(0) >= fraction]
    if reached.size == 0:
        return None
    tracked, values = local_trajectory(results, key)
    later = np.nonzero(tracked >= reached[0])[0]
    if later.size == 0:
        return None
    mean = values.mean(0)
    return int(tracked[later[0]]), float(mean[later[0]]), float(mean[-1])
