import pyro
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyro_bnn import predict
from pyro_bnn.bnn import BayesianMLP, init_guide
from pyro_bnn.evaluate import evaluate
from pyro_bnn.guides import make_guide
from pyro_bnn.nets import MLP
from pyro_bnn.predict import (
    dropout_sampler,
    ensemble_fn,
    mean_fn,
    predictive_probs,
    sample_weights,
    sampler,
    single_sample_fn,
)


@pytest.fixture
def bnn_and_guide():
    bnn = BayesianMLP((16, 10), in_features=784)
    guide = make_guide("softplus-normal", bnn, rho_init=-1.0)
    init_guide(bnn, guide)
    return bnn, guide


def test_vectorised_draws_follow_the_guide(bnn_and_guide):
    bnn, guide = bnn_and_guide
    loc = guide.locs.weights.detach()
    scale = guide.scales()["weights"]
    w = sample_weights(bnn, guide, 300)
    assert w.shape == (300, bnn.num_params)
    z = (w - loc) / scale  # standard normal under the guide
    assert z.mean().abs().item() < 0.01 and z.std().item() == pytest.approx(1.0, abs=0.01)
    per_weight = z.mean(0) * 300**0.5  # N(0, 1) per weight if the draws are right
    assert per_weight.std().item() == pytest.approx(1.0, abs=0.05)


def test_predictive_probs_shapes_and_chunking(bnn_and_guide, monkeypatch):
    bnn, guide = bnn_and_guide
    w = sample_weights(bnn, guide, 7)
    x = torch.rand(50, 784)
    probs = predictive_probs(bnn, w, x)
    assert probs.shape == (7, 50, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(7, 50))
    monkeypatch.setattr(predict, "MAX_ELEMENTS", 7 * 16 * 3)  # chunks of 3 inputs
    torch.testing.assert_close(predictive_probs(bnn, w, x), probs)


def test_decision_rules(bnn_and_guide):
    bnn, guide = bnn_and_guide
    x, y = torch.rand(40, 784), torch.randint(0, 10, (40,))
    single = single_sample_fn(bnn, guide, runs=12)(x)
    assert single.shape == (12, 40, 10) and not torch.allclose(single[0], single[1])
    ens = ensemble_fn(bnn, guide, size=25)(x)
    assert ens.shape == (4, 40, 10)  # 100 // 25 runs
    # averaging makes the runs agree more than single samples do
    assert ens.var(0).mean() < single.var(0).mean() / 5
    net = MLP((16, 10))
    net.load_state_dict(bnn.unflatten(guide.locs.weights.detach()))
    torch.testing.assert_close(mean_fn(bnn, guide)(x), F.softmax(net(x), -1))
    row = evaluate(single_sample_fn(bnn, guide, runs=12), x, y)
    assert row["runs"] == 12 and row["acc_std"] > 0


def test_sampler_is_differentiable_in_x(bnn_and_guide):
    bnn, guide = bnn_and_guide
    x = torch.rand(5, 784, requires_grad=True)
    probs = sampler(bnn, guide, ensemble=3)(x, 4)
    assert probs.shape == (4, 5, 10)
    probs[..., 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_counts(bnn_and_guide):
    bnn, guide = bnn_and_guide
    for call in (
        lambda: sample_weights(bnn, guide, 0),
        lambda: single_sample_fn(bnn, guide, 0),
        lambda: ensemble_fn(bnn, guide, 0),
        lambda: sampler(bnn, guide)(torch.rand(2, 784), 0),
    ):
        with pytest.raises(ValueError, match="must be a positive integer"):
            call()
    with pytest.raises(ValueError, match="x must have shape"):
        single_sample_fn(bnn, guide, 2)(torch.rand(3, 5))


def test_the_log_sampler_is_the_log_of_the_mean_probability_without_underflow(mnist):
    """Same weight draws, two forms: log=True is the log of the probability sampler's mean;
    with the inputs scaled up until some probabilities underflow, it stays finite."""
    from pyro_bnn.predict import sampler

    bnn = BayesianMLP((16, 10))
    guide = make_guide("softplus-normal", bnn, rho_init=-3.0)
    init_guide(bnn, guide)
    x = mnist.test.x[:20]
    pyro.set_rng_seed(1)
    probs = sampler(bnn, guide, ensemble=3)(x, 4)  # (4, 20, 10)
    pyro.set_rng_seed(1)
    logp = sampler(bnn, guide, ensemble=3, log=True)(x, 4)
    torch.testing.assert_close(logp.exp(), probs, rtol=1e-5, atol=1e-7)
    far = sampler(bnn, guide, ensemble=3, log=True)(300 * x, 2)
    assert torch.isfinite(far).all() and (far < -200).any()


def test_dropout_sampler_draws_fresh_masks_and_leaves_the_net_as_it_was():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 3)).eval()
    x = torch.randn(5, 4, requires_grad=True)
    probs = dropout_sampler(net, ensemble=2)(x, 6)  # (6, 5, 3)
    assert probs.shape == (6, 5, 3) and not torch.allclose(probs[0], probs[1])
    torch.testing.assert_close(probs.sum(-1), torch.ones(6, 5))
    (grad,) = torch.autograd.grad(probs[..., 0].sum(), x)  # differentiable, for attacks
    assert grad.abs().sum() > 0
    assert not any(m.training for m in net.modules())  # eval mode restored
    torch.manual_seed(1)
    probs = dropout_sampler(net, ensemble=3)(x, 4)
    torch.manual_seed(1)
    logp = dropout_sampler(net, ensemble=3, log=True)(x, 4)  # the same masks, logged
    torch.testing.assert_close(logp.exp(), probs, rtol=1e-5, atol=1e-7)
    far = dropout_sampler(net, ensemble=3, log=True)(3000 * x, 2)
    assert torch.isfinite(far).all() and (far < -200).any()  # log of probs that underflow
    net[2].p = 0.0  # no dropout: every draw is the deterministic net
    same = dropout_sampler(net)(x, 3)
    torch.testing.assert_close(same, net(x).softmax(-1).expand(3, 5, 3))
    with pytest.raises(ValueError, match="no dropout layer"):
        dropout_sampler(nn.Linear(4, 3))
    with pytest.raises(RuntimeError):  # a failing forward pass leaves the modes as they were
        dropout_sampler(net)(torch.randn(5, 7), 2)
    assert not any(m.training for m in net.modules())
