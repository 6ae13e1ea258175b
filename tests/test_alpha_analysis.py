"""The α sweep's summaries and Gerum et al. 2022's claims on synthetic results with known
answers (`powerlaw_lib.alpha_analysis`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from powerlaw_lib import alpha_analysis as aa
from powerlaw_lib import grids
from powerlaw_lib.evaluation import metric_name
from powerlaw_lib.store import Result

CONFIGS = grids.alpha_sweep(dense_width=150, deep_width=130, cnn_width=150)


def _results(accuracy, pgd, alpha_hat=lambda a: a, plain_alpha=1.7, jitter=0.002):
    """A result for every config of the grid: accuracy(α*), pgd(α*) (fractions) and the
    measured α̂(α*) as given, ± `jitter` by seed; the unregularized runs at α* = None."""
    out = []
    for c in CONFIGS:
        a = c.alpha if c.regularizer != "none" else None
        j = jitter * (c.seed - 1)
        layer = f"layer{len(c.hidden_widths)}"
        metrics = {"clean_accuracy": accuracy(c, a) + j,
                   metric_name("pgd", grids.ALPHA_SETTINGS[grids.alpha_setting(c)]["read_eps"]):
                       pgd(c, a) + j,
                   f"{layer}_alpha_gerum": (plain_alpha if a is None else alpha_hat(a)) + j,
                   f"{layer}_alpha": (plain_alpha if a is None else alpha_hat(a)) + 0.1}
        out.append(Result(c, metrics))
    return out


def _paper_like(c, a):
    """Dense best at α* = 2.5; MNIST CNN falling with α*; CIFAR accuracy falling."""
    setting = grids.alpha_setting(c)
    a = 1.7 if a is None else a
    if setting in ("shallow", "deep"):
        return 0.97 - 0.01 * (a - 2.5) ** 2
    return 0.95 - 0.02 * a


def _pgd_like(c, a):
    a = 1.7 if a is None else a
    if grids.alpha_setting(c) == "cnn-cifar10":
        return 0.2 + 0.03 * a  # higher α more robust on CIFAR-10
    return _paper_like(c, a) - 0.3


def test_groups_split_settings_families_and_targets_with_the_right_twins():
    groups = aa.sweep_groups(_results(_paper_like, _pgd_like))
    assert list(groups) == list(grids.ALPHA_SETTINGS)
    assert list(groups["shallow"]) == ["slope", "eq2"] and list(groups["deep"]) == ["slope"]
    slope, eq2 = groups["shallow"]["slope"], groups["shallow"]["eq2"]
    assert list(slope) == [None, *grids.ALPHA_TARGETS]
    assert all(r.config.batch_size == 1500 for rs in slope.values() for r in rs)
    assert all(r.config.batch_size == 3000 for rs in eq2.values() for r in rs)  # its own twin
    assert [r.config.seed for r in slope[2.0]] == [0, 1, 2]
    assert [r.config.seed for r in groups["cnn-mnist"]["slope"][None]] == [0, 1]


def test_trend_is_the_least_squares_slope_with_its_standard_error():
    groups = aa.sweep_groups(_results(_paper_like, _pgd_like, jitter=0.0))
    t = aa.trend(groups["cnn-mnist"]["slope"], "clean_accuracy")
    assert t.slope == pytest.approx(-0.02) and t.standard_error == pytest.approx(0, abs=1e-12)
    noisy = aa.sweep_groups(_results(_paper_like, _pgd_like, jitter=0.01))
    t = aa.trend(noisy["cnn-mnist"]["slope"], "clean_accuracy")
    alphas, values = aa.target_values(noisy["cnn-mnist"]["slope"], "clean_accuracy")
    x = np.repeat(alphas, [v.size for v in values])
    y = np.concatenate(values)
    fit, cov = np.polyfit(x, y, 1, cov="unscaled")  # oracle: numpy's fit and its covariance
    resid = y - np.polyval(fit, x)
    se = math.sqrt(cov[0, 0] * (resid ** 2).sum() / (x.size - 2))
    assert t.slope == pytest.approx(fit[0]) and t.standard_error == pytest.approx(se)
    assert t.significant
    assert math.isnan(aa.trend({None: [], 1.0: noisy["cnn-mnist"]["slope"][1.0][:1]},
                               "clean_accuracy").slope)


def test_target_gaps_and_reached_targets_read_the_last_layer_exponent():
    # α̂ follows α* up to 2.3, then saturates: within 0.25 up to 2.5, within 0.1 up to 2
    results = _results(_paper_like, _pgd_like, alpha_hat=lambda a: min(a, 2.3), jitter=0.0)
    groups = aa.sweep_groups(results)
    deep = groups["deep"]["slope"]
    assert aa.alpha_metric(deep) == "layer3_alpha_gerum"
    assert aa.alpha_metric(groups["shallow"]["slope"], "alpha") == "layer1_alpha"
    gaps = aa.target_gaps(deep)
    assert list(gaps) == list(grids.ALPHA_TARGETS)
    assert gaps[1.0] == pytest.approx(0) and gaps[5.0] == pytest.approx(2.7)
    assert aa.reached_targets(deep) == [0.5, 1.0, 1.5, 2.0, 2.5]
    assert aa.reached_targets(deep, tolerance=0.1) == [0.5, 1.0, 1.5, 2.0]
    assert aa.target_gaps(deep, fit="alpha")[1.0] == pytest.approx(0.1)  # Stringer: α̂ + 0.1
    with pytest.raises(ValueError, match="targets"):
        aa.alpha_metric({})


def test_every_claim_holds_on_paper_like_results():
    groups = aa.sweep_groups(_results(_paper_like, _pgd_like))
    claims = aa.alpha_claims(groups)
    assert [c.number for c in claims] == [1, 2, 3, 4]
    assert all(c.held is True for c in claims), [(c.number, c.numbers) for c in claims]
    assert claims[0].numbers["c1_shallow_acc_best"] == 2.5
    # the pooled targets 2, 2.5, 3 (0.9675, 0.97, 0.9675, less 0.3) against α* = 1 (0.9475 - 0.3)
    assert claims[0].numbers["c1_deep_pgd_diff"] == pytest.approx(
        100 * (np.mean([0.9675, 0.97, 0.9675]) - 0.9475), rel=1e-6)
    assert claims[1].numbers["c2_acc_slope"] == pytest.approx(-2.0, rel=1e-6)
    assert claims[3].numbers["c4_cnn-cifar10"] == pytest.approx(1.7, abs=0.01)
    assert claims[0].parts == {"α* 2–3 beat α* = 1": True, "the best α* lies in 2–3": True}
    assert claims[2].parts == {"accuracy falls with α*": True, "PGD-40 accuracy rises with α*": True}


def test_claims_fail_when_the_results_say_otherwise_and_are_untested_without_runs():
    brain_like = aa.alpha_claims(aa.sweep_groups(_results(
        lambda c, a: 0.97 - 0.01 * ((1.7 if a is None else a) - 1.0) ** 2,  # best at α* = 1
        lambda c, a: 0.5, plain_alpha=2.6)))
    assert brain_like[0].held is False and brain_like[0].numbers["c1_shallow_acc_best"] == 1.0
    assert brain_like[0].parts == {"α* 2–3 beat α* = 1": False, "the best α* lies in 2–3": False}
    assert brain_like[1].held is False  # flat robustness: no significant trend
    assert brain_like[1].parts["PGD-40 accuracy falls with α*"] is False
    assert brain_like[2].held is False
    assert brain_like[3].held is False  # unregularized α̂ = 2.6 is outside 1.4–2.1
    dense_only = [r for r in _results(_paper_like, _pgd_like) if r.config.arch == "mlp"]
    partial = aa.alpha_claims(aa.sweep_groups(dense_only))
    assert partial[0].held is True and partial[1].held is None and partial[2].held is None
    assert math.isnan(partial[1].numbers["c2_acc_slope"])
    assert partial[1].parts == {"accuracy falls with α*": None, "PGD-40 accuracy falls with α*": None}
    assert partial[3].held is True and math.isnan(partial[3].numbers["c4_cnn-mnist"])
    assert aa.alpha_claims({})[0].held is None
    shallow_only = [r for r in _results(lambda c, a: 0.97 - 0.01 * ((1.7 if a is None else a) - 1.0) ** 2,
                                        _pgd_like) if grids.alpha_setting(r.config) == "shallow"]
    verdict = aa.dense_best_two_to_three(aa.sweep_groups(shallow_only))
    assert verdict.held is False            # a failed part is not hidden by the deep runs' absence


def test_claim_1_contrasts_the_whole_range_with_one_not_the_best_target():
    # A lucky target: only α* = 2 is good, 2.5 and 3 are as poor as α* = 1 -> the pooled
    # range does not beat α* = 1 by two standard errors, though the best target does.
    def acc(c, a):
        return 0.99 if a == 2.0 else 0.95
    verdict = aa.dense_best_two_to_three(aa.sweep_groups(_results(acc, acc, jitter=0.004)))
    assert verdict.numbers["c1_shallow_acc_best"] == 2.0
    assert verdict.numbers["c1_shallow_acc_diff"] == pytest.approx(100 * 0.04 / 3)
    assert verdict.held is False


def test_best_by_setting_names_the_best_target_with_its_references():
    groups = aa.sweep_groups(_results(_paper_like, _pgd_like))
    best = aa.best_by_setting(groups)
    assert list(best) == list(grids.ALPHA_SETTINGS)
    shallow = best["shallow"]["acc"]
    assert shallow.target == 2.5 and shallow.value.n == 3
    assert shallow.value.mean == pytest.approx(0.97)                    # seeds' jitter averages out
    assert shallow.at_one.mean == pytest.approx(0.97 - 0.01 * 1.5 ** 2)
    assert shallow.unregularized.mean == pytest.approx(0.97 - 0.01 * 0.8 ** 2)
    assert best["cnn-mnist"]["acc"].target == 0.5                       # accuracy falls with α*
    assert best["cnn-cifar10"]["pgd"].target == 5.0                     # robustness rises with α*
    # 2 and 3 sit 0.25 points below 2.5, within two standard errors (seeds' sd 0.2 points);
    # 1.5 and 3.5 sit a full point below, beyond them
    assert shallow.tied == (2.0, 2.5, 3.0) and not shallow.at_edge
    assert best["cnn-cifar10"]["pgd"].tied == (5.0,) and best["cnn-cifar10"]["pgd"].at_edge
    assert best["cnn-mnist"]["acc"].at_edge                             # the lowest target
    del groups["deep"]["slope"][1.0]
    assert aa.best_by_setting(groups)["deep"]["pgd"].at_one is None


def test_a_target_with_one_seed_cannot_be_told_apart_from_the_best():
    targets = aa.sweep_groups(_results(_paper_like, _pgd_like))["shallow"]["slope"]
    targets[1.0] = targets[1.0][:1]                       # 2.25 points below the best, one seed
    best = aa.best_of(targets, "clean_accuracy")
    assert best.target == 2.5 and best.tied == (1.0, 2.0, 2.5, 3.0)


def test_attack_grid_averages_seeds_per_target_and_eps():
    targets = aa.sweep_groups(_results(_paper_like, _pgd_like))["shallow"]["slope"]
    eps = targets[None][0].config.pgd_eps
    for k, runs in targets.items():                    # accuracy = 1 − ε − α*/10 + seed/100
        for r in runs:
            for e in eps:
                r.metrics[metric_name("fgsm", e)] = 1 - e - (k or 0) / 10 + r.config.seed / 100
    grid = aa.attack_grid(targets, "fgsm", max_eps=0.05)
    assert grid.targets == [None, *grids.ALPHA_TARGETS]
    np.testing.assert_allclose(grid.eps, [e for e in eps if e <= 0.05])
    assert grid.accuracy.shape == (len(grid.targets), grid.eps.size)
    np.testing.assert_allclose(grid.accuracy[3], 1 - grid.eps - 0.15 + 0.01)  # α* = 1.5, seeds 0–2
    np.testing.assert_allclose(grid.accuracy[0], 1 - grid.eps + 0.01)
    del targets[2.0][1].metrics[metric_name("fgsm", 0.03)]  # one seed lacks a point: blank cell
    grid = aa.attack_grid(targets, "fgsm")
    assert grid.eps.size == len(eps)
    row = grid.targets.index(2.0)
    assert np.isnan(grid.accuracy[row, 3]) and np.isfinite(grid.accuracy[row, [2, 4]]).all()


def test_attack_grid_refuses_unknown_attacks_and_mixed_eps_grids():
    targets = aa.sweep_groups(_results(_paper_like, _pgd_like))["deep"]["slope"]
    with pytest.raises(ValueError, match="attack must be"):
        aa.attack_grid(targets, "noise")
    with pytest.raises(ValueError, match="at least one run"):
        aa.attack_grid({}, "pgd")
    r = targets[1.0][0]
    targets[1.0][0] = Result(r.config.replace(pgd_eps=(0.0, 0.1)), r.metrics)
    with pytest.raises(ValueError, match="2 different pgd_eps grids"):
        aa.attack_grid(targets, "pgd")


def _eq2_like(c, a):
    """Slope penalty as `_paper_like`; eq. 2 best at α* = 1 and 0.01 more accurate there."""
    if c.regularizer == "spectral":
        return 0.98 - 0.01 * (a - 1.0) ** 2
    return _paper_like(c, a)


def test_penalty_readings_name_each_familys_best_target_and_reach():
    groups = aa.sweep_groups(_results(_eq2_like, _pgd_like,
                                      alpha_hat=lambda a: min(a, 3.0)))   # stalls at 3
    readings = aa.penalty_readings(groups)
    assert list(readings) == ["slope", "eq2"]
    slope, eq2 = readings["slope"], readings["eq2"]
    assert slope.best_accuracy.target == 2.5 and eq2.best_accuracy.target == 1.0
    assert eq2.best_accuracy.value.mean == pytest.approx(0.98 - 0.001)  # seeds 0, 1: jitter −0.001
    assert slope.best_pgd.target == 2.5
    assert slope.reached == [a for a in grids.ALPHA_TARGETS if a <= 3.25]
    assert slope.largest_gap == pytest.approx(2.0)                       # α* = 5 stalls at 3
    # Stringer's fit reads 0.1 above Gerum's here: α* = 3.5 (read 3.1) is missed by more than 0.25
    assert slope.reached_stringer == [a for a in grids.ALPHA_TARGETS if a <= 3.0]
    assert slope.largest_gap_stringer == pytest.approx(1.9)
    assert eq2.accuracy_trend.slope < 0 and eq2.accuracy_trend.significant
    assert aa.penalty_readings(groups, "cnn-mnist").keys() == {"slope"}  # no eq. 2 there
    del groups["shallow"]["eq2"]
    assert list(aa.penalty_readings(groups)) == ["slope"]


def test_penalty_pairs_subtract_the_slope_penalty_from_eq2_per_target_and_metric():
    groups = aa.sweep_groups(_results(_eq2_like, _pgd_like))
    pairs = aa.penalty_pairs(groups, ["clean_accuracy", "layer1_alpha_gerum"])
    assert [(p.target, p.metric) for p in pairs[:4]] == [
        (None, "clean_accuracy"), (None, "layer1_alpha_gerum"),
        (0.5, "clean_accuracy"), (0.5, "layer1_alpha_gerum")]
    at_one = next(p for p in pairs if p.target == 1.0 and p.metric == "clean_accuracy")
    expected = (0.98 - 0.001) - (0.97 - 0.01 * 1.5 ** 2)                 # eq. 2 has seeds 0, 1
    assert at_one.difference.difference == pytest.approx(expected)
    assert at_one.eq2.n == 2 and at_one.slope.n == 3                      # 2 eq. 2 seeds
    assert at_one.difference.held and at_one.difference.significant
    # each gain over its own twin (both twins at 0.97 − 0.01·0.8², eq. 2's at seeds 0, 1)
    plain = 0.97 - 0.01 * 0.8 ** 2
    gained = ((0.98 - 0.001) - (plain - 0.001)) - ((0.97 - 0.01 * 1.5 ** 2) - plain)
    assert at_one.gain_difference.difference == pytest.approx(gained)
    se = np.sqrt(2 * 0.002 ** 2 / 2 / 2 + 2 * 0.002 ** 2 / 3)           # jitter sd per family
    assert at_one.gain_difference.standard_error == pytest.approx(se)
    assert at_one.gain_difference.significant
    assert all(p.gain_difference is None for p in pairs if p.target is None)
    del groups["shallow"]["eq2"][None]                                   # no twin: no gain
    assert all(p.gain_difference is None for p in aa.penalty_pairs(groups, ["clean_accuracy"]))
    del groups["shallow"]["eq2"][2.0]                                    # only shared targets
    assert 2.0 not in {p.target for p in aa.penalty_pairs(groups, ["clean_accuracy"])}
    assert aa.penalty_pairs(groups, ["clean_accuracy"], setting="deep") == []


def test_trend_word_names_only_significant_trends():
    assert aa.trend_word(aa.Trend(0.5, 0.1)) == "rises"
    assert aa.trend_word(aa.Trend(-0.5, 0.1)) == "falls"
    assert aa.trend_word(aa.Trend(0.5, 0.3)).startswith("shows no trend")
    assert aa.trend_word(aa.Trend(float("nan"), float("nan"))) == "–"     # no estimate yet


def test_paired_trend_fits_one_intercept_per_seed():
    # seeds shift every target by a lot (±3 points), the trend is small and noisy
    rng = np.random.default_rng(0)
    noise = {c.key: rng.normal(0, 0.002) for c in CONFIGS}
    results = _results(lambda c, a: 0.9 - 0.002 * (a or 0) + noise[c.key], _pgd_like, jitter=0.03)
    targets = aa.sweep_groups(results)["cnn-mnist"]["slope"]
    paired = aa.trend(targets, "clean_accuracy", paired=True)
    alphas, values = aa.target_values(targets, "clean_accuracy")
    seeds = np.array([r.config.seed for a in alphas for r in targets[a]])
    x = np.repeat(alphas, [v.size for v in values])
    y = np.concatenate(values)
    design = np.column_stack([x] + [(seeds == s).astype(float) for s in np.unique(seeds)])
    coef, rss, *_ = np.linalg.lstsq(design, y, rcond=None)  # oracle: OLS with seed dummies
    dof = y.size - design.shape[1]
    cov = np.linalg.inv(design.T @ design) * rss[0] / dof
    assert paired.slope == pytest.approx(coef[0]) and paired.standard_error == pytest.approx(
        math.sqrt(cov[0, 0]))
    welch = aa.trend(targets, "clean_accuracy")
    assert welch.slope == pytest.approx(paired.slope)           # balanced design: same slope
    assert paired.standard_error < welch.standard_error / 3     # the seeds' shifts cancel
    assert paired.significant and not welch.significant
    one_seed = {a: runs[:1] for a, runs in targets.items()}
    assert aa.trend(one_seed, "clean_accuracy", paired=True).standard_error == pytest.approx(
        aa.trend(one_seed, "clean_accuracy").standard_error)   # one seed: one intercept, as OLS


def test_paired_claims_contrast_each_seed_with_itself():
    # α* in 2–3 beats α* = 1 by 0.4 points in every seed, but seeds differ by ±2 points
    def acc(c, a):
        return 0.95 + (0.004 if a is not None and 2 <= a <= 3 else 0.0)
    groups = aa.sweep_groups(_results(acc, acc, jitter=0.02))
    welch = aa.dense_best_two_to_three(groups)
    paired = aa.dense_best_two_to_three(groups, paired=True)
    assert welch.numbers["c1_shallow_acc_diff"] == pytest.approx(0.4)
    assert paired.numbers["c1_shallow_acc_diff"] == pytest.approx(0.4)
    assert paired.numbers["c1_shallow_acc_se"] == pytest.approx(0, abs=1e-9)
    assert welch.numbers["c1_shallow_acc_se"] > 0.5
    assert welch.held is False and paired.held is True             # the seeds' spread cancels
    assert [c.number for c in aa.alpha_claims(groups, paired=True)] == [1, 2, 3, 4]
    twice = dict(groups["shallow"]["slope"])
    twice[1.0] = twice[1.0] + twice[1.0][:1]                    # a seed run twice: refused
    with pytest.raises(ValueError, match="cannot pair"):
        aa.dense_best_two_to_three({"shallow": {"slope": twice}}, paired=True)


def test_followed_up_to_is_the_last_target_before_the_first_miss():
    stalls = aa.sweep_groups(_results(_paper_like, _pgd_like, alpha_hat=lambda a: min(a, 3.0)))
    assert aa.followed_up_to(stalls["deep"]["slope"]) == 3.0        # 3.5 misses by 0.5
    gap_in_middle = aa.sweep_groups(_results(_paper_like, _pgd_like,
                                             alpha_hat=lambda a: a + (1 if a == 1.5 else 0)))
    assert aa.followed_up_to(gap_in_middle["deep"]["slope"]) == 1.0  # later hits do not count
    never = aa.sweep_groups(_results(_paper_like, _pgd_like, alpha_hat=lambda a: a + 1))
    assert aa.followed_up_to(never["deep"]["slope"]) is None


def test_paired_readings_are_not_tested_without_two_seeds_run_at_every_target():
    groups = aa.sweep_groups(_results(_paper_like, _pgd_like))
    shallow = groups["shallow"]["slope"]
    for a, seed in ((2.0, 0), (2.5, 1), (3.0, 1)):         # no seed ran all of 2, 2.5, 3
        shallow[a] = [r for r in shallow[a] if r.config.seed == seed]
    welch = aa.dense_best_two_to_three(groups)
    paired = aa.dense_best_two_to_three(groups, paired=True)
    assert welch.held is True
    assert paired.held is None and math.isnan(paired.numbers["c1_shallow_acc_diff"])
    assert paired.numbers["c1_shallow_acc_best"] == 2.5      # the best target is still read
    full = aa.sweep_groups(_results(_paper_like, _pgd_like))["shallow"]["slope"]
    for a in (2.0, 2.5, 3.0):                                # one common seed: still not tested
        shallow[a] = [r for r in full[a] if r.config.seed == 0]
    assert aa.dense_best_two_to_three(groups, paired=True).held is None
    cnn = groups["cnn-mnist"]["slope"]                       # 2 seeds: a paired trend needs 4+ points
    for a in list(cnn):
        if a is not None and a > 1.0:
            del cnn[a]
    cnn[1.0] = cnn[1.0][:1]                                  # α* 0.5 (2 seeds), 1 (1 seed)
    assert aa.trend(cnn, "clean_accuracy").standard_error >= 0
    assert math.isnan(aa.trend(cnn, "clean_accuracy", paired=True).standard_error)
    assert aa.cnn_mnist_prefers_low_alpha(groups, paired=True).held is None   # not "not reproduced"


def test_gains_over_unregularized_compare_every_target_with_the_twin():
    groups = aa.sweep_groups(_results(_paper_like, _pgd_like))
    gains = aa.gains_over_unregularized(groups["shallow"]["slope"], "clean_accuracy")
    assert list(gains) == list(grids.ALPHA_TARGETS)
    plain = 0.97 - 0.01 * (1.7 - 2.5) ** 2                    # the twin reads α* = 1.7
    assert gains[2.5].difference == pytest.approx(0.97 - plain)
    assert gains[2.5].held and gains[0.5].difference < 0
    no_twin = {a: runs for a, runs in groups["shallow"]["slope"].items() if a is not None}
    assert aa.gains_over_unregularized(no_twin, "clean_accuracy") == {}


def test_comparisons_with_a_single_seed_on_either_side_are_untested():
    one, three = np.array([0.9]), np.array([0.8, 0.81, 0.79])
    c = aa.compare_seeds(one, three)
    assert c.difference == pytest.approx(0.1) and math.isnan(c.standard_error)
    assert not c.significant and not c.held
    assert aa.compare_seeds(three, np.array([0.5, 0.5])).significant
    groups = aa.sweep_groups(_results(_paper_like, _pgd_like))
    shallow = groups["shallow"]["slope"]
    shallow[5.0] = shallow[5.0][:1]
    gains = aa.gains_over_unregularized(shallow, "clean_accuracy")
    assert math.isnan(gains[5.0].standard_error) and not math.isnan(gains[4.0].standard_error)
    shallow[1.0] = shallow[1.0][:1]                          # claim 1 against one seed at α* = 1
    c1 = aa.dense_best_two_to_three(groups)
    assert c1.held is None and math.isnan(c1.numbers["c1_shallow_acc_se"])


def test_followed_up_to_stops_at_a_target_the_grid_has_not_run():
    groups = aa.sweep_groups(_results(_paper_like, _pgd_like))
    deep = groups["deep"]["slope"]
    del deep[1.5]
    assert aa.followed_up_to(deep) == 5.0                          # stored targets only
    assert aa.followed_up_to(deep, expected=grids.ALPHA_TARGETS) == 1.0


def test_eq2_tail_ratio_is_the_power_law_between_rank_tau_and_the_last_rank():
    assert aa.eq2_tail_ratio(1.0, 2000, 10) == pytest.approx(1 / 200)
    assert aa.eq2_tail_ratio(3.0, 2000, 10) == pytest.approx(200.0 ** -3)
    assert aa.eq2_tail_ratio(2.0, 10, 10) == 1.0                        # the anchor itself
    with pytest.raises(ValueError, match="width must be ≥ tau"):
        aa.eq2_tail_ratio(1.0, 5, 10)
    for alpha in (0.5, 2.3, 5.0):                                       # the inverse
        assert aa.eq2_matching_alpha(aa.eq2_tail_ratio(alpha, 2000, 10), 2000, 10) == pytest.approx(alpha)
    with pytest.raises(ValueError, match="tail_ratio > 0"):
        aa.eq2_matching_alpha(0.0, 2000, 10)


def test_penalty_loads_split_the_loss_and_count_the_epochs_the_penalty_dominates():
    configs = [c for c in CONFIGS if c.regularizer == "spectral" and c.alpha in (1.0, 3.0)]
    width = configs[0].hidden_widths[-1]
    runs = []

    def power(seed):                                                  # a spectrum per seed
        return 1.0 + seed / 2

    for c in configs:
        big = 100.0 if c.alpha == 3.0 else 0.1
        # penalty above the cross-entropy (0.5) in the first 2 epochs only at α* = 1, always at 3
        pen = [(1.0 if e <= 2 else big) + 0.01 * c.seed for e in range(1, c.epochs + 1)]
        history = [{"epoch": e, "penalty": p, "loss": p + 0.5} for e, p in enumerate(pen, 1)]
        lam = np.arange(width, 0, -1, dtype=float) ** power(c.seed)  # λ_n = (N − n + 1)^p
        runs.append(Result(c, {}, spectra={"layer1": lam.tolist()}, history=history))
    twin = next(c for c in CONFIGS if c.regularizer == "none" and c.batch_size == configs[0].batch_size)
    lam = 0.5 ** np.arange(width)                                      # λ_n/λ_τ = 2^−(n − τ)
    runs.append(Result(twin, {}, spectra={"layer1": lam.tolist()},
                       history=[{"epoch": 1, "loss": 0.3, "penalty": 0.0}]))
    loads = aa.penalty_loads(aa.sweep_groups(runs)["shallow"]["eq2"])
    assert list(loads) == [None, 1.0, 3.0]
    one, three, plain = loads[1.0], loads[3.0], loads[None]
    assert plain.penalty.mean == 0 and plain.data_loss.mean == pytest.approx(0.3)
    assert plain.dominated.mean == 0
    assert plain.tail_ratio.mean == pytest.approx(0.5 ** (width - configs[0].tau))
    seeds = sorted({c.seed for c in configs if c.alpha == 1.0})
    assert one.penalty.mean == pytest.approx(0.1 + 0.01 * np.mean(seeds)) and one.penalty.n == len(seeds)
    assert one.data_loss.mean == pytest.approx(0.5) and one.data_loss.sd == pytest.approx(0)
    assert one.dominated.mean == 2 and three.dominated.mean == configs[0].epochs
    tau = configs[0].tau
    assert one.tail_ratio.mean == pytest.approx(np.mean([(width - tau + 1) ** -power(s)
                                                         for s in seeds]))
    reading = aa.load_reading(aa.sweep_groups(runs)["shallow"]["eq2"])
    assert configs[0].beta == 1.0                                      # 0.1 within, 100 above
    assert reading.above_beta == [3.0] and reading.within_beta == [1.0]
    assert reading.worst == three and reading.unresolved == []
    assert reading.dominated == [3.0]                                 # every epoch, every seed
    assert reading.plain_tail == pytest.approx(0.5 ** (width - tau))
    assert reading.matching_alpha == pytest.approx((width - tau) * np.log(2) / np.log(width / tau))
    for load, alpha in ((one, 1.0), (three, 3.0)):        # brute force over the ranks τ … N
        peaks, ranks, shares = [], [], []
        for seed in seeds:
            r = [((width - n + 1) / (width - tau + 1)) ** power(seed) * (n / tau) ** alpha
                 for n in range(tau, width + 1)]
            peaks.append(max(r[1:]))                                    # n > τ
            ranks.append(tau + 1 + int(np.argmax(r[1:])))
            terms = [(x - 1) ** 2 + max(x - 1, 0) for x in r]
            shares.append(sum(t for t, x in zip(terms, r) if x > 1) / sum(terms))
        assert load.peak_ratio.mean == pytest.approx(np.mean(peaks))
        assert load.peak_ranks == tuple(ranks) and len(set(ranks)) > 1  # the seeds differ
        assert load.above_share.mean == pytest.approx(np.mean(shares))
    assert math.isnan(plain.peak_ratio.mean) and math.isnan(plain.above_share.mean)
    assert plain.peak_ranks == ()
    assert reading.peaks([3.0]) == (three.peak_ratio.mean, three.peak_ratio.mean,
                                    min(three.peak_ranks), max(three.peak_ranks))
    assert reading.peaks([1.0, 3.0])[:2] == (one.peak_ratio.mean, three.peak_ratio.mean)
    assert all(math.isnan(x) for x in reading.peaks([]))
    assert reading.largest_data_loss == pytest.approx(0.5)
    assert aa.load_reading({None: runs[-1:]}) is None                  # no regularized run
    huge = float(np.float32(4.5e10))                        # float32 sums lose the cross-entropy
    lost = Result(configs[0], {}, spectra=runs[0].spectra,
                  history=[{"epoch": e, "penalty": huge, "loss": float(np.float32(huge + 0.3))}
                           for e in range(1, configs[0].epochs + 1)])
    assert aa.load_reading({1.0: [lost]}).unresolved == [1.0]
    broken = Result(configs[0], {}, spectra={"layer1": [1.0]}, history=[{"epoch": 1, "loss": 1.0}])
    with pytest.raises(ValueError, match="α\\* = 1: every run needs a training history"):
        aa.penalty_loads({1.0: [broken]})


def test_plain_exponents_read_claim_4_per_setting_and_at_the_papers_precision():
    from powerlaw_lib.analysis import Summary
    readings = aa.plain_exponents(aa.sweep_groups(_results(_paper_like, _pgd_like,
                                                           plain_alpha=2.6)))
    assert list(readings) == list(grids.ALPHA_SETTINGS)
    assert all(r.alpha.mean == pytest.approx(2.6, abs=0.01) and not r.inside
               and not r.inside_at_one_decimal for r in readings.values())
    # the paper gives 1.4–2.1 to one decimal: 2.12 rounds into it, 2.16 and 1.34 do not
    edge = {a: aa.PlainExponent("deep", Summary(a, 0.0, 1)) for a in (2.12, 2.16, 1.34, 1.4)}
    assert [(e.inside, e.inside_at_one_decimal) for e in edge.values()] == [
        (False, True), (False, False), (False, False), (True, True)]
    assert aa.plain_exponents({}) == {}


def test_eq2_ratios_give_the_summands_of_eq_2_and_are_one_on_the_target_power_law():
    import torch
    from powerlaw_lib.regularizers import spectral_penalty_terms
    rng = np.random.default_rng(0)
    lam = np.sort(rng.exponential(size=300))[::-1] * np.arange(1, 301) ** -1.5     # [N]
    for alpha, tau in ((1.0, 10), (3.0, 10), (0.5, 1)):
        r = aa.eq2_ratios(lam, alpha, tau)                                          # [N − τ + 1]
        assert r.shape == (300 - tau + 1,) and r[0] == 1.0
        terms = spectral_penalty_terms(torch.tensor(lam.copy()), alpha, tau).numpy()
        np.testing.assert_allclose((r - 1) ** 2 + np.maximum(r - 1, 0), terms, rtol=1e-10)
    np.testing.assert_allclose(aa.eq2_ratios(np.arange(1, 51) ** -2.0, 2.0, 10), 1.0)
    rounded = aa.eq2_ratios([4.0, 2.0, 1.0, -1e-9], 1.0, 2)          # a rounding below 0 is 0
    np.testing.assert_allclose(rounded, [1.0, 0.75, 0.0])
    with pytest.raises(ValueError, match="tau must be in"):
        aa.eq2_ratios(lam, 1.0, 301)
    with pytest.raises(ValueError, match="alpha and λ_τ must be > 0"):
        aa.eq2_ratios(lam, 0.0, 10)


def test_eq2_ratio_curve_stacks_the_seeds_of_a_target():
    configs = [c for c in CONFIGS if c.regularizer == "spectral" and c.alpha == 2.0]
    width, tau = configs[0].hidden_widths[-1], configs[0].tau
    runs = [Result(c, {}, spectra={"layer1": list((np.arange(1, width + 1) / 1.0) ** -(1.0 + c.seed))})
            for c in configs]
    ranks, ratio = aa.eq2_ratio_curve(runs, 2.0)
    assert ranks[0] == tau and ranks[-1] == width and ratio.shape == (len(runs), width - tau + 1)
    for row, r in zip(ratio, runs):      # λ_n = n^−(1 + seed): λ_n/γ_n = (n/τ)^(1 − seed)
        np.testing.assert_allclose(row, (ranks / tau) ** (1.0 - r.config.seed))


def test_gain_counts_count_the_tested_pairs_beyond_two_standard_errors():
    from powerlaw_lib.analysis import Comparison
    nan = float("nan")
    shallow = {1.0: Comparison(-0.02, 0.005, True), 2.0: Comparison(0.001, 0.005, False)}
    cnn = {1.0: Comparison(0.03, 0.01, True), 2.0: Comparison(-0.05, nan, False)}
    assert aa.gain_counts([shallow, cnn]) == aa.GainCount(above=1, below=1, tested=3, total=4)
    assert aa.gain_counts([]) == aa.GainCount(0, 0, 0, 0)
    groups = aa.sweep_groups(_results(_paper_like, _pgd_like))
    count = aa.gain_counts(aa.gains_over_unregularized(groups[s]["slope"], "clean_accuracy")
                           for s in ("shallow", "deep"))
    # 0.97 − 0.01 (α* − 2.5)² against the twin's 0.97 − 0.01·0.8²: above it at α* 2–3, below
    # at the six other targets (jitter ± 0.002 by seed, 3 seeds: every gap beyond 2 SE)
    assert count == aa.GainCount(above=6, below=12, tested=18, total=18)


def test_difference_of_gains_adds_the_variances_and_needs_both_errors():
    from powerlaw_lib.analysis import Comparison
    d = aa.difference_of_gains(Comparison(0.05, 0.03, False), Comparison(-0.01, 0.04, False))
    assert d.difference == pytest.approx(0.06) and d.standard_error == pytest.approx(0.05)
    assert not d.significant and not d.held
    assert aa.difference_of_gains(Comparison(0.5, 0.1, True), Comparison(0.0, 0.1, False)).held
    untested = aa.difference_of_gains(Comparison(0.5, float("nan"), False), Comparison(0, 0.1, False))
    assert math.isnan(untested.standard_error) and not untested.significant


def test_one_step_gaps_subtract_pgd_from_fgsm_and_flag_targets_where_one_step_is_as_strong():
    eps = 0.05
    fgsm, pgd = metric_name("fgsm", eps), metric_name("pgd", eps)

    def run(seed, a, f, p):
        c = next(c for c in CONFIGS if grids.alpha_setting(c) == "shallow" and c.seed == seed
                 and (c.regularizer == "none" if a is None else
                      c.regularizer == "slope" and c.alpha == a))
        return Result(c, {fgsm: f, pgd: p})

    targets = {None: [run(0, None, 0.30, 0.25), run(1, None, 0.32, 0.26)],
               1.0: [run(0, 1.0, 0.40, 0.35), run(1, 1.0, 0.42, 0.36)],
               2.0: [run(0, 2.0, 0.60, 0.595), run(1, 2.0, 0.60, 0.598)],    # gap 0.35 points
               3.0: [run(0, 3.0, 0.64, 0.65)]}                                # PGD weaker
    gaps = aa.one_step_gaps(targets, eps)
    assert set(gaps) == {None, 1.0, 2.0, 3.0}
    np.testing.assert_allclose(gaps[1.0], [0.05, 0.06])
    np.testing.assert_allclose(gaps[3.0], [-0.01])
    assert aa.one_step_targets(targets, eps) == [2.0, 3.0]            # None is never listed
    assert aa.one_step_targets(targets, eps, margin=0.001) == [3.0]
    assert aa.one_step_targets(targets, eps, margin=0.1) == [1.0, 2.0, 3.0]


def test_audit_twin_is_the_unregularized_network_of_the_same_seed_and_batch():
    from types import SimpleNamespace

    shallow = [c for c in CONFIGS if grids.alpha_setting(c) == "shallow"]
    eq2 = next(c for c in shallow if c.regularizer == "spectral" and c.seed == 1)
    plain = {(c.seed, c.batch_size): SimpleNamespace(config=c) for c in shallow if c.method.plain}
    records = list(plain.values())
    record = SimpleNamespace(config=eq2)
    assert aa.audit_twin(record, records) is plain[(1, eq2.batch_size)]
    assert (1, 1500) in plain and plain[(1, 1500)] is not aa.audit_twin(record, records)
    assert aa.audit_twin(record, [plain[(0, eq2.batch_size)]]) is None
