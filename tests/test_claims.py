"""The deep chapter's claims (`powerlaw_lib.claims`) on synthetic results with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from powerlaw_lib import claims
from powerlaw_lib.config import RunConfig
from powerlaw_lib.store import Result

MLP = RunConfig(hidden=(20, 20, 20), batch_norm=False, batch_size=100)
CNN = RunConfig(arch="cnn", hidden=(20,), batch_norm=False, batch_size=3000)
DECREASING = MLP.replace(regularizer="spectral", reg_layers=(1, 2, 3), layer_alphas=(2.0, 1.5, 1.0))


def _runs(config, pgd, noise=0.5, alphas=(2.0, 2.0, 2.0), clean=0.98, spread=0.005):
    """Three seeds whose PGD / noise curves average to `pgd` / `noise` (± `spread`)."""
    out = []
    for seed, jitter in enumerate((-spread, 0.0, spread)):
        metrics = {"clean_accuracy": clean, **{f"layer{l}_alpha": a for l, a in enumerate(alphas, 1)}}
        out.append(Result(config.replace(seed=seed), metrics,
                          curves={"pgd": [pgd + jitter] * 4, "noise": [noise + jitter] * 4}))
    return out


def _paper_like():
    """Groups in which every claim of the paper holds."""
    return {
        "mlp": {"vanilla": _runs(MLP, 0.30, alphas=(1.6, 1.6, 1.6)),
                "vanilla-wh": _runs(MLP, 0.10),
                "specreg-last": _runs(MLP, 0.30),
                "specreg-last-wh": _runs(MLP, 0.10),
                "specreg-all": _runs(MLP, 0.50, noise=0.6, alphas=(1.3, 1.2, 1.02)),
                "jacobian": _runs(MLP, 0.70, noise=0.65, alphas=(2.5, 2.5, 2.5))},
        "cnn": {"vanilla": _runs(CNN, 0.30, alphas=(1.6, 1.6, 1.6)),
                "specreg-last": _runs(CNN, 0.50),
                "specreg-all": _runs(CNN, 0.50, noise=0.7, alphas=(1.4, 1.3, 0.95)),
                "jacobian": _runs(CNN, 0.60, noise=0.6, alphas=(3.0, 3.0, 3.0))},
    }


def test_every_claim_holds_where_the_results_say_so():
    judged = claims.deep_claims(_paper_like())
    assert [c.number for c in judged] == list(range(1, 9))
    assert all(c.held for c in judged), [(c.number, c.held) for c in judged]
    numbers = {k: v for c in judged for k, v in c.numbers.items()}
    assert numbers["c1_diff"] == pytest.approx(-20.0)              # whitening: -20 points
    assert numbers["c4_cnn"] == pytest.approx(20.0) and numbers["c6_last_ok"] == "is"
    assert numbers["c7_alpha_mlp"] == pytest.approx(2.5) and numbers["c7_alpha_cnn"] == pytest.approx(3.0)
    assert numbers["c5_noise_cnn"] == pytest.approx(-10.0) and numbers["c5_noise_cnn_se"] > 0


@pytest.mark.parametrize(("change", "number"), [
    (("mlp", "vanilla-wh", 0.30), 1),          # whitening no longer hurts
    (("mlp", "specreg-last-wh", 0.30), 2),     # last-layer SpecReg rescues the whitened MLP
    (("mlp", "specreg-last", 0.45), 3),        # ... and helps the MLP too
    (("cnn", "specreg-all", 0.30), 4),         # all-layer SpecReg no help for the CNN
    (("mlp", "specreg-last", 0.15), 3),        # ... or makes the MLP clearly less robust
    (("mlp", "jacobian", 0.45), 5),            # Jacobian below all-layer SpecReg
    (("cnn", "specreg-last", 0.40), 8),        # CNN: all layers clearly beat the last alone
    (("cnn", "specreg-last", 0.60), 8),        # ... or the last alone clearly beats all layers
])
def test_a_claim_fails_when_its_numbers_turn(change, number):
    groups = _paper_like()
    arch, variant, pgd = change
    config = groups[arch][variant][0].config
    old = groups[arch][variant][0].metrics
    alphas = tuple(old[f"layer{l}_alpha"] for l in (1, 2, 3))
    groups[arch][variant] = _runs(config, pgd, noise=groups[arch][variant][0].curves["noise"][0],
                                  alphas=alphas)
    judged = {c.number: c for c in claims.deep_claims(groups)}
    assert judged[number].held is False


def test_claims_6_and_7_read_the_spectra():
    groups = _paper_like()
    groups["mlp"]["specreg-all"] = _runs(MLP, 0.50, noise=0.6, alphas=(1.05, 1.2, 1.0))
    claim6 = claims.earlier_layers_relax(groups)
    assert claim6.held is False                                     # layer 1 reached 1/n
    assert claim6.numbers["c6_within"] == "MLP layer 1" and claim6.numbers["c6_not_towards"] == "none"
    groups["cnn"]["specreg-all"] = _runs(CNN, 0.50, noise=0.7, alphas=(1.6, 1.7, 0.95))
    claim6 = claims.earlier_layers_relax(groups)                    # CNN: 1 unmoved, 2 away
    assert claim6.numbers["c6_not_towards"] == "CNN layers 1 and 2"
    assert claims.earlier_layers_relax(_paper_like()).numbers["c6_within"] == "none"
    groups = _paper_like()
    groups["cnn"]["jacobian"] = _runs(CNN, 0.60, noise=0.6, alphas=(3.0, 3.0, 1.05))
    assert claims.jacobian_without_power_law(groups).held is False  # a 1/n Jacobian network


def test_the_regularized_layer_reaches_1_over_n_only_within_the_tolerance():
    groups = _paper_like()
    groups["cnn"]["specreg-last"] = _runs(CNN, 0.50, alphas=(1.6, 1.6, 1.85))
    del groups["mlp"]["specreg-all"]
    out = claims.regularized_layer_exponents(groups)
    assert out["ll_alpha_mlp_vanilla"] == pytest.approx(1.6)
    assert out["ll_alpha_mlp_last"] == pytest.approx(2.0) and out["ll_reached_mlp_last"] == "is not"
    assert out["ll_alpha_cnn_last"] == pytest.approx(1.85) and out["ll_reached_cnn_last"] == "is not"
    assert out["ll_alpha_cnn_all"] == pytest.approx(0.95) and out["ll_reached_cnn_all"] == "is"
    assert math.isnan(out["ll_alpha_mlp_all"]) and out["ll_reached_mlp_all"] == "–"
    assert out["ll_alpha_mlp_vanilla_wh"] == pytest.approx(2.0) and "ll_reached_mlp_vanilla_wh" not in out
    assert out["ll_reached_mlp_last_wh"] == "is not" and math.isnan(out["ll_alpha_cnn_last_wh"])
    assert out["ll_side_mlp_vanilla"] == "steeper than" and out["ll_side_cnn_vanilla_wh"] == "–"
    groups["cnn"]["vanilla-wh"] = _runs(CNN, 0.10, alphas=(1.6, 1.6, 0.45))
    groups["mlp"]["vanilla-wh"] = _runs(MLP, 0.10, alphas=(1.6, 1.6, 0.95))
    out = claims.regularized_layer_exponents(groups)
    assert out["ll_side_cnn_vanilla_wh"] == "flatter than" and out["ll_side_mlp_vanilla_wh"] == "at"
    groups["cnn"]["specreg-last-wh"] = _runs(CNN, 0.10, alphas=(1.6, 1.6, 1.07))
    assert claims.regularized_layer_exponents(groups)["ll_reached_cnn_last_wh"] == "is"
    groups["mlp"]["specreg-last"] = _runs(MLP, 0.30, alphas=(2.0, 2.0, 1.08))
    assert claims.regularized_layer_exponents(groups)["ll_reached_mlp_last"] == "is"
    del groups["cnn"]
    out = claims.regularized_layer_exponents(groups)
    assert out["ll_reached_cnn_last"] == "–" and math.isnan(out["ll_alpha_cnn_vanilla"])


def test_missing_runs_leave_a_claim_untested_with_nan_numbers():
    judged = claims.deep_claims({"mlp": {"vanilla": _runs(MLP, 0.3)}})
    assert all(c.held is None for c in judged)
    assert claims.verdict(None) == "not tested" and claims.verdict(True) == "reproduced"
    assert math.isnan(judged[0].numbers["c1_diff"])
    assert claims.decreasing_alpha_effect({"mlp": {"vanilla": _runs(MLP, 0.3)}}) is None


def test_claims_of_both_networks_report_the_half_that_is_stored():
    groups = _paper_like()
    del groups["cnn"]
    judged = {c.number: c for c in claims.deep_claims(groups)}
    for number, key, gain in ((3, "c3_mlp", 0.0), (4, "c4_mlp", 20.0)):
        assert judged[number].held is None                          # needs the CNN to judge
        assert judged[number].numbers[key] == pytest.approx(gain)
        assert math.isnan(judged[number].numbers[key.replace("mlp", "cnn")])


def test_the_decreasing_alpha_effect_is_two_sided():
    groups = _paper_like()
    groups["mlp"]["specreg-all-decreasing"] = _runs(DECREASING, 0.40, alphas=(2.0, 1.5, 1.0), clean=0.97)
    effect = claims.decreasing_alpha_effect(groups)
    assert effect["dec_held"] == "less" and effect["dec_diff"] == pytest.approx(-10.0)
    assert effect["dec_alphas"] == "2.00, 1.50, 1.00" and effect["dec_clean"] == pytest.approx(97.0)
    assert effect["dec_reached"] == "layers 1, 2 and 3"
    groups["mlp"]["specreg-all-decreasing"] = _runs(DECREASING, 0.40,
                                                    alphas=(1.7, 1.45, 1.0))
    assert claims.decreasing_alpha_effect(groups)["dec_reached"] == "layers 2 and 3"
    groups["mlp"]["specreg-all-decreasing"] = _runs(MLP, 0.50, spread=0.05)
    assert claims.decreasing_alpha_effect(groups)["dec_held"] == "neither more nor less"
    assert np.isfinite(claims.decreasing_alpha_effect(groups)["dec_se"])


# ------------------------------------------------------------------------------- the audit

def _audit(seed, pgd, worst, n=1000, failed=(), eps=(0.05, 0.1)):
    """An audit record of `n` images whose PGD-40 / worst-case accuracies are given per ε."""
    from powerlaw_lib.audits import AuditRecord, AuditSpec

    spec = AuditSpec(eps=eps, images=n)
    rows = lambda accs: ["1" * round(a * n) + "0" * (n - round(a * n)) for a in accs]  # noqa: E731
    outcomes = {a: rows(pgd if a == "pgd" else worst if a == "apgd-t" else pgd)
                for a in spec.attacks}
    return AuditRecord(MLP.replace(seed=seed), spec,
                       {a: [round(a_ * n) / n for a_ in (pgd if a == "pgd" else worst
                                                         if a == "apgd-t" else pgd)]
                        for a in spec.attacks},
                       [round(w * n) / n for w in worst], 0.98, outcomes,
                       {"failed": list(failed)})


def test_audited_accuracy_pools_images_and_adds_the_seed_variance():
    one = [_audit(0, (0.5, 0.2), (0.4, 0.1))]
    p, var = claims.audited_accuracy(one, 0)
    assert p == pytest.approx(0.4) and var == pytest.approx(0.4 * 0.6 / 1000)
    assert claims.audited_accuracy(one, 1, "pgd")[0] == pytest.approx(0.2)
    three = [_audit(s, (0.5, 0.2), (w, 0.1)) for s, w in enumerate((0.3, 0.4, 0.5))]
    p, var = claims.audited_accuracy(three, 0)
    assert var == pytest.approx(0.4 * 0.6 / 3000 + 0.01 / 3)


def test_a_robustness_claim_survives_only_a_clear_audited_gain_without_masking():
    vanilla = [_audit(0, (0.10, 0.01), (0.09, 0.0))]
    real = [_audit(0, (0.50, 0.05), (0.48, 0.04))]
    v = claims.audit_verdict(real, vanilla, 0, ("SpecReg", "vanilla"))
    assert v.held is True and v.text == "survives" and v.eps == 0.05
    assert v.pgd_difference == pytest.approx(40.0) and v.audited_difference == pytest.approx(39.0)
    masked = [_audit(0, (0.50, 0.05), (0.48, 0.04), failed=("black_box",))]
    assert claims.audit_verdict(masked, vanilla, 0).held is False          # a symptom: no
    broken = [_audit(0, (0.50, 0.05), (0.10, 0.0))]
    v = claims.audit_verdict(broken, vanilla, 0)
    assert v.held is False and abs(v.audited_difference - 1.0) < 1e-9 and v.margin > 1.0
    same = [_audit(0, (0.11, 0.01), (0.10, 0.0))]
    assert claims.audit_verdict(same, vanilla, 0).held is None             # nothing claimed


def test_audited_tables_show_pgd_the_worst_case_and_the_gap():
    from powerlaw_lib import tables

    groups = {"vanilla": [_audit(0, (0.10, 0.01), (0.09, 0.0))],
              "SpecReg": [_audit(s, (0.50, 0.05), (0.48, 0.04), failed=("noise",) * s)
                          for s in (0, 1)]}
    lines = tables.audited_table(groups).splitlines()
    assert len(lines) == 2 + 4
    assert lines[2] == "| vanilla | 0.05 | 1 | 98.0 | 10.0 | 9.0 | -1.0 | none |"
    assert lines[4].startswith("| SpecReg | 0.05 | 2 | 98.0 ± 0.0 | 50.0 ± 0.0 | 48.0 ± 0.0 | -2.0")
    assert lines[4].endswith("| noise |")
    verdicts = [claims.audit_verdict(groups["SpecReg"], groups["vanilla"], i,
                                     ("SpecReg", "vanilla")) for i in (0, 1)]
    table = tables.audit_verdict_table(verdicts).splitlines()
    assert table[2].startswith("| SpecReg more robust than vanilla | 0.05 | +40.0 | +39.0 |")
    assert "does not survive (masking: noise)" in table[2]


def test_claims_on_both_networks_wait_for_both():
    groups = _paper_like()
    del groups["cnn"]
    judged = {c.number: c for c in claims.deep_claims(groups)}
    assert judged[4].held is None and judged[5].held is None     # not "not reproduced"
    assert judged[4].numbers["c4_mlp"] == pytest.approx(20.0)
    assert judged[7].held is True and math.isnan(judged[7].numbers["c7_alpha_cnn"])


def test_the_cnn_reversal_under_noise_must_exceed_two_standard_errors():
    groups = _paper_like()
    groups["cnn"]["jacobian"] = _runs(CNN, 0.60, noise=0.699, alphas=(3.0, 3.0, 3.0))
    assert claims.jacobian_vs_noise(groups).held is False       # 0.1 points behind: noise level


def _epoch_run(epochs, alpha, penalty):
    config = CNN.replace(regularizer="spectral", reg_layers=(3,), beta=2.0, epochs=epochs)
    return Result(config, {"clean_accuracy": 0.95, "layer3_alpha": alpha},   # conv, conv, FC
                  history=[{"penalty": 9.0}, {"penalty": penalty}])


@pytest.mark.parametrize(("alpha_long", "moved", "reached"), [
    (1.05, "closer to", "is"), (1.40, "closer to", "is not"), (1.78, "no closer to", "is not"),
    (1.95, "farther from", "is not"), (0.10, "farther from", "is not")])
def test_the_epoch_check_reads_whether_longer_training_reaches_1_over_n(alpha_long, moved, reached):
    effect = claims.epoch_check_effect(_epoch_run(50, 1.8, 1.6), _epoch_run(100, alpha_long, 0.4))
    assert effect["ec_moved"] == moved and effect["ec_reached"] == reached
    assert effect["ec_alpha_main"] == 1.8 and effect["ec_alpha_long"] == alpha_long
    assert effect["ec_penalty_main"] == pytest.approx(0.8)        # the last epoch's, ÷ β = 2
    assert effect["ec_penalty_long"] == pytest.approx(0.2)
    assert effect["ec_epochs_main"] == 50 and effect["ec_epochs_long"] == 100


def test_the_epoch_check_without_its_longer_run_is_untested():
    effect = claims.epoch_check_effect(_epoch_run(50, 1.8, 1.6), None)
    assert effect["ec_moved"] == effect["ec_reached"] == "–"
    assert effect["ec_alpha_main"] == 1.8 and math.isnan(effect["ec_alpha_long"])
    assert effect["ec_epochs_main"] == 50 and math.isnan(effect["ec_epochs_long"])
    unpenalized = Result(CNN, {"layer3_alpha": 1.8}, history=[{"loss": 0.1}])
    assert math.isnan(claims.epoch_check_effect(unpenalized, None)["ec_penalty_main"])


def test_the_deep_epoch_check_pairs_last_layer_specreg_with_its_longer_twin():
    from powerlaw_lib import grids

    params = dict(archs=("cnn",), width=30, cnn_epochs=3, epoch_check=6, decreasing_alphas=())
    configs = grids.deep(**params)
    longer = [c for c in configs if c.epochs == 6]
    assert {grids.deep_variant(c) for c in longer} == {"vanilla", "specreg-last"}
    stored = {}
    for c in configs:                                   # only the last-layer SpecReg pair
        if grids.deep_variant(c) == "specreg-last" and c.seed == 0 and c.beta == 1.0:
            stored[c.key] = Result(c, {"layer3_alpha": 1.8 if c.epochs == 3 else 1.05},
                                   history=[{"penalty": 0.5}])
    assert len(stored) == 2
    effect = grids.deep_epoch_check(configs, params, lambda c: stored.get(c.key))
    assert (effect["ec_alpha_main"], effect["ec_alpha_long"]) == (1.8, 1.05)
    assert effect["ec_reached"] == "is" and effect["ec_arch"] == "cnn"
    nothing = grids.deep_epoch_check(configs, params, lambda c: None)
    assert (nothing["ec_epochs_main"], nothing["ec_epochs_long"]) == (3, 6)   # from the configs
    assert nothing["ec_reached"] == "–" and math.isnan(nothing["ec_alpha_long"])
    no_check = dict(params, epoch_check=0)
    none = grids.deep_epoch_check(grids.deep(**no_check), no_check, lambda c: stored.get(c.key))
    assert none["ec_arch"] == "–" and math.isnan(none["ec_epochs_long"])


def test_compare_paired_reads_seed_by_seed_differences():
    from powerlaw_lib.analysis import compare, compare_paired

    a = {0: 0.80, 1: 0.50, 2: 0.65, 3: 0.9}              # seed 3 has no partner: left out
    b = {0: 0.75, 1: 0.44, 2: 0.61}                       # differences 0.05, 0.06, 0.04
    c = compare_paired(a, b)
    assert c.difference == pytest.approx(0.05)
    assert c.standard_error == pytest.approx(0.01 / math.sqrt(3))
    assert c.held and c.significant
    welch = compare([0.80, 0.50, 0.65], [0.75, 0.44, 0.61])   # the seeds' spread swamps it
    assert welch.difference == pytest.approx(0.05) and not welch.significant
    assert compare_paired({0: 0.4}, {0: 0.5}).held is False   # one pair: just a > b
    with pytest.raises(ValueError, match="no seed in common"):
        compare_paired({0: 0.4}, {1: 0.5})


def test_a_seed_effect_shared_by_every_variant_cancels_only_when_paired():
    groups = _paper_like()
    for variant, noise, wobble in (("specreg-all", 0.62, 0.004), ("jacobian", 0.60, 0.0)):
        for r, offset in zip(groups["cnn"][variant], (-0.2, 0.0, 0.2)):   # seed effect ±20
            r.curves["noise"] = [noise + offset + wobble * np.sign(offset)] * 4   # SpecReg +2
    welch = claims.deep_claims(groups)[4]
    paired = claims.deep_claims(groups, paired=True)[4]
    assert welch.held is False and paired.held is True          # the CNN's reversal under noise
    assert paired.numbers["c5_noise_cnn"] == pytest.approx(-2.0)
    assert paired.numbers["c5_noise_cnn_se"] == pytest.approx(0.4 / math.sqrt(3))
    readings = {(r.claim, r.arch, r.curve): r for r in claims.paired_readings(groups)}
    assert len(readings) == len(claims.CLAIM_COMPARISONS)
    noise = readings[(5, "cnn", "noise")]
    assert noise.n_pairs == 3 and not noise.welch.significant and noise.paired.significant
    del groups["cnn"]["jacobian"]                                  # its 3 comparisons left out
    assert len(claims.paired_readings(groups)) == len(claims.CLAIM_COMPARISONS) - 3


def test_each_paired_reading_is_the_comparison_its_claim_reports():
    groups = _paper_like()
    numbers = {k: v for c in claims.deep_claims(groups) for k, v in c.numbers.items()}
    readings = {(r.claim, r.arch, r.curve): 100 * r.welch.difference
                for r in claims.paired_readings(groups)}
    assert readings[(1, "mlp", "pgd")] == pytest.approx(numbers["c1_diff"])  # whitened − vanilla
    assert readings[(3, "cnn", "pgd")] == pytest.approx(numbers["c3_cnn"])
    assert readings[(4, "mlp", "pgd")] == pytest.approx(numbers["c4_mlp"])
    assert readings[(5, "cnn", "noise")] == pytest.approx(numbers["c5_noise_cnn"])
    assert readings[(5, "mlp", "pgd")] == pytest.approx(numbers["c5_adv_mlp"])
    assert readings[(8, "cnn", "pgd")] == pytest.approx(numbers["c8_diff"])


def test_pairing_refuses_two_runs_of_one_seed():
    groups = _paper_like()
    groups["cnn"]["jacobian"][1] = Result(groups["cnn"]["jacobian"][0].config,
                                          groups["cnn"]["jacobian"][1].metrics,
                                          curves=groups["cnn"]["jacobian"][1].curves)
    with pytest.raises(ValueError, match="cnn jacobian: two runs of one seed"):
        claims.deep_claims(groups, paired=True)


def test_claim_6_names_the_failing_layers_of_both_networks():
    groups = _paper_like()
    groups["mlp"]["specreg-all"] = _runs(MLP, 0.50, noise=0.6, alphas=(1.7, 1.2, 1.02))
    groups["cnn"]["specreg-all"] = _runs(CNN, 0.50, noise=0.7, alphas=(1.6, 1.7, 0.95))
    assert claims.earlier_layers_relax(groups).numbers["c6_not_towards"] == \
        "MLP layer 1; CNN layers 1 and 2"


def test_a_claim_of_parts_fails_with_any_part_and_is_untested_only_without_a_failure():
    from powerlaw_lib.claims import all_parts
    assert all_parts([True, True]) is True
    assert all_parts([True, None]) is None
    assert all_parts([None, False, True]) is False
    assert all_parts(iter([True, False])) is False
