"""The α sweep's grid (Gerum et al. 2022), its held-out validation set and Gerum's α̂ metric."""

import numpy as np
import pytest

from powerlaw_lib import grids
from powerlaw_lib.evaluation import spectrum_metrics


def test_default_grid_is_the_papers_sweep_with_the_stated_seeds():
    configs = grids.alpha_sweep()
    assert len({c.key for c in configs}) == len(configs)
    for name, s in grids.ALPHA_SETTINGS.items():
        cs = [c for c in configs if grids.alpha_setting(c) == name]
        slope = [c for c in cs if c.regularizer == "slope"]
        seeds = (0, 1) if s["arch"] == "cnn" else (0, 1, 2)
        assert sorted({c.alpha for c in slope}) == list(grids.ALPHA_TARGETS)
        assert len(slope) == len(grids.ALPHA_TARGETS) * len(seeds)
        assert sorted(c.seed for c in cs if c.regularizer == "none"
                      and c.batch_size == s["batch_size"]) == list(seeds)
        assert all(c.reg_layers == (len(c.hidden_widths),) and c.beta == 1.0 for c in slope)
        assert all(c.lr == 1e-4 and c.optimizer == "adam" and not c.batch_norm for c in cs)
        assert all(c.pgd_eps == grids.ALPHA_EPS_GRID and c.pgd_subset == 2000 for c in cs)
        assert all(c.strength_eps == (s["read_eps"],) for c in cs)
    eq2 = [c for c in configs if c.regularizer == "spectral"]
    assert len(eq2) == len(grids.ALPHA_TARGETS) * 2
    assert all(c.batch_size == 3000 and c.tau == 10 and grids.alpha_setting(c) == "shallow"
               for c in eq2)
    assert grids.ALPHA_EPS_GRID[:3] == (0.0, 0.01, 0.02) and grids.ALPHA_EPS_GRID[-1] == 0.19
    comparison = [c for c in configs if c.batch_size == 3000]    # eq. 2 and its baseline
    assert configs[-len(comparison):] == comparison                 # last: slope runs first


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="settings"):
        grids.alpha_sweep(settings=("cnn-svhn",))


def test_an_eps_grid_without_a_settings_reading_eps_is_refused():
    with pytest.raises(ValueError, match=r"eps_grid must contain .*cnn-cifar10: 0\.01"):
        grids.alpha_sweep(eps_grid=[0.0, 0.05, 0.1])
    assert grids.alpha_sweep(settings=["shallow"], eps_grid=[0.0, 0.05])   # its ε is there


def test_cifar_official_test_accuracy_is_reported_beside_the_validation_split(tmp_path):
    from powerlaw_lib.experiments import run
    from powerlaw_lib.store import ResultStore

    config = grids.alpha_sweep(settings=("cnn-cifar10",), alphas=(), cnn_seeds=(0,),
                               cnn_epochs=1, train_subset=6000, test_subset=500,
                               pgd_subset=50, strength_subset=20, eps_grid=(0.0, 0.01),
                               noise_grid=(0.0,))[0]
    r = run(config, ResultStore(tmp_path), progress=False)
    assert 0.0 <= r.metrics["official_test_accuracy"] <= 1.0
    assert "layer3_alpha_gerum" in r.metrics and len(r.spectra["layer1"]) == 3600


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.5])
def test_gerum_alpha_recovers_an_exact_power_law(alpha):
    spectrum = np.arange(1, 1001, dtype=float) ** -alpha
    m = spectrum_metrics(spectrum, "layer1")
    assert m["layer1_alpha_gerum"] == pytest.approx(alpha, abs=1e-9)
    assert m["layer1_alpha"] == pytest.approx(alpha, abs=1e-9)


def test_audits_pick_the_shallow_networks_of_the_chosen_family_targets_and_seeds_with_twins():
    configs = grids.alpha_sweep()
    pairs = grids.alpha_sweep_audits(configs)
    chosen = [c for c, _ in pairs]
    assert all(c in configs and grids.alpha_setting(c) == "shallow" and c.seed == 0
               for c in chosen)
    twin, *penalized = chosen                                  # the twin first
    assert twin.regularizer == "none" and twin.batch_size == 3000     # eq. 2's batch
    assert [(c.regularizer, c.alpha) for c in penalized] == [
        ("spectral", a) for a in (1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)]
    spec = pairs[0][1]
    assert all(s == spec for _, s in pairs)
    assert (spec.eps, spec.images, spec.steps, spec.n_queries) == ((0.05, 0.1), 1000, 100, 5000)

    both = grids.alpha_sweep_audits(configs, audit_families=("slope", "eq2"), audit_alphas=(3.0,),
                                    audit_seeds=(0, 1))
    kinds = sorted((c.regularizer, c.batch_size, c.seed) for c, _ in both)
    assert kinds == [("none", 1500, 0), ("none", 1500, 1), ("none", 3000, 0), ("none", 3000, 1),
                     ("slope", 1500, 0), ("slope", 1500, 1),
                     ("spectral", 3000, 0), ("spectral", 3000, 1)]


@pytest.mark.parametrize("field, value, match", [
    ("audit_families", ("jacobian",), "audit_families.*'eq2', 'slope'"),
    ("audit_families", (), "audit_families"),
    ("audit_alphas", (0.7,), r"audit_alphas.*eq2: \[0.5, 1.0"),
    ("audit_seeds", (7,), r"audit_seeds.*shallow network: \[0, 1, 2\]"),
])
def test_audits_name_a_family_or_target_the_grid_does_not_run(field, value, match):
    with pytest.raises(ValueError, match=match):
        grids.alpha_sweep_audits(grids.alpha_sweep(), **{field: value})
