"""Likelihoods: Bayesian linear regression against its closed form through the general BNN
path, every Gaussian noise model, Bernoulli, and the target checks."""

import functools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_bnn import BNN, Bernoulli, Gaussian, fit_svi, make_guide, make_likelihood, predictive
from pyro_bnn.evaluate import evaluate
from pyro_bnn.predict import sample_posterior

ADAM = functools.partial(torch.optim.Adam, lr=0.02)


def linear_data(n=200, d=3, noise=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.tensor([1.5, -2.0, 0.5])[:d]
    return x, x @ w + 0.7 + noise * torch.randn(n, generator=g)


def test_bayesian_linear_regression_matches_the_closed_form_posterior():
    """nn.Linear with N(0, 1) priors and known noise: the exact posterior is Gaussian, and a
    mean-field guide recovers its mean and (for a near-diagonal posterior) its variances."""
    x, y = linear_data()
    sigma = 0.3
    bnn = BNN(nn.Linear(3, 1), prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(sigma))
    guide = make_guide("softplus-normal", bnn, rho_init=-3.0)
    fit_svi(
        bnn,
        guide,
        (x, y),
        optimizer=ADAM,
        batch_size=200,
        max_epochs=1500,
        num_particles=8,
        progress=False,
    )
    design = torch.cat([x, torch.ones(len(x), 1)], 1).double()  # weights then bias
    precision = torch.eye(4, dtype=torch.float64) + design.T @ design / sigma**2
    cov = torch.linalg.inv(precision)
    mean = cov @ design.T @ y.double() / sigma**2
    loc = guide.median()["weights"].double()  # flat order: weight (1, 3), then bias (1,)
    torch.testing.assert_close(loc, mean, atol=0.01, rtol=0)
    # mean-field variance is 1 / the precision's diagonal
    sd = guide.scales()["weights"].double()
    torch.testing.assert_close(sd, precision.diagonal().rsqrt(), atol=0.004, rtol=0.15)


@pytest.mark.parametrize("scale", [0.5, "learned", "heteroskedastic"])
def test_gaussian_noise_models_fit_the_noise(scale):
    x, y = linear_data(n=400, noise=0.5, seed=1)
    lik = Gaussian(scale)
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, lik.out_features))
    bnn = BNN(net, prior=dist.Normal(0.0, 0.5), likelihood=lik)
    guide = make_guide("softplus-normal", bnn, rho_init=-4.0)
    val = (x[:100], y[:100])  # validation scores RMSE, with every latent site drawn
    result = fit_svi(
        bnn,
        guide,
        (x, y),
        val=val,
        optimizer=ADAM,
        batch_size=100,
        max_epochs=300,  # the learned noise falls from exp(0) = 1: at 100 epochs still 0.77
        patience=None,
        progress=False,
    )
    assert result.monitor == "val_rmse" and result.best_val < 0.65
    pyro.set_rng_seed(0)
    samples = sample_posterior(bnn, guide, 50)
    loc, sd = predictive(bnn, samples, x)
    assert loc.shape == sd.shape == (50, 400)
    assert (loc.mean(0) - y).square().mean().sqrt() < 0.65  # noise sd 0.5; y's sd is 2.6
    if scale != 0.5:  # the noise it learned, from exp(0) = 1 (learned) or ~0.7 at the start
        assert 0.4 < sd.mean().item() < 0.75
    if scale == "learned":
        assert samples["log_scale"].shape == (50,)
    row = evaluate(lambda inp: predictive(bnn, samples, inp), x, y)
    assert row["rmse"] < 0.65 and row["coverage_95"] > 0.85


def test_bernoulli_classifies_and_predicts_two_columns():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 2, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    bnn = BNN(nn.Linear(2, 1), prior=dist.Normal(0.0, 3.0), likelihood="bernoulli")
    guide = make_guide("softplus-normal", bnn)
    adam = functools.partial(torch.optim.Adam, lr=0.05)
    fit_svi(bnn, guide, (x, y), optimizer=adam, max_epochs=100, progress=False)
    probs = predictive(bnn, sample_posterior(bnn, guide, 20), x)
    assert probs.shape == (20, 300, 2)
    assert (
        evaluate(lambda inp: predictive(bnn, sample_posterior(bnn, guide, 20), inp), x, y)["acc"]
        > 0.95
    )


@pytest.mark.parametrize(
    "likelihood, y, match",
    [
        ("categorical", torch.full((8,), 3), "labels in"),
        ("categorical", torch.rand(8), "int64"),
        ("bernoulli", torch.full((8,), 2), "binary"),
        (Gaussian(1.0), torch.zeros(8, dtype=torch.long), "float"),
        (Gaussian(1.0), torch.full((8,), float("nan")), "NaN"),
    ],
)
def test_bad_targets_name_y(likelihood, y, match):
    k = 3 if likelihood == "categorical" else 1
    bnn = BNN(nn.Linear(2, k), likelihood=likelihood)
    guide = make_guide("softplus-normal", bnn)
    with pytest.raises(ValueError, match=f"y.*{match}|{match}.*"):
        fit_svi(bnn, guide, (torch.rand(8, 2), y), max_epochs=1, progress=False)


def test_likelihood_settings_are_checked():
    with pytest.raises(ValueError, match="likelihood must be"):
        make_likelihood("poisson")
    with pytest.raises(ValueError, match="scale"):
        Gaussian(-1.0)
    with pytest.raises(ValueError, match="scale"):
        Gaussian("learnt")
    bnn = BNN(nn.Linear(2, 1), likelihood=Gaussian("heteroskedastic"))  # needs 2 outputs
    with pytest.raises(ValueError, match="2 net output"):
        fit_svi(
            bnn,
            make_guide("softplus-normal", bnn),
            (torch.rand(4, 2), torch.rand(4)),
            progress=False,
        )
    assert math.isclose(Gaussian(0.2).scale, 0.2)
    assert isinstance(make_likelihood(Bernoulli()), Bernoulli)
