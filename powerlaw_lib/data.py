"""In-memory image data sets (MNIST, Fashion-MNIST, CIFAR-10) and the mouse V1 spectrum.

The image sets are read from their standard distribution files with ``gzip`` and
``numpy`` only; torchvision is never needed to *load* data (it is imported lazily,
inside :func:`download`, and only there).

Data locations
--------------
Every loader looks for its files in these roots, in this order, and uses the first
root that has all of them:

1. the ``root`` argument, when given;
2. the environment variable ``POWERLAW_DATA``, when set and non-empty;
3. ``<repo>/data/datasets/``;
4. ``<repo>/../shared/data/`` (a ``shared/data`` folder beside the repository),

where ``<repo>`` is the folder that contains the ``powerlaw_lib`` package. The layout
inside a root is torchvision's::

    <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    <root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    <root>/CIFAR10/cifar10_train50k_test1k.npz
    <root>/stringer2019/natimg2800_M170714_MP032_cvpca.csv

When no root has the files, a :class:`FileNotFoundError` lists every place searched.

CIFAR-10 split (read this before using CIFAR-10)
------------------------------------------------
The CIFAR-10 file holds all 50,000 official training images but only the first
1,000 of the 10,000 official test images. ``load("cifar10")`` therefore returns

* ``x_train, y_train``: the first 40,000 training images (data_batch_1 ... 4);
* ``x_test, y_test``: the LAST 10,000 training images (data_batch_5), used as a
  held-out *validation* set, not the official test set.

The 1,000 official test images are available from :func:`load_cifar10_official_test`.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "DATASET_INFO",
    "DATASET_NAMES",
    "Dataset",
    "ENV_VAR",
    "REPO_DATA_ROOT",
    "SHARED_DATA_ROOT",
    "candidate_roots",
    "download",
    "find_root",
    "load",
    "load_cifar10_official_test",
    "load_stringer_spectrum",
    "subset",
]

#: name -> (channels, height, width, n_classes)
DATASET_INFO: dict[str, tuple[int, int, int, int]] = {
    "mnist": (1, 28, 28, 10),
    "fashion-mnist": (1, 28, 28, 10),
    "cifar10": (3, 32, 32, 10),
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASET_INFO)

#: Environment variable naming a data root (second place searched).
ENV_VAR = "POWERLAW_DATA"

_REPO_DIR = Path(__file__).resolve().parent.parent
#: Third place searched: a data folder inside the repository.
REPO_DATA_ROOT: Path = _REPO_DIR / "data" / "datasets"
#: Fourth place searched: a ``shared/data`` folder beside the repository.
SHARED_DATA_ROOT: Path = _REPO_DIR.parent / "shared" / "data"

_IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_IDX_COUNTS = {"train": 60_000, "test": 10_000}
_IDX_IMAGE_MAGIC = 2051
_IDX_LABEL_MAGIC = 2049

_CIFAR_FILE = Path("CIFAR10") / "cifar10_train50k_test1k.npz"
_CIFAR_N_TRAIN = 40_000  # first 40,000 training images -> train; last 10,000 -> validation
_STRINGER_FILE = Path("stringer2019") / "natimg2800_M170714_MP032_cvpca.csv"

_CACHE_SIZE = 8


class Dataset(NamedTuple):
    """Four tensors of one data set; unpacks as ``x_train, y_train, x_test, y_test``.

    ``x_*`` are float32, NCHW, contiguous, values ``pixel / 255`` in [0, 1];
    ``y_*`` are int64 class labels in ``0 .. n_classes - 1``. For CIFAR-10 the
    ``*_test`` fields hold the validation split (see the module docstring).
    """

    x_train: torch.Tensor  # [N_train, C, H, W] float32
    y_train: torch.Tensor  # [N_train] int64
    x_test: torch.Tensor  # [N_test, C, H, W] float32
    y_test: torch.Tensor  # [N_test] int64


# --------------------------------------------------------------------------- roots


def _required_files(name: str) -> list[Path]:
    """Paths, relative to a root, that must all exist for ``name``."""
    if name in _IDX_FOLDERS:
        raw = Path(_IDX_FOLDERS[name]) / "raw"
        return [raw / f for f in _IDX_FILES.values()]
    if name == "cifar10":
        return [_CIFAR_FILE]
    if name == "stringer2019":
        return [_STRINGER_FILE]
    raise _unknown_name(name)


def _unknown_name(name: object) -> ValueError:
    return ValueError(f"name must be one of {list(DATASET_NAMES)}, got {name!r}")


def _check_name(name: str) -> None:
    if name not in DATASET_INFO:
        raise _unknown_name(name)


def candidate_roots(root: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """The data roots searched, in order, each with a short description of its origin.

    Parameters
    ----------
    root
        Optional root given by the caller; searched first.

    Returns
    -------
    list of (Path, str)
        ``(root, origin)`` pairs; ``origin`` is e.g. ``"root argument"``.
    """
    roots: list[tuple[Path, str]] = []
    if root is not None:
        roots.append((Path(root).expanduser(), "root argument"))
    env = os.environ.get(ENV_VAR, "")
    if env:
        roots.append((Path(env).expanduser(), f"${ENV_VAR}"))
    roots.append((Path(REPO_DATA_ROOT), "repository data folder"))
    roots.append((Path(SHARED_DATA_ROOT), "shared data folder beside the repository"))
    return roots


def find_root(name: str, root: str | os.PathLike | None = None) -> Path:
    """Return the first candidate root (see :func:`candidate_roots`) that has ``name``.

    Parameters
    ----------
    name
        One of :data:`DATASET_NAMES`, or ``"stringer2019"`` for the V1 spectrum.
    root
        Optional root searched first.

    Raises
    ------
    FileNotFoundError
        When no root has all the files; the message lists every place searched and
        how to provide the files.
    """
    required = _required_files(name)
    searched = candidate_roots(root)
    for path, _origin in searched:
        if all((path / rel).is_file() for rel in required):
            return path.resolve()
    raise FileNotFoundError(_missing_message(name, required, searched))


def _missing_message(name: str, required: list[Path], searched: list[tuple[Path, str]]) -> str:
    lines = [f"Data set {name!r} not found. Looked for these files:"]
    lines += [f"    <root>/{rel.as_posix()}" for rel in required]
    lines.append("in these roots, in order:")
    lines += [f"    {path}  ({origin})" for path, origin in searched]
    lines.append("To provide them, do one of:")
    lines.append(f"  - copy the standard distribution files into one of the roots above "
                 f"(e.g. {REPO_DATA_ROOT}), keeping the layout shown;")
    lines.append(f"  - set the environment variable {ENV_VAR} to a folder with that layout;")
    if name in DATASET_INFO:
        lines.append(f"  - or, with network access and torchvision installed, call "
                     f"powerlaw_lib.data.download({name!r}, root).")
    return "\n".join(lines)


# --------------------------------------------------------------------------- IDX (MNIST)


def _read_gzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"corrupt data file {path}: cannot decompress ({exc})") from exc


def _read_idx_images(path: Path, count: int) -> np.ndarray:
    """Decode an IDX image file (magic 2051) to uint8 ``[count, rows, cols]``."""
    data = _read_gzip(path)
    if len(data) < 16:
        raise ValueError(f"corrupt data file {path}: {len(data)} bytes, shorter than the IDX header")
    magic, n, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (0, 4, 8, 12))
    if magic != _IDX_IMAGE_MAGIC:
        raise ValueError(f"corrupt data file {path}: magic number {magic}, expected {_IDX_IMAGE_MAGIC}")
    if (n, rows, cols) != (count, 28, 28):
        raise ValueError(f"corrupt data file {path}: header says {n}x{rows}x{cols}, "
                         f"expected {count}x28x28")
    if len(data) != 16 + n * rows * cols:
        raise ValueError(f"corrupt data file {path}: {len(data) - 16} pixel bytes, "
                         f"expected {n * rows * cols}")
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)


def _read_idx_labels(path: Path, count: int) -> np.ndarray:
    """Decode an IDX label file (magic 2049) to uint8 ``[count]`` with values 0..9."""
    data = _read_gzip(path)
    if len(data) < 8:
        raise ValueError(f"corrupt data file {path}: {len(data)} bytes, shorter than the IDX header")
    magic, n = (int.from_bytes(data[i:i + 4], "big") for i in (0, 4))
    if magic != _IDX_LABEL_MAGIC:
        raise ValueError(f"corrupt data file {path}: magic number {magic}, expected {_IDX_LABEL_MAGIC}")
    if n != count or len(data) != 8 + n:
        raise ValueError(f"corrupt data file {path}: {len(data) - 8} labels (header {n}), expected {count}")
    labels = np.frombuffer(data, np.uint8, offset=8)
    if labels.max() > 9:
        raise ValueError(f"corrupt data file {path}: label {labels.max()} outside 0..9")
    return labels


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _idx_arrays(raw_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decoded uint8 arrays of one IDX folder, cached per resolved path (read-only)."""
    raw = Path(raw_dir)
    x_tr = _read_idx_images(raw / _IDX_FILES["train_images"], _IDX_COUNTS["train"])
    y_tr = _read_idx_labels(raw / _IDX_FILES["train_labels"], _IDX_COUNTS["train"])
    x_te = _read_idx_images(raw / _IDX_FILES["test_images"], _IDX_COUNTS["test"])
    y_te = _read_idx_labels(raw / _IDX_FILES["test_labels"], _IDX_COUNTS["test"])
    arrays = (x_tr[:, None], y_tr, x_te[:, None], y_te)  # images [N, 1, 28, 28]
    for a in arrays:
        a.flags.writeable = False
    return arrays


# --------------------------------------------------------------------------- CIFAR-10


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cifar_arrays(npz_path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decoded CIFAR-10 arrays (uint8, NCHW), cached per resolved path (read-only).

    Returns all 50,000 training images/labels and the 1,000 official test images/labels.
    """
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            x_tr, y_tr = npz["x_train"], npz["y_train"]
            x_te, y_te = npz["x_test_first1000"], npz["y_test_first1000"]
    except (OSError, KeyError, ValueError, EOFError, zlib.error) as exc:
        raise ValueError(f"corrupt data file {npz_path}: cannot read the CIFAR-10 arrays ({exc})") from exc
    for x, y, n in ((x_tr, y_tr, 50_000), (x_te, y_te, 1_000)):
        if x.shape != (n, 32, 32, 3) or x.dtype != np.uint8 or y.shape != (n,):
            raise ValueError(f"corrupt data file {npz_path}: arrays of shape {x.shape} ({x.dtype}) and "
                             f"{y.shape}, expected ({n}, 32, 32, 3) uint8 and ({n},)")
        if y.min() < 0 or y.max() > 9:
            raise ValueError(f"corrupt data file {npz_path}: labels outside 0..9")
    arrays = (
        np.ascontiguousarray(x_tr.transpose(0, 3, 1, 2)),  # HWC -> [50000, 3, 32, 32]
        y_tr.astype(np.int64),
        np.ascontiguousarray(x_te.transpose(0, 3, 1, 2)),  # [1000, 3, 32, 32]
        y_te.astype(np.int64),
    )
    for a in arrays:
        a.flags.writeable = False
    return arrays


# --------------------------------------------------------------------------- public loaders


def _to_float_images(x: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` -> new float32 tensor ``pixel / 255`` (never shares memory)."""
    images = x.astype(np.float32)  # new C-contiguous array
    images /= np.float32(255.0)
    return torch.from_numpy(images)


def _to_labels(y: np.ndarray) -> torch.Tensor:
    return torch.tensor(y, dtype=torch.int64)  # copies


def load(name: str, root: str | os.PathLike | None = None) -> Dataset:
    """Load a data set as in-memory tensors.

    Decoded files are cached per process (keyed on the resolved path), so repeated
    calls are fast. Each call returns freshly allocated tensors: changing them in place
    never changes the cache or what later calls return.

    **CIFAR-10:** the official test set is incomplete on disk (1,000 of 10,000 images),
    so ``load("cifar10")`` returns the first 40,000 training images as *train* and the
    LAST 10,000 training images (data_batch_5) as *test*, which is a validation split.
    Use :func:`load_cifar10_official_test` for the 1,000 official test images.

    Parameters
    ----------
    name
        ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``.
    root
        Optional data root searched first (see the module docstring for the order).

    Returns
    -------
    Dataset
        ``(x_train, y_train, x_test, y_test)``; x float32 ``[N, C, H, W]`` in [0, 1]
        (``pixel / 255``), y int64 ``[N]``. Sizes: MNIST and Fashion-MNIST 60,000 /
        10,000 of 1x28x28; CIFAR-10 40,000 / 10,000 (validation) of 3x32x32.

    Raises
    ------
    ValueError
        For an unknown ``name`` or a corrupt file.
    FileNotFoundError
        When no searched root has the files.
    """
    _check_name(name)
    found = find_root(name, root)
    if name == "cifar10":
        x_all, y_all, _, _ = _cifar_arrays(str(found / _CIFAR_FILE))
        n = _CIFAR_N_TRAIN
        return Dataset(_to_float_images(x_all[:n]), _to_labels(y_all[:n]),
                       _to_float_images(x_all[n:]), _to_labels(y_all[n:]))
    x_tr, y_tr, x_te, y_te = _idx_arrays(str(found / _IDX_FOLDERS[name] / "raw"))
    return Dataset(_to_float_images(x_tr), _to_labels(y_tr), _to_float_images(x_te), _to_labels(y_te))


def load_cifar10_official_test(root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 1,000 images of the official CIFAR-10 test set.

    Only these 1,000 of the 10,000 official test images are stored (see the module
    docstring); :func:`load` uses the last 10,000 training images for validation.

    Returns
    -------
    x : torch.Tensor
        float32 ``[1000, 3, 32, 32]`` in [0, 1].
    y : torch.Tensor
        int64 ``[1000]``.
    """
    found = find_root("cifar10", root)
    _, _, x_te, y_te = _cifar_arrays(str(found / _CIFAR_FILE))
    return _to_float_images(x_te), _to_labels(y_te)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _stringer_arrays(csv_path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = np.loadtxt(csv_path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"corrupt data file {csv_path}: cannot parse ({exc})") from exc
    if table.shape[1] != 2 or table.shape[0] < 1:
        raise ValueError(f"corrupt data file {csv_path}: expected two columns n,eigenvalue")
    ranks = table[:, 0].astype(np.int64)
    if not np.array_equal(ranks, np.arange(1, len(ranks) + 1)):
        raise ValueError(f"corrupt data file {csv_path}: column n is not 1, 2, 3, ...")
    eigenvalues = table[:, 1].copy()
    ranks.flags.writeable = False
    eigenvalues.flags.writeable = False
    return ranks, eigenvalues


def load_stringer_spectrum(root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cross-validated PCA eigenspectrum of mouse V1 responses to 2,800 natural images.

    Stringer et al. 2019 (Nature 571, 361-365), recording
    ``natimg2800_M170714_MP032_2017-09-14``; read from
    ``<root>/stringer2019/natimg2800_M170714_MP032_cvpca.csv`` with the same root search as
    :func:`load`. Their published fit (weighted, ranks 11..500) gives alpha = 0.9717.

    Returns
    -------
    ranks : np.ndarray
        int64 ``[1024]``, 1-based ranks ``1 .. 1024``.
    eigenvalues : np.ndarray
        float64 ``[1024]``, unnormalized cvPCA variances (not monotone: cross-validated).
    """
    found = find_root("stringer2019", root)
    ranks, eigenvalues = _stringer_arrays(str(found / _STRINGER_FILE))
    return ranks.copy(), eigenvalues.copy()


# --------------------------------------------------------------------------- subsets


def subset(x, y, n: int | None, seed: int = 0):
    """A deterministic random subset of ``n`` samples (original order kept).

    The indices are the first ``n`` of a permutation drawn by a ``torch.Generator``
    seeded with ``seed``, sorted ascending; so for a fixed seed a smaller subset is
    contained in a larger one.

    Parameters
    ----------
    x, y
        Tensors or arrays with the same first dimension ``N``.
    n
        Subset size in ``1 .. N``; ``None`` returns ``x, y`` unchanged.
    seed
        Seed of the generator.

    Returns
    -------
    (x_sub, y_sub)
        Same types as the inputs, first dimension ``n``.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if n is None:
        return x, y
    total = len(x)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= total:
        raise ValueError(f"n must be an integer in 1 .. {total} (or None), got {n!r}")
    generator = torch.Generator().manual_seed(int(seed))
    index = torch.randperm(total, generator=generator)[: int(n)].sort().values  # [n]

    def pick(a):
        return a[index.to(a.device)] if isinstance(a, torch.Tensor) else a[index.numpy()]

    return pick(x), pick(y)


# --------------------------------------------------------------------------- download


def download(name: str, root: str | os.PathLike | None = None) -> Path:
    """Download a data set with torchvision and store it in the layout :func:`load` reads.

    Needs network access and a working torchvision (imported here, not at module
    import). MNIST / Fashion-MNIST keep torchvision's own files
    (``<root>/MNIST/raw/*.gz``); CIFAR-10 is converted to
    ``<root>/CIFAR10/cifar10_train50k_test1k.npz``.

    Parameters
    ----------
    name
        One of :data:`DATASET_NAMES`.
    root
        Target root; default :data:`REPO_DATA_ROOT`.

    Returns
    -------
    Path
        The root written to.
    """
    _check_name(name)
    target = Path(REPO_DATA_ROOT if root is None else root).expanduser()
    try:
        from torchvision import datasets  # noqa: PLC0415 -- optional, heavy, may be broken
    except Exception as exc:  # torchvision can fail with RuntimeError on CPU-only torch
        raise ImportError(
            f"download({name!r}) needs a working torchvision, but importing it failed: {exc}. "
            f"Install a torchvision build matching torch {torch.__version__}, or copy the "
            f"files by hand (see powerlaw_lib.data's docstring for the layout)."
        ) from exc
    target.mkdir(parents=True, exist_ok=True)
    if name == "mnist":
        for train in (True, False):
            datasets.MNIST(target, train=train, download=True)
    elif name == "fashion-mnist":
        for train in (True, False):
            datasets.FashionMNIST(target, train=train, download=True)
    else:
        work = target / "CIFAR10" / "torchvision"
        train = datasets.CIFAR10(work, train=True, download=True)
        test = datasets.CIFAR10(work, train=False, download=True)
        np.savez_compressed(
            target / _CIFAR_FILE,
            x_train=np.asarray(train.data, dtype=np.uint8),
            y_train=np.asarray(train.targets, dtype=np.uint8),
            x_test_first1000=np.asarray(test.data[:1000], dtype=np.uint8),
            y_test_first1000=np.asarray(test.targets[:1000], dtype=np.uint8),
            class_names=np.asarray(train.classes),
        )
    return target
