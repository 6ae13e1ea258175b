"""Markdown tables of stored results (`powerlaw_lib.tables`), on hand-made results."""

from __future__ import annotations

import numpy as np
import pytest

from powerlaw_lib import analysis, grids, tables
from powerlaw_lib.config import RunConfig
from powerlaw_lib.evaluation import metric_name
from powerlaw_lib.store import Result


def _result(seed: int, accuracy: float, pgd: float, regularizer: str = "none", **fields) -> Result:
    extra = {"reg_layers": (1,), "beta": 2.0} if regularizer == "spectral" else {}
    config = RunConfig(regularizer=regularizer, seed=seed, strength_eps=(0.05,), **extra, **fields)
    metrics = {"clean_accuracy": accuracy, "layer1_alpha": 1.5, "layer1_effective_dim": 30.0,
               metric_name("strength_pgd", 0.05): pgd, metric_name("strength_restarts", 0.05): pgd - 0.01}
    for attack in ("fgsm", "pgd"):
        for eps in (0.05, 0.1):
            metrics[metric_name(attack, eps)] = pgd
    return Result(config, metrics)


def test_epoch_check_table_shows_each_run_and_marks_the_missing_ones():
    cnn = RunConfig(arch="cnn", hidden=(20,), batch_norm=False, batch_size=3000, epochs=50,
                    pgd_eps=(0.0, 0.1))
    spec = cnn.replace(regularizer="spectral", reg_layers=(3,), beta=2.0)
    run = Result(spec, {"clean_accuracy": 0.9412, "layer3_alpha": 1.8236},
                 curves={"pgd": [0.9, 0.5]}, history=[{"epoch": 50, "penalty": 1.5}])
    plain = Result(cnn, {"clean_accuracy": 0.97, "layer3_alpha": 1.9},   # the FC layer
                   curves={"pgd": [0.95, 0.45]}, history=[{"epoch": 50, "penalty": 0.0}])
    text = tables.epoch_check_table([("vanilla", cnn, plain), ("SpecReg", spec, run),
                                     ("SpecReg", spec.replace(epochs=100), None)])
    lines = text.splitlines()
    assert lines[2] == "| vanilla | 50 | 97.00 | 70.0 | 1.90 | – |"
    assert lines[3] == "| SpecReg | 50 | 94.12 | 70.0 | 1.82 | 0.750 |"      # penalty / β
    assert lines[4] == "| SpecReg | 100 | not run yet | not run yet | not run yet | not run yet |"


def test_markdown_escapes_pipes_and_checks_the_row_length():
    text = tables.markdown(["a", "b"], [["x|y", 1]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]
    with pytest.raises(ValueError, match="every row must have 2 cells"):
        tables.markdown(["a", "b"], [["only one"]])


def test_results_table_gives_mean_and_sd_over_seeds_in_percent():
    runs = [_result(0, 0.97, 0.10), _result(1, 0.99, 0.20)]
    groups = analysis.group_by_method(runs)
    (row,) = tables.results_table(groups, suffix=" (BN)")
    assert row[0] == "vanilla (BN)"
    assert row[1] == "98.00 ± 1.41"                       # clean accuracy, 2 decimals
    assert row[2] == "15.0 ± 7.1"                         # FGSM ε=0.05
    assert row[-2:] == ["1.50 ± 0.00", "30 ± 0"]
    assert len(row) == len(tables.results_header())


def test_strength_table_puts_both_attacks_on_the_same_images_side_by_side():
    runs = [_result(s, 0.98, 0.3) for s in range(2)]
    text = tables.strength_table(analysis.group_by_method(runs), runs[0].config)
    header, _, row = text.splitlines()
    assert "PGD-40 ε=0.05 (%)" in header and "5×100 restarts ε=0.05 (%)" in header
    assert row == "| vanilla | 30.0 ± 0.0 | 29.0 ± 0.0 |"


def test_effect_table_is_two_sided():
    worse = {"vanilla": np.array([0.10, 0.11, 0.12])}
    better = {"vanilla": np.array([0.20, 0.21, 0.22])}
    text = tables.effect_table(worse, better, "with", "without")
    assert text.splitlines()[-1] == "| vanilla | 11.0 | 21.0 | -10.0 ± 0.8 | yes |"
    same = tables.effect_table(better, {"vanilla": np.array([0.21, 0.20, 0.22])}, "a", "b")
    assert same.splitlines()[-1].endswith("| no |")


def test_shallow_settings_reads_this_chapters_values_from_the_config():
    config = grids.shallow(epochs=7, train_subset=5000, seeds=(0,))[0]
    text = tables.shallow_settings(config, n_seeds=1, betas=[1.0, 2.0])
    assert "| epochs | not stated | 50 | 7 |" in text
    assert "MNIST 5,000 / 10,000" in text and "β ∈ [1.0, 2.0]" in text


def test_the_learning_rate_check_runs_are_told_apart_from_the_main_runs():
    configs = grids.shallow(seeds=(0,), text_lr_check=(0,))
    checks = [c for c in configs if grids.is_text_lr_check(c)]
    assert len(checks) == 1 and checks[0].lr == 1e-4 and checks[0].optimizer == "adam"
    # when the main runs use the text's own setting, nothing is a check run
    same = grids.shallow(seeds=(0,), lr=1e-4, optimizer="adam", text_lr_check=())
    assert not any(grids.is_text_lr_check(c, lr=1e-4, optimizer="adam") for c in same)


def test_the_strength_sample_is_described_as_it_was_drawn():
    from powerlaw_lib.evaluation import strength_sample_text

    random = grids.shallow(seeds=(0,))[0]                      # the chapter's default
    assert random.strength_sampling == "random"
    assert "random sample of 500" in strength_sample_text(random)
    first = grids.shallow(seeds=(0,), strength_sampling="first")[0]
    assert "first 500" in strength_sample_text(first)
    assert strength_sample_text(random.replace(strength_subset=None)) == \
        "every image of the PGD subset"


def test_superseded_table_puts_a_retrained_run_beside_the_result_it_replaced():
    from powerlaw_lib.config import RunConfig
    from powerlaw_lib.store import Result

    config = RunConfig(hidden=(20,), batch_size=100, seed=1)
    metrics = {"clean_accuracy": 0.9786, "pgd_accuracy@0.05": 0.475, "layer1_alpha": 1.0123}
    old = Result(config, metrics, provenance={"superseded": {"first_different_epoch": 1}})
    new = Result(config, {"clean_accuracy": 0.9793, "pgd_accuracy@0.05": 0.495,
                          "layer1_alpha": 1.0101})
    lines = tables.superseded_table([(old, new)], {config.key: "SpecReg β=1 BN"}).splitlines()
    assert lines[0] == ("| run | seed | differs from epoch | clean acc. (%) | PGD ε=0.05 (%) "
                        "| fitted α |")
    assert lines[2] == "| SpecReg β=1 BN | 1 | 1 | 97.86 → 97.93 | 47.5 → 49.5 | 1.012 → 1.010 |"
    # labelled by the replacement (the run a chapter shows, here evaluated with another
    # strength-check sample), sorted by label then seed
    shown = Result(config.replace(strength_sampling="first"), new.metrics)
    other = Result(config.replace(seed=0), new.metrics)
    labels = {shown.key: "b", other.key: "a"}
    rows = tables.superseded_table([(old, shown), (old, other)], labels).splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == ["| a", "| b"]


def test_alpha_sweep_table_has_a_row_per_target_with_both_fits():
    from powerlaw_lib.config import RunConfig
    from powerlaw_lib.store import Result
    from powerlaw_lib.tables import alpha_sweep_table

    def run(alpha, seed, acc):
        c = RunConfig(hidden=(150,), batch_norm=False, regularizer="slope" if alpha else "none",
                      reg_layers=(1,) if alpha else (), alpha=alpha or 1.0, seed=seed)
        return Result(c, {"clean_accuracy": acc, "layer1_alpha_gerum": 2.0, "layer1_alpha": 1.5,
                          "fgsm_accuracy@0.05": 0.4, "pgd_accuracy@0.05": 0.3})

    text = alpha_sweep_table({None: [run(None, 0, 0.97), run(None, 1, 0.99)],
                              2.0: [run(2.0, 0, 0.95)]}, 0.05)
    lines = text.splitlines()
    assert lines[0].split(" | ")[-2:] == ["FGSM (%)", "PGD-40 (%) |"] and "official" not in lines[0]
    assert "α̂ (Stringer's fit)" in lines[0]
    assert lines[2].startswith("| none | 2 | 98.00 ±\u00a01.41 | 2.00 ±\u00a00.00 | "
                               "1.50 ±\u00a00.00 | 40.0")     # "± sd" never wraps apart
    assert lines[3].startswith("| 2 | 1 | 95.00 | 2.00 | 1.50 | 40.0 | 30.0")


def test_best_alpha_table_shows_the_best_target_beside_its_references():
    from powerlaw_lib.alpha_analysis import Best
    from powerlaw_lib.analysis import summarize
    from powerlaw_lib.tables import best_alpha_table

    best = {"shallow": {"acc": Best(2.5, summarize([0.95, 0.97]), summarize([0.93, 0.93]), None,
                                    (2.0, 2.5, 3.0)),
                        "pgd": Best(5.0, summarize([0.40]), None, summarize([0.2, 0.3]), (5.0,),
                                    at_edge=True)}}
    text = best_alpha_table(best, {"shallow": "dense 784-2000-10"}, {"shallow": 0.05},
                            grid=[1.0, 2.0, 2.5, 3.0, 5.0])
    lines = text.splitlines()
    assert lines[0].startswith("| setting | metric | best α* | within 2 SE of the best |")
    assert len(lines) == 4
    assert ("| dense 784-2000-10 | held-out accuracy | 2.5 | 2–3 | 96.00 ±\u00a01.41 "
            "| 93.00 ±\u00a00.00 | – |") in text
    assert ("| dense 784-2000-10 | PGD-40, ε = 0.05 | 5 (edge) | 5 | 40.00 | – "
            "| 25.00 ±\u00a07.07 |") in text


def test_target_spans_join_neighbours_on_the_grid():
    grid = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0]
    assert tables.target_spans([2.0, 2.5, 3.0, 5.0], grid) == "2–3, 5"
    assert tables.target_spans([4.0, 5.0], grid) == "4–5"                # neighbours on the grid
    assert tables.target_spans(grid, grid) == "0.5–5"
    assert tables.target_spans([1.0, 2.0], grid) == "1, 2"               # 1.5 between them
    assert tables.target_spans([1.0, 2.0]) == "1, 2"                     # no grid: a list
    assert tables.target_spans([1.0, 1.25], grid) == "1, 1.25"           # off the grid: a list
    assert tables.target_spans([], grid) == ""


def test_value_span_gives_the_range_or_one_value_where_both_ends_read_the_same():
    assert tables.value_span([2.04, 0.77, 1.3], ".1f") == "0.8–2.0"     # min–max, any order
    assert tables.value_span([3, 3, 3]) == "3"
    assert tables.value_span([60.04, 60.01], ".1f") == "60.0"           # equal once formatted
    assert tables.value_span((n for n in [23.4, 48.0]), ".0f") == "23–48"   # an iterator
    assert tables.value_span([]) == "–" and tables.value_span([], empty="none") == "none"


def test_penalty_table_pairs_the_two_penalties_and_marks_significant_differences():
    from powerlaw_lib.alpha_analysis import PenaltyPair
    from powerlaw_lib.analysis import compare, summarize

    def pair(target, metric, slope, eq2):
        return PenaltyPair(target, metric, summarize(slope), summarize(eq2), compare(eq2, slope))

    pairs = [pair(None, "clean_accuracy", [0.95, 0.96], [0.95, 0.96]),
             pair(1.0, "clean_accuracy", [0.90, 0.91], [0.95, 0.96]),       # eq. 2 above: +
             pair(1.0, "layer1_alpha_gerum", [1.0, 1.1], [0.5, 0.6])]       # eq. 2 below: −
    text = tables.penalty_table(pairs, {"clean_accuracy": ("accuracy (%)", 100, ".1f"),
                                        "layer1_alpha_gerum": ("α̂", 1, ".2f")})
    lines = text.splitlines()
    assert lines[0] == "| α* | accuracy (%), slope | accuracy (%), eq. 2 | α̂, slope | α̂, eq. 2 |"
    assert lines[2] == "| none | 95.5 | 95.5 | – | – |"                     # no α̂ pair: dashes
    assert lines[3] == "| 1 | 90.5 | 95.5 + | 1.05 | 0.55 − |"
    # against the twins: eq. 2's gain no larger than the slope penalty's -> no mark
    from dataclasses import replace
    from powerlaw_lib.analysis import Comparison
    twinned = [replace(p, gain_difference=Comparison(-0.001, 0.01, False)) if p.target else p
               for p in pairs]
    lines = tables.penalty_table(twinned, {"clean_accuracy": ("accuracy (%)", 100, ".1f"),
                                           "layer1_alpha_gerum": ("α̂", 1, ".2f")},
                                 against_twins=["clean_accuracy"]).splitlines()
    assert lines[3] == "| 1 | 90.5 | 95.5 | 1.05 | 0.55 − |"
    # and a gain beyond 2 SE marks a cell whose raw values do not differ
    level = [pair(1.0, "clean_accuracy", [0.95, 0.96], [0.95, 0.96])]
    level = [replace(level[0], gain_difference=Comparison(-0.05, 0.01, False))]
    lines = tables.penalty_table(level, {"clean_accuracy": ("accuracy (%)", 100, ".1f")},
                                 against_twins=["clean_accuracy"]).splitlines()
    assert lines[2] == "| 1 | 95.5 | 95.5 − |"


def test_paired_numbers_table_lists_every_estimate_with_its_error_both_ways():
    from powerlaw_lib.claims import Claim

    nan = float("nan")
    rule = [Claim(1, "a", True, {"c1_x_best": 2.5, "c1_x_diff": 0.35, "c1_x_se": 0.3}),
            Claim(2, "b", None, {"c2_acc_slope": nan, "c2_acc_se": nan}),
            Claim(4, "c", True, {"c4_x": 1.9})]                     # no estimate: no row
    paired = [Claim(1, "a", True, {"c1_x_best": 2.5, "c1_x_diff": 0.35, "c1_x_se": 0.1}),
              Claim(2, "b", None, {"c2_acc_slope": -1.0, "c2_acc_se": 0.2}),
              Claim(4, "c", True, {"c4_x": 1.9})]
    text = tables.paired_numbers_table(rule, paired, str.upper)
    assert text.splitlines()[2:] == ["| 1 | C1_X | +0.35 ± 0.30 | **+0.35 ± 0.10** |",
                                     "| 2 | C2_ACC | – | **-1.00 ± 0.20** |"]


def test_gains_table_gives_the_range_and_the_targets_beyond_two_standard_errors():
    from powerlaw_lib.analysis import Comparison

    nan = float("nan")
    gains = {"shallow": {"clean_accuracy": {1.0: Comparison(-0.02, 0.001, False),
                                            3.0: Comparison(0.001, 0.002, False),
                                            4.0: Comparison(0.05, nan, False),   # one seed
                                            5.0: Comparison(0.01, 0.001, True)},
                         "pgd": {}},                             # no twin: no row
             "deep": {"clean_accuracy": {1.0: Comparison(-0.03, nan, False)}}}
    text = tables.gains_table(gains, {"shallow": "dense"}, {"clean_accuracy": "accuracy"})
    assert text.splitlines()[2:] == ["| dense | accuracy | -2.00 … +5.00 | 5 | 1 | 4 |",
                                     "| deep | accuracy | -3.00 … -3.00 | – | – | 1 |"]
    gains["shallow"]["clean_accuracy"][3.0] = Comparison(0.001, nan, False)
    text = tables.gains_table(gains, {"shallow": "dense"}, {"clean_accuracy": "accuracy"},
                              grid=[1.0, 2.0, 3.0, 4.0, 5.0])     # 3 and 4 neighbours, 2 not run
    assert text.splitlines()[2] == "| dense | accuracy | -2.00 … +5.00 | 5 | 1 | 3–4 |"


def test_paired_table_shows_both_readings_and_bolds_the_significant_ones():
    from powerlaw_lib.analysis import Comparison
    from powerlaw_lib.claims import PairedReading

    row = PairedReading(5, "cnn", "jacobian", "specreg-all", "noise",
                        welch=Comparison(-0.041, 0.092, False),
                        paired=Comparison(-0.041, 0.010, False), n_pairs=3)
    text = tables.paired_table([row], {"cnn": "CNN"}, {"jacobian": "Jacobian",
                                                       "specreg-all": "SpecReg + all"})
    last = text.splitlines()[-1]
    assert last == ("| 5 | CNN | Jacobian − (SpecReg + all) | white noise | -4.10 ± 9.20 | **-4.10 ± 1.00** "
                    "| 3 |")


def test_scientific_reads_plain_in_the_middle_and_as_powers_of_ten_outside():
    assert tables.scientific(1.25e-7, 3) == "1.25\u00a0×\u00a010⁻⁷"
    assert tables.scientific(29396.4) == "2.9\u00a0×\u00a010⁴"
    assert tables.scientific(190.587) == "190" and tables.scientific(0.0134) == "0.013"
    assert tables.scientific(-3e-5) == "-3.0\u00a0×\u00a010⁻⁵"
    assert tables.scientific(0.0) == "0" and tables.scientific(float("nan")) == "–"


def test_penalty_load_table_gives_where_the_penalty_comes_from_and_what_it_took():
    from powerlaw_lib.alpha_analysis import PenaltyLoad
    from powerlaw_lib.analysis import summarize
    nan = [float("nan")]
    loads = {None: PenaltyLoad(None, summarize([0.0]), summarize([0.2, 0.22]), summarize([0, 0]),
                               summarize([5e-6, 7e-6]), summarize(nan), (), summarize(nan)),
             3.0: PenaltyLoad(3.0, summarize([190.0, 210.0]), summarize([0.58]),
                              summarize([50, 49]), summarize([2.2e-7]), summarize([41.0, 39.0]),
                              (149, 151), summarize([0.97, 0.99])),
             4.0: PenaltyLoad(4.0, summarize([3e6]), summarize([nan]), summarize([50]),
                              summarize([2e-7]), summarize([4700.0]), (316,), summarize([1.0]))}
    text = tables.penalty_load_table(loads, epochs=50)
    lines = text.splitlines()
    assert lines[0].startswith("| α* | largest λₙ/γₙ, n > τ (rank n) | share of eq. 2 from ranks")
    assert lines[2] == "| none | – | – | 0 | 0.210 | 0 of 50 |"
    assert lines[3] == "| 3 | 40 (n = 149–151) | 98 % | 200 | 0.580 | 49.5 of 50 |"
    assert lines[4] == "| 4 | 4.7\u00a0×\u00a010³ (n = 316) | 100 % | 3.0\u00a0×\u00a010⁶ | – | 50 of 50 |"


def test_gain_text_shows_the_error_only_where_there_is_one():
    from powerlaw_lib.analysis import Comparison
    assert tables.gain_text(Comparison(0.0975, 0.0017, True)) == "+9.75 ± 0.17"
    assert tables.gain_text(Comparison(-0.0008, float("nan"), False)) == "-0.08"
    assert tables.gain_text(None) == "–"
