"""MNIST as in-memory tensors, split and scaled as in Zhang & Chen (2020, Section 3.1) and
their code.

Splits: the first 50,000 training images are ``train``, the last 10,000 ``val``; the
10,000 test images are ``test``. Pixels are divided by 126, so x lies in [0, 255/126].

Where the files come from, first hit wins:
1. ``data_dir=`` or the ``PYRO_BNN_DATA`` environment variable (must hold the files);
2. the copy shipped with the repository in ``data/mnist/``;
3. torchvision's download into ``$PYRO_BNN_CACHE`` (default ``~/.cache/pyro_bnn``).

Each file may be the IDX file or its ``.gz``; the SHA-256 of the decompressed content is
checked before use.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import zlib
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.datasets.mnist import read_image_file, read_label_file

__all__ = [
    "PIXEL_SCALE",
    "X_MAX",
    "DataError",
    "MNIST",
    "Split",
    "as_split",
    "find_mnist_dir",
    "load_mnist",
    "training_data",
]

PIXEL_SCALE = 126.0  # pixels are divided by this (the authors' code; the paper: "(0, 2)")
X_MAX = 255.0 / PIXEL_SCALE  # upper end of the pixel box, ~2.024
N_TRAIN = 50_000  # the first 50k training images train, the rest validate

SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "mnist"

FIX_HINT = (
    "restore the shipped copy (`git checkout -- data/mnist`), or point PYRO_BNN_DATA "
    "(or data_dir=) at a folder holding the four MNIST IDX files (.gz or not)"
)


class DataError(RuntimeError):
    """A data file is missing, truncated or corrupt; the message names it and the fix.

    >>> load_mnist("/no/such/folder")  # raises DataError naming the folder and the fix
    """


def _check_count(name: str, n) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {n!r}")


@dataclass(frozen=True)
class Split:
    """One split held in memory.

    :param x: inputs (N, ...); for MNIST (N, 784) float32 on the /126 scale, in [0, X_MAX].
    :param y: targets (N,); for MNIST int64 labels.

    >>> train = Split(x, y).head(1000)
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        for name, t in (("x", self.x), ("y", self.y)):
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__}")
        if self.x.ndim < 2 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise ValueError(
                f"x must be (N, ...) and y (N,) with the same N, got x {tuple(self.x.shape)} "
                f"and y {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int | None) -> Split:
        """The first n examples (all of them when n is None)."""
        _check_count("n", n)
        return self if n is None else Split(self.x[:n], self.y[:n])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def lit(self) -> torch.Tensor:
        """``x.shape[1:]`` bool: the input features some example sets nonzero (for MNIST,
        the pixels some image lights; an attack on the others moves a net only through
        weights no example trained)."""
        return self.x.amax(0) > 0


@dataclass(frozen=True)
class MNIST:
    """The three splits of :func:`load_mnist`.

    :param train: the first 50,000 training images.
    :param val: the last 10,000 training images.
    :param test: the 10,000 test images.
    :param source: the folder they were read from.

    >>> data = load_mnist().head(2000, 500)  # a quick slice: 2,000 train, 500 val and test
    """

    train: Split
    val: Split
    test: Split
    source: str = ""

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be one of 'train', 'val', 'test', got {name!r}")
        return getattr(self, name)

    def head(self, n_train: int | None, n_eval: int | None = None) -> MNIST:
        """A slice for quick runs: the first n_train train and n_eval val/test examples."""
        _check_count("n_train", n_train)
        _check_count("n_eval", n_eval)
        n_eval = n_train if n_eval is None else n_eval
        return MNIST(
            self.train.head(n_train), self.val.head(n_eval), self.test.head(n_eval), self.source
        )

    def to(self, device: torch.device | str) -> MNIST:
        return MNIST(self.train.to(device), self.val.to(device), self.test.to(device), self.source)


def _cache_dir() -> Path:
    return Path(os.environ.get("PYRO_BNN_CACHE", Path.home() / ".cache" / "pyro_bnn"))


def _file_in(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_mnist_dir(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder MNIST is read from, following the lookup order in the module docstring.

    :param data_dir: a folder holding the four IDX files; default ``$PYRO_BNN_DATA``.
    :param download: download into the cache if no copy is found.

    >>> find_mnist_dir(download=False)
    """
    explicit = data_dir if data_dir is not None else os.environ.get("PYRO_BNN_DATA")
    if explicit:
        folder = Path(explicit)
        if not folder.is_dir():
            raise DataError(f"MNIST folder {folder} does not exist; {FIX_HINT}")
        return folder
    if SHIPPED_DIR.is_dir():
        return SHIPPED_DIR
    cached = _cache_dir() / "MNIST" / "raw"
    if all(_file_in(cached, name) for name in SHA256):
        return cached
    if not download:
        raise DataError(f"no MNIST copy found in {SHIPPED_DIR} or {cached}; {FIX_HINT}")
    try:
        from torchvision.datasets import MNIST as TorchvisionMNIST

        for train in (True, False):
            TorchvisionMNIST(root=str(_cache_dir()), train=train, download=True)
    except Exception as err:  # network errors come in many types
        raise DataError(f"MNIST download into {cached} failed ({err}); {FIX_HINT}") from err
    return cached


def _read_verified(folder: Path, name: str) -> torch.Tensor:
    """Decompress, check SHA-256, and parse one IDX file with torchvision's reader."""
    path = _file_in(folder, name)
    if path is None:
        raise DataError(f"missing MNIST file {folder / name}[.gz]; {FIX_HINT}")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"cannot read {path} ({err}): truncated or corrupt; {FIX_HINT}") from err
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[name]:
        raise DataError(
            f"checksum mismatch for {path}: SHA-256 of its content is {digest[:16]}..., "
            f"expected {SHA256[name][:16]}...; the file is truncated or corrupt; {FIX_HINT}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        idx = Path(tmp) / name
        idx.write_bytes(raw)
        reader = read_image_file if "images" in name else read_label_file
        return reader(str(idx))


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> MNIST:
    """Load MNIST into memory: train 50k / val 10k / test 10k, pixels divided by 126.

    :param data_dir: a folder holding the four IDX files (see :func:`find_mnist_dir`).
    :param device: where to put the tensors.
    :param download: download into the cache if no copy is found.

    >>> data = load_mnist()
    >>> data.train.x.shape, data.test.y.dtype
    (torch.Size([50000, 784]), torch.int64)
    """
    folder = find_mnist_dir(data_dir, download=download)
    tensors = {name: _read_verified(folder, name) for name in SHA256}

    def images(name: str) -> torch.Tensor:
        return tensors[name].reshape(len(tensors[name]), -1).float() / PIXEL_SCALE

    x_train, y_train = images("train-images-idx3-ubyte"), tensors["train-labels-idx1-ubyte"]
    data = MNIST(
        train=Split(x_train[:N_TRAIN], y_train[:N_TRAIN]),
        val=Split(x_train[N_TRAIN:], y_train[N_TRAIN:]),
        test=Split(images("t10k-images-idx3-ubyte"), tensors["t10k-labels-idx1-ubyte"]),
        source=str(folder),
    )
    return data.to(device)


def as_split(data, name: str = "data") -> Split:
    """Any in-memory form of (x, y) as a :class:`Split`: a Split, an (x, y) tuple, a
    TensorDataset of two tensors, or any map-style Dataset or DataLoader of (x, y) pairs
    (collated into memory once).

    :param data: the data, in any of those forms.
    :param name: how error messages call it.

    >>> as_split((x, y)), as_split(TensorDataset(x, y)), as_split(loader)
    """
    if isinstance(data, Split):
        split = data
    elif isinstance(data, tuple) and len(data) == 2:
        split = Split(*data)
    elif isinstance(data, TensorDataset) and len(data.tensors) == 2:
        split = Split(*data.tensors)
    elif isinstance(data, (Dataset, DataLoader)):
        loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=4096)
        batches = list(loader)
        if not batches:
            raise ValueError(f"{name} is empty")
        if not all(isinstance(b, (tuple, list)) and len(b) == 2 for b in batches):
            raise ValueError(f"{name} must yield (x, y) pairs")
        split = Split(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    else:
        raise ValueError(
            f"{name} must be an (x, y) tuple of tensors, a Split, a torch Dataset or a "
            f"DataLoader, got {type(data).__name__}"
        )
    if len(split) == 0:
        raise ValueError(f"{name} is empty")
    return split


def training_data(data, val=None) -> tuple[Split | DataLoader, Split | None]:
    """(train, val) for the fit functions. ``data`` may be the :class:`MNIST` container
    (its train split, and its val split unless ``val`` is given), any form
    :func:`as_split` takes, or a DataLoader, which is then iterated as it is every epoch
    (over an IterableDataset too, whose emptiness shows only then).
    ``val`` is optional and takes any form :func:`as_split` takes.

    :param data: the training data.
    :param val: the validation data, or None.

    >>> train, val = training_data((x, y), val=(x_val, y_val))
    """
    if isinstance(data, MNIST):
        train, val = data.train, data.val if val is None else val
    elif isinstance(data, DataLoader):
        train = data
        if isinstance(data.dataset, Sized) and len(data.dataset) == 0:
            raise ValueError("data is empty: the training set has no examples")
    else:
        train = as_split(data, "data")
    if isinstance(train, Split) and len(train) == 0:
        raise ValueError("data is empty: the training set has no examples")
    return train, None if val is None else as_split(val, "val")
