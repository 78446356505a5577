import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F

from pyro_bnn.bnn import BayesianMLP, DatapointELBO, init_guide
from pyro_bnn.guides import make_guide
from pyro_bnn.nets import MLP
from pyro_bnn.priors import ScaleMixtureNormal
from pyro_bnn.train import fit_svi, sgd
from tests.conftest import toy_mnist


def test_logits_with_sample_dims_match_the_plain_mlp():
    bnn = BayesianMLP((7, 3), in_features=5)
    weights = torch.randn(4, bnn.num_params)
    x = torch.rand(6, 5)
    logits = bnn.apply(x, weights)
    assert logits.shape == (4, 6, 3)
    for s in range(4):
        net = MLP((7, 3), in_features=5)
        net.load_state_dict(bnn.unflatten(weights[s]))
        torch.testing.assert_close(logits[s], net(x))


def test_elbo_parts_and_vectorised_particles():
    bnn = BayesianMLP((7, 3), in_features=5)
    guide = make_guide("delta", bnn)  # deterministic weights: every particle is the same
    x, y = torch.rand(8, 5), torch.randint(0, 3, (8,))
    init_guide(bnn, guide)
    losses = []
    for k in (1, 6):
        elbo = DatapointELBO(100, num_particles=k, vectorize_particles=k > 1, max_plate_nesting=1)
        losses.append(elbo.differentiable_loss(bnn, guide, x, y, num_data=100).item())
        w = guide.median()["weights"]
        ce = F.cross_entropy(bnn.apply(x, w), y)
        torch.testing.assert_close(elbo.parts["nll"], ce.detach())  # mean NLL per datapoint
        kl = -bnn.prior.log_prob(w).item() / 100  # a point mass: KL part is -log p(w) / N
        assert elbo.parts["kl"].item() == pytest.approx(kl, rel=1e-5)
        assert elbo.parts["elbo"].item() == pytest.approx(-(ce.item() + kl), rel=1e-5)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_fast_guide_equals_pyro_autonormal(small):
    """Same seed, same init: the paper's guide and AutoNormal give the same ELBO path
    under Pyro's Trace_ELBO."""
    paths = {}
    for name in ("softplus-normal", "normal"):
        pyro.set_rng_seed(0)
        bnn = BayesianMLP((20, 10))
        guide = make_guide(name, bnn, rho_init=-3.0)
        result = fit_svi(
            bnn,
            guide,
            small.head(512, 128),
            max_epochs=3,
            patience=3,
            optimizer=sgd(lr=0.01),
            progress=False,
            engine="pyro",
        )
        paths[name] = [h["elbo"] for h in result.history]
    assert paths["softplus-normal"] == pytest.approx(paths["normal"], rel=1e-4)


PRIORS = {
    "scale-mixture": ScaleMixtureNormal(),
    "normal": dist.Normal(0.0, 1.0),
    "laplace": dist.Laplace(0.0, 0.3),
    "student-t": dist.StudentT(3.0, 0.0, 0.3),
    "per-layer": {"layers.0.*": dist.Normal(0.0, 0.3), "*": ScaleMixtureNormal()},
    "callable": lambda name, shape: (
        dist.Laplace(0.0, 0.1) if "bias" in name else dist.Normal(0.0, 0.5)
    ),
}


@pytest.mark.parametrize("guide", ["softplus-normal", "normal", "lowrank", "delta"])
@pytest.mark.parametrize("prior", list(PRIORS))
def test_every_prior_with_every_guide_trains(prior, guide):
    data = toy_mnist(n_train=1024, n_eval=256)
    pyro.set_rng_seed(1)
    bnn = BayesianMLP((16, 10), prior=PRIORS[prior])
    kwargs = {} if guide == "delta" else {"rho_init": -3.0}
    q = make_guide(guide, bnn, **kwargs)
    result = fit_svi(bnn, q, data, max_epochs=8, patience=8, optimizer=sgd(lr=0.01), progress=False)
    first, last = result.history[0], result.history[-1]
    assert last["elbo"] > first["elbo"]
    assert last["nll"] < first["nll"] / 1.5


def test_every_autoguide_trains_on_real_mnist(small):
    for name in ("softplus-normal", "normal", "lowrank", "delta"):
        pyro.set_rng_seed(0)
        bnn = BayesianMLP((100, 100, 10))
        guide = make_guide(name, bnn)
        result = fit_svi(
            bnn, guide, small, max_epochs=6, patience=6, optimizer=sgd(lr=0.01), progress=False
        )
        assert result.best_val > 0.6, name


@pytest.mark.parametrize(
    "x, y, match",
    [
        (torch.rand(4, 783), None, "x must have shape"),
        (torch.randint(0, 2, (4, 784)), None, "x must be a floating-point"),
        (torch.full((4, 784), float("nan")), None, "x contains NaN"),
        (torch.rand(4, 784).double(), None, "x must be float32"),
        (torch.rand(4, 784), torch.zeros(4), "y must be an int64"),
        (torch.rand(4, 784), torch.zeros(3, dtype=torch.long), "the same N"),
        (torch.rand(4, 784), torch.tensor([0, 1, 10, 2]), r"labels in \[0, 10\)"),
        (torch.rand(4, 784), torch.tensor([0, -1, 1, 2]), r"labels in \[0, 10\)"),
    ],
)
def test_bad_inputs_name_the_argument(x, y, match):
    bnn = BayesianMLP((8, 10))
    guide = make_guide("softplus-normal", bnn)
    with pytest.raises(ValueError, match=match):
        fit_svi(
            bnn,
            guide,
            (x, torch.zeros(4, dtype=torch.long) if y is None else y),
            max_epochs=1,
            progress=False,
        )


def test_bad_data_and_settings_in_fit_svi():
    data = toy_mnist()
    bnn = BayesianMLP((8, 10))
    guide = make_guide("softplus-normal", bnn)
    bad = type(data)(type(data.train)(data.train.x.clone(), data.train.y), data.val, data.test)
    bad.train.x[3, 5] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        fit_svi(bnn, guide, bad, progress=False)
    with pytest.raises(ValueError, match="val_samples"):
        fit_svi(bnn, guide, data, val_samples=0, progress=False)
    with pytest.raises(ValueError, match="num_data"):
        bnn(torch.rand(4, 784), num_data=2)


@pytest.mark.parametrize("guide_name", ["softplus-normal", "delta"])
def test_init_guide_puts_the_guide_on_the_model_device(guide_name):
    # the prior draws on the CPU; a model on another device (here "meta", which needs no
    # GPU) must still get its guide there, as the fixed-noise control on CUDA needs
    bnn = BayesianMLP((7, 3), in_features=5).to("meta")
    guide = make_guide(guide_name, bnn)
    init_guide(bnn, guide)
    assert {p.device.type for p in guide.parameters()} == {"meta"}
