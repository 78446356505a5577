"""fit_csghmc and its preconditioner against the closed-form posterior of Bayesian linear
regression."""

import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_bnn import BNN, Gaussian
from pyro_bnn.predict import posterior_mean
from pyro_bnn.sgmcmc import fisher_scale, fit_csghmc
from tests.test_likelihoods import linear_data


def test_csghmc_draws_the_closed_form_posterior_of_bayesian_linear_regression():
    """Minibatches of 50 of 200 points, 4 cycles of 100 epochs, draws from each cycle's
    second half: the draws' mean is within 0.35 posterior sd of the exact mean and their
    sd within 25% of the exact sd (measured: within 0.2 sd and 8-20%)."""
    x, y = linear_data()
    sigma = 0.3
    bnn = BNN(nn.Linear(3, 1), prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(sigma))
    guide, result = fit_csghmc(bnn, (x, y), num_cycles=4, epochs_per_cycle=100,
                               sample_fraction=0.5, lr=0.02, batch_size=50,
                               progress=False)  # fmt: skip
    design = torch.cat([x, torch.ones(len(x), 1)], 1).double()  # weights then bias
    cov = torch.linalg.inv(torch.eye(4, dtype=torch.float64) + design.T @ design / sigma**2)
    mean = cov @ design.T @ y.double() / sigma**2
    sd = cov.diagonal().sqrt()
    draws = result.samples["weights"].double()
    assert draws.shape == (4 * 50, 4) and result.cycle.tolist() == sorted([0, 1, 2, 3] * 50)
    assert ((draws.mean(0) - mean).abs() < 0.35 * sd).all()
    assert ((draws.std(0) / sd - 1).abs() < 0.25).all()
    torch.testing.assert_close(posterior_mean(bnn, guide).double(), draws.mean(0))
    assert result.settings["n_data"] == 200 and result.wall_time_s > 0


@pytest.mark.parametrize(
    "bad, match",
    [({"num_cycles": 0}, "num_cycles"), ({"friction": 0.0}, "friction"),
     ({"sample_fraction": 1.5}, "sample_fraction"), ({"lr": -1.0}, "lr"),
     ({"sample_fraction": 0.5, "noise_fraction": 0.25}, "noise_fraction"),
     ({"scale": {"bias": torch.ones(1)}}, "does not sample: \\['bias'\\]"),
     ({"scale": torch.zeros(4)}, "scale\\['weights'\\] must be finite and > 0"),
     ({"scale": torch.ones(3)}, "shape \\(3,\\), which does not broadcast")],
)  # fmt: skip
def test_bad_settings_name_the_argument(bad, match):
    bnn = BNN(nn.Linear(1, 2), prior=dist.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match=match):
        fit_csghmc(bnn, (torch.ones(4, 1), torch.ones(4, dtype=torch.long)), **bad)


def test_each_cycle_keeps_the_last_fraction_of_its_epochs():
    """0.9 of 10 epochs is 9 draws per cycle, though 1 - 0.9 is a hair under 0.1."""
    bnn = BNN(nn.Linear(1, 2), prior=dist.Normal(0.0, 1.0))
    data = (torch.randn(8, 1), torch.randint(0, 2, (8,)))
    for fraction, kept in ((0.9, 9), (0.1, 1), (0.01, 1)):
        _, result = fit_csghmc(bnn, data, num_cycles=2, epochs_per_cycle=10, lr=0.01,
                               sample_fraction=fraction, batch_size=8, progress=False)  # fmt: skip
        assert result.cycle.tolist() == [0] * kept + [1] * kept


def test_noise_throughout_keeps_the_weights_no_datum_constrains_at_their_prior():
    """Eight weights on inputs that are always 0: their posterior is the prior N(0, 1).
    Noise in the sampling half alone lets the noiseless half shrink them (RMS over the draws
    measured 0.53-0.59 over 3 seeds); noise throughout keeps them near 1 (measured 1.05-1.26)."""
    torch.manual_seed(0)
    x, y = torch.zeros(200, 8), 1 + 0.3 * torch.randn(200)
    rms = {}
    for noise in (None, 1.0):
        bnn = BNN(nn.Linear(8, 1), prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(0.3))
        _, result = fit_csghmc(bnn, (x, y), num_cycles=4, epochs_per_cycle=100,
                               sample_fraction=0.5, noise_fraction=noise, lr=0.2,
                               batch_size=50, progress=False)  # fmt: skip
        rms[noise] = float(result.samples["weights"][:, :8].pow(2).mean().sqrt())
        assert result.settings["noise_fraction"] == (noise or 0.5)
    assert rms[None] < 0.7
    assert 0.75 < rms[1.0] < 1.35


def test_a_fisher_preconditioner_lets_the_weights_no_datum_pins_spread_as_fast_as_the_rest():
    """One input pins its weight and the bias (posterior sd 0.02); eight inputs are always
    0, so their weights' posterior is the prior N(0, 1). Unpreconditioned, the step size
    the pinned weights allow moves the free ones so slowly that within the chain they
    spread to about 0.6 of their sd; with fisher_scale, about 1 at the same cost, the
    pinned ones still drawn within their sd (measured over seeds 0-5: 0.54-0.67 against
    0.93-1.13; the pinned means within 0.8 sd, their sd within 0.6-1.45x)."""
    torch.manual_seed(0)
    n, sigma, k = 200, 0.3, 8
    x = torch.cat([torch.randn(n, 1), torch.zeros(n, k)], 1)
    y = 0.5 * x[:, 0] + 0.2 + sigma * torch.randn(n)
    design = torch.cat([x, torch.ones(n, 1)], 1).double()  # weights then bias
    cov = torch.linalg.inv(torch.eye(k + 2, dtype=torch.float64) + design.T @ design / sigma**2)
    mean = cov @ design.T @ y.double() / sigma**2
    sd = cov.diagonal().sqrt()
    bnn = BNN(nn.Linear(k + 1, 1), prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(sigma))
    scale = fisher_scale(bnn, (x, y), mean.float(), chunk_size=64)
    assert torch.equal(scale[1 : k + 1], torch.ones(k))  # no datum: the prior's sd
    assert ((scale[[0, k + 1]].double() / sd[[0, k + 1]] - 1).abs() < 0.15).all()
    spread, pinned = {}, [0, k + 1]
    for label, s, lr in (("none", None, 0.04), ("fisher", scale, 4.0)):
        _, result = fit_csghmc(bnn, (x, y), num_cycles=4, epochs_per_cycle=100,
                               sample_fraction=0.5, noise_fraction=1.0, lr=lr, batch_size=50,
                               scale=s, progress=False)  # fmt: skip
        draws = result.samples["weights"].double()  # (draws, P), one chain
        spread[label] = float(draws[:, 1 : k + 1].var(0).mean().sqrt())
        assert ((draws.mean(0) - mean)[pinned].abs() < 0.8 * sd[pinned]).all(), label
        assert ((draws.std(0)[pinned] / sd[pinned] - 1).abs() < 0.5).all(), label
        assert result.settings["preconditioned"] == (s is not None)
    assert spread["none"] < 0.75
    assert 0.85 < spread["fisher"] < 1.2


def test_fisher_scale_names_what_it_cannot_cover():
    bnn = BNN(nn.Linear(2, 1), prior=dist.Normal(0.0, 1.0), likelihood=Gaussian("learned"))
    data = (torch.randn(4, 2), torch.randn(4))
    with pytest.raises(ValueError, match="also samples \\['log_scale'\\]"):
        fisher_scale(bnn, data, torch.zeros(3))
    bnn = BNN(nn.Linear(2, 1), prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(0.5))
    with pytest.raises(ValueError, match="weights must have shape \\(3,\\)"):
        fisher_scale(bnn, data, torch.zeros(4))
