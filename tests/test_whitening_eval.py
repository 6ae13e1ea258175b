"""Whitening at evaluation (Nassar et al. 2020, §4.2): frozen training-set statistics make a
whitened network a per-sample function, so its accuracy and attacks do not depend on batching."""

import numpy as np
import torch

from powerlaw_lib.attacks import robust_accuracy, robust_accuracy_naive
from powerlaw_lib.evaluation import has_batch_coupling
from powerlaw_lib.models import MLP, Whitening
from powerlaw_lib.training import freeze_whitening


def _whitened_mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP((36, 24, 12, 10), whiten_after=2)


def _data(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 6, 6, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_frozen_whitening_whitens_the_reference_set() -> None:
    """Oracle: x̃ = L⁻¹(x − μ) with μ, Σ of the layer input over the set (torch.cov, float64)."""
    model = _whitened_mlp()
    x, _ = _data(400)
    freeze_whitening(model, x)
    wh = model.whitening
    assert bool(wh.is_frozen)
    model.eval()
    seen = []
    hook = wh.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    with torch.no_grad():
        model(x)
    hook.remove()
    h, out = (t.double() for t in seen[0])                      # [400, 12] each
    cov = torch.cov(h.T) + wh.eps * torch.eye(12, dtype=torch.float64)
    expected = torch.linalg.solve_triangular(torch.linalg.cholesky(cov), (h - h.mean(0)).T,
                                             upper=False).T
    torch.testing.assert_close(out, expected, atol=2e-4, rtol=2e-4)


def test_frozen_evaluation_does_not_depend_on_batching() -> None:
    model = _whitened_mlp()
    x_train, _ = _data(400)
    x_test, _ = _data(60, seed=2)
    freeze_whitening(model, x_train)
    model.eval()
    with torch.no_grad():
        whole = model(x_test)
        pieces = torch.cat([model(x_test[i:i + 7]) for i in range(0, 60, 7)])
        single = model(x_test[5:6])
    torch.testing.assert_close(pieces, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(single, whole[5:6], atol=1e-5, rtol=1e-5)


def test_training_mode_still_whitens_with_batch_statistics() -> None:
    model = _whitened_mlp()
    x, _ = _data(400)
    freeze_whitening(model, x)
    model.train()
    seen = []
    hook = model.whitening.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    model(x[:100])
    hook.remove()
    h, out = seen[0]
    assert out.requires_grad  # gradients flow through the batch statistics
    torch.testing.assert_close(out, Whitening(12)(h))           # a never-frozen layer's output
    model.eval()
    with torch.no_grad():
        frozen_out = model.whitening(h)
    assert not torch.allclose(frozen_out, out.detach(), atol=1e-3)


def test_frozen_statistics_travel_with_the_state_dict() -> None:
    model, copy = _whitened_mlp(0), _whitened_mlp(1)
    x, _ = _data(400)
    freeze_whitening(model, x)
    copy.load_state_dict(model.state_dict())
    model.eval(), copy.eval()
    assert bool(copy.whitening.is_frozen)
    with torch.no_grad():
        torch.testing.assert_close(copy(x[:9]), model(x[:9]))


def test_attacks_on_a_frozen_whitened_model_take_the_exact_fast_path() -> None:
    model = _whitened_mlp()
    x_train, _ = _data(400)
    x, y = _data(50, seed=3)
    assert has_batch_coupling(model)
    freeze_whitening(model, x_train)
    assert not has_batch_coupling(model)
    model.eval()
    with torch.no_grad():
        y = model(x).argmax(1)  # all correct at ε = 0, so the curve is informative
    eps = (0.0, 0.05, 0.2)
    fast = robust_accuracy(model, x, y, "pgd", eps, batch_size=16, steps=5, step_size=0.02)
    naive = robust_accuracy_naive(model, x, y, "pgd", eps, batch_size=16, steps=5, step_size=0.02)
    np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-12)  # same images broken
    assert fast[0] == 1.0 and fast[-1] < 1.0


def test_freezing_needs_no_chunk_wider_than_the_layer() -> None:
    """A training set that is not a multiple of the chunk still freezes (last chunk of 3)."""
    from powerlaw_lib import inference

    model = _whitened_mlp()
    x, _ = _data(403)
    old = inference.EVAL_CHUNK
    inference.EVAL_CHUNK = 100
    try:
        freeze_whitening(model, x)
    finally:
        inference.EVAL_CHUNK = old
    reference = _whitened_mlp()
    freeze_whitening(reference, x)
    torch.testing.assert_close(model.whitening.frozen_lower, reference.whitening.frozen_lower)
