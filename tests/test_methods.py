"""The method registry: one place per method, and a method's identity.

A toy weight-decay method, defined here in one class and registered with one call, must
work everywhere a built-in method does: config validation, labels, colours, method keys
and the training loop.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import torch

from powerlaw_lib import analysis, grids, methods, plotting
from powerlaw_lib.config import EVALUATION_FIELDS, RunConfig
from powerlaw_lib.methods import Method, Penalty
from powerlaw_lib.experiments import build as build_model
from powerlaw_lib.training import make_optimizer, train, training_step

ROOT = Path(__file__).resolve().parent.parent


class WeightDecayPenalty(Penalty):
    def __init__(self, beta: float) -> None:
        self.beta = beta

    def __call__(self, model, x, y, hidden):
        return self.beta * sum(p.pow(2).sum() for p in model.parameters())


class WeightDecay(Method):
    name = "weight-decay"
    label = "weight decay"
    color = "#999933"
    fields = ("beta",)
    shown = ("beta",)
    reference = "an L2 penalty on every parameter (a toy method of the tests)"

    def penalty(self, config):
        return WeightDecayPenalty(config.beta)


TINY = dict(hidden=(16,), batch_norm=False, batch_size=32, train_subset=64, test_subset=64,
            epochs=1)


def test_a_new_method_needs_one_class_and_one_registration():
    with methods.registered(WeightDecay()) as method:
        config = RunConfig(regularizer="weight-decay", beta=1e-3, **TINY)
        assert config.method is method and "weight-decay" in methods.names()
        assert "weight decay β=0.001" in config.label
        assert plotting.method_color("weight-decay") == plotting.method_color("Weight Decay") \
            == "#999933"
        assert analysis.method_key(config) != analysis.method_key(config.replace(regularizer="none",
                                                                                 beta=1.0))
        # a field the method does not read stays at its default, named in the error
        with pytest.raises(ValueError, match=r"RunConfig\.tau=5 .*does not read it"):
            config.replace(tau=5)
        # the training loop adds exactly the method's penalty
        torch.manual_seed(0)
        model = build_model(config)
        x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
        expected = 1e-3 * sum(float(p.detach().pow(2).sum()) for p in model.parameters())
        _, term, _ = training_step(model, make_optimizer(config, model), method.penalty(config),
                                   x, y)
        assert float(term) == pytest.approx(expected, rel=1e-5)
        history = train(build_model(config), config, x.repeat(2, 1, 1, 1), y.repeat(2), x, y,
                        progress=False)
        assert history[0]["penalty"] > 0
    with pytest.raises(ValueError, match="RunConfig.regularizer='weight-decay' is invalid"):
        RunConfig(regularizer="weight-decay", **TINY)


def test_the_registry_refuses_clashes_and_unknown_fields():
    with pytest.raises(ValueError, match="already registered"):
        methods.register(methods.get("spectral"))

    class Clash(WeightDecay):
        name, label = "other", "SpecReg"

    with pytest.raises(ValueError, match="labelled 'SpecReg'"):
        methods.register(Clash())

    class Unknown(WeightDecay):
        fields = ("momentum",)

    with pytest.raises(ValueError, match="unknown fields"):
        methods.register(Unknown())
    assert methods.get("SPECREG") is methods.get("spectral")
    with pytest.raises(ValueError, match="unknown method"):
        methods.get("dropout")


def test_no_module_outside_the_registry_branches_on_the_regularizer():
    # a comparison of the regularizer with a method's name (or a tuple of names)
    pattern = re.compile(r"regularizer\s*(==|!=|\bin\b|\bnot in\b)\s*[(\[{]?\s*[\"']")
    offenders = []
    for path in [*(ROOT / "powerlaw_lib").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
                 *(ROOT / "book").glob("*.md")]:
        if "methods" in path.parts:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# --------------------------------------------------------------------------- method identity

#: One legal change of each training field (besides the seed), per kind of base config.
BASES = {
    "vanilla": RunConfig(),
    "spectral": RunConfig(regularizer="spectral", reg_layers=(1,)),
    "slope": RunConfig(regularizer="slope", reg_layers=(1,), batch_norm=False),
    "jacobian": RunConfig(regularizer="jacobian", beta=0.01, batch_norm=False),
}
CHANGES = {
    "dataset": "fashion-mnist", "train_subset": 6000, "hidden": (1500,), "activation": "relu",
    "batch_norm": False, "whiten_after": 1, "optimizer": "amsgrad", "lr": 1e-3,
    "batch_size": 2500, "epochs": 7, "precision": "bf16",
    "alpha": 2.0, "tau": 11, "beta": 2.0, "reg_layers": (1,), "layer_alphas": (2.0,),
    "slope_ranks": (5, 40), "slope_method": "exact", "jacobian_projections": 2,
}


def _variants() -> list[RunConfig]:
    out = []
    for base in BASES.values():
        for seed in (0, 1):
            start = base.replace(seed=seed)
            out += [start, start.replace(pgd_steps=7)]          # an evaluation change
            for name, value in CHANGES.items():
                try:
                    out.append(start.replace(**{name: value}))
                except ValueError:
                    pass                                        # not legal for this method
    out.append(RunConfig(arch="cnn", hidden=(1000,), batch_norm=False))
    return out


def _training_fields_but_seed(c: RunConfig) -> dict:
    return {k: v for k, v in c.training_dict().items() if k != "seed"}


def test_two_configs_share_a_method_key_exactly_when_they_differ_only_in_seed_or_evaluation():
    configs = _variants()
    assert len(configs) > 80
    for a, b in itertools.combinations(configs, 2):
        same_method = _training_fields_but_seed(a) == _training_fields_but_seed(b)
        assert (analysis.method_key(a) == analysis.method_key(b)) == same_method, (a, b)


def test_the_slope_sweep_gives_every_target_alpha_its_own_method():
    configs = grids.alpha_sweep()
    keys = {analysis.method_key(c) for c in configs}
    seeds_per_key = len(configs) / len(keys)
    assert 2 <= seeds_per_key <= 3
    shallow_slope = [c for c in configs if c.regularizer == "slope" and c.hidden == (2000,)]
    assert len({analysis.method_key(c) for c in shallow_slope}) == len({c.alpha for c in shallow_slope})


@pytest.mark.parametrize("grid", ["shallow", "deep", "alpha_sweep"])
def test_short_labels_are_distinct_for_distinct_methods(grid):
    configs = grids.CHAPTER_GRIDS[grid]()
    labels = analysis.method_labels(configs)
    assert len(set(labels.values())) == len(labels)
    assert set(labels) == {analysis.method_key(c) for c in configs}


def test_evaluation_fields_are_not_method_fields():
    assert not EVALUATION_FIELDS & set(methods.METHOD_FIELDS)
