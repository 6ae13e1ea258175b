"""The α sweep of Gerum et al. 2022, summarized: runs by setting, penalty and target
exponent α*; trends over α*; the paper's four claims judged.

Groups (`sweep_groups`): setting (`grids.ALPHA_SETTINGS`) -> penalty family ("slope":
Gerum's β·|α̂ − α*|; "eq2": the spectral penalty of Nassar et al. 2020, eq. 2) -> target α*
(None: the unregularized network trained at the family's batch size) -> runs sorted by
seed. Every number is a mean over seeds; a difference counts when it exceeds twice its
standard error (`analysis.compare`), a trend over α* when its least-squares slope does
(`trend`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from .analysis import (Comparison, Summary, compare, compare_paired, data_loss_trajectory,
                       metric_values, summarize, values_by_seed)
from .claims import Claim, all_parts
from .evaluation import metric_name
from .grids import ALPHA_FAMILIES, ALPHA_SETTINGS, alpha_setting
from .store import Result

__all__ = ["AttackGrid", "Best", "FAMILIES", "GERUM_CLAIMS", "GainCount", "LoadReading",
           "ONE_STEP_MARGIN", "PenaltyLoad", "PenaltyPair", "PenaltyReading", "PlainExponent",
           "REACH_TOLERANCE", "Trend", "alpha_claims", "alpha_metric", "attack_grid", "audit_twin",
           "best_by_setting", "best_of", "best_target", "compare_seeds",
           "difference_of_gains", "eq2_matching_alpha", "eq2_ratio_curve", "eq2_ratios",
           "eq2_tail_ratio", "family_of", "followed_up_to", "gain_counts",
           "gains_over_unregularized", "last_layer_metric", "load_reading", "one_step_gaps",
           "one_step_targets", "penalty_loads", "penalty_pairs", "penalty_readings",
           "plain_exponents", "reached_targets", "read_eps", "sweep_groups", "target_gaps",
           "target_values", "trend", "trend_word"]

#: Penalty families of the sweep, by `RunConfig.regularizer` (`grids.ALPHA_FAMILIES`).
FAMILIES = ALPHA_FAMILIES
#: The range of exponents Gerum et al. report for unregularized networks (claim 4).
UNREGULARIZED_RANGE = (1.4, 2.1)
#: The range of α* at which Gerum et al. find dense networks best (claim 1).
DENSE_BEST_RANGE = (2.0, 3.0)
#: A target α* counts as reached when the mean measured α̂ lies within this distance of it.
REACH_TOLERANCE = 0.25
#: `one_step_targets`: FGSM accuracy less than this far above PGD's (a fraction; about the
#: sampling error of PGD accuracy on 2,000 images) counts as "one step as strong as many".
ONE_STEP_MARGIN = 0.01

Targets = dict  # float | None -> list[Result]
SweepGroups = dict  # setting -> family -> Targets
NAN = float("nan")


def family_of(result_or_config) -> str | None:
    """The penalty family of a regularized run ("slope", "eq2"), None when unregularized."""
    config = getattr(result_or_config, "config", result_or_config)
    return FAMILIES.get(config.regularizer)


def sweep_groups(results: Sequence[Result]) -> SweepGroups:
    """setting -> family -> α* (None: unregularized twin) -> runs sorted by seed.

    An unregularized run joins every family trained at its batch size (Gerum's penalty at
    the setting's batch, eq. 2 at its wider one). Settings and α* are in increasing order,
    None first.
    """
    by_setting: dict[str, list[Result]] = {}
    for r in results:
        by_setting.setdefault(alpha_setting(r.config), []).append(r)
    out: SweepGroups = {}
    for setting in (s for s in ALPHA_SETTINGS if s in by_setting):
        runs = by_setting[setting]
        families: dict[str, dict] = {}
        for r in runs:
            fam = family_of(r)
            if fam is not None:
                families.setdefault(fam, {}).setdefault(float(r.config.alpha), []).append(r)
        plain = [r for r in runs if family_of(r) is None]
        if not families and plain:
            families["slope"] = {}
        for fam, targets in families.items():
            batch = (next(iter(targets.values()))[0].config.batch_size if targets
                     else ALPHA_SETTINGS[setting]["batch_size"])
            twins = [r for r in plain if r.config.batch_size == batch]
            if twins:
                targets[None] = twins
            order = sorted(targets, key=lambda a: -math.inf if a is None else a)
            families[fam] = {a: sorted(targets[a], key=lambda r: r.config.seed) for a in order}
        out[setting] = {f: families[f] for f in FAMILIES.values() if f in families}
    return out


def read_eps(setting: str) -> float:
    """The ε at which Gerum et al. read robustness off for `setting`."""
    return ALPHA_SETTINGS[setting]["read_eps"]


def last_layer_metric(runs: Sequence[Result], metric: str) -> str:
    """Key of a per-layer metric (e.g. "alpha_gerum", "alpha") of the last hidden layer."""
    return f"layer{len(runs[0].config.hidden_widths)}_{metric}"


def alpha_metric(targets: Targets, fit: str = "alpha_gerum") -> str:
    """Key of the measured exponent of the last hidden layer for the runs of `targets`:
    `fit` "alpha_gerum" (Gerum's fit, ranks 6..50) or "alpha" (Stringer's weighted fit)."""
    runs = next((rs for rs in targets.values() if rs), None)
    if runs is None:
        raise ValueError("targets must hold at least one run")
    return last_layer_metric(runs, fit)


def target_gaps(targets: Targets, fit: str = "alpha_gerum") -> dict[float, float]:
    """|mean over seeds of the measured α̂ − α*| for each regularized α* of `targets`."""
    metric = alpha_metric(targets, fit)
    return {a: abs(float(metric_values(runs, metric).mean()) - a)
            for a, runs in targets.items() if a is not None}


def reached_targets(targets: Targets, tolerance: float = REACH_TOLERANCE,
                    fit: str = "alpha_gerum") -> list[float]:
    """The regularized α* whose mean measured α̂ lies within `tolerance` of the target."""
    return [a for a, gap in target_gaps(targets, fit).items() if gap <= tolerance]


def followed_up_to(targets: Targets, tolerance: float = REACH_TOLERANCE,
                   fit: str = "alpha_gerum", expected: Sequence[float] | None = None
                   ) -> float | None:
    """Where the penalty stops following its target: the largest α* such that it and every
    smaller target are reached (`reached_targets`); None when the smallest is missed.
    With `expected` (the grid's targets) the walk also stops at the first target not run,
    so that a missing target is never counted as followed."""
    reached = set(reached_targets(targets, tolerance, fit))
    last = None
    for a in sorted(expected if expected is not None else (a for a in targets if a is not None)):
        if a not in reached:
            break
        last = a
    return last


def target_values(targets: Targets, metric: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """The regularized α* (increasing) and, for each, the per-seed values of `metric`."""
    alphas = [a for a in targets if a is not None]
    return np.array(alphas, dtype=float), [metric_values(targets[a], metric) for a in alphas]


@dataclass(frozen=True)
class AttackGrid:
    """Accuracy under one attack over (target, ε), mean over seeds, for a heat map."""

    targets: list          # [R] None (unregularized) first, then α* increasing
    eps: np.ndarray        # [C] attack sizes ε, increasing
    accuracy: np.ndarray   # [R, C] mean accuracy over seeds (fraction); NaN where not stored


def attack_grid(targets: Targets, attack: str, max_eps: float | None = None) -> AttackGrid:
    """Mean accuracy under `attack` ("fgsm" or "pgd") for every target of `targets` and every
    ε the runs were attacked at (`RunConfig.fgsm_eps` / `pgd_eps`), up to `max_eps`.

    Every run of `targets` must share one ε grid; a cell is NaN when any run of its target
    lacks that ε (a mean over fewer seeds would not be comparable with its neighbours).
    """
    if attack not in ("fgsm", "pgd"):
        raise ValueError(f"attack must be 'fgsm' or 'pgd', got {attack!r}")
    keys = [k for k, runs in targets.items() if runs]
    if not keys:
        raise ValueError("targets must hold at least one run")
    grids_ = {tuple(getattr(r.config, f"{attack}_eps")) for k in keys for r in targets[k]}
    if len(grids_) != 1:
        raise ValueError(f"the runs of targets were attacked on {len(grids_)} different "
                         f"{attack}_eps grids; a heat map needs one")
    eps = np.array(sorted(grids_.pop()), dtype=float)
    if max_eps is not None:
        eps = eps[eps <= max_eps + 1e-9]

    def mean(runs: Sequence[Result], e: float) -> float:
        v = [r.metrics.get(metric_name(attack, e), NAN) for r in runs]
        return NAN if any(math.isnan(x) for x in v) else float(np.mean(v))

    acc = np.array([[mean(targets[k], e) for e in eps] for k in keys]).reshape(len(keys), eps.size)
    return AttackGrid(keys, eps, acc)


def one_step_gaps(targets: Targets, eps: float) -> dict[float | None, np.ndarray]:
    """Per target (None: unregularized) and seed: accuracy under FGSM minus accuracy under
    PGD at `eps` (fractions; [seeds]).

    PGD takes many steps inside the ε-ball where FGSM takes one of size ε, so on a network
    whose gradient guides an attack the gap is clearly positive. A gap below zero ("one step
    beats iterative") is a symptom of gradient masking (Athalye et al. 2018; Carlini et al.
    2019), and a gap near zero a weak form of it; only stronger attacks, and one that does
    not follow the gradient, can rule masking out (`audits`). FGSM attacks every held-out
    image and PGD a fixed subset, so the gap also carries the subset's sampling error."""
    fgsm, pgd = metric_name("fgsm", eps), metric_name("pgd", eps)
    return {a: metric_values(runs, fgsm) - metric_values(runs, pgd)
            for a, runs in targets.items() if runs}


def one_step_targets(targets: Targets, eps: float, margin: float = ONE_STEP_MARGIN) -> list[float]:
    """The regularized α* (increasing) whose mean `one_step_gaps` is below `margin`: FGSM
    at `eps` is about as strong as PGD, or stronger."""
    gaps = one_step_gaps(targets, eps)
    return sorted(a for a, g in gaps.items() if a is not None and g.mean() < margin)


def audit_twin(record, records: Iterable):
    """Among the audits ``records``, the one of ``record``'s unregularized twin: the network
    without penalty of the same seed and batch size (None when it is not audited)."""
    return next((t for t in records if family_of(t) is None
                 and (t.config.seed, t.config.batch_size)
                 == (record.config.seed, record.config.batch_size)), None)


def compare_seeds(a: np.ndarray, b: np.ndarray) -> Comparison:
    """`analysis.compare` (Welch, mean(a) − mean(b)) when both sides have at least two seeds;
    otherwise the difference with a NaN standard error, never significant: a side of one
    seed has no spread, and the other side's alone would understate the error."""
    if a.size < 2 or b.size < 2:
        return Comparison(float(a.mean() - b.mean()), NAN, False)
    return compare(a, b)


def gains_over_unregularized(targets: Targets, metric: str) -> dict[float, Comparison]:
    """For every regularized α* of `targets`: its `metric` minus the unregularized network's
    (`compare_seeds`: Welch over seeds, untested with fewer than two seeds on a side).
    Empty without an unregularized twin."""
    plain = targets.get(None)
    if not plain:
        return {}
    base = metric_values(plain, metric)
    return {a: compare_seeds(metric_values(runs, metric), base)
            for a, runs in targets.items() if a is not None and runs}


@dataclass(frozen=True)
class GainCount:
    """How the penalized networks of several settings fare against their unregularized
    twins in one metric (`gain_counts`): of ``total`` (setting, α*) pairs, ``tested`` have an
    error estimate; ``above`` / ``below`` of those lie above / below the twin by more than two
    standard errors."""

    above: int
    below: int
    tested: int
    total: int


def gain_counts(gains: Iterable[dict[float, Comparison]]) -> GainCount:
    """`GainCount` over the `gains_over_unregularized` of several settings."""
    pairs = [c for by_target in gains for c in by_target.values()]
    tested = [c for c in pairs if np.isfinite(c.standard_error)]
    return GainCount(sum(c.significant and c.difference > 0 for c in tested),
                     sum(c.significant and c.difference < 0 for c in tested), len(tested),
                     len(pairs))


@dataclass(frozen=True)
class Trend:
    """Least-squares slope of a metric's per-seed values on α*, and its standard error."""

    slope: float
    standard_error: float

    @property
    def significant(self) -> bool:
        """|slope| > 2 standard errors (never without an error estimate)."""
        return bool(abs(self.slope) > 2 * self.standard_error) if self.standard_error > 0 else False


def trend_word(t: Trend) -> str:
    """A trend in words: "rises" / "falls" when its slope exceeds two standard errors,
    else "shows no trend beyond two standard errors"; "–" without an error estimate."""
    if math.isnan(t.standard_error):
        return "–"
    if not t.significant:
        return "shows no trend beyond two standard errors"
    return "rises" if t.slope > 0 else "falls"


def trend(targets: Targets, metric: str, paired: bool = False) -> Trend:
    """The slope of `metric` over the regularized α* of `targets` (every seed a point).

    Ordinary least squares of the values on α*; the standard error is the usual one,
    sqrt(residual variance / Σ(α − ᾱ)²), NaN with fewer than three points or one α*.
    ``paired``: a separate intercept per seed (values and α* centred within each seed),
    so that what a seed shifts at every target cancels; the residual variance then has
    n − seeds − 1 degrees of freedom (NaN with none left).
    """
    alphas, values = target_values(targets, metric)
    x = np.concatenate([np.full(v.size, a) for a, v in zip(alphas, values)]) if values else np.array([])
    y = np.concatenate(values) if values else np.array([])
    n_intercepts = 1
    if paired and x.size:
        seeds = np.array([r.config.seed for a in alphas for r in targets[a]])  # [n], as x and y
        x, y = x.copy(), y.copy()
        for seed in np.unique(seeds):                 # centre within each seed
            at = seeds == seed
            x[at] -= x[at].mean()
            y[at] -= y[at].mean()
        n_intercepts = np.unique(seeds).size
    if x.size < 3:
        return Trend(NAN, NAN)
    xc, yc = x - x.mean(), y - y.mean()
    sxx = float((xc ** 2).sum())
    dof = x.size - n_intercepts - 1
    if sxx == 0 or dof < 1:
        return Trend(NAN, NAN)
    slope = float((xc * yc).sum() / sxx)
    residual = yc - slope * xc
    return Trend(slope, float(np.sqrt((residual ** 2).sum() / dof / sxx)))


def best_target(targets: Targets, metric: str) -> float:
    """The regularized α* with the highest mean `metric` over seeds."""
    alphas, values = target_values(targets, metric)
    return float(alphas[int(np.argmax([v.mean() for v in values]))])


@dataclass(frozen=True)
class Best:
    """The best regularized α* of one setting for one metric: the target, its value (mean ±
    sd over seeds), and for reference the value at α* = 1 and the unregularized network's
    (None where not run).

    ``tied``: the regularized targets, the best among them, whose mean is not below the
    best's by more than two standard errors (`compare_seeds`; a target with fewer than two
    seeds on either side cannot be told apart, so it counts as tied). ``at_edge``: the best
    is the lowest or the highest regularized target run, so the metric may still improve
    beyond the targets of the grid."""

    target: float
    value: Summary
    at_one: Summary | None
    unregularized: Summary | None
    tied: tuple[float, ...] = ()
    at_edge: bool = False


def best_of(targets: Targets, metric: str) -> Best:
    """`best_target` of ``metric`` with the numbers a reader compares it with."""
    def value(key: float | None) -> Summary | None:
        return summarize(metric_values(targets[key], metric)) if targets.get(key) else None

    best = best_target(targets, metric)
    alphas, values = target_values(targets, metric)               # regularized targets, ascending
    top = values[int(np.flatnonzero(alphas == best)[0])]
    tied = tuple(float(a) for a, v in zip(alphas, values)
                 if a == best or not compare_seeds(top, v).significant)
    return Best(best, value(best), value(1.0), value(None), tied,
                bool(best in (alphas.min(), alphas.max())))


def best_by_setting(groups: SweepGroups) -> dict[str, dict[str, Best]]:
    """For every setting with slope-penalty runs: the best α* for held-out accuracy ("acc")
    and for PGD accuracy at the setting's ε ("pgd", `read_eps`)."""
    out = {}
    for setting in ALPHA_SETTINGS:
        targets = _slope_family(groups, setting)
        if targets is not None:
            out[setting] = {"acc": best_of(targets, "clean_accuracy"),
                            "pgd": best_of(targets, metric_name("pgd", read_eps(setting)))}
    return out


@dataclass(frozen=True)
class PenaltyReading:
    """What one penalty family does over the targets of one setting: its best α* for
    held-out accuracy and for PGD accuracy at the setting's ε, the trends of both over α*,
    and the targets it reaches (`reached_targets`) with its largest miss |α̂ − α*|, by
    Gerum's fit (ranks 6–50) and, ``*_stringer``, by Stringer's (ranks 11–500)."""

    family: str
    best_accuracy: Best
    best_pgd: Best
    accuracy_trend: Trend
    pgd_trend: Trend
    reached: list[float]
    largest_gap: float
    reached_stringer: list[float]
    largest_gap_stringer: float


def penalty_readings(groups: SweepGroups, setting: str = "shallow") -> dict[str, PenaltyReading]:
    """`PenaltyReading` of every penalty family of `setting` with regularized runs, in the
    order of `FAMILIES` ("slope", then "eq2"): does the answer to "which exponent is best"
    depend on the penalty?"""
    out = {}
    pgd = metric_name("pgd", read_eps(setting))
    for family in FAMILIES.values():
        targets = groups.get(setting, {}).get(family)
        if not targets or not any(a is not None for a in targets):
            continue
        gaps = target_gaps(targets)
        stringer = target_gaps(targets, "alpha")
        out[family] = PenaltyReading(family, best_of(targets, "clean_accuracy"), best_of(targets, pgd),
                                     trend(targets, "clean_accuracy"), trend(targets, pgd),
                                     reached_targets(targets), max(gaps.values()),
                                     reached_targets(targets, fit="alpha"), max(stringer.values()))
    return out


@dataclass(frozen=True)
class PenaltyPair:
    """One metric at one target under both penalties: mean ± sd over seeds of each, and
    eq. 2 minus slope penalty (Welch, `compare_seeds`). Target None: the unregularized
    networks at the two families' batch sizes, i.e. what the batch size alone changes.

    ``gain_difference``: eq. 2's gain over its own unregularized twin minus the slope
    penalty's over its twin (`difference_of_gains`), which takes out what the two batch sizes
    change by themselves; None for target None or when a family has no twin."""

    target: float | None
    metric: str
    slope: Summary
    eq2: Summary
    difference: Comparison
    gain_difference: Comparison | None = None


def difference_of_gains(a: Comparison, b: Comparison) -> Comparison:
    """``a`` minus ``b``, two independent differences (each `compare_seeds`), with the standard
    error sqrt(se_a² + se_b²); NaN (never significant) when either has none."""
    se = math.hypot(a.standard_error, b.standard_error)
    diff = a.difference - b.difference
    return Comparison(diff, se, bool(diff > 2 * se) if se > 0 else False)


def penalty_pairs(groups: SweepGroups, metrics: Sequence[str],
                  setting: str = "shallow") -> list[PenaltyPair]:
    """For every target both penalty families of `setting` ran (None first, then α*
    increasing) and every metric of `metrics`, in that order: the `PenaltyPair`.
    Empty when a family is missing."""
    families = groups.get(setting, {})
    slope, eq2 = families.get("slope"), families.get("eq2")
    if not slope or not eq2:
        return []
    shared = [a for a in slope if a in eq2 and slope[a] and eq2[a]]   # None first, as grouped
    gains = {m: (gains_over_unregularized(eq2, m), gains_over_unregularized(slope, m))
             for m in metrics}                                  # empty without a twin

    def gain_difference(a: float | None, m: str) -> Comparison | None:
        eq2_gain, slope_gain = gains[m]
        if a not in eq2_gain or a not in slope_gain:           # None, or a family without twin
            return None
        return difference_of_gains(eq2_gain[a], slope_gain[a])

    return [PenaltyPair(a, m, summarize(metric_values(slope[a], m)), summarize(metric_values(eq2[a], m)),
                        compare_seeds(metric_values(eq2[a], m), metric_values(slope[a], m)),
                        gain_difference(a, m))
            for a in shared for m in metrics]


def eq2_tail_ratio(alpha: float, width: int, tau: int) -> float:
    """γ_N / γ_τ = (N/τ)^−α: how far below λ_τ eq. 2 (Nassar et al. 2020) asks the last of
    a width-N layer's eigenvalues to lie at target α (γ_n = κ n^−α anchored at γ_τ = λ_τ)."""
    if width < tau or tau < 1:
        raise ValueError(f"width must be ≥ tau ≥ 1, got width {width} and tau {tau}")
    return float((width / tau) ** -alpha)


def eq2_matching_alpha(tail_ratio: float, width: int, tau: int) -> float:
    """The target α at which eq. 2 asks for exactly ``tail_ratio`` = λ_N / λ_τ (the inverse
    of `eq2_tail_ratio`): −ln(λ_N/λ_τ) / ln(N/τ). At a larger target that eigenvalue lies
    above its γ_N and its term grows without bound; at a smaller one the term is at most 1
    (Nassar et al. 2020, eq. 2: (λ_n/γ_n − 1)² ≤ 1 when λ_n ≤ γ_n)."""
    if width <= tau or tau < 1 or not tail_ratio > 0:
        raise ValueError(f"width must be > tau ≥ 1 and tail_ratio > 0, got width {width}, "
                         f"tau {tau}, tail_ratio {tail_ratio}")
    return float(-math.log(tail_ratio) / math.log(width / tau))


def eq2_ratios(spectrum: Sequence[float], alpha: float, tau: int) -> np.ndarray:
    """λ_n / γ_n for the ranks n = τ … N of a decreasing spectrum ``[N]``, ``[N − τ + 1]``:
    how far each eigenvalue lies from the power law γ_n = λ_τ (n/τ)^−α that eq. 2 of Nassar
    et al. 2020 compares it with (1 at n = τ). Eq. 2's summand is (r − 1)² + max(0, r − 1)
    of these ratios r (`regularizers.spectral_penalty_terms`): at most 1 below the power
    law, unbounded above it. Eigenvalues below 0, the rounding of a rank-deficient
    covariance, count as 0."""
    lam = np.clip(np.asarray(spectrum, dtype=float), 0.0, None)              # [N]
    if lam.ndim != 1 or not 1 <= tau <= lam.size:
        raise ValueError(f"tau must be in [1, N] for a 1-D spectrum of N eigenvalues, got tau "
                         f"{tau} and shape {lam.shape}")
    if not alpha > 0 or not lam[tau - 1] > 0:
        raise ValueError(f"alpha and λ_τ must be > 0, got alpha {alpha} and λ_τ {lam[tau - 1]}")
    ranks = np.arange(tau, lam.size + 1, dtype=float)                        # n = τ … N
    return lam[tau - 1:] / lam[tau - 1] * (ranks / tau) ** alpha


def _last_layer_spectrum(r: Result) -> list[float]:
    """The stored held-out spectrum of the run's last hidden layer ``[N]``."""
    return r.spectra[f"layer{len(r.config.hidden_widths)}"]


def eq2_ratio_curve(runs: Sequence[Result], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(ranks ``[N − τ + 1]``, λ_n/γ_n ``[seeds, N − τ + 1]``): `eq2_ratios` of the held-out
    spectrum of each run's last hidden layer at target ``alpha``, τ of the runs' config."""
    tau = runs[0].config.tau
    curves = [eq2_ratios(_last_layer_spectrum(r), alpha, tau) for r in runs]
    return np.arange(tau, tau + curves[0].size), np.stack(curves)


@dataclass(frozen=True)
class PenaltyLoad:
    """How much of one target's training loss the penalty took (mean ± sd over seeds).

    ``penalty``: the penalty term (β·R, as added to the loss) averaged over the last epoch's
    batches; ``data_loss``: that epoch's cross-entropy (`analysis.data_loss_trajectory`:
    NaN where float32 could not resolve it beside the penalty); ``dominated``: the
    epochs in which the penalty exceeded the cross-entropy; ``tail_ratio``: λ_N / λ_τ, the
    last of the stored held-out eigenvalues of the last hidden layer over the τ-th (τ of the
    runs' config), to set beside `eq2_tail_ratio`. From that held-out spectrum and the
    target (`eq2_ratios`; NaN and () for the unregularized twin): ``peak_ratio``, the largest
    λ_n/γ_n over the ranks n > τ (at τ it is 1 by construction), and ``peak_ranks``, its
    rank n in each seed; ``above_share``, the share of eq. 2's sum over
    the held-out spectrum that the ranks above their γ_n carry (near 0: the penalty comes
    from eigenvalues below the power law, each costing at most 1; near 1: from those above
    it)."""

    target: float | None
    penalty: Summary
    data_loss: Summary
    dominated: Summary
    tail_ratio: Summary
    peak_ratio: Summary
    peak_ranks: tuple[int, ...]
    above_share: Summary


def penalty_loads(targets: Targets) -> dict[float | None, PenaltyLoad]:
    """`PenaltyLoad` of every target of `targets` in its order (None, the unregularized
    twin with its zero penalty, first). The runs must carry their training history (one
    row per epoch with "loss" and "penalty") and the spectrum of their last hidden layer
    (the regularized one in this sweep)."""
    out = {}
    for a, runs in targets.items():
        if any(not r.history or "penalty" not in r.history[-1] for r in runs):
            name = "unregularized" if a is None else f"α* = {a:g}"
            raise ValueError(f"{name}: every run needs a training history with the penalty")
        pen = [r.history[-1]["penalty"] for r in runs]
        # an unresolved cross-entropy is rounding beside a penalty some 10⁵ times larger
        dominated = [sum(h["penalty"] > h["loss"] - h["penalty"] for h in r.history) for r in runs]
        data_loss = data_loss_trajectory(runs)[1][:, -1]           # [n_seeds], NaN: unresolved
        tails = [_last_layer_spectrum(r)[-1] / _last_layer_spectrum(r)[r.config.tau - 1]
                 for r in runs]
        peaks, peak_ranks, shares = [NAN], (), [NAN]                 # the unregularized twin
        if a is not None:
            ranks, ratio = eq2_ratio_curve(runs, a)                    # [n], [seeds, n]
            terms = (ratio - 1) ** 2 + np.maximum(ratio - 1, 0)        # eq. 2's summands
            peaks = ratio[:, 1:].max(axis=1)                           # n > τ
            peak_ranks = tuple(int(n) for n in ranks[1:][ratio[:, 1:].argmax(axis=1)])
            total = terms.sum(axis=1)                                  # 0: on the power law
            shares = np.divide(np.where(ratio > 1, terms, 0).sum(axis=1), total,
                               out=np.full_like(total, NAN), where=total > 0)
        out[a] = PenaltyLoad(a, summarize(pen), summarize(data_loss), summarize(dominated),
                             summarize(tails), summarize(peaks), peak_ranks,
                             summarize(shares))
    return out


@dataclass(frozen=True)
class LoadReading:
    """What `penalty_loads` says of one penalty family of one setting.

    ``within_beta`` / ``above_beta``: the targets whose last-epoch penalty term is at most /
    more than the runs' β; ``worst``: the target with the largest one; ``dominated``: the
    targets whose penalty exceeded the cross-entropy in every epoch of every seed;
    ``unresolved``: those whose last-epoch cross-entropy float32 could not resolve;
    ``plain_tail``: λ_N / λ_τ of the unregularized twin and ``matching_alpha`` the target at
    which eq. 2 asks for just that tail (`eq2_matching_alpha`; both NaN without a twin)."""

    loads: dict[float | None, PenaltyLoad]
    within_beta: list[float]
    above_beta: list[float]
    worst: PenaltyLoad
    dominated: list[float]
    unresolved: list[float]
    plain_tail: float
    matching_alpha: float

    def peaks(self, targets: Sequence[float]) -> tuple[float, float, float, float]:
        """(smallest, largest) mean `PenaltyLoad.peak_ratio` over ``targets``, and (smallest,
        largest) rank of a peak in any of their seeds; NaN for each when ``targets`` is empty."""
        loads = [self.loads[a] for a in targets]
        if not loads:
            return NAN, NAN, NAN, NAN
        ratios = [load.peak_ratio.mean for load in loads]
        ranks = [n for load in loads for n in load.peak_ranks]
        return min(ratios), max(ratios), min(ranks), max(ranks)

    @property
    def largest_data_loss(self) -> float:
        """The largest resolved last-epoch cross-entropy over the regularized targets (NaN
        when none is resolved)."""
        return max((load.data_loss.mean for a, load in self.loads.items()
                    if a is not None and np.isfinite(load.data_loss.mean)), default=NAN)


def load_reading(targets: Targets) -> LoadReading | None:
    """`LoadReading` of `targets` (one family's runs, `sweep_groups`); None without a
    regularized run. β, τ, the epochs and the layer's width N are the runs' own."""
    loads = penalty_loads(targets)
    regular = {a: load for a, load in loads.items() if a is not None}
    if not regular:
        return None
    first = {a: targets[a][0].config for a in regular}
    within = [a for a, load in regular.items() if load.penalty.mean <= first[a].beta]
    plain = loads.get(None)
    config = targets[None][0].config if plain else None
    return LoadReading(
        loads, within, [a for a in regular if a not in within],
        max(regular.values(), key=lambda load: load.penalty.mean),
        [a for a, load in regular.items() if load.dominated.mean == first[a].epochs],  # all seeds
        [a for a, load in regular.items() if not np.isfinite(load.data_loss.mean)],
        plain.tail_ratio.mean if plain else NAN,
        eq2_matching_alpha(plain.tail_ratio.mean, config.hidden_widths[-1], config.tau)
        if plain else NAN)


def _slope_family(groups: SweepGroups, setting: str) -> Targets | None:
    targets = groups.get(setting, {}).get("slope")
    return targets if targets and any(a is not None for a in targets) else None


def _range_against_one(targets: Targets, in_range: Sequence[float], metric: str,
                       paired: bool) -> Comparison:
    """The targets of `in_range` against α* = 1: their runs pooled (Welch), or ``paired``,
    per seed the mean over the range against the same seed's run at α* = 1. A paired
    reading needs two seeds run at every one of these targets; with fewer it is NaN (not
    tested)."""
    if not paired:
        pooled = np.concatenate([metric_values(targets[a], metric) for a in in_range])
        return compare_seeds(pooled, metric_values(targets[1.0], metric))
    per_target = [values_by_seed(targets[a], metric_values(targets[a], metric), f"α* = {a:g}")
                  for a in [*in_range, 1.0]]
    seeds = set.intersection(*(set(v) for v in per_target))     # seeds run at every target
    if len(seeds) < 2:
        return Comparison(NAN, NAN, False)
    range_mean = {seed: float(np.mean([v[seed] for v in per_target[:-1]])) for seed in seeds}
    return compare_paired(range_mean, per_target[-1])


def dense_best_two_to_three(groups: SweepGroups, paired: bool = False) -> Claim:
    """1. Dense networks do best, in accuracy and robustness, at α* ≈ 2–3, not at α* = 1.

    Held when, for the shallow and the deep dense setting and for both clean accuracy and
    PGD accuracy at the setting's ε, the best α* lies in `DENSE_BEST_RANGE` and the runs of
    every target in that range, pooled, beat α* = 1 by more than two standard errors. The
    contrast is fixed in advance (the range against 1), not drawn from the best target, so
    that picking the best of nine targets does not inflate it. Not reproduced as soon as one
    part fails; not tested when a part lacks its runs and none failed. ``paired``: the
    contrast seed by seed (`_range_against_one`), a check of the rule.
    """
    text = "dense networks do best at α ≈ 2–3, not at the brain-like α ≈ 1"
    numbers: dict[str, float | str] = {}
    beats: list[bool | None] = []                       # per setting and metric
    optimum: list[bool | None] = []
    lo, hi = DENSE_BEST_RANGE
    for setting in ("shallow", "deep"):
        targets = _slope_family(groups, setting)
        in_range = [a for a in (targets or {}) if a is not None and lo <= a <= hi]
        for name, metric in (("acc", "clean_accuracy"), ("pgd", metric_name("pgd", read_eps(setting)))):
            key = f"c1_{setting}_{name}"
            if targets is None or 1.0 not in targets or not in_range:
                numbers.update({f"{key}_best": NAN, f"{key}_diff": NAN, f"{key}_se": NAN})
                beats.append(None), optimum.append(None)
                continue
            best = best_target(targets, metric)
            c = _range_against_one(targets, in_range, metric, paired)
            numbers.update({f"{key}_best": best, f"{key}_diff": 100 * c.difference,
                            f"{key}_se": 100 * c.standard_error})
            # too few seeds for an error estimate: not tested
            beats.append(None if math.isnan(c.standard_error) else bool(c.held))
            optimum.append(lo <= best <= hi)
    parts = {"α* 2–3 beat α* = 1": all_parts(beats),
             "the best α* lies in 2–3": all_parts(optimum)}
    return Claim(1, text, all_parts(parts.values()), numbers, parts)


def _trend_numbers(key: str, t: Trend) -> dict[str, float]:
    return {f"{key}_slope": 100 * t.slope, f"{key}_se": 100 * t.standard_error}


_WAY = {-1: "falls", +1: "rises"}


def _trend_claim(number: int, text: str, setting: str, accuracy_sign: int,
                 robustness_sign: int) -> Callable[..., Claim]:
    """A claim on the signs of the accuracy and PGD-accuracy trends over α* in `setting`
    (PGD at the setting's ε): each slope must have its sign beyond two standard errors
    (``paired``: the trend with an intercept per seed, `trend`). Each is a part of the claim
    (`Claim.parts`): not reproduced as soon as one fails, not tested when one has no error
    estimate and none failed."""
    key = f"c{number}"
    part_names = (f"accuracy {_WAY[accuracy_sign]} with α*",
                  f"PGD-40 accuracy {_WAY[robustness_sign]} with α*")

    def judge(groups: SweepGroups, paired: bool = False) -> Claim:
        targets = _slope_family(groups, setting)
        if targets is None:
            return Claim(number, text, None, {**_trend_numbers(f"{key}_acc", Trend(NAN, NAN)),
                                              **_trend_numbers(f"{key}_pgd", Trend(NAN, NAN))},
                         dict.fromkeys(part_names))
        acc = trend(targets, "clean_accuracy", paired)
        pgd = trend(targets, metric_name("pgd", read_eps(setting)), paired)

        def part(t: Trend, sign: int) -> bool | None:      # no error estimate: not tested
            return None if math.isnan(t.standard_error) else bool(t.significant and t.slope * sign > 0)

        parts = dict(zip(part_names, (part(acc, accuracy_sign), part(pgd, robustness_sign))))
        return Claim(number, text, all_parts(parts.values()),
                     {**_trend_numbers(f"{key}_acc", acc), **_trend_numbers(f"{key}_pgd", pgd)},
                     parts)

    return judge


#: 2. CNNs on MNIST prefer lower α*: accuracy and PGD accuracy (ε = 0.1) both fall as α*
#: grows.
cnn_mnist_prefers_low_alpha = _trend_claim(
    2, "CNNs on MNIST prefer lower α, in accuracy and robustness", "cnn-mnist", -1, -1)
#: 3. On CIFAR-10 lower α* favours accuracy and higher α* robustness: accuracy falls and PGD
#: accuracy (ε = 0.01) rises with α*.
cifar_tradeoff = _trend_claim(
    3, "on CIFAR-10 lower α favours accuracy, higher α robustness", "cnn-cifar10", -1, +1)


@dataclass(frozen=True)
class PlainExponent:
    """The unregularized network's exponent α̂ in one setting (Gerum's fit, last hidden
    layer, on the held-out images), over seeds, against Gerum et al.'s range (claim 4)."""

    setting: str
    alpha: Summary

    @property
    def inside(self) -> bool:
        """The mean lies in `UNREGULARIZED_RANGE` (the claim's rule)."""
        lo, hi = UNREGULARIZED_RANGE
        return lo <= self.alpha.mean <= hi

    @property
    def inside_at_one_decimal(self) -> bool:
        """The mean, rounded to one decimal as the paper gives the range, lies in it: within
        0.05 of the range (for example 2.12 -> 2.1)."""
        lo, hi = UNREGULARIZED_RANGE
        return lo - 0.05 <= self.alpha.mean < hi + 0.05


def plain_exponents(groups: SweepGroups) -> dict[str, PlainExponent]:
    """setting -> `PlainExponent`, for every setting with an unregularized run beside the
    slope penalty, in `ALPHA_SETTINGS` order."""
    out = {}
    for setting in ALPHA_SETTINGS:
        plain = groups.get(setting, {}).get("slope", {}).get(None)
        if plain:
            values = metric_values(plain, last_layer_metric(plain, "alpha_gerum"))  # [seeds]
            out[setting] = PlainExponent(setting, summarize(values))
    return out


def unregularized_alpha_range(groups: SweepGroups, paired: bool = False) -> Claim:
    """4. Unregularized networks already sit at α̂ ≈ 1.4–2.1 (Gerum's fit, last hidden layer,
    mean over seeds), in every setting that has them (`plain_exponents`). It compares no
    seeds: ``paired`` changes nothing."""
    text = "unregularized networks already sit at α̂ ≈ 1.4–2.1"
    readings = plain_exponents(groups)
    numbers: dict[str, float | str] = {f"c4_{s}": readings[s].alpha.mean if s in readings
                                       else NAN for s in ALPHA_SETTINGS}
    held = all(r.inside for r in readings.values()) if readings else None
    return Claim(4, text, held, numbers)


#: Gerum et al. 2022's claims, in the chapter's order.
GERUM_CLAIMS = (dense_best_two_to_three, cnn_mnist_prefers_low_alpha, cifar_tradeoff,
                unregularized_alpha_range)


def alpha_claims(groups: SweepGroups, paired: bool = False) -> list[Claim]:
    """Every claim of `GERUM_CLAIMS` judged on `groups` by the rule (seeds as independent
    samples), or ``paired`` by seed, a check of that rule."""
    return [claim(groups, paired) for claim in GERUM_CLAIMS]
