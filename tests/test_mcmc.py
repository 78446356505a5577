"""fit_mcmc against the closed-form posterior of Bayesian linear regression, and its
posterior samples as a guide through the library's decision rules."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_bnn import BNN, Gaussian, ScaleMixtureNormal, ensemble_fn, evaluate, single_sample_fn
from pyro_bnn.mcmc import (
    PosteriorSamples,
    chain_diagnostics,
    configurational_temperature,
    fit_mcmc,
    laplace,
    map_estimate,
)
from pyro_bnn.predict import mean_fn, posterior_mean, sample_posterior
from tests.test_likelihoods import linear_data


def test_nuts_draws_the_closed_form_posterior_of_bayesian_linear_regression():
    """nn.Linear with N(0, 1) priors and known noise: the exact posterior is Gaussian with
    known mean and covariance; 2 chains of 300 NUTS draws recover both, to within the
    draws' Monte Carlo error, and their R-hat is near 1."""
    x, y = linear_data()
    sigma = 0.3
    bnn = BNN(nn.Linear(3, 1), prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(sigma))
    guide, result = fit_mcmc(bnn, (x, y), num_samples=300, warmup=200, num_chains=2,
                             progress=False)  # fmt: skip
    design = torch.cat([x, torch.ones(len(x), 1)], 1).double()  # weights then bias
    cov = torch.linalg.inv(torch.eye(4, dtype=torch.float64) + design.T @ design / sigma**2)
    mean = cov @ design.T @ y.double() / sigma**2
    draws = result.samples["weights"].reshape(-1, 4).double()  # (chains * draws, P)
    assert result.samples["weights"].shape == (2, 300, 4)
    sd = cov.diagonal().sqrt()
    ess = result.ess["weights"]
    assert ess > 100 and result.r_hat["weights"] < 1.05 and sum(result.divergences) == 0
    # the sample mean within 4 Monte Carlo standard errors (sd / sqrt(ess)) of the truth
    assert ((draws.mean(0) - mean).abs() < 4 * sd / ess**0.5).all()
    torch.testing.assert_close(draws.std(0), sd, rtol=0.2, atol=0)
    summary = result.summary()
    assert summary["kernel"] == "nuts" and summary["num_chains"] == 2 and summary["n_data"] == 200
    # the guide: its mean is the draws' mean, and Predictive draws among its samples
    torch.testing.assert_close(posterior_mean(bnn, guide).double(), draws.mean(0))
    pyro.set_rng_seed(0)
    drawn = sample_posterior(bnn, guide, 50)["weights"]  # (50, 4)
    assert drawn.shape == (50, 4)
    assert all((row == draws.float()).all(-1).any() for row in drawn)


def test_posterior_samples_serve_every_decision_rule_of_a_classifier():
    """Two stored weight vectors of a 2-class linear net, one always right and one always
    wrong on x > 0: one sample per run is right half the time, their ensemble is 50/50."""
    bnn = BNN(nn.Linear(1, 2), prior=dist.Normal(0.0, 1.0))
    right = torch.tensor([-5.0, 5.0, 0.0, 0.0])  # weight (2, 1), then bias (2,)
    guide = PosteriorSamples({"weights": torch.stack([right, -right])})
    x, y = torch.ones(40, 1), torch.ones(40, dtype=torch.long)
    pyro.set_rng_seed(0)
    single = evaluate(single_sample_fn(bnn, guide, runs=400), x, y)["acc"]
    assert 0.42 < single < 0.58  # each run draws one of the two at random
    probs = ensemble_fn(bnn, guide, size=400, runs=1)(x)  # (1, 40, 2)
    assert probs.shape == (1, 40, 2) and (probs[0, :, 1] - 0.5).abs().max() < 0.1
    torch.testing.assert_close(mean_fn(bnn, guide)(x), torch.full((40, 2), 0.5))


@pytest.mark.parametrize(
    "bad, match",
    [({"num_chains": 0}, "num_chains"), ({"kernel": "gibbs"}, "kernel"),
     ({"num_samples": 3}, "num_samples must be at least 4"),
     ({"target_accept": 1.0}, "target_accept")],
)  # fmt: skip
def test_bad_settings_name_the_argument(bad, match):
    bnn = BNN(nn.Linear(1, 2), prior=dist.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match=match):
        fit_mcmc(bnn, (torch.ones(4, 1), torch.ones(4, dtype=torch.long)), **bad)
    with pytest.raises(ValueError, match="same number"):
        PosteriorSamples({"weights": torch.zeros(3, 4), "log_scale": torch.zeros(2)})


def test_chain_diagnostics_flag_chains_that_disagree():
    """Four chains of iid draws agree (split R-hat near 1, ESS near the draw count); shift
    one chain's mean and R-hat of that element rises far above 1."""
    torch.manual_seed(0)
    draws = torch.randn(4, 500, 3)  # (chains, draws, elements)
    draws[0, :, 2] += 3.0
    r_hat, ess = chain_diagnostics(draws)
    assert r_hat.shape == ess.shape == (3,)
    assert (r_hat[:2] < 1.02).all() and r_hat[2] > 1.5
    assert (ess[:2] > 1000).all() and ess[2] < 100
    with pytest.raises(ValueError, match="draws >= 4"):
        chain_diagnostics(draws[:, :3])


def test_hmc_takes_num_steps_leapfrog_steps_whatever_the_step_size():
    """kernel='hmc' costs num_steps gradients a draw: the model runs once per leapfrog step
    (plus the step-size searches of warmup), even where warmup shrinks the step size far
    below 1, where Pyro's own HMC would stretch every draw to hundreds of steps."""
    x, y = linear_data()
    bnn = BNN(nn.Linear(3, 1), prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(0.05))
    calls = []
    forward = bnn.forward
    bnn.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    _, result = fit_mcmc(bnn, (x, y), num_samples=20, warmup=20, num_chains=1, kernel="hmc",
                         num_steps=3, progress=False)  # fmt: skip
    assert result.settings["num_steps"] == 3
    assert len(calls) < 40 * (3 + 1) + 200  # draws x (steps + the energy) + the searches


def _correlated_classification(n: int = 300):
    """3 classes from a softmax of 4 strongly correlated features: a posterior whose
    weights are correlated, as FC-10's on neighbouring pixels are."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(n, 1, generator=g)
    x = base + 0.1 * torch.randn(n, 4, generator=g)  # (n, 4), correlation ~0.99
    logits = x @ torch.tensor([[2.0, -1.0, 0.0, 1.0]] * 3).T * torch.tensor([1.0, -1.0, 0.5])
    return x, torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(1)


def test_laplace_is_the_mode_and_inverse_hessian_of_the_potential():
    """The mode zeroes the gradient of Pyro's own potential (-log joint), and the covariance
    is the inverse of that potential's Hessian, computed by autograd apart; chunking the
    data leaves both unchanged."""
    from pyro.infer.mcmc.util import initialize_model

    x, y = _correlated_classification()
    bnn = BNN(nn.Linear(4, 3), prior=dist.Normal(0.0, 1.0))
    mode, cov = laplace(bnn, (x, y))
    _, potential, _, _ = initialize_model(bnn, model_args=(x, y), max_plate_nesting=1)
    at = mode.float().requires_grad_(True)
    (grad,) = torch.autograd.grad(potential({"weights": at}), at)
    assert grad.abs().max() < 1e-2  # float32 L-BFGS; the gradient at 0 is ~100
    hessian = torch.autograd.functional.hessian(
        lambda w: potential({"weights": w}), mode.float()
    ).double()
    torch.testing.assert_close(cov, torch.linalg.inv(hessian), rtol=1e-2, atol=1e-5)  # float32
    mode2, cov2 = laplace(bnn, (x, y), chunk_size=7)
    torch.testing.assert_close(mode2, mode)
    torch.testing.assert_close(map_estimate(bnn, (x, y)).double(), mode)  # its mode alone
    torch.testing.assert_close(cov2, cov, rtol=1e-2, atol=1e-5)  # float32 chunks, ill-conditioned
    with pytest.raises(ValueError, match="categorical likelihood"):
        laplace(BNN(nn.Linear(4, 1), likelihood=Gaussian(0.3)), (x, y[:, None].float()))
    with pytest.raises(ValueError, match="max_iter"):
        map_estimate(bnn, (x, y), max_iter=0)


def test_a_laplace_mass_matrix_shortens_trajectories_and_keeps_the_posterior():
    """On correlated weights NUTS with the fixed Laplace mass matrix takes several times
    fewer gradients per draw than with the adapted diagonal one, and its draws' mean agrees
    with the diagonal chains' within Monte Carlo error."""
    x, y = _correlated_classification()
    results = {}
    for name, pre in (("diag", None), ("laplace", "laplace")):
        bnn = BNN(nn.Linear(4, 3), prior=dist.Normal(0.0, 1.0))
        calls = [0]
        bnn.register_forward_pre_hook(lambda *_, c=calls: c.__setitem__(0, c[0] + 1))
        given = None if pre is None else laplace(bnn, (x, y))
        calls[0] = 0
        _, result = fit_mcmc(bnn, (x, y), num_samples=60, warmup=80, num_chains=2,
                             laplace=given, progress=False)  # fmt: skip
        results[name] = (result, calls[0] / (2 * 140))
    (diag, diag_calls), (lap, lap_calls) = results["diag"], results["laplace"]
    assert lap.settings["mass"] == "laplace" and diag.settings["mass"] == "diag"
    assert lap_calls * 3 < diag_calls, (lap_calls, diag_calls)
    assert lap.r_hat["weights"] < 1.05 and sum(lap.divergences) == 0
    a = diag.samples["weights"].reshape(-1, 15).double()
    b = lap.samples["weights"].reshape(-1, 15).double()
    se = (a.var(0) / diag.ess["weights"] + b.var(0) / lap.ess["weights"]).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() < 4 * se).all()


def _with_dead_inputs(dead: int = 2):
    """_correlated_classification with ``dead`` more inputs that are always 0: the weights
    on them appear in no likelihood term, so their posterior is their prior."""
    x, y = _correlated_classification(200)
    return torch.cat([x, torch.zeros(len(x), dead)], 1), y


def test_normal_scores_let_hmc_draw_the_spike_and_slab_where_no_datum_constrains():
    """Under the paper's scale mixture, the posterior of a weight on a dead input is the
    prior itself: half its mass in the spike (sd e^-7) and half in the slab (sd e^-1).
    In the normal scores' coordinates HMC draws it: R-hat near 1 there, on the weights
    and on their sizes (a chain held in the spike and one in the slab share a mean but
    not a size), each chain half in the spike, and the draws' sd the prior's."""
    x, y = _with_dead_inputs()
    prior = ScaleMixtureNormal()
    bnn = BNN(nn.Linear(6, 3), prior=prior)
    _, result = fit_mcmc(bnn, (x, y), num_samples=100, warmup=100, num_chains=2, kernel="hmc",
                         num_steps=10, normal_scores=True, progress=False)  # fmt: skip
    assert result.settings["normal_scores"] and sum(result.divergences) == 0
    weight = result.samples["weights"][..., :18].reshape(2, 100, 3, 6)  # (C, S, out, in)
    dead = weight[..., 4:].reshape(2, 100, 6)  # (C, S, the 6 weights on dead inputs)
    for draws in (dead, dead.abs()):
        r_hat, ess = chain_diagnostics(draws)
        assert r_hat.max() < 1.1 and ess.min() > 50
    spike = 3 * prior.sigma2  # P(|w| < spike): 0.9973 in the spike, 0.006 in the slab
    expect = 0.5 * (math.erf(3 / math.sqrt(2)) + math.erf(spike / prior.sigma1 / math.sqrt(2)))
    per_chain = (dead.abs() < spike).double().mean((1, 2))  # (C,)
    assert (per_chain - expect).abs().max() < 0.15
    torch.testing.assert_close(dead.std(), prior.variance.sqrt(), rtol=0.25, atol=0)


def test_laplace_in_normal_scores_is_the_mode_and_inverse_hessian_of_their_potential():
    """laplace(normal_scores=True): the mode zeroes the gradient of Pyro's potential of the
    reparametrised model, and the covariance inverts its Hessian, here by central
    differences of that gradient (the chain rule in laplace is checked against autograd)."""
    from pyro.infer.mcmc.util import initialize_model

    from pyro_bnn.mcmc import NormalScoreReparam

    x, y = _with_dead_inputs()
    bnn = BNN(nn.Linear(6, 3), prior=ScaleMixtureNormal())
    mode, cov = laplace(bnn, (x, y), normal_scores=True)
    model = pyro.poutine.reparam(bnn, config={"weights": NormalScoreReparam()})
    _, potential, _, _ = initialize_model(model, model_args=(x, y), max_plate_nesting=1)

    def grad(eta: torch.Tensor) -> torch.Tensor:
        at = eta.float().requires_grad_(True)
        return torch.autograd.grad(potential({"weights_score": at}), at)[0].double()

    assert grad(mode).abs().max() < 1e-2  # the gradient at 0 is ~10
    h = 1e-3
    hessian = torch.stack([(grad(mode + h * e) - grad(mode - h * e)) / (2 * h)
                           for e in torch.eye(len(mode), dtype=torch.float64)])  # fmt: skip
    symmetric = (hessian + hessian.T) / 2
    torch.testing.assert_close(torch.linalg.inv(cov), symmetric, rtol=0.05, atol=0.05)
    # the dead inputs' weights: no data, so their scores' posterior is N(0, 1) exactly
    dead = torch.zeros(3, 6, dtype=torch.bool)
    dead[:, 4:] = True
    dead = torch.cat([dead.reshape(-1), torch.zeros(3, dtype=torch.bool)])
    standard = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    torch.testing.assert_close(mode[dead], standard[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(cov.diagonal()[dead], standard[1], atol=1e-4, rtol=0)


def test_configurational_temperature_reads_1_at_the_posterior_and_t_at_its_tempered_twin():
    """A 2-class linear net on six points, two weights: its posterior (not Gaussian) drawn
    exactly from a fine grid, and the tempered p^(1/2) the same way. Equipartition makes
    the readings' mean 1 and 2, on every weight and on all of them."""
    bnn = BNN(nn.Linear(1, 2, bias=False), prior=dist.Normal(0.0, 1.0))
    x = torch.tensor([[-2.0], [-1.0], [-0.5], [0.5], [1.0], [2.0]])
    y = torch.tensor([0, 0, 1, 0, 1, 1])
    h = 0.02
    axis = torch.arange(-6, 6 + h / 2, h, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)  # (G, 2): class 0's weight, class 1's
    logits = grid[:, None, :] * x.double()[None, :, :]  # (G, 6, 2): x w_k per class k
    u = -logits.log_softmax(-1).gather(-1, y[None, :, None].expand(len(grid), -1, 1)).sum((1, 2))
    u = u + grid.square().sum(-1) / 2  # U(w) = -log p(y | x, w) - log N(w; 0, I) + const
    mode = grid[u.argmin()]
    g = torch.Generator().manual_seed(0)
    for temp in (1.0, 2.0):
        cells = torch.multinomial((-(u - u.min()) / temp).exp(), 4000, True, generator=g)
        draws = grid[cells] + h * (torch.rand(4000, 2, generator=g, dtype=torch.float64) - 0.5)
        for mask in (None, torch.tensor([True, False]), torch.tensor([False, True])):
            t = configurational_temperature(bnn, (x, y), draws.float(), mask=mask, center=mode)
            se = float(t.std()) / len(t) ** 0.5
            assert t.shape == (4000,) and abs(float(t.mean()) - temp) < 4 * se + 0.01, (temp, mask)
        chunked = configurational_temperature(
            bnn, (x, y), draws.float(), center=mode, chunk_size=4
        )  # 2 chunks of data, 50 draws a pass
        torch.testing.assert_close(chunked, configurational_temperature(
            bnn, (x, y), draws.float(), center=mode), rtol=1e-5, atol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match=r"draws must be \(S, 2\)"):
        configurational_temperature(bnn, (x, y), torch.zeros(3))
    with pytest.raises(ValueError, match="mask must be"):
        configurational_temperature(bnn, (x, y), draws.float(), mask=torch.zeros(2, dtype=bool))
    learned = BNN(nn.Linear(1, 1), prior=dist.Normal(0.0, 1.0), likelihood=Gaussian("learned"))
    with pytest.raises(ValueError, match=r"also samples \['log_scale'\]"):
        configurational_temperature(learned, (x, y.float()), torch.zeros(1, 2))
