"""RunConfig: canonical identity and one clear error per invalid field."""

from __future__ import annotations

import pytest

from powerlaw_lib import grids
from powerlaw_lib.config import RunConfig
from powerlaw_lib.models import build_model

SPEC = dict(regularizer="spectral", reg_layers=(1,))


def test_key_is_canonical():
    a = RunConfig(regularizer="spectral", reg_layers=[1], alpha=1, beta=2, hidden=[2000], fgsm_eps=[0, 0.1])
    b = RunConfig(regularizer="spectral", reg_layers=(1,), alpha=1.0, beta=2.0, hidden=(2000,), fgsm_eps=(0.0, 0.1))
    assert a == b and a.key == b.key and len(a.key) == 16
    assert RunConfig(seed=1).key != RunConfig(seed=0).key
    assert RunConfig.from_dict(a.to_dict()) == a


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown field"):
        RunConfig.from_dict({"datasett": "mnist"})


@pytest.mark.parametrize("arch,dataset,hidden", [
    ("mlp", "mnist", (2000,)), ("mlp", "mnist", (1000, 1000, 1000)),
    ("cnn", "mnist", (1000,)), ("cnn", "cifar10", (1000,))])
def test_hidden_widths_match_the_models(arch, dataset, hidden):
    cfg = RunConfig(arch=arch, dataset=dataset, hidden=hidden, batch_norm=arch == "mlp",
                    batch_size=6000)
    model = build_model(cfg.arch, cfg.input_shape, cfg.n_classes, cfg.hidden, cfg.activation,
                        cfg.batch_norm, cfg.whiten_after)
    assert tuple(model.hidden_widths) == cfg.hidden_widths


BAD = [
    (dict(dataset="imagenet"), "dataset"),
    (dict(train_subset=0), "train_subset"),
    (dict(test_subset=-5), "test_subset"),
    (dict(pgd_subset=0), "pgd_subset"),
    (dict(arch="resnet"), "arch"),
    (dict(hidden=()), "hidden"),
    (dict(hidden=(0,)), "hidden"),
    (dict(hidden=(2.5,)), "hidden"),
    (dict(hidden=7), "hidden"),
    (dict(activation="gelu"), "activation"),
    (dict(batch_norm="yes"), "batch_norm"),
    (dict(whiten_after=2), "whiten_after"),
    (dict(arch="cnn", batch_norm=False, hidden=(1000,), whiten_after=1, batch_size=6000), "whiten_after"),
    (dict(arch="cnn", batch_norm=True, hidden=(1000,)), "batch_norm"),
    (dict(arch="cnn", batch_norm=False, hidden=(1000, 10)), "hidden"),
    (dict(regularizer="dropout"), "regularizer"),
    (dict(regularizer="spectral"), "reg_layers"),
    (dict(regularizer="spectral", reg_layers=(2,)), "reg_layers"),
    (dict(regularizer="spectral", reg_layers=(1, 1)), "reg_layers"),
    (dict(reg_layers=(1,)), "reg_layers"),
    (dict(SPEC, alpha=-1.0), "alpha"),
    (dict(SPEC, alpha=0), "alpha"),
    (dict(alpha="one"), "alpha"),
    (dict(SPEC, beta=-0.1), "beta"),
    (dict(SPEC, beta=float("inf")), "beta"),
    (dict(lr=float("nan")), "lr"),
    (dict(SPEC, tau=0), "tau"),
    (dict(SPEC, tau=2000), "tau"),
    (dict(SPEC, tau=2.5), "tau"),
    (dict(regularizer="slope", reg_layers=(1,), slope_ranks=(6, 6)), "slope_ranks"),
    (dict(regularizer="slope", reg_layers=(1,), slope_ranks=(6, 5000)), "slope_ranks"),
    (dict(jacobian_projections=0), "jacobian_projections"),
    (dict(optimizer="sgd"), "optimizer"),
    (dict(lr=0), "lr"),
    (dict(lr=True), "lr"),
    (dict(epochs=0), "epochs"),
    (dict(seed=-1), "seed"),
    (dict(precision="fp16"), "precision"),
    (dict(SPEC, batch_size=1500), "batch_size"),
    (dict(SPEC, batch_size=2000), "batch_size"),
    (dict(hidden=(1000, 1000, 1000), whiten_after=2, batch_size=1000), "batch_size"),
    (dict(train_subset=2000), "train_subset"),
    (dict(fgsm_eps=(0.1, 0.0)), "fgsm_eps"),
    (dict(pgd_eps=(0.0, 1.5)), "pgd_eps"),
    (dict(pgd_eps=("a",)), "pgd_eps"),
    (dict(noise_sigma=(-0.1,)), "noise_sigma"),
    (dict(pgd_steps=0), "pgd_steps"),
    (dict(pgd_step_size=0), "pgd_step_size"),
    (dict(sensitivity_top=3000), "sensitivity_top"),
    (dict(strength_eps=(0.2, 0.1)), "strength_eps"),
    (dict(strength_restarts=0), "strength_restarts"),
    (dict(strength_steps=0), "strength_steps"),
    (dict(strength_subset=0), "strength_subset"),
    (dict(sensitivity_images=-1), "sensitivity_images"),
    (dict(regularizer="slope", reg_layers=(1,), batch_size=50), "batch_size"),
    (dict(regularizer="slope", reg_layers=(1,), slope_method="lanczos"), "slope_method"),
    (dict(strength_sampling="last"), "strength_sampling"),
    (dict(regularizer="slope", reg_layers=(1,), hidden=(100,), batch_size=150), "slope_method"),
    (dict(SPEC, layer_alphas=(1.0, 2.0)), "layer_alphas"),
    (dict(layer_alphas=(1.0,)), "layer_alphas"),
]


def test_each_method_asks_of_the_batch_only_what_it_needs():
    """Gerum et al.'s setting: a slope-penalized 2000-wide layer trained at batch 1500."""
    RunConfig(regularizer="slope", reg_layers=(1,), batch_size=1500)
    RunConfig(regularizer="slope", reg_layers=(1,), batch_size=51)
    RunConfig(regularizer="jacobian", batch_size=100)
    with pytest.raises(ValueError, match="eq. 2 needs a batch wider"):
        RunConfig(regularizer="spectral", reg_layers=(1,), batch_size=1500)
    with pytest.raises(ValueError, match="whitened layer 2"):
        RunConfig(hidden=(1000, 1000, 1000), whiten_after=2, batch_size=1000)


@pytest.mark.parametrize("changes,field", BAD, ids=[f for _, f in BAD])
def test_every_invalid_field_names_itself(changes, field):
    with pytest.raises(ValueError, match=rf"RunConfig\.{field}\b"):
        RunConfig(**changes)


def test_valid_corner_cases():
    RunConfig(**SPEC, tau=1, batch_size=2001)            # smallest legal batch and tau
    RunConfig(hidden=(1000, 1000, 1000), whiten_after=2, batch_size=1500)
    RunConfig(arch="cnn", batch_norm=False, hidden=(1000,), whiten_after=2, batch_size=6000)
    RunConfig(regularizer="jacobian", beta=0.01)


def test_shallow_grid_defaults_are_the_paper_settings():
    configs = grids.shallow()
    assert len(configs) == 3 * (4 + 3) + 1   # seeds x (BN: vanilla+3β, no BN: vanilla+2β) + lr check
    assert len({c.key for c in configs}) == len(configs)
    spec = [c for c in configs if c.regularizer == "spectral"]
    assert {c.beta for c in spec if c.batch_norm} == {1.0, 2.0, 5.0}
    assert {c.beta for c in spec if not c.batch_norm} == {2.0, 5.0}
    main = configs[:-1]
    for c in main:  # the authors' §4.1 code: Adam (amsgrad) lr 1e-3; batch 1.5 x width
        assert (c.hidden, c.activation, c.optimizer, c.lr, c.batch_size, c.epochs) == (
            (2000,), "tanh", "amsgrad", 1e-3, 3000, 50)
    check = configs[-1]  # the paper text's learning rate, for comparison
    assert (check.optimizer, check.lr, check.regularizer, check.batch_norm) == ("adam", 1e-4, "none", True)
    assert all((c.alpha, c.tau, c.reg_layers) == (1.0, 10, (1,)) for c in spec)
    with pytest.raises(ValueError, match="seeds"):
        grids.shallow(seeds=())
