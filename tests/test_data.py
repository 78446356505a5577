import gzip
import shutil

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pyro_bnn.data import PIXEL_SCALE, SHA256, SHIPPED_DIR, X_MAX, DataError, as_split, load_mnist


def test_split_sizes_and_range(mnist):
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (50_000, 10_000, 10_000)
    for split in (mnist.train, mnist.val, mnist.test):
        assert split.x.shape[1] == 784 and split.x.dtype == torch.float32
        assert split.y.dtype == torch.int64
        assert split.x.min() == 0.0 and abs(split.x.max().item() - X_MAX) < 1e-6
        assert set(split.y.unique().tolist()) == set(range(10))
    # the /126 scaling: every pixel is an integer count divided by 126
    counts = mnist.test.x[:100] * PIXEL_SCALE
    assert torch.allclose(counts, counts.round(), atol=1e-4)


def test_lit_marks_the_pixels_some_image_lights(mnist):
    lit = mnist.train.lit()
    assert lit.shape == (784,) and lit.dtype == torch.bool
    assert not lit[0] and lit[28 * 14 + 14]  # a corner never lit, the centre lit
    # a pixel is unlit exactly when every image leaves it black
    unlit = ~lit
    assert (mnist.train.x[:, unlit] == 0).all() and (mnist.train.x[:, lit] > 0).any(0).all()
    two = as_split((torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]), torch.tensor([0, 1])))
    assert two.lit().tolist() == [False, True, True]


def test_val_is_the_last_10k_training_images(mnist, tmp_path):
    raw = gzip.decompress((SHIPPED_DIR / "train-labels-idx1-ubyte.gz").read_bytes())
    labels = torch.tensor(list(raw[8:]))
    assert torch.equal(mnist.train.y, labels[:50_000])
    assert torch.equal(mnist.val.y, labels[50_000:])


@pytest.fixture
def data_copy(tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(SHIPPED_DIR, folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    return folder


def test_explicit_folder_and_env_var(data_copy, monkeypatch):
    assert load_mnist(data_copy).source == str(data_copy)
    monkeypatch.setenv("PYRO_BNN_DATA", str(data_copy))
    assert load_mnist().source == str(data_copy)


def test_uncompressed_files_are_accepted(data_copy):
    name = "t10k-labels-idx1-ubyte"
    gz = data_copy / f"{name}.gz"
    (data_copy / name).write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    assert len(load_mnist(data_copy).test) == 10_000


def test_corrupt_file_names_itself(data_copy):
    path = data_copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one label changed: valid gzip, wrong content
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(
        DataError, match="checksum mismatch.*t10k-labels-idx1-ubyte.gz.*git checkout"
    ):
        load_mnist(data_copy)


def test_truncated_file_names_itself(data_copy):
    path = data_copy / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*truncated or corrupt"):
        load_mnist(data_copy)


def test_missing_file_and_folder(data_copy, tmp_path):
    (data_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing MNIST file .*train-labels-idx1-ubyte"):
        load_mnist(data_copy)
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")


def test_checksums_match_the_shipped_list():
    listed = dict(
        reversed(line.split()) for line in (SHIPPED_DIR / "SHA256SUMS").read_text().splitlines()
    )
    assert listed == SHA256


def test_head_slices(mnist):
    small = mnist.head(100, 10)
    assert (len(small.train), len(small.val), len(small.test)) == (100, 10, 10)
    with pytest.raises(ValueError, match="split"):
        mnist.split("validation")


@pytest.mark.parametrize("n", [0, -5, 2.5, True])
def test_head_refuses_counts_that_are_not_positive_integers(mnist, n):
    with pytest.raises(ValueError, match="n_train"):
        mnist.head(n)
    with pytest.raises(ValueError, match="must be a positive integer"):
        mnist.train.head(n)


def test_as_split_takes_every_form_and_names_bad_ones():
    x, y = torch.rand(10, 3), torch.arange(10)
    for form in ((x, y), TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=3)):
        split = as_split(form)
        assert torch.equal(split.x, x) and torch.equal(split.y, y)
    with pytest.raises(ValueError, match="val is empty"):
        as_split((x[:0], y[:0]), "val")
    with pytest.raises(ValueError, match="same N"):
        as_split((x, y[:3]))
    with pytest.raises(ValueError, match="data must be an"):
        as_split([x, y, y])
