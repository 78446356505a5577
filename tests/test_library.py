"""The library as a new user meets it: no global state, standard Pyro SVI, any data, any
optimiser, any net, save/load, and bad input named. Each test failed on the study-only
library this replaced."""

import functools
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoLowRankMultivariateNormal
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pyro_bnn import (
    BNN,
    BayesianMLP,
    ScaleMixtureNormal,
    as_probs,
    ensemble_fn,
    evaluate,
    fit_svi,
    fit_torch,
    init_guide,
    make_guide,
    predictive_probs,
    sample_weights,
)
from pyro_bnn.artifacts import save_bnn

ROOT = Path(__file__).resolve().parents[1]
ADAM = functools.partial(torch.optim.Adam, lr=0.01)


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True
    )


def test_import_changes_no_pyro_setting_and_a_plain_model_keeps_training():
    out = python(
        """
        import pyro, pyro.distributions as dist, torch
        from pyro.infer import SVI, Trace_ELBO
        from pyro.infer.autoguide import AutoNormal
        from pyro.nn import PyroModule, PyroSample

        class Reg(PyroModule):
            def __init__(self):
                super().__init__()
                self.lin = PyroModule[torch.nn.Linear](2, 1)
                self.lin.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 2]).to_event(2))
            def forward(self, x, y=None):
                mean = self.lin(x).squeeze(-1)
                with pyro.plate("data", len(x)):
                    return pyro.sample("obs", dist.Normal(mean, 1.0), obs=y)

        model = Reg(); guide = AutoNormal(model)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
        x, y = torch.randn(20, 2), torch.randn(20)
        svi.step(x, y)
        before = pyro.settings.get()
        import pyro_bnn
        assert pyro.settings.get() == before, (before, pyro.settings.get())
        svi.step(x, y)
        print("ok", len(pyro.get_param_store()))
        """
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")


def test_paper_guide_under_standard_pyro_svi_and_pyro_optim():
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    bnn = BayesianMLP((8, 3), in_features=4)
    guide = make_guide("softplus-normal", bnn, rho_init=-3.0)
    svi = SVI(bnn, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    losses = [svi.step(x, y) for _ in range(60)]
    assert sum(losses[-10:]) < sum(losses[:10])
    assert "AutoSoftplusNormal.locs.weights" in pyro.get_param_store()


def test_two_bnns_in_one_process_keep_their_own_parameters(small):
    data = small.head(500, 200)
    guides = []
    for rho in (-3.0, -1.0):
        bnn = BayesianMLP((20, 10))
        guide = make_guide("softplus-normal", bnn, rho_init=rho)
        fit_svi(bnn, guide, data, max_epochs=1, progress=False)
        guides.append(guide)
    a, b = (g.scales()["weights"].mean().item() for g in guides)
    assert a < 0.06 < 0.25 < b  # softplus(-3) = 0.049, softplus(-1) = 0.31
    assert len(pyro.get_param_store()) == 0  # fit_svi kept them on the guides


@pytest.mark.parametrize("form", ["tuple", "split", "tensor-dataset", "dataset", "loader"])
def test_fit_takes_any_data_form_and_optimiser(form, small):
    x, y = small.train.x, small.train.y

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return x[i], y[i]

    data = {
        "tuple": (x, y),
        "split": small.train,
        "tensor-dataset": TensorDataset(x, y),
        "dataset": Pairs(),
        "loader": DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True),
    }[form]
    bnn = BayesianMLP((16, 10))
    guide = make_guide("softplus-normal", bnn)
    result = fit_svi(
        bnn,
        guide,
        data,
        val=(small.val.x, small.val.y),
        optimizer=ADAM,
        max_epochs=3,
        patience=None,
        progress=False,
    )
    assert result.epochs == 3 and result.best_val > 0.4  # chance is 0.1
    net = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    plain = fit_torch(net, data, optimizer=ADAM, max_epochs=3, progress=False)
    assert plain.best_val is None and plain.epochs == 3  # no validation data: no stopping
    assert evaluate(as_probs(net), small.val.x, small.val.y)["acc"] > 0.7


class LeNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5)
        self.fc = nn.Linear(4 * 12 * 12, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x.view(-1, 1, 28, 28)))
        return self.fc(torch.max_pool2d(h, 2).flatten(1))


def test_a_cnn_becomes_bayesian_with_per_parameter_priors(small):
    prior = {"conv.*": dist.Normal(0.0, 0.5), "*": ScaleMixtureNormal()}
    bnn = BNN(LeNetish(), prior=prior)
    assert bnn.num_params == 4 * 25 + 4 + 4 * 144 * 10 + 10
    guide = make_guide("softplus-normal", bnn, rho_init=-5.0)
    fit_svi(bnn, guide, small.head(1000, 300), optimizer=ADAM, max_epochs=3, progress=False)
    acc = evaluate(ensemble_fn(bnn, guide, size=5, runs=2), small.test.x, small.test.y)["acc"]
    assert acc > 0.5  # chance is 0.1; examples/cnn_mnist.py trains it to > 99 %
    w = sample_weights(bnn, guide, 3)  # the vmap path: 3 weight samples in one call
    probs = predictive_probs(bnn, w, small.test.x[:10])
    assert probs.shape == (3, 10, 10)
    for s in range(3):  # ... equals running the net with each sample's weights
        net = LeNetish()
        net.load_state_dict(bnn.unflatten(w[s]))
        torch.testing.assert_close(probs[s], net(small.test.x[:10]).softmax(-1))


def test_save_then_load_in_a_fresh_process_predicts_identically(tmp_path, small):
    bnn = BNN(LeNetish(), likelihood="categorical")
    guide = make_guide("softplus-normal", bnn, rho_init=-4.0)
    fit_svi(bnn, guide, small.head(300, 100), optimizer=ADAM, max_epochs=1, progress=False)
    save_bnn(tmp_path / "cnn", bnn, guide, note="test")
    size = sum(p.stat().st_size for p in (tmp_path / "cnn").iterdir())
    assert size < 2 * 4 * (3 * bnn.num_params) + 100_000  # guide (2P) + net (P): no data
    pyro.set_rng_seed(7)
    here = predictive_probs(bnn, sample_weights(bnn, guide, 4), small.test.x[:20])
    torch.save(small.test.x[:20], tmp_path / "x.pt")
    out = python(
        f"""
        import pyro, torch
        from pyro_bnn.artifacts import load_bnn
        from pyro_bnn import predictive_probs, sample_weights
        from tests.test_library import LeNetish  # the net's class must be importable
        bnn, guide = load_bnn({str(tmp_path / "cnn")!r})
        pyro.set_rng_seed(7)
        x = torch.load({str(tmp_path / "x.pt")!r})
        probs = predictive_probs(bnn, sample_weights(bnn, guide, 4), x)
        torch.save(probs, {str(tmp_path / "p.pt")!r})
        """
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert torch.equal(torch.load(tmp_path / "p.pt"), here)


def test_an_unpicklable_prior_says_what_to_do(tmp_path):
    class Local(dist.Normal):  # defined in a function: pickle cannot find it
        pass

    bnn = BayesianMLP((5,), in_features=4, prior=Local(0.0, 1.0))
    with pytest.raises(ValueError, match="cannot be saved.*module-level"):
        save_bnn(tmp_path / "x", bnn, make_guide("softplus-normal", bnn))
    assert not (tmp_path / "x").exists()


def test_guides_hold_no_data_and_load_into_fresh_guides(small):
    bnn = BayesianMLP((100, 100, 10))
    guide = make_guide("softplus-normal", bnn)
    fit_svi(bnn, guide, small, max_epochs=1, progress=False)
    guide(small.train.x[:128], small.train.y[:128])  # the obvious warm-up call is harmless
    assert len(pickle.dumps(guide)) < 3 * 4 * 2 * bnn.num_params  # ~0.7 MB, not 190 MB
    fresh = make_guide("softplus-normal", BayesianMLP((100, 100, 10)))
    fresh.load_state_dict(guide.state_dict())
    torch.testing.assert_close(fresh.median()["weights"], guide.median()["weights"])


def test_builders_passed_as_callables_get_the_named_initialisation():
    bnn = BayesianMLP((6, 3), in_features=4)
    pyro.set_rng_seed(0)
    named = make_guide("lowrank", bnn, rank=2)
    init_guide(bnn, named)
    pyro.set_rng_seed(0)
    built = make_guide(functools.partial(AutoLowRankMultivariateNormal, rank=2), bnn)
    init_guide(bnn, built)
    torch.testing.assert_close(built.loc, named.loc)  # truncated normal, not init_to_median
    torch.testing.assert_close(built.scale, named.scale)  # softplus(-3), not 0.1


@pytest.mark.parametrize(
    "x, weights, match",
    [
        (torch.rand(5, 783), None, r"x must have shape \(N, 784\)"),
        (torch.rand(784), None, "x must have shape"),
        (torch.full((5, 784), float("nan")), None, "x contains NaN"),
        (torch.rand(5, 784).double(), None, "float32"),
        (torch.rand(5, 784), torch.zeros(0, 7960), "weights must be"),
        (torch.rand(0, 784), None, "x is empty"),
    ],
)
def test_predictive_probs_names_bad_input(x, weights, match):
    bnn = BayesianMLP((10,))
    w = torch.zeros(2, bnn.num_params) if weights is None else weights
    with pytest.raises(ValueError, match=match):
        predictive_probs(bnn, w, x)


def test_predictive_takes_what_pyro_predictive_returns():
    bnn = BayesianMLP((10,))
    guide = make_guide("softplus-normal", bnn)
    init_guide(bnn, guide)
    w = pyro.infer.Predictive(bnn, guide=guide, num_samples=3, return_sites=["weights"])(
        torch.rand(1, 784)
    )["weights"]
    assert w.shape == (3, 1, bnn.num_params)
    assert predictive_probs(bnn, w, torch.rand(4, 784)).shape == (3, 4, 10)


def test_bad_data_and_guide_arguments_are_named():
    bnn = BayesianMLP((10,))
    guide = make_guide("softplus-normal", bnn)
    x, y = torch.rand(4, 784), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="data is empty"):
        fit_svi(bnn, guide, (x[:0], y[:0]), progress=False)
    with pytest.raises(ValueError, match="val is empty"):
        fit_svi(bnn, guide, (x, y), val=(x[:0], y[:0]), progress=False)
    with pytest.raises(ValueError, match="takes no argument rho_init"):
        make_guide("delta", bnn, rho_init=-3.0)
    with pytest.raises(ValueError, match="optimizer must be a factory"):
        fit_svi(bnn, guide, (x, y), optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)]))
    with pytest.raises(ValueError, match="net must be a torch nn.Module"):
        BNN(lambda v: v)
