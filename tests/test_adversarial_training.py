"""PGD adversarial training (`methods.adversarial`, Madry et al. 2018)."""

from __future__ import annotations

import pytest
import torch

from powerlaw_lib import experiments, methods
from powerlaw_lib.config import RunConfig
from powerlaw_lib.evaluation import metric_name
from powerlaw_lib.models import MLP
from powerlaw_lib.store import ResultStore

AT = RunConfig(regularizer="adversarial", adv_eps=0.1, adv_steps=5, adv_step_size=0.03)


def _batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_training_inputs_are_pgd_examples_in_the_ball_and_leave_the_model_alone():
    torch.manual_seed(0)
    model = MLP((784, 32, 10), batch_norm=True).train()
    x, y = _batch()
    penalty = methods.build_penalty(AT)
    penalty.start_epoch(model, x, torch.Generator().manual_seed(3))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x_adv = penalty.training_inputs(model, x, y)
    assert model.training                                    # mode restored
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # BN stats too
    assert all(p.grad is None for p in model.parameters())
    assert (x_adv - x).abs().max() <= AT.adv_eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv != x).float().mean() > 0.5
    with torch.no_grad():
        model.eval()
        loss = torch.nn.functional.cross_entropy
        assert loss(model(x_adv), y) > loss(model(x), y)      # the examples raise the loss
    penalty.start_epoch(model, x, torch.Generator().manual_seed(3))
    assert torch.equal(penalty.training_inputs(model, x, y), x_adv)  # same generator, same start


def test_every_other_method_trains_on_the_batch_itself():
    x, y = _batch(8)
    for name in methods.names():
        if name == "adversarial":
            continue
        config = RunConfig(regularizer=name, **({"reg_layers": (1,)} if methods.get(name).layered
                                                 else {}))
        assert methods.build_penalty(config).training_inputs(None, x, y) is x


@pytest.mark.parametrize(("change", "field"), [({"adv_eps": 0.0}, "adv_eps"),
                                               ({"adv_steps": 0}, "adv_steps"),
                                               ({"adv_step_size": 2.0}, "adv_step_size")])
def test_bad_adversarial_settings_name_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        AT.replace(**change)
    with pytest.raises(ValueError, match=field):            # vanilla does not read them
        RunConfig(**{field: AT.replace().__getattribute__(field) * 2 or 1})


@pytest.mark.slow
def test_adversarial_training_makes_a_small_network_robust(tmp_path):
    small = dict(hidden=(128,), batch_norm=False, train_subset=3000, test_subset=500,
                 batch_size=100, epochs=4, lr=1e-3, pgd_subset=300, strength_subset=30,
                 fgsm_eps=(0.0, 0.1), pgd_eps=(0.0, 0.1), noise_sigma=(0.0,), strength_eps=(),
                 sensitivity_top=0)
    store = ResultStore(tmp_path)
    plain = experiments.run(RunConfig(**small), store, progress=False)
    robust = experiments.run(AT.replace(**small), store, progress=False)
    pgd = metric_name("pgd", 0.1)
    assert robust.metrics[pgd] > plain.metrics[pgd] + 0.2
    assert robust.metrics["clean_accuracy"] > 0.6
