"""Stored results stay valid as `RunConfig` grows: same keys, same metrics, same files."""

import json
from pathlib import Path

import pytest
import torch

from powerlaw_lib import grids
from powerlaw_lib.config import EVALUATION_FIELDS, LEGACY_VALUES, LOCAL_FIELDS, RunConfig
from powerlaw_lib.model_cache import ModelCache
from powerlaw_lib.models import MLP
from powerlaw_lib.store import ResultStore

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"


def test_every_stored_result_loads_under_its_file_name_with_its_stored_config():
    files = sorted(RESULTS.glob("*.json"))
    assert len(files) >= 22
    for p in files:
        raw = json.loads(p.read_text())
        result = ResultStore(RESULTS).get(RunConfig.from_dict(raw["config"]))
        assert result is not None and result.key == p.stem == raw["key"]
        assert result.config.to_dict() == raw["config"]  # nothing added to stored configs
        assert result.metrics == raw["metrics"]


def test_the_shallow_grid_is_complete_in_the_store():
    assert ResultStore(RESULTS).missing(grids.shallow()) == []


@pytest.mark.parametrize("name", ["shallow", "local_learning", "audit"])
def test_every_finished_chapters_runs_and_audits_are_stored(name):
    """Each finished chapter's runs are stored, and so is the audit of each network it
    audits, found through a training twin where the audit ran on another evaluation of the
    same network (the shallow networks' first strength-check sample)."""
    from powerlaw_lib.audits import AuditSpec, AuditStore

    store = ResultStore(RESULTS)
    configs = grids.CHAPTER_GRIDS[name]()
    assert store.missing(configs) == []
    if name == "shallow":   # the chapter shows the audit of every seed-0 network
        pairs = [(c, AuditSpec()) for c in configs
                 if c.seed == 0 and not grids.is_text_lr_check(c)]
    else:
        pairs = grids.CHAPTER_AUDITS[name](configs)
    audits = AuditStore(store.audits_path, store)
    assert len(pairs) >= 5
    assert [c.label for c, s in pairs if audits.get(c, s) is None] == []


@pytest.mark.parametrize("name", sorted(LEGACY_VALUES))
def test_a_legacy_value_leaves_the_key_unchanged_and_any_other_value_changes_it(name):
    if name == "slope_method":
        base = RunConfig(regularizer="slope", reg_layers=(1,))
    elif name in ADVERSARIAL_CHANGES:
        base = RunConfig(regularizer="adversarial")
    elif name in LOCAL_FIELDS:
        base = RunConfig(arch="kh", batch_norm=False)
    else:
        base = RunConfig(regularizer="spectral", reg_layers=(1,))
    legacy = base.replace(**{name: LEGACY_VALUES[name]})
    assert name not in legacy.to_dict()
    assert RunConfig.from_dict(legacy.to_dict()) == legacy
    other = {"strength_sampling": "random", "layer_alphas": (2.0,), "slope_method": "exact",
             **LOCAL_CHANGES, **ADVERSARIAL_CHANGES}[name]
    changed = base.replace(**{name: other})
    assert changed.to_dict()[name] is not None and changed.key != legacy.key
    assert RunConfig.from_dict(json.loads(changed.canonical_json())) == changed


CHANGES = {  # one legal change of every training field of the default config
    "dataset": "fashion-mnist", "train_subset": 5000, "arch": "cnn", "hidden": (1500,),
    "activation": "relu", "batch_norm": False, "whiten_after": 1, "regularizer": "jacobian",
    "alpha": 2.0, "tau": 11, "beta": 2.0, "slope_ranks": (5, 40), "jacobian_projections": 2,
    "optimizer": "amsgrad", "lr": 1e-3, "batch_size": 2500, "epochs": 7, "seed": 3,
    "precision": "bf16",
}
#: One legal change of every field of the local-learning networks (arch "kh").
LOCAL_CHANGES = {"local_epochs": 5, "local_lr": 0.02, "local_batch_size": 50, "local_p": 4.0,
                 "local_k": 2, "local_delta": 0.3, "readout_power": 3.0, "input_norm": 2.0}
#: One legal change of every field of adversarial training.
ADVERSARIAL_CHANGES = {"adv_eps": 0.2, "adv_steps": 3, "adv_step_size": 0.05}
EVAL_CHANGES = {
    "test_subset": 100, "fgsm_eps": (0.1,), "pgd_eps": (0.1,), "pgd_steps": 7,
    "pgd_step_size": 0.02, "pgd_subset": 100, "noise_sigma": (0.1,), "strength_eps": (0.2,),
    "strength_restarts": 2, "strength_steps": 9, "strength_subset": 50,
    "strength_sampling": "first", "sensitivity_top": 2, "sensitivity_images": 1,
}


def test_every_field_is_either_a_training_or_an_evaluation_field_with_a_test_case():
    names = {f for f in RunConfig.__dataclass_fields__}
    assert set(EVAL_CHANGES) == EVALUATION_FIELDS
    assert (set(CHANGES) | set(LOCAL_CHANGES) | set(ADVERSARIAL_CHANGES)
            | {"reg_layers", "layer_alphas", "slope_method"} == names - EVALUATION_FIELDS)


@pytest.mark.parametrize("name", sorted(LOCAL_CHANGES))
def test_a_local_learning_field_changes_the_training_key_and_is_refused_elsewhere(name):
    base = RunConfig(arch="kh", batch_norm=False)
    assert base.replace(**{name: LOCAL_CHANGES[name]}).training_key != base.training_key
    with pytest.raises(ValueError, match=name):
        RunConfig(**{name: LOCAL_CHANGES[name]})  # arch "mlp" does not read it


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_training_field_changes_the_training_key(name):
    base = RunConfig()
    extra = {}
    if name == "arch":
        extra = {"batch_norm": False, "hidden": (1000,)}
    if name in ("alpha", "tau", "beta"):  # a method field: a method that reads it
        base = base.replace(regularizer="spectral", reg_layers=(1,))
    if name == "slope_ranks":
        base = base.replace(regularizer="slope", reg_layers=(1,))
    if name == "jacobian_projections":
        base = base.replace(regularizer="jacobian")
    changed = base.replace(**{name: CHANGES[name]}, **extra)
    assert changed.training_key != base.training_key


@pytest.mark.parametrize("name", sorted(EVAL_CHANGES))
def test_an_evaluation_field_keeps_the_training_key(name):
    base = RunConfig()
    changed = base.replace(**{name: EVAL_CHANGES[name]})
    assert changed.key != base.key and changed.training_key == base.training_key


def test_model_cache_round_trip(tmp_path):
    config = RunConfig(hidden=(8,), batch_size=16, train_subset=32, epochs=1)
    torch.manual_seed(0)
    model = MLP((784, 8, 10))
    history = [{"epoch": 1, "loss": 0.5}]
    cache = ModelCache(tmp_path)
    assert config not in cache and cache.load(config, MLP((784, 8, 10))) is None
    cache.save(config, model, history)
    other = MLP((784, 8, 10))
    assert cache.load(config.replace(pgd_steps=3), other) == history  # evaluation-only change
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert list(tmp_path.iterdir()) == [cache.path_for(config)]  # no temporary file left
