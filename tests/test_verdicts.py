"""The chapters' claims judged outside the book (`powerlaw_lib.verdicts`, `claims GRID`),
on synthetic stored runs whose verdicts are known."""

from __future__ import annotations

import numpy as np
import pytest

from powerlaw_lib import __main__ as cli
from powerlaw_lib import alpha_analysis as aa
from powerlaw_lib import grids, verdicts
from powerlaw_lib.claims import Claim
from powerlaw_lib.evaluation import metric_name
from powerlaw_lib.store import Result, ResultStore

DEEP = dict(archs=("mlp",), width=40, decreasing_alphas=())
PGD = {"vanilla": 0.30, "vanilla-wh": 0.05}     # whitening: 25 points less robust


def _deep_store(path) -> tuple[ResultStore, list]:
    """The vanilla and whitened MLP runs of a small deep grid, all seeds, nothing else."""
    store = ResultStore(path)
    configs = grids.deep(**DEEP)
    for c in configs:
        variant = grids.deep_variant(c)
        if variant in PGD:
            pgd = PGD[variant] + 0.004 * (c.seed - 1)
            alphas = {f"layer{l}_alpha": 1.6 for l in (1, 2, 3)}     # every run stores them
            store.put(Result(c, {"clean_accuracy": 0.98, **alphas}, curves={"pgd": [pgd] * 3}))
    return store, configs


def test_deep_claims_on_a_partial_store_judge_only_what_its_runs_allow(tmp_path, capsys):
    store, configs = _deep_store(tmp_path)
    stored = [store.get(c) for c in configs if c in store]
    claims = {c.number: c for c in verdicts.chapter_claims("deep", stored, {})}
    assert claims[1].held is True and claims[1].numbers["c1_diff"] == pytest.approx(-25.0)
    assert all(claims[n].held is None for n in (2, 3, 4, 5, 7, 8))

    args = ["claims", "deep", "--results", str(tmp_path)] + sum(
        (["--set", f"{k}={v!r}"] for k, v in DEEP.items()), [])
    assert cli.main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"deep: {len(stored)}/{len(configs)} runs stored")
    assert f"PROVISIONAL, {len(configs) - len(stored)} missing" in out[0]
    assert "1. reproduced: whitening makes the MLP brittle" in out
    assert "2. not tested: last-layer SpecReg does not rescue the whitened MLP" in out
    assert out[-4].startswith("paired by seed (a check of the rule, not the verdicts): 1=reproduced")
    assert "  2=not tested" in out[-4]
    assert out[-3].startswith("last hidden layer's α") and "ll_alpha_mlp_vanilla=1.6 " in out[-3]
    assert "ll_reached_mlp_last=–" in out[-3]
    assert out[-2] == "decreasing α: not tested (runs missing)"
    assert out[-1] == "epoch check: not tested (runs missing)"


def test_the_deep_epoch_check_line_pairs_the_longer_run_with_its_twin():
    params = dict(archs=("cnn",), width=30, cnn_epochs=3, epoch_check=6, decreasing_alphas=())
    configs = grids.deep(**params)
    results = []
    for c in configs:
        if grids.deep_variant(c) == "specreg-last" and c.beta == 1.0 and c.seed == 0:
            alpha = 1.8 if c.epochs == 3 else 1.05                  # longer: reaches 1/n
            results.append(Result(c, {"layer3_alpha": alpha}, history=[{"penalty": 0.5}]))
    assert len(results) == 2                                        # main run and its twin
    line = verdicts.extra_lines("deep", results, params)[-1]
    assert line.startswith("epoch check (cnn, SpecReg last): ec_alpha_main=1.8  ec_alpha_long=1.05")
    assert "ec_reached=is  ec_moved=closer to" in line
    assert verdicts.extra_lines("deep", results[:1], params)[-1] == \
        "epoch check: not tested (runs missing)"                   # the longer run missing
    assert verdicts.extra_lines("deep", results[1:], params)[-1] == \
        "epoch check: not tested (runs missing)"                   # its main twin missing


def _alpha_results():
    """Every run of a small α sweep: dense best at α* = 2.5, the MNIST CNN falling with α*,
    CIFAR-10 accuracy falling and robustness rising with α*; unregularized α̂ = 1.7."""
    out = []
    for c in grids.alpha_sweep(dense_width=150, deep_width=130, cnn_width=150):
        setting = grids.alpha_setting(c)
        a = c.alpha if c.regularizer != "none" else 1.7
        jitter = 0.002 * (c.seed - 1)
        acc = 0.97 - 0.01 * (a - 2.5) ** 2 if setting in ("shallow", "deep") else 0.95 - 0.02 * a
        pgd = 0.2 + 0.03 * a if setting == "cnn-cifar10" else acc - 0.3
        layer = f"layer{len(c.hidden_widths)}"
        extra = {}
        if c.batch_size == 3000:         # eq. 2 and its twin: penalty 10^(α* − 2), cross-entropy 0.3
            pen = 0.0 if c.regularizer == "none" else 10.0 ** (a - 2)
            extra = dict(history=[{"epoch": e, "loss": pen + 0.3, "penalty": pen}
                                  for e in range(1, c.epochs + 1)],
                         spectra={layer: (np.arange(1, 151) ** -2.0).tolist()})   # λ_n = n^−2
        out.append(Result(c, {"clean_accuracy": acc + jitter,
                              metric_name("pgd", aa.read_eps(setting)): pgd + jitter,
                              f"{layer}_alpha_gerum": a + jitter, f"{layer}_alpha": a}, **extra))
    return out


def test_alpha_sweep_claims_and_best_targets_on_a_complete_grid():
    results = _alpha_results()
    claims = verdicts.chapter_claims("alpha_sweep", results)
    assert [c.held for c in claims] == [True, True, True, True]
    assert claims == aa.alpha_claims(aa.sweep_groups(results))    # the chapter's judgement
    lines = verdicts.extra_lines("alpha_sweep", results)
    assert len(lines) == 1 + 2 * len(grids.ALPHA_SETTINGS) + 3      # paired; acc, PGD; penalties
    assert lines[0] == ("paired by seed (a check of the rule, not the verdicts): 1=reproduced  "
                        "2=reproduced  3=reproduced  4=reproduced")
    assert lines[1].startswith("best α* for acc in shallow: 2.5 (97.00 ± 0.20 % (3 seeds); "
                               "at α* = 1: 94.75 ± 0.20 % (3 seeds); unregularized: ")
    assert lines[1].endswith("; within 2 SE: 2–3)")
    assert any(l.startswith("best α* for pgd in cnn-cifar10: 5 (edge of the targets run) (")
               for l in lines)
    assert lines[-3].startswith("shallow, slope penalty: best α* for acc 2.5 (97.00 ± 0.20 % "
                                "(3 seeds)), for pgd 2.5 (67.00 ± 0.20 % (3 seeds)); pgd trend ")
    assert lines[-2].startswith("shallow, eq. 2 penalty: best α* for acc 2.5 (")
    assert lines[-2].endswith("reached 0.5–5 (largest miss 0.00)")
    # above β = 1 from α* = 2.5, above the cross-entropy (0.3) from 1.5; λ_N/λ_τ = (150/10)^−2,
    # so λ_n/γ_n = (n/10)^(α* − 2), largest at the last rank: 15³ at α* = 5
    assert lines[-1] == ("shallow, eq. 2 penalty load: last-epoch penalty above β at α* "
                         "2.5–5 (largest 1.0\u00a0×\u00a010³ at α* = 5); there held-out "
                         "λ_n/γ_n up to 3.4\u00a0×\u00a010³ (rank 150); above the "
                         "cross-entropy in every epoch at α* 1.5–5; unregularized λ_N/λ_τ = "
                         "4.4\u00a0×\u00a010⁻³, what eq. 2 asks at α* ≈ 2.0")
    no_history = [r if r.config.batch_size != 3000 else Result(r.config, r.metrics)
                  for r in results]
    assert verdicts.extra_lines("alpha_sweep", no_history)[-1] == \
        "shallow, eq. 2 penalty load: not told (runs without a training history)"
    no_eq2 = [r for r in results if r.config.regularizer != "spectral"]
    assert verdicts.extra_lines("alpha_sweep", no_eq2)[-1] == \
        "shallow, eq. 2 penalty load: not tested (runs missing)"


def test_claim_lines_show_untested_numbers_as_a_dash_and_each_part():
    lines = verdicts.claim_lines([Claim(3, "x helps", None, {"d": float("nan"), "e": 1.23456}),
                                  Claim(4, "y", False, {"where": "is not"}),
                                  Claim(5, "a and b", False, {}, {"a": True, "b": False})])
    assert lines[-2:] == ["5. not reproduced: a and b", "     parts: a: reproduced; b: not reproduced"]
    assert lines[:-2] == ["3. not tested: x helps", "     d=–  e=1.235",
                     "4. not reproduced: y", "     where=is not"]


def test_a_chapter_without_library_claims_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="grid must be one of alpha_sweep, deep.*'shallow'"):
        verdicts.chapter_claims("shallow", [])
    with pytest.raises(SystemExit, match="shallow has no claims judged by the library"):
        cli.main(["claims", "shallow", "--results", str(tmp_path)])
