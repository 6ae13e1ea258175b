"""The deep chapter's grid (Nassar et al. 2020, §4.2-4.3) and its β-selection rule."""

from pathlib import Path

import pytest

from powerlaw_lib import grids
from powerlaw_lib.analysis import select_beta
from powerlaw_lib.store import ResultStore

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"


def test_select_beta_takes_the_largest_beta_within_the_tolerance():
    acc = {1.0: 0.980, 2.0: 0.975, 5.0: 0.960}
    assert select_beta(acc, reference_accuracy=0.982) == 2.0
    assert select_beta(acc, reference_accuracy=0.970) == 5.0
    assert select_beta(acc, reference_accuracy=0.995) == 1.0  # none within: the smallest
    assert select_beta(acc, reference_accuracy=0.982, tolerance=0.03) == 5.0
    with pytest.raises(ValueError, match="at least one"):
        select_beta({}, 0.9)


def test_default_grid_holds_every_variant_and_the_selection_runs():
    configs = grids.deep(chosen_betas={}, epoch_check=0)
    assert len({c.key for c in configs}) == len(configs)
    by_arch = {a: [c for c in configs if c.arch == a] for a in ("mlp", "cnn")}
    for arch, cs in by_arch.items():
        variants = [grids.deep_variant(c) for c in cs]
        assert variants.count("vanilla") == variants.count("vanilla-wh") == 3
        assert variants.count("jacobian") == 3
        for v in grids.DEEP_SPECREG_VARIANTS:  # one seed-0 run per β of {1, 2, 5}
            sel = [c for c in cs if grids.deep_variant(c) == v]
            assert sorted(c.beta for c in sel) == [1.0, 2.0, 5.0]
            assert {c.seed for c in sel} == {0}
        assert all(c.lr == 1e-4 and not c.batch_norm and c.activation == "tanh" for c in cs)
        assert {c.batch_size for c in cs} == {1500 if arch == "mlp" else 6000}
        assert {c.epochs for c in cs} == {100 if arch == "mlp" else 50}
        assert all(c.beta == 0.01 for c in cs if c.regularizer == "jacobian")
        assert all(c.whiten_after == 2 for c in cs if "-wh" in grids.deep_variant(c))
        assert all(c.strength_sampling == "random" for c in cs)


def test_a_chosen_beta_adds_every_seed_and_the_decreasing_alpha_runs():
    configs = grids.deep(archs=("mlp",), chosen_betas={"mlp/specreg-all": 2.0})
    alls = [c for c in configs if grids.deep_variant(c) == "specreg-all"]
    assert sorted((c.seed, c.beta) for c in alls) == [(0, 1.0), (0, 2.0), (0, 5.0), (1, 2.0),
                                                      (2, 2.0)]
    dec = [c for c in configs if grids.deep_variant(c) == "specreg-all-decreasing"]
    assert sorted(c.seed for c in dec) == [0, 1, 2]
    assert all(c.alphas == {1: 2.0, 2: 1.5, 3: 1.0} and c.beta == 2.0 for c in dec)


def test_the_epoch_check_retrains_the_cnn_runs_of_the_selection_seed_at_more_epochs():
    chosen = {"cnn/specreg-last": 2.0}
    configs = grids.deep(chosen_betas=chosen)                         # epoch_check=100
    pairs = grids.deep_epoch_checks(configs)
    assert [(grids.deep_variant(c), c.seed, c.epochs, c.beta) for _, c in pairs] == [
        ("vanilla", 0, 100, 1.0), ("specreg-last", 0, 100, 2.0)]
    keys = {c.key for c in configs}
    assert all(main.key in keys and main.epochs == 50 for main, _ in pairs)  # twins in the grid
    assert len(grids.deep_epoch_checks(grids.deep(chosen_betas={}))) == 1     # no β: vanilla only
    assert not grids.deep_epoch_checks(grids.deep(chosen_betas=chosen, epoch_check=0))
    assert not grids.deep_epoch_checks(grids.deep(archs=("mlp",), chosen_betas=chosen))
    same = grids.deep(chosen_betas=chosen, cnn_epochs=100)                    # nothing to check
    assert not grids.deep_epoch_checks(same, {"cnn_epochs": 100})
    assert grids.deep_epochs({"cnn_epochs": 7}) == {"mlp": 100, "cnn": 7}
    for bad in (-1, 2.5, None):
        with pytest.raises(ValueError, match="epoch_check"):
            grids.deep(epoch_check=bad)


def test_epoch_check_runs_join_neither_the_groups_nor_the_beta_selection(tmp_path):
    from powerlaw_lib.store import Result

    store = ResultStore(tmp_path)
    chosen = {"cnn/specreg-last": 1.0}
    for c in grids.deep(archs=("cnn",), chosen_betas=chosen):
        if c.seed == 0 and grids.deep_variant(c) in ("vanilla", "specreg-last"):
            long = c.epochs == 100                          # the check runs: far better
            accuracy = 0.99 if long else 0.97 if grids.deep_variant(c) == "vanilla" else 0.965
            store.put(Result(c, {"clean_accuracy": accuracy}))
    table = grids.deep_beta_selection(store, archs=("cnn",))
    assert table["cnn/specreg-last"]["reference"] == 0.97
    assert table["cnn/specreg-last"]["accuracy"] == {1.0: 0.965, 2.0: 0.965, 5.0: 0.965}
    groups = grids.deep_groups(list(store), chosen)
    assert {r.config.epochs for v in groups["cnn"].values() for r in v} == {50}
    assert [r.config.seed for r in groups["cnn"]["vanilla"]] == [0]
    longer = grids.deep_groups(list(store), chosen, epochs={"mlp": 100, "cnn": 100})
    assert [r.metrics["clean_accuracy"] for r in longer["cnn"]["vanilla"]] == [0.99]


def test_unknown_variant_or_arch_is_rejected_by_name():
    with pytest.raises(ValueError, match="chosen_betas"):
        grids.deep(chosen_betas={"mlp/specreg-first": 1.0})
    with pytest.raises(ValueError, match="archs"):
        grids.deep(archs=("resnet",))


def test_committed_chosen_betas_follow_the_rule_on_the_stored_selection_runs():
    """DEEP_CHOSEN_BETAS is never set by hand: it is the rule applied to stored results."""
    table = grids.deep_beta_selection(ResultStore(RESULTS))
    for variant, beta in grids.DEEP_CHOSEN_BETAS.items():
        assert variant in table, f"{variant}: β chosen before its selection runs were stored"
        assert table[variant]["beta"] == beta
    unchosen = sorted(set(table) - set(grids.DEEP_CHOSEN_BETAS))
    assert not unchosen, (f"{unchosen}: selection runs stored but no β chosen; set "
                          "DEEP_CHOSEN_BETAS from grids.deep_beta_selection")


def test_deep_groups_keep_the_chosen_beta_of_each_specreg_variant():
    from powerlaw_lib.store import Result

    chosen = {f"{a}/{v}": 2.0 for a in ("mlp", "cnn") for v in grids.DEEP_SPECREG_VARIANTS}
    configs = grids.deep(seeds=(0, 1), chosen_betas=chosen)
    groups = grids.deep_groups([Result(c, {}) for c in configs], chosen)
    assert list(groups) == ["mlp", "cnn"]
    assert list(groups["mlp"]) == list(grids.DEEP_VARIANTS)
    assert "specreg-all-decreasing" not in groups["cnn"]
    for arch, variants in groups.items():
        for variant, runs in variants.items():
            assert [r.config.seed for r in runs] == [0, 1], (arch, variant)
            if variant.startswith("specreg"):
                assert all(r.config.beta == 2.0 for r in runs)
    # without a chosen β a SpecReg variant has only selection runs: left out
    partial = grids.deep_groups([Result(c, {}) for c in configs], {"mlp/specreg-last": 2.0})
    assert "specreg-all" not in partial["mlp"] and "specreg-last" in partial["mlp"]


def test_status_reports_a_finished_selection_whose_beta_is_not_chosen_yet(tmp_path, capsys):
    from powerlaw_lib import __main__ as cli
    from powerlaw_lib.store import Result

    store = ResultStore(tmp_path)
    accuracy = {1.0: 0.975, 2.0: 0.972, 5.0: 0.95}                 # vanilla: 0.98 -> β = 2
    for c in grids.deep(archs=("mlp",), chosen_betas={}):
        variant = grids.deep_variant(c)
        if c.seed == 0 and variant in ("vanilla", "specreg-last"):
            store.put(Result(c, {"clean_accuracy": 0.98 if variant == "vanilla" else accuracy[c.beta]}))
    assert cli.main(["status", "deep", "--results", str(tmp_path), "--set", "archs=('mlp',)",
                     "--set", "chosen_betas={}"]) == 0
    out = capsys.readouterr().out
    assert "mlp/specreg-last       the rule picks β = 2; set DEEP_CHOSEN_BETAS" in out
    assert "mlp/specreg-all        selection runs not all stored" in out


@pytest.mark.parametrize("order", ["grid", "method", "seed"])
def test_run_orders_are_permutations_and_seed_order_puts_every_selection_run_first(order):
    from powerlaw_lib import __main__ as cli
    from powerlaw_lib.analysis import method_key

    configs = grids.deep(chosen_betas={})              # only the selection seed for SpecReg
    todo = configs[::-1]
    ordered = cli._ordered(order, configs, todo)
    assert sorted(c.key for c in ordered) == sorted(c.key for c in configs)
    if order == "grid":
        assert ordered == todo                          # the order it was given
    if order == "method":                               # a method's seeds run back to back
        methods = [method_key(c) for c in ordered]
        for m in set(methods):
            at = [i for i, n in enumerate(methods) if n == m]
            assert at == list(range(at[0], at[0] + len(at)))
    if order == "seed":                                 # every seed-0 run before any seed-1 run
        seeds = [c.seed for c in ordered]
        assert seeds == sorted(seeds)
        position = {c.key: i for i, c in enumerate(configs)}
        zeros = [position[c.key] for c in ordered if c.seed == 0]
        assert zeros == sorted(zeros)                   # grid order within a seed
