"""The rough edges a new user hit: each bad input is named with its fix, and what a Pyro or
torch user writes works. Each test failed on the library before its fix."""

import functools
import gzip
import shutil
import sys
import warnings
import zlib

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from pyro_bnn import BNN, BayesianMLP, DataError, fit_stack, fit_svi, fit_torch, make_guide
from pyro_bnn.artifacts import (
    load_artifact,
    load_bnn,
    load_checkpoint,
    save_artifact,
    save_bnn,
    save_checkpoint,
)
from pyro_bnn.data import SHIPPED_DIR, Split, load_mnist
from tests.conftest import toy_mnist

MISSING = ["gpu0", f"cuda:{torch.cuda.device_count()}"]  # unknown; one GPU past the last
if not torch.cuda.is_available():
    MISSING.append("cuda")


@pytest.mark.parametrize("device", MISSING)
def test_a_device_this_machine_lacks_is_named_with_those_it_has(device):
    data = toy_mnist(n_train=16, n_eval=8).train
    match = rf"device must be one this machine has \(cpu.*\), got '{device}'"
    with pytest.raises(ValueError, match=match):
        fit_torch(nn.Linear(784, 10), data, device=device, progress=False)
    bnn = BayesianMLP((10,))
    guide = make_guide("softplus-normal", bnn)
    for engine in ("pyro", "stack"):
        with pytest.raises(ValueError, match=match):
            fit_svi(bnn, guide, data, device=device, engine=engine, progress=False)
    with pytest.raises(ValueError, match=match):
        fit_stack([bnn], [guide], data, device=device, progress=False)


def test_a_gz_with_one_flipped_byte_names_the_file_and_the_fix(tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(SHIPPED_DIR, folder)
    path = folder / "train-images-idx3-ubyte.gz"
    path.chmod(0o644)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF  # inside the deflate stream: zlib fails before any checksum
    path.write_bytes(bytes(raw))
    with pytest.raises(zlib.error):
        gzip.decompress(bytes(raw))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*corrupt.*git checkout"):
        load_mnist(folder)


def _damage(path, how):
    raw = bytearray(path.read_bytes())
    if how == "truncated":
        del raw[len(raw) // 2 :]
    else:
        raw[0] ^= 0xFF  # the zip header's first byte
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_a_damaged_checkpoint_artifact_or_saved_bnn_names_the_file(tmp_path, how):
    save_checkpoint(tmp_path / "ckpt.pt", {"epoch": 3, "w": torch.randn(100)})
    _damage(tmp_path / "ckpt.pt", how)
    with pytest.raises(DataError, match="ckpt.pt.*delete it to start afresh"):
        load_checkpoint(tmp_path / "ckpt.pt")
    with pytest.raises(DataError, match="ckpt.pt"):  # a fit resuming from it says the same
        fit_torch(
            nn.Linear(784, 10),
            toy_mnist(16, 8).train,
            checkpoint=tmp_path / "ckpt.pt",
            progress=False,
        )

    save_artifact(tmp_path / "art", {"r": torch.randn(100)}, {"steps": 1})
    _damage(tmp_path / "art" / "tensors.pt", how)
    with pytest.raises(DataError, match=r"art/tensors.pt.*delete .*art to compute it again"):
        load_artifact(tmp_path / "art")
    (tmp_path / "art" / "meta.json").write_text('{"config": ')
    with pytest.raises(DataError, match=r"art/meta.json.*delete"):
        load_artifact(tmp_path / "art")

    bnn = BayesianMLP((5,), in_features=4)
    save_bnn(tmp_path / "bnn", bnn, make_guide("softplus-normal", bnn))
    _damage(tmp_path / "bnn" / "bnn.pt", how)
    with pytest.raises(DataError, match="bnn/bnn.pt.*save the BNN again"):
        load_bnn(tmp_path / "bnn")


def _fitted_mean(optimizer, engine):
    pyro.clear_param_store()
    bnn = BayesianMLP((10,))
    guide = make_guide("softplus-normal", bnn)
    data = toy_mnist(n_train=128, n_eval=32)
    fit_svi(bnn, guide, data, optimizer=optimizer, engine=engine, max_epochs=2, progress=False)
    return guide.median()["weights"]


@pytest.mark.parametrize("engine", ["pyro", "stack"])
def test_fit_svi_takes_a_pyro_optimiser_as_the_torch_one_it_wraps(engine):
    torch_adam = _fitted_mean(functools.partial(torch.optim.Adam, lr=1e-2), engine)
    pyro_adam = _fitted_mean(pyro.optim.Adam({"lr": 1e-2}), engine)
    assert torch.equal(pyro_adam, torch_adam)


def test_a_pyro_optimiser_it_cannot_take_points_to_torch_optim():
    bnn = BayesianMLP((10,))
    guide = make_guide("softplus-normal", bnn)
    clipped = pyro.optim.Adam({"lr": 1e-2}, {"clip_norm": 1.0})
    match = r"torch\.optim.*functools\.partial\(torch\.optim\.Adam, lr=1e-2\)"
    with pytest.raises(ValueError, match=match):
        fit_svi(bnn, guide, toy_mnist(16, 8), optimizer=clipped, progress=False)


class Stream(IterableDataset):
    """Minibatches of 32 streamed in order, with no len()."""

    def __init__(self, split):
        self.split = split

    def __iter__(self):
        for i in range(0, len(self.split), 32):
            yield self.split.x[i : i + 32], self.split.y[i : i + 32]


def test_a_dataloader_over_an_iterable_dataset_trains():
    data = toy_mnist(n_train=256, n_eval=64)
    stream = DataLoader(Stream(data.train), batch_size=None)
    net = nn.Linear(784, 10)
    adam = functools.partial(torch.optim.Adam, lr=1e-2)
    result = fit_torch(net, stream, val=data.val, optimizer=adam, max_epochs=3, progress=False)
    assert result.epochs == 3 and result.best_val > 0.5  # chance is 0.1
    bnn = BayesianMLP((10,))
    guide = make_guide("softplus-normal", bnn)
    with pytest.raises(ValueError, match="IterableDataset.*pass num_data="):
        fit_svi(bnn, guide, stream, progress=False)
    result = fit_svi(
        bnn,
        guide,
        stream,
        val=data.val,
        num_data=256,
        optimizer=adam,
        max_epochs=3,
        patience=None,
        progress=False,
    )
    assert result.epochs == 3 and result.best_val > 0.5
    empty = DataLoader(Stream(Split(data.train.x[:0], data.train.y[:0])), batch_size=None)
    with pytest.raises(ValueError, match="data yielded no minibatches in epoch 1"):
        fit_torch(net, empty, progress=False)


def test_a_prior_key_that_matches_no_parameter_is_named():
    prior = {"layers.9.*": dist.Normal(0.0, 1.0), "*": dist.Normal(0.0, 0.1)}
    with pytest.raises(ValueError, match=r"'layers\.9\.\*'.*match no parameter.*layers\.1\.bias"):
        BayesianMLP("FC-20-10", prior=prior)


@pytest.mark.parametrize("bad", [dist.Gamma(1.0, 1.0), dist.Uniform(-1.0, 1.0)], ids=str)
def test_a_prior_off_the_real_line_is_refused_at_construction(bad):
    name = type(bad).__name__
    with pytest.raises(ValueError, match=rf"^prior must have the whole real line.*{name}"):
        BayesianMLP((10,), prior=bad)
    with pytest.raises(ValueError, match=rf"prior for 'layers.0.weight' must .*{name}"):
        BayesianMLP((10,), prior={"layers.0.weight": bad, "*": dist.Normal(0.0, 1.0)})


class MainNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x)


def test_a_net_class_from_main_warns_at_save(tmp_path, monkeypatch):
    monkeypatch.setattr(MainNet, "__module__", "__main__")  # as if defined in a script
    monkeypatch.setattr(sys.modules["__main__"], "MainNet", MainNet, raising=False)
    bnn = BNN(MainNet(), input_shape=(4,))
    guide = make_guide("softplus-normal", bnn)
    with pytest.warns(UserWarning, match="MainNet is defined in __main__.*importable module"):
        save_bnn(tmp_path / "main", bnn, guide)
    load_bnn(tmp_path / "main")  # it loads here, where __main__ defines it
    monkeypatch.undo()
    bnn = BNN(MainNet(), input_shape=(4,))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # an importable class: no warning
        save_bnn(tmp_path / "module", bnn, make_guide("softplus-normal", bnn))


def test_a_float64_input_names_a_fix_that_runs():
    bnn = BNN(nn.Linear(3, 2), prior=dist.Normal(0.0, 1.0))
    x = torch.ones(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="float32") as err:
        bnn.check_x(x)
    fix = str(err.value).rsplit("use ", 1)[1]
    assert fix == "x.to(torch.float32)"
    bnn.check_x(eval(fix, {"x": x, "torch": torch}))  # the suggested call works
