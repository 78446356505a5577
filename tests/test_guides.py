import functools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro.infer.autoguide import AutoNormal

from pyro_bnn.bnn import BayesianMLP, DatapointELBO, init_guide
from pyro_bnn.guides import (
    AutoSoftplusNormal,
    SoftplusNormal,
    init_to_net,
    init_to_truncated_normal,
    make_guide,
)
from pyro_bnn.nets import MLP
from pyro_bnn.predict import predictive, sample_weights


def test_softplus_normal_matches_textbook_density_and_gradients():
    loc = torch.randn(2, 3, requires_grad=True)
    rho = torch.randn(2, 3, requires_grad=True)
    q = SoftplusNormal(loc, rho, event_dim=2).expand([4])
    w = q.rsample()
    assert w.shape == (4, 2, 3) and q.log_prob(w).shape == (4,)
    ours = q.log_prob(w).sum() + w.sin().sum()
    g_ours = torch.autograd.grad(ours, (loc, rho), retain_graph=True)
    ref = dist.Normal(loc, F.softplus(rho)).log_prob(w).sum() + w.sin().sum()
    g_ref = torch.autograd.grad(ref, (loc, rho))
    torch.testing.assert_close(ours, ref)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    other = torch.randn(4, 2, 3)  # a value it did not draw takes the textbook path
    torch.testing.assert_close(
        q.log_prob(other), dist.Normal(loc, F.softplus(rho)).log_prob(other).sum((-1, -2))
    )


def kl_estimate(model, guide, x, y, particles):
    elbo = DatapointELBO(1, num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    elbo.differentiable_loss(model, guide, x, y, num_data=1)
    return elbo.parts["kl"].item()


def test_monte_carlo_kl_converges_to_closed_form():
    model = BayesianMLP((4, 3), in_features=5, prior=dist.Normal(0.0, 1.0))
    guide = make_guide("softplus-normal", model, rho_init=-1.0)
    init_guide(model, guide)
    q = dist.Normal(guide.locs.weights.detach(), F.softplus(guide.rhos.weights).detach())
    exact = torch.distributions.kl_divergence(q, dist.Normal(0.0, 1.0)).sum().item()
    x, y = torch.rand(1, 5), torch.tensor([0])
    errors = {}
    for k in (4, 4000):
        estimates = [kl_estimate(model, guide, x, y, k) for _ in range(5)]
        errors[k] = sum(abs(e - exact) for e in estimates) / 5 / exact
    assert errors[4000] < 0.01
    assert errors[4000] < errors[4] / 5  # error shrinks roughly like 1 / sqrt(k)


def test_svi_recovers_bayesian_linear_regression_posterior():
    """Orthogonal design: the exact posterior factorises, so mean-field VI is exact."""
    torch.manual_seed(0)
    n, sigma, prior_sd = 200, 0.5, 1.0
    q, _ = torch.linalg.qr(torch.randn(n, 3))
    X = q * torch.tensor([3.0, 5.0, 8.0])
    y = X @ torch.tensor([1.0, -0.5, 0.25]) + sigma * torch.randn(n)

    def model(X, y):
        w = pyro.sample("w", dist.Normal(0.0, prior_sd).expand([3]).to_event(1))
        with pyro.plate("data", n):
            pyro.sample("y", dist.Normal((X * w).sum(-1), sigma), obs=y)

    precision = 1 / prior_sd**2 + (X**2).sum(0) / sigma**2
    post_mean = (X.T @ y) / sigma**2 / precision
    post_sd = precision.rsqrt()

    guide = AutoSoftplusNormal(model, rho_init=-3.0)
    elbo = DatapointELBO(n, num_particles=16, vectorize_particles=True, max_plate_nesting=1)
    guide(X, y)
    opt = torch.optim.Adam(guide.parameters(), lr=0.03)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [600, 900], gamma=0.1)
    for _ in range(1200):
        opt.zero_grad()
        elbo.differentiable_loss(model, guide, X, y).backward()
        opt.step()
        sched.step()
    torch.testing.assert_close(
        guide.median()["w"], post_mean, atol=0.05 * post_sd.min().item(), rtol=0
    )
    torch.testing.assert_close(guide.scales()["w"], post_sd, rtol=0.05, atol=0)


def test_truncated_normal_init_uses_prior_moments():
    model = BayesianMLP((100, 10))
    guide = make_guide("softplus-normal", model, rho_init=-2.5)
    init_guide(model, guide)
    mu = guide.locs.weights.detach()
    prior_sd = math.sqrt(0.5 * math.exp(-2) + 0.5 * math.exp(-14))
    assert mu.abs().max() <= 2 * prior_sd + 1e-6  # truncated at 2 standard deviations
    assert mu.std().item() == pytest.approx(0.8796 * prior_sd, rel=0.02)  # sd of TN(0,1,[-2,2])
    assert torch.all(guide.rhos.weights == -2.5)
    torch.testing.assert_close(
        guide.scales()["weights"][:3], torch.full((3,), math.log1p(math.exp(-2.5)))
    )


def test_guide_factory_errors_and_builders():
    model = BayesianMLP((5,), in_features=4)
    with pytest.raises(ValueError, match="known guides: softplus-normal"):
        make_guide("laplace-approx", model)
    for bad in (float("nan"), -100.0):
        with pytest.raises(ValueError, match="rho_init"):
            make_guide("softplus-normal", model, rho_init=bad)
    guide = make_guide(functools.partial(AutoNormal, init_scale=0.05), model)
    init_guide(model, guide)
    assert isinstance(guide, AutoNormal)
    cauchy = BayesianMLP((5,), in_features=4, prior=dist.Cauchy(0.0, 1.0))
    init_guide(cauchy, make_guide("softplus-normal", cauchy))  # mu from the net's own init
    with pytest.raises(ValueError, match="finite mean"):
        init_guide(
            cauchy, make_guide("softplus-normal", cauchy, init_loc_fn=init_to_truncated_normal)
        )


def test_two_guides_keep_separate_parameters():
    model = BayesianMLP((5,), in_features=4)
    a, b = make_guide("normal", model), make_guide("normal", model)
    init_guide(model, a)
    init_guide(model, b)
    with torch.no_grad():
        a.locs.weights.fill_(1.0)
    assert not torch.equal(a.median()["weights"], b.median()["weights"])
    assert len(pyro.get_param_store()) == 0  # nothing in Pyro's global store


def test_init_to_net_centres_the_guide_on_a_trained_net_and_checks_its_shapes():
    net = MLP((7, 3), in_features=5)
    bnn = BayesianMLP((7, 3), in_features=5)
    params = dict(net.named_parameters())
    flat = bnn.flatten(params)  # (P,)
    assert flat.shape == (bnn.num_params,)
    for name, value in bnn.unflatten(flat).items():
        assert torch.equal(value, params[name])
    guide = make_guide("softplus-normal", bnn, rho_init=-4.0, init_loc_fn=init_to_net(bnn, net))
    init_guide(bnn, guide)
    assert torch.equal(guide.locs.weights, flat)
    assert torch.allclose(guide.rhos.weights, torch.full_like(flat, -4.0))
    x = torch.randn(6, 5)
    draws = sample_weights(bnn, guide, 4000)  # (S, P): the net's weights + N(0, softplus(-4)^2)
    noise = draws - flat
    assert abs(float(noise.std()) - F.softplus(torch.tensor(-4.0)).item()) < 2e-4
    assert abs(float(noise.mean())) < 2e-4
    torch.testing.assert_close(predictive(bnn, flat[None], x)[0], net(x).softmax(-1))
    with pytest.raises(ValueError, match="params\\['layers.0.weight'\\] must have shape"):
        init_to_net(bnn, MLP((7, 3), in_features=4))
    with pytest.raises(ValueError, match="missing \\['layers.1.bias'"):
        bnn.flatten({k: v for k, v in params.items() if k != "layers.1.bias"})


def test_mc_dropout_draws_are_the_net_on_a_dropped_out_input():
    """A draw's weights are the net's on inputs whose dropped units are zeroed and kept ones
    scaled; the mean over draws is the per-example MC dropout predictive; median() is the
    net with dropout off."""
    from pyro_bnn import MLP, BayesianMLP, MCDropout, sample_weights
    from pyro_bnn.predict import dropout_sampler, posterior_mean, sampler

    torch.manual_seed(0)
    net = MLP((6, 3), in_features=5, dropout=0.5)
    bnn = BayesianMLP((6, 3), in_features=5)
    guide = MCDropout(bnn, bnn.flatten(dict(net.named_parameters())), rate=0.5)
    x = torch.randn(4, 5)
    (w,) = sample_weights(bnn, guide, 1)  # (P,)
    params = bnn.unflatten(w)
    keep0 = params["layers.0.weight"][0] != 0  # (5,) the input units this draw kept
    keep1 = params["layers.1.weight"][0] != 0  # (6,) the hidden units it kept
    torch.testing.assert_close(params["layers.0.bias"], net.layers[0].bias)
    h = (net.layers[0](x * keep0 * 2)).relu() * keep1 * 2
    torch.testing.assert_close(bnn.apply(x, w), net.layers[1](h))
    torch.testing.assert_close(posterior_mean(bnn, guide), guide.weights)
    many = sampler(bnn, guide, ensemble=4000)(x, 1)[0]  # (4, 3) masks shared by the batch
    per_example = dropout_sampler(torch.nn.Sequential(torch.nn.Dropout(0.5), net), 4000)(x, 1)[0]
    torch.testing.assert_close(many, per_example, atol=0.03, rtol=0)  # the same predictive
    with pytest.raises(ValueError, match="rate"):
        MCDropout(bnn, guide.weights, rate=0.0)
    with pytest.raises(ValueError, match="weights"):
        MCDropout(bnn, guide.weights[:-1], rate=0.5)
