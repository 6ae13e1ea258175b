"""Tests of powerlaw_lib.data: the real data files, root resolution, errors and subsets."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from powerlaw_lib import data

IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
LAYOUT = {  # the files each data set needs inside a root, spelled out independently
    "mnist": [f"MNIST/raw/{f}" for f in IDX_NAMES],
    "fashion-mnist": [f"FashionMNIST/raw/{f}" for f in IDX_NAMES],
    "cifar10": ["CIFAR10/cifar10_train50k_test1k.npz"],
    "stringer2019": ["stringer2019/natimg2800_M170714_MP032_cvpca.csv"],
}


# --------------------------------------------------------------------------- real data (loaded once)


@pytest.fixture(scope="module")
def mnist() -> data.Dataset:
    return data.load("mnist")


@pytest.fixture(scope="module")
def fashion() -> data.Dataset:
    return data.load("fashion-mnist")


@pytest.fixture(scope="module")
def cifar() -> data.Dataset:
    return data.load("cifar10")


def _check_images(x: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert x.shape == shape and x.dtype == torch.float32 and x.is_contiguous()
    assert x.min().item() == 0.0 and x.max().item() == 1.0
    pixels = x[:2000] * 255  # values must be pixel / 255 for integer pixels
    assert (pixels - pixels.round()).abs().max().item() < 1e-4


def _check_labels(y: torch.Tensor, n: int) -> None:
    assert y.shape == (n,) and y.dtype == torch.int64
    assert y.min().item() == 0 and y.max().item() == 9


def test_mnist(mnist):
    x_tr, y_tr, x_te, y_te = mnist  # unpacks as a plain tuple
    _check_images(x_tr, (60000, 1, 28, 28))
    _check_images(x_te, (10000, 1, 28, 28))
    _check_labels(y_tr, 60000)
    _check_labels(y_te, 10000)
    # the well-known class counts of MNIST and its first labels
    assert torch.bincount(y_tr).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(y_te).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y_tr[:5].tolist() == [5, 0, 4, 1, 9] and y_te[:5].tolist() == [7, 2, 1, 0, 4]
    assert data.DATASET_INFO["mnist"] == (1, 28, 28, 10)


def test_fashion_mnist(fashion):
    _check_images(fashion.x_train, (60000, 1, 28, 28))
    _check_images(fashion.x_test, (10000, 1, 28, 28))
    _check_labels(fashion.y_train, 60000)
    _check_labels(fashion.y_test, 10000)
    assert torch.bincount(fashion.y_train).tolist() == [6000] * 10  # balanced by construction
    assert torch.bincount(fashion.y_test).tolist() == [1000] * 10
    assert fashion.y_train[0].item() == 9  # ankle boot
    assert data.DATASET_INFO["fashion-mnist"] == (1, 28, 28, 10)


def test_cifar10_train_and_validation_split(cifar):
    _check_images(cifar.x_train, (40000, 3, 32, 32))
    _check_images(cifar.x_test, (10000, 3, 32, 32))
    _check_labels(cifar.y_train, 40000)
    _check_labels(cifar.y_test, 10000)
    assert cifar.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # data_batch_1 starts 6, 9, 9, ...
    labels = torch.cat([cifar.y_train, cifar.y_test])
    assert torch.bincount(labels).tolist() == [5000] * 10
    # per-channel mean and std of all 50,000 training images, 0-255 units (CIFAR10/README.md)
    count = 50000 * 32 * 32
    total = sum(x.sum(dim=(0, 2, 3), dtype=torch.float64) for x in (cifar.x_train, cifar.x_test))  # [3]
    squares = sum((x * x).sum(dim=(0, 2, 3), dtype=torch.float64) for x in (cifar.x_train, cifar.x_test))
    mean = total / count
    std = (squares / count - mean**2).sqrt()
    np.testing.assert_allclose(255 * mean.numpy(), [125.30691805, 122.95039414, 113.86538318], atol=1e-4)
    np.testing.assert_allclose(255 * std.numpy(), [62.99321928, 62.08870764, 66.70489964], atol=1e-4)
    assert data.DATASET_INFO["cifar10"] == (3, 32, 32, 10)


def test_cifar10_official_test():
    x, y = data.load_cifar10_official_test()
    _check_images(x, (1000, 3, 32, 32))
    _check_labels(y, 1000)
    assert y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_returned_tensors_do_not_alias_the_cache(mnist):
    again = data.load("mnist")
    again.x_train[0].fill_(0.5)
    again.y_train[0] = 3
    third = data.load("mnist")
    assert torch.equal(third.x_train[0], mnist.x_train[0])
    assert third.y_train[0].item() == 5


def test_stringer_spectrum():
    ranks, eigenvalues = data.load_stringer_spectrum()
    assert ranks.dtype == np.int64 and eigenvalues.dtype == np.float64
    np.testing.assert_array_equal(ranks, np.arange(1, 1025))
    assert eigenvalues[0] == pytest.approx(347252.0012310307)
    assert eigenvalues[0] < eigenvalues[1]  # cross-validated: not monotone (README)
    ranks[0] = 99  # copies: the next load is unchanged
    assert data.load_stringer_spectrum()[0][0] == 1


def test_loading_never_imports_torchvision():
    code = ("import sys, powerlaw_lib.data as d; d.load_stringer_spectrum(); "
            "assert 'torchvision' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(data.__file__).parent.parent)


# --------------------------------------------------------------------------- root resolution


@pytest.fixture
def roots(tmp_path, monkeypatch) -> dict[str, Path]:
    """Four empty candidate roots; the two default ones replace the real defaults."""
    paths = {key: tmp_path / key for key in ("arg", "env", "repo", "shared")}
    for path in paths.values():
        path.mkdir()
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "REPO_DATA_ROOT", paths["repo"])
    monkeypatch.setattr(data, "SHARED_DATA_ROOT", paths["shared"])
    return paths


def _provide(root: Path, name: str, skip_last: bool = False) -> None:
    files = LAYOUT[name][:-1] if skip_last else LAYOUT[name]
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


@pytest.mark.parametrize("name", list(LAYOUT))
def test_root_resolution_order(roots, monkeypatch, name):
    for path in roots.values():
        _provide(path, name)
    monkeypatch.setenv(data.ENV_VAR, str(roots["env"]))
    assert data.find_root(name, roots["arg"]) == roots["arg"].resolve()
    assert data.find_root(name) == roots["env"].resolve()
    monkeypatch.setenv(data.ENV_VAR, "")  # empty: ignored
    assert data.find_root(name) == roots["repo"].resolve()
    monkeypatch.delenv(data.ENV_VAR)
    assert data.find_root(name) == roots["repo"].resolve()
    for rel in LAYOUT[name]:
        (roots["repo"] / rel).unlink()
    assert data.find_root(name) == roots["shared"].resolve()


def test_root_missing_a_file_is_skipped(roots):
    _provide(roots["arg"], "mnist", skip_last=True)
    _provide(roots["shared"], "mnist")
    assert data.find_root("mnist", roots["arg"]) == roots["shared"].resolve()


def test_default_shared_root_is_beside_the_repository():
    repo = Path(data.__file__).resolve().parent.parent
    assert data.SHARED_DATA_ROOT == repo.parent / "shared" / "data"
    assert data.REPO_DATA_ROOT == repo / "data" / "datasets"


def test_real_data_found_through_env_var(roots, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ranks, _ = data.load_stringer_spectrum(root=roots["arg"])  # empty root argument: falls through
    assert ranks.size == 1024


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_data_error_lists_places_and_remedies(roots, monkeypatch, name):
    monkeypatch.setenv(data.ENV_VAR, str(roots["env"]))
    with pytest.raises(FileNotFoundError) as info:
        data.load(name, root=roots["arg"])
    message = str(info.value)
    for path in roots.values():
        assert str(path) in message
    for rel in LAYOUT[name]:
        assert rel in message
    assert data.ENV_VAR in message
    assert f"download({name!r}" in message


def test_missing_stringer_spectrum_error(roots):
    with pytest.raises(FileNotFoundError, match="natimg2800_M170714_MP032_cvpca.csv") as info:
        data.load_stringer_spectrum()
    assert str(roots["repo"]) in str(info.value) and str(roots["shared"]) in str(info.value)


@pytest.mark.parametrize("name", ["MNIST", "cifar100", "", "stringer2019"])
def test_unknown_name(name):
    with pytest.raises(ValueError, match="name must be one of") as info:
        data.load(name)
    for allowed in ("mnist", "fashion-mnist", "cifar10"):
        assert allowed in str(info.value)


# --------------------------------------------------------------------------- corrupt files


def _write_idx(root: Path, images_header: bytes) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_NAMES:
        with gzip.open(raw / name, "wb") as f:
            f.write(images_header)


def test_corrupt_idx_magic_number(tmp_path):
    header = (2050).to_bytes(4, "big") + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    _write_idx(tmp_path, header)
    with pytest.raises(ValueError, match="magic number 2050, expected 2051"):
        data.load("mnist", root=tmp_path)


def test_truncated_idx_file(tmp_path):
    header = (2051).to_bytes(4, "big") + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    _write_idx(tmp_path, header + bytes(100))
    with pytest.raises(ValueError, match="pixel bytes"):
        data.load("mnist", root=tmp_path)


def test_not_gzip(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_NAMES:
        (raw / name).write_bytes(b"not a gzip file")
    with pytest.raises(ValueError, match="cannot decompress"):
        data.load("mnist", root=tmp_path)


def test_corrupt_cifar_file(tmp_path):
    path = tmp_path / "CIFAR10" / "cifar10_train50k_test1k.npz"
    path.parent.mkdir()
    np.savez(path, x_train=np.zeros((10, 32, 32, 3), np.uint8), y_train=np.zeros(10, np.uint8),
             x_test_first1000=np.zeros((1000, 32, 32, 3), np.uint8), y_test_first1000=np.zeros(1000, np.uint8))
    with pytest.raises(ValueError, match="corrupt data file"):
        data.load("cifar10", root=tmp_path)


# --------------------------------------------------------------------------- download


def test_download_rejects_unknown_name():
    with pytest.raises(ValueError, match="name must be one of"):
        data.download("imagenet")


def test_download_reports_unusable_torchvision(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    with pytest.raises(ImportError, match="needs a working torchvision"):
        data.download("mnist", tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written


# --------------------------------------------------------------------------- subset


def test_subset_is_deterministic_and_nested():
    x = torch.arange(100, dtype=torch.float32).reshape(100, 1)
    y = torch.arange(100)
    xs, ys = data.subset(x, y, 10, seed=3)
    assert xs.shape == (10, 1) and ys.shape == (10,)
    assert torch.equal(xs[:, 0].long(), ys)  # pairs kept together
    assert torch.equal(data.subset(x, y, 10, seed=3)[1], ys)
    assert not torch.equal(data.subset(x, y, 10, seed=4)[1], ys)
    assert len(set(ys.tolist())) == 10 and torch.all(ys[1:] > ys[:-1])  # distinct, in order
    assert set(ys.tolist()) <= set(data.subset(x, y, 30, seed=3)[1].tolist())
    assert torch.equal(data.subset(x, y, 100, seed=3)[1], y)


def test_subset_none_returns_all_and_numpy_works():
    x, y = np.arange(20.0), np.arange(20)
    x_all, y_all = data.subset(x, y, None, seed=0)
    assert x_all is x and y_all is y
    xs, ys = data.subset(x, y, 5, seed=0)
    assert isinstance(xs, np.ndarray) and np.array_equal(xs, ys.astype(float))
    np.testing.assert_array_equal(ys, data.subset(torch.from_numpy(x), torch.from_numpy(y), 5, seed=0)[1].numpy())


@pytest.mark.parametrize("n", [0, -1, 21, 2.5, True])
def test_subset_rejects_bad_n(n):
    with pytest.raises(ValueError, match="n must be an integer in 1 .. 20"):
        data.subset(torch.zeros(20, 3), torch.zeros(20), n, seed=0)


def test_subset_rejects_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        data.subset(torch.zeros(20, 3), torch.zeros(19), 5, seed=0)
