"""Tests of powerlaw_lib.models: architectures of Nassar et al. 2020 / Gerum et al. 2022 and batch whitening."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from powerlaw_lib.models import CNN, MLP, Whitening, build_model


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- architectures


@pytest.mark.parametrize(
    ("model_fn", "input_shape", "widths"),
    [
        (lambda: MLP((784, 2000, 10)), (1, 28, 28), (2000,)),  # §4.1 shallow
        (lambda: MLP((784, 1000, 1000, 1000, 10)), (1, 28, 28), (1000, 1000, 1000)),  # §4.2 deep
        (lambda: CNN(), (1, 28, 28), (2704, 800, 1000)),  # MNIST CNN: 16*13*13, 32*5*5, FC
        (lambda: CNN(in_channels=3, image_size=32), (3, 32, 32), (3600, 1152, 1000)),  # CIFAR-10
    ],
)
def test_hidden_widths_match_the_papers(model_fn, input_shape, widths) -> None:
    model = model_fn()
    assert model.hidden_widths == widths
    logits, hidden = model.forward_with_hidden(torch.rand(3, *input_shape))
    assert logits.shape == (3, 10)
    assert tuple(h.shape[1] for h in hidden) == widths
    assert all(h.shape[0] == 3 for h in hidden)


@pytest.mark.parametrize(
    ("model", "input_shape", "batch"),
    [
        (MLP((12, 9, 7, 4), batch_norm=True), (1, 3, 4), 16),
        (MLP((12, 9, 7, 6, 4), whiten_after=2), (1, 3, 4), 16),
        (CNN(in_channels=2, image_size=12, channels=(3, 4), hidden=6, n_classes=5), (2, 12, 12), 5),
        (CNN(in_channels=1, image_size=12, channels=(3, 2), hidden=6, whiten=True), (1, 12, 12), 20),
    ],
)
def test_forward_equals_forward_with_hidden(model, input_shape, batch) -> None:
    x = torch.rand(batch, *input_shape)
    for train in (True, False):
        model.train(train)
        logits, _ = model.forward_with_hidden(x)
        assert torch.equal(model(x), logits)


def test_cnn_hidden_matches_manual_conv_pool_flatten() -> None:
    model = CNN()
    x = torch.rand(4, 1, 28, 28)
    _, (h1, h2, h3) = model.forward_with_hidden(x)

    conv1, conv2 = model.conv_blocks[0][0], model.conv_blocks[1][0]
    pooled1 = F.max_pool2d(torch.tanh(F.conv2d(x, conv1.weight, conv1.bias)), 2)  # [4, 16, 13, 13]
    assert pooled1.shape == (4, 16, 13, 13)
    torch.testing.assert_close(h1, pooled1.reshape(4, -1), rtol=1e-6, atol=1e-6)
    # channel-major order: feature c*169 + i*13 + j is channel c at pixel (i, j)
    for c, i, j in [(0, 0, 0), (3, 5, 7), (15, 12, 12)]:
        torch.testing.assert_close(h1[:, c * 169 + i * 13 + j], pooled1[:, c, i, j])

    pooled2 = F.max_pool2d(torch.tanh(F.conv2d(pooled1, conv2.weight, conv2.bias)), 2)  # [4, 32, 5, 5]
    torch.testing.assert_close(h2, pooled2.reshape(4, -1), rtol=1e-5, atol=1e-6)
    fc = model.fc[0]
    torch.testing.assert_close(h3, torch.tanh(h2 @ fc.weight.T + fc.bias), rtol=1e-5, atol=1e-6)


def test_batch_norm_sits_after_the_activation() -> None:
    model = MLP((784, 2000, 10), activation="tanh", batch_norm=True)
    assert [type(m) for m in model.blocks[0]] == [nn.Linear, nn.Tanh, nn.BatchNorm1d]
    # the recorded hidden layer is the BN output: per-unit batch mean 0 and variance 1
    _, (h,) = model.train().forward_with_hidden(torch.rand(256, 1, 28, 28))
    torch.testing.assert_close(h.mean(0), torch.zeros(2000), atol=1e-5, rtol=0)
    torch.testing.assert_close(h.var(0, unbiased=False), torch.ones(2000), atol=1e-2, rtol=0)


def test_mlp_activations_and_flattening() -> None:
    x = torch.rand(5, 1, 2, 3)
    for name, fn in [("tanh", torch.tanh), ("relu", torch.relu), ("sigmoid", torch.sigmoid)]:
        model = MLP((6, 4, 2), activation=name)
        linear = model.blocks[0][0]
        _, (h,) = model.forward_with_hidden(x)
        torch.testing.assert_close(h, fn(x.reshape(5, 6) @ linear.weight.T + linear.bias))


def test_mlp_whitening_is_applied_after_recording_the_hidden_layer() -> None:
    model = MLP((10, 8, 6, 5, 3), whiten_after=2)
    x = torch.rand(64, 10)
    logits, (h1, h2, h3) = model.forward_with_hidden(x)
    white = model.whitening(h2)
    torch.testing.assert_close(h3, model.blocks[2](white))
    torch.testing.assert_close(logits, model.readout(h3))
    # h2 is the tanh output (bounded), not the whitened tensor, and whitening changes block 3's input
    assert h2.abs().max() < 1
    assert white.abs().max() > 1
    assert not torch.allclose(h3, model.blocks[2](h2), atol=1e-3)


def test_cnn_whitening_on_last_conv_output() -> None:
    model = CNN(in_channels=1, image_size=12, channels=(3, 2), hidden=6, whiten=True)
    assert model.hidden_widths == (75, 2, 6)  # 12 -> 10 -> 5 -> 3 -> 1
    x = torch.rand(40, 1, 12, 12)
    logits, (_, h2, h3) = model.forward_with_hidden(x)
    torch.testing.assert_close(h3, model.fc(model.whitening(h2)))
    torch.testing.assert_close(logits, model.readout(h3))


# ----------------------------------------------------------------------------- whitening


def _correlated(batch: int, width: int, dtype=torch.float32) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(width, width, dtype=torch.float64))
    scales = torch.linspace(0.5, 3.0, width, dtype=torch.float64)
    mixing = torch.diag(scales) @ q.T  # full-rank, correlated
    return (torch.randn(batch, width, dtype=torch.float64) @ mixing + 2.0).to(dtype)


def test_whitening_output_has_identity_covariance() -> None:
    x = _correlated(512, 32)
    assert (torch.cov(x.T) - torch.diag(torch.diag(torch.cov(x.T)))).abs().max() > 0.1
    white = Whitening(32)(x)
    assert white.dtype == torch.float32
    torch.testing.assert_close(torch.cov(white.T), torch.eye(32), atol=1e-3, rtol=0)
    torch.testing.assert_close(white.mean(0), torch.zeros(32), atol=1e-5, rtol=0)


def test_whitening_equals_inverse_cholesky_transform() -> None:
    x = _correlated(100, 5, dtype=torch.float64)
    centred = x - x.mean(0)
    lower = torch.linalg.cholesky(torch.cov(x.T) + 1e-5 * torch.eye(5, dtype=torch.float64))
    expected = torch.linalg.inv(lower) @ centred.T  # [5, B]
    torch.testing.assert_close(Whitening(5)(x), expected.T)


def test_whitening_uses_batch_statistics_in_eval_mode() -> None:
    layer = Whitening(6)
    x = _correlated(50, 6)
    torch.testing.assert_close(layer.train()(x), layer.eval()(x))


def test_whitening_gradcheck() -> None:
    x = _correlated(8, 3, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(Whitening(3), (x,), eps=1e-6, atol=1e-5)


def test_whitening_bf16_input_computes_in_float32() -> None:
    x = _correlated(256, 8).to(torch.bfloat16)
    white = Whitening(8)(x)
    assert white.dtype == torch.bfloat16
    torch.testing.assert_close(torch.cov(white.float().T), torch.eye(8), atol=3e-2, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        white = Whitening(8)(_correlated(256, 8))
    torch.testing.assert_close(torch.cov(white.float().T), torch.eye(8), atol=1e-3, rtol=0)


@pytest.mark.parametrize("batch", [3, 4])
def test_whitening_rejects_small_batches(batch: int) -> None:
    with pytest.raises(ValueError, match=r"batch size \d+ <= width 4"):
        Whitening(4)(torch.randn(batch, 4))


def test_whitening_argument_errors() -> None:
    with pytest.raises(ValueError, match="width"):
        Whitening(0)
    with pytest.raises(ValueError, match="eps"):
        Whitening(3, eps=-1.0)
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        Whitening(3)(torch.randn(10, 4))


# ----------------------------------------------------------------------------- constructor and factory errors


def test_model_argument_errors() -> None:
    with pytest.raises(ValueError, match="widths"):
        MLP((784, 10))
    with pytest.raises(ValueError, match="widths"):
        MLP((784, 0, 10))
    with pytest.raises(ValueError, match="activation"):
        MLP((784, 20, 10), activation="gelu")
    with pytest.raises(ValueError, match="whiten_after"):
        MLP((784, 20, 10), whiten_after=2)
    with pytest.raises(ValueError, match="whiten_after"):
        MLP((784, 20, 10), whiten_after=0)
    with pytest.raises(ValueError, match="image_size"):
        CNN(image_size=5)
    with pytest.raises(ValueError, match="channels"):
        CNN(channels=())
    with pytest.raises(ValueError, match="features"):
        MLP((784, 20, 10))(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="CNN expects"):
        CNN()(torch.rand(2, 3, 28, 28))


def test_build_model_builds_the_papers_models() -> None:
    shallow = build_model("mlp", (1, 28, 28), 10, (2000,), "tanh", True, None)
    assert isinstance(shallow, MLP) and shallow.hidden_widths == (2000,)
    assert isinstance(shallow.blocks[0][2], nn.BatchNorm1d)
    deep = build_model("mlp", (1, 28, 28), 10, (1000, 1000, 1000), "tanh", False, 2)
    assert deep.hidden_widths == (1000, 1000, 1000) and deep.whitening.width == 1000
    cifar = build_model("cnn", (3, 32, 32), 10, (), "tanh", False, None)
    assert isinstance(cifar, CNN) and cifar.hidden_widths == (3600, 1152, 1000)
    assert cifar.whitening is None
    whitened = build_model("CNN", (1, 28, 28), 10, (), "tanh", False, 2)
    assert whitened.whitening is not None and whitened.whitening.width == 800
    assert build_model("cnn", (1, 28, 28), 10, (500,), "relu", False, None).hidden_widths == (2704, 800, 500)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"arch": "rnn"}, "arch"),
        ({"dataset_shape": (28, 28)}, "dataset_shape"),
        ({"dataset_shape": (1, 0, 28)}, "dataset_shape"),
        ({"n_classes": 1}, "n_classes"),
        ({"hidden": ()}, "hidden"),
        ({"hidden": (100, -1)}, "hidden"),
        ({"hidden": 100}, "hidden"),
        ({"activation": "elu"}, "activation"),
        ({"whiten_after": 3}, "whiten_after"),
        ({"arch": "cnn", "hidden": (), "whiten_after": 1}, "whiten_after"),
        ({"arch": "cnn", "hidden": (), "batch_norm": True}, "batch_norm"),
        ({"arch": "cnn", "hidden": (10, 10)}, "hidden"),
        ({"arch": "cnn", "hidden": (), "dataset_shape": (1, 28, 30)}, "dataset_shape"),
    ],
)
def test_build_model_errors_name_the_field(kwargs: dict, field: str) -> None:
    arguments = {
        "arch": "mlp",
        "dataset_shape": (1, 28, 28),
        "n_classes": 10,
        "hidden": (100, 50),
        "activation": "tanh",
        "batch_norm": False,
        "whiten_after": None,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=field):
        build_model(**arguments)
