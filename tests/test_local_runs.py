"""Krotov–Hopfield networks as runs (`powerlaw_lib.local_training`, arch "kh"): config,
resumable training, what is stored, the chapter's grid and its cost estimate."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from powerlaw_lib import experiments, grids
from powerlaw_lib.config import RunConfig
from powerlaw_lib.costs import estimate_seconds
from powerlaw_lib.local_learning import LocalState, train_local
from powerlaw_lib.local_training import (HOLZHAUSEN_RANKS, STORED_UNITS, spectrum_fits,
                                         tracked)
from powerlaw_lib.spectrum import power_law_spectrum
from powerlaw_lib.store import Result, ResultStore

RESULTS = Path(__file__).resolve().parent.parent / "data" / "results"

#: A small KH run: 40 units, 600 training and 300 test images, a few epochs.
SMALL = RunConfig(arch="kh", hidden=(40,), batch_norm=False, train_subset=600, test_subset=300,
                  local_epochs=12, local_batch_size=50, epochs=3, lr=1e-2, batch_size=100,
                  pgd_subset=60, strength_subset=20, fgsm_eps=(0.0, 0.05, 0.1),
                  pgd_eps=(0.0, 0.05, 0.1), noise_sigma=(0.0, 0.3), strength_eps=(0.1,),
                  strength_restarts=2, strength_steps=5, sensitivity_top=2,
                  sensitivity_images=1)


def _without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


# ----------------------------------------------------------------------------- the config


def test_kh_config_reads_its_fields_and_labels_itself():
    c = SMALL.replace(local_k=3, local_p=4.0)
    assert c.hidden_widths == (40,)
    assert c.arch_label == "kh40-p4-k3-n4.5"
    assert c.history_length == c.local_epochs + c.epochs
    assert RunConfig().history_length == RunConfig().epochs


@pytest.mark.parametrize(("change", "field"), [
    ({"batch_norm": True}, "batch_norm"),
    ({"regularizer": "spectral", "reg_layers": (1,)}, "regularizer"),
    ({"hidden": (40, 40)}, "hidden"),
    ({"local_k": 41}, "local_k"),
    ({"local_k": 1}, "local_k"),
    ({"local_p": 1.5}, "local_p"),
    ({"readout_power": 0.5}, "readout_power"),
    ({"input_norm": 0.5}, "input_norm"),
    ({"local_epochs": 0}, "local_epochs"),
    ({"optimizer": "amsgrad"}, "optimizer"),
    ({"whiten_after": 1}, "whiten_after"),
    ({"activation": "relu"}, "activation"),
])
def test_bad_kh_config_names_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        SMALL.replace(**change)


def test_other_archs_refuse_local_learning_fields():
    with pytest.raises(ValueError, match="local_lr"):
        RunConfig(local_lr=0.02)
    with pytest.raises(ValueError, match="input_norm"):
        RunConfig(arch="cnn", hidden=(1000,), batch_norm=False, input_norm=2.0)


# ----------------------------------------------------------------------------- training


def test_resuming_the_local_rule_gives_the_uninterrupted_weights():
    x = torch.rand(300, 1, 6, 6)
    args = dict(hidden=20, k=3, epochs=5, batch_size=30, seed=4, input_norm=3.0)
    W_full, history_full = train_local(x, **args)
    states: list[LocalState] = []
    train_local(x, **{**args}, on_state=states.append)
    W_resumed, history_resumed = train_local(x, **args, resume=states[1])  # after 2 epochs
    assert torch.equal(W_resumed, W_full)
    assert _without_seconds(history_resumed) == _without_seconds(history_full)
    with pytest.raises(ValueError, match="resume"):
        train_local(x, **{**args, "hidden": 21}, resume=states[1])


def test_tracked_epochs_are_the_first_ten_evenly_spaced_ones_and_the_last():
    epochs = [e for e in range(1, 251) if tracked(e, 250)]
    assert epochs[:10] == list(range(1, 11)) and epochs[-1] == 250
    assert all(e % 10 == 0 for e in epochs[10:]) and len(epochs) == 10 + 25 - 1
    assert [e for e in range(1, 8) if tracked(e, 7)] == list(range(1, 8))


@pytest.mark.parametrize("alpha", [1.0, 2.6])
def test_both_fits_recover_an_exact_power_law(alpha):
    fits = spectrum_fits(power_law_spectrum(2000, alpha), "x")
    assert fits["x_alpha"] == pytest.approx(alpha, abs=1e-9)
    assert fits["x_alpha_holzhausen"] == pytest.approx(alpha, abs=1e-9)
    assert HOLZHAUSEN_RANKS == (2, 500)
    short = spectrum_fits(np.array([1.0, 0.5, 0.2, 0.0]), "x")   # too few ranks: NaN, no error
    assert math.isnan(short["x_alpha"]) and math.isnan(short["x_alpha_holzhausen"])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("kh"))
    return experiments.run(SMALL, store, progress=False), store


def test_a_kh_run_stores_both_phases_the_spectra_and_the_weights(small_run):
    result, store = small_run
    local = [h for h in result.history if h["phase"] == "local"]
    readout = [h for h in result.history if h["phase"] == "readout"]
    assert result.history == local + readout
    assert [h["epoch"] for h in local] == list(range(1, SMALL.local_epochs + 1))
    assert [h["epoch"] for h in readout] == list(range(1, SMALL.epochs + 1))
    assert all(("layer1_alpha" in h) == tracked(h["epoch"], SMALL.local_epochs) for h in local)
    assert local[0]["lr"] == SMALL.local_lr and local[-1]["lr"] < SMALL.local_lr
    # the last tracked α is the evaluated one: same test set, same weights
    for key in ("layer1_alpha", "layer1_alpha_holzhausen", "currents_alpha",
                "currents_alpha_holzhausen"):
        assert local[-1][key] == pytest.approx(result.metrics[key], rel=1e-6)
    assert readout[-1]["test_accuracy"] == pytest.approx(result.metrics["clean_accuracy"])
    assert len(result.spectra["layer1"]) == len(result.spectra["currents"]) == 40
    assert result.curves["pgd"][0] == pytest.approx(
        experiments.accuracy(*_model_and_pgd_images(result, store)))
    w = np.array(result.weights["weights"])
    assert w.shape == (min(STORED_UNITS, 40), 1, 28, 28)
    norms = np.abs(w.reshape(len(w), -1)) ** SMALL.local_p
    np.testing.assert_allclose(norms.sum(1) ** (1 / SMALL.local_p), result.weights["p_norms"],
                               rtol=1e-3)
    assert store.get(SMALL).weights == result.weights  # written and read back


def _model_and_pgd_images(result, store):
    """The cached model and the PGD subset of the run's test images."""
    from powerlaw_lib.data import subset
    from powerlaw_lib.evaluation import PGD_SUBSET_SEED

    model, *_ = experiments.trained_model(result.config, store, progress=False)
    _, _, x, y = experiments.load_data(result.config)
    return (model.eval(), *subset(x, y, result.config.pgd_subset, seed=PGD_SUBSET_SEED))


def test_a_killed_kh_run_resumes_to_the_same_result(small_run, tmp_path):
    result, _ = small_run
    store = ResultStore(tmp_path)
    assert experiments.run(SMALL, store, progress=False, stop_after=5) is None
    assert store.checkpoint_path(SMALL).exists()
    resumed = experiments.run(SMALL, store, progress=False)
    assert resumed.provenance["resumed_from_epoch"] == 5
    assert _without_seconds(resumed.history) == _without_seconds(result.history)
    assert resumed.metrics == result.metrics and resumed.weights == result.weights
    assert not store.checkpoint_path(SMALL).exists()


# ----------------------------------------------------------------------------- the grid


def test_the_chapter_grid_pairs_the_local_rule_with_backprop_of_the_same_width():
    configs = grids.local_learning()
    kh = [c for c in configs if c.arch == "kh"]
    assert {(c.dataset, c.seed) for c in kh} == {("mnist", 0), ("mnist", 1), ("mnist", 2),
                                                ("cifar10", 0)}
    for c in kh:
        assert (c.local_k, c.local_lr, c.local_batch_size) == tuple(
            grids.LOCAL_SETTINGS[c.dataset].values())
        assert c.hidden == (2000,) and c.local_p == 3.0 and c.local_delta == 0.4
        assert c.readout_power == 4.5 and c.input_norm == 3.0
    backprop = [c for c in configs if c.arch == "mlp"]
    assert all(c.hidden == (2000,) and c.batch_norm for c in backprop)
    shallow = set(grids.shallow())
    assert {c for c in backprop if c.dataset == "mnist"} <= shallow   # the shallow chapter's runs
    cifar = [c for c in configs if c.dataset == "cifar10"]
    assert all(c.pgd_eps == grids.CIFAR_EPS_GRID for c in cifar)
    assert len(set(configs)) == len(configs)
    with pytest.raises(ValueError, match="shallow_betas"):
        grids.local_learning(shallow_betas=(3.0,))


def test_the_shallow_chapters_networks_of_the_grid_are_stored():
    store = ResultStore(RESULTS)
    backprop = [c for c in grids.local_learning() if c.arch == "mlp" and c.dataset == "mnist"]
    assert backprop and store.missing(backprop) == []


def test_the_estimate_of_a_kh_run_counts_both_phases(tmp_path):
    store = ResultStore(tmp_path)
    history = ([{"phase": "local", "epoch": i + 1, "seconds": 4.0} for i in range(10)]
               + [{"phase": "readout", "epoch": i + 1, "loss": 0.1, "seconds": 1.0}
                  for i in range(3)])
    store.put(Result(SMALL, {"clean_accuracy": 0.9}, history=history,
                     provenance={"seconds": {"evaluate": 5.0, "train_total": 43.0}}))
    e = estimate_seconds(SMALL.replace(seed=1, local_epochs=20, epochs=6), store, bench=None)
    assert e.source == "stored runs (n=1)"
    assert e.seconds == pytest.approx(4.0 * 20 + 1.0 * 6 + 5.0)


# ----------------------------------------------------------------------------- summaries


def _result(spectra, history=(), seed=0):
    return Result(SMALL.replace(seed=seed), {}, spectra=spectra, history=list(history))


def test_refits_recover_a_power_law_and_residuals_measure_its_straightness():
    from powerlaw_lib import analysis

    exact = _result({"layer1": list(power_law_spectrum(1000, 1.7) * 3.0)})
    n = np.arange(1, 1001)
    bent = _result({"layer1": list(np.where(n < 100, n ** -1.0, 100.0 ** 1.0 * n ** -2.0))})
    np.testing.assert_allclose(analysis.refit_alphas([exact], "layer1", (2, 500), False), [1.7])
    assert analysis.fit_residuals([exact], "layer1")[0] < 1e-12
    assert analysis.fit_residuals([bent], "layer1")[0] > 0.1   # a knee at rank 100
    tiny = _result({"layer1": [1.0, 0.5, 0.0]})
    assert np.isnan(analysis.refit_alphas([tiny], "layer1", (11, 500), True)[0])
    assert np.isnan(analysis.fit_residuals([tiny], "layer1")[0])


def test_local_trajectory_keeps_the_epochs_every_run_tracked():
    from powerlaw_lib import analysis

    def history(alphas):
        return ([{"phase": "local", "epoch": e, "converged_fraction": e / 10,
                  **({"layer1_alpha": a} if a is not None else {})} for e, a in enumerate(alphas, 1)]
                + [{"phase": "readout", "epoch": 1, "layer1_alpha": 99.0}])

    runs = [_result({}, history([1.0, None, 3.0]), 0), _result({}, history([2.0, 5.0, 4.0]), 1)]
    epochs, values = analysis.local_trajectory(runs, "layer1_alpha")
    assert epochs.tolist() == [1, 3] and values.tolist() == [[1.0, 3.0], [2.0, 4.0]]
    epochs, values = analysis.local_trajectory(runs, "converged_fraction")
    assert epochs.tolist() == [1, 2, 3] and values.shape == (2, 3)
    with pytest.raises(ValueError, match="local-learning"):
        analysis.local_trajectory([], "layer1_alpha")


def test_alpha_table_fits_every_group_both_ways_and_marks_missing_spectra():
    from powerlaw_lib import tables

    kh = _result({"layer1": list(power_law_spectrum(800, 2.0)),
                  "currents": list(power_law_spectrum(800, 1.5))})
    bp = Result(RunConfig(seed=0), {}, spectra={"layer1": list(power_law_spectrum(800, 1.2))})
    text = tables.alpha_fits_table({"local rule": [kh], "backprop": [bp]},
                                   [("layer1", "h"), ("currents", "I")])
    lines = text.splitlines()
    assert len(lines) == 4 and len(tables.ALPHA_FITS) == 2
    assert lines[2] == "| local rule | 2.00 | 2.00 | 1.50 | 1.50 |"
    assert lines[3] == "| backprop | 1.20 | 1.20 | – | – |"
    settings = tables.local_settings(SMALL, None, 3, 1)
    assert "pruning" not in settings and "| hidden units | 2000 | 2000 | 40 |" in settings


def test_weight_images_are_drawn_one_per_axis():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from powerlaw_lib.plotting import plot_weight_images

    fig = plt.figure()
    axes = plot_weight_images(fig, np.random.default_rng(0).normal(size=(7, 3, 4, 4)), ncols=3)
    assert len(axes) == 7 and len(fig.axes) == 9                  # a 3 x 3 grid, 2 left empty
    image = axes[0].get_images()[0].get_array()
    assert image.shape == (4, 4, 3) and image.min() == 0.0 and image.max() == 1.0
    grey = plot_weight_images(plt.figure(), np.ones((2, 1, 4, 4)) * [[[[1.0]]], [[[-2.0]]]])
    assert grey[1].get_images()[0].get_clim() == (-2.0, 2.0)       # symmetric per unit
    with pytest.raises(ValueError, match="weights"):
        plot_weight_images(plt.figure(), np.ones((2, 2, 4, 4)))
    plt.close("all")


def test_the_milestone_is_the_first_tracked_epoch_after_half_the_units_converged():
    from powerlaw_lib import analysis

    def history(fractions, alphas):
        return [{"phase": "local", "epoch": e, "converged_fraction": f,
                 **({"layer1_alpha": a} if a is not None else {})}
                for e, (f, a) in enumerate(zip(fractions, alphas), 1)]

    runs = [_result({}, history([0.1, 0.4, 0.6, 0.7, 0.8], [1.0, None, None, 1.5, 1.6]), 0),
            _result({}, history([0.1, 0.5, 0.6, 0.7, 0.9], [1.2, None, None, 1.7, 1.8]), 1)]
    assert analysis.local_milestone(runs, "layer1_alpha") == (4, pytest.approx(1.6),
                                                              pytest.approx(1.7))
    assert analysis.local_milestone(runs, "layer1_alpha", fraction=0.95) is None
